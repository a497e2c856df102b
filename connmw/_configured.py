"""The typed constructor both middlewares share: one keyword-only signature for every
option, checked by editors and type checkers (Starlette's ``add_middleware`` takes
the signature through a ``ParamSpec``), and the check of the wrapped application.

The parameters mirror the fields of :class:`connmw.Options` (same names, same
defaults; ``tests/test_typed_options.py`` keeps them in step) but take the input
forms (any iterable of rules, statuses or names), which :class:`~connmw.Options`
normalises. All of this runs once, at construction.
"""

from __future__ import annotations

import functools
import inspect
import random as _random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Concatenate, Generic, Literal, ParamSpec, TypeVar

from ._engine import Engine
from ._policy import DEFAULT_CLOSE_ON_STATUS, Options, Rule, unknown_option

if TYPE_CHECKING:
    from ._decide import Decision
    from ._engine import RequestFacts

__all__ = ["Configured", "check_asgi_app", "check_wsgi_app", "options_of", "options_of_app", "subclassable"]

AppT = TypeVar("AppT")
P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C", bound=type)


def subclassable(cls: C) -> C:
    """Leave ``cls`` a plain Python class in the compiled build, so it can be subclassed.

    mypyc compiles a decorated class as an ordinary class (its methods still compiled);
    an undecorated one becomes a native class, which Python code cannot subclass.
    """
    return cls


_FIELDS = frozenset(Options.field_names())


class Configured(Generic[AppT]):
    """Holds the wrapped application, the validated :class:`~connmw.Options` and the engine."""

    app: AppT
    options: Options
    _engine: Engine
    #: Several threads may run requests at once (WSGI servers); an ASGI app runs on one loop.
    _threaded: ClassVar[bool] = True

    if not TYPE_CHECKING:  # type checkers read the signature of __init__ below

        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            # Python's own message for a misspelled keyword has no hint; this one does.
            if len(args) > 1:
                raise TypeError(
                    f"{cls.__name__} takes the application as its only positional argument; "
                    f"options are keyword-only, e.g. {cls.__name__}(app, rules=[...])"
                )
            for key in kwargs:
                if key not in _FIELDS and key != "app":
                    raise TypeError(unknown_option(cls.__name__, key, key))
            return object.__new__(cls)

    def __init__(
        self,
        app: AppT,
        /,
        *,
        rules: Iterable[Rule | Mapping[str, Any]] = (),
        close_on_status: int | Iterable[int] | None = DEFAULT_CLOSE_ON_STATUS,
        max_requests_per_connection: int | None = None,
        max_requests_jitter: int = 0,
        max_connection_age: float | None = None,
        max_connection_age_jitter: float = 0.0,
        max_connection_age_grace: float | None = None,
        keep_alive_timeout: float | Literal["auto"] | None = None,
        overload_soft_limit: int | None = None,
        overload_hard_limit: int | None = None,
        pressure: Callable[[], float] | None = None,
        overload_http2: bool = False,
        on_decision: Callable[[RequestFacts, Decision], object] | None = None,
        decision_header: str | None = None,
        connection_idle_timeout: float = 300.0,
        max_tracked_connections: int = 100_000,
        strip_nominated_request_headers: bool = False,
        protected_request_headers: Iterable[str] = frozenset(),
        max_connection_tokens: int = 32,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
    ) -> None:
        """Wrap ``app``; every option is keyword-only and validated here.

        :param app: the application to wrap (ASGI 3 for :class:`~connmw.ConnectionMiddleware`,
            PEP 3333 for :class:`~connmw.WSGIConnectionMiddleware`); the wrong kind
            raises :class:`TypeError` naming the right middleware.
        :param rules: :class:`~connmw.Rule` objects (or mappings), tried in order, first
            match wins.
        :param close_on_status: statuses that close the connection (default: nginx's and
            Apache's set, 400 408 413 414 431 500 501 503); ``()`` turns it off.
        :param max_requests_per_connection: the Nth response on a connection closes it.
        :param max_requests_jitter: each connection's cap is raised by a random
            0..jitter, so a fleet does not reconnect in lockstep.
        :param max_connection_age: seconds; the first response after a connection is
            this old closes it.
        :param max_connection_age_jitter: seconds added at random (0..jitter) per connection.
        :param max_connection_age_grace: seconds an HTTP/2 connection may keep streams
            open after its final GOAWAY before it is closed anyway; ``None``: no bound.
        :param keep_alive_timeout: seconds, advertised as ``Keep-Alive: timeout=N`` on
            HTTP/1.x responses that keep the connection, or ``"auto"``: the server's own
            idle timeout where connmw can read it; a number above it is lowered to it.
        :param overload_soft_limit: in-flight requests (per process) from which responses
            start to close connections, with a probability rising linearly...
        :param overload_hard_limit: ...to 1 at this many in-flight requests.
        :param pressure: a callable returning 0..1, the probability to close each
            response (see :class:`connmw.EventLoopLag`).
        :param overload_http2: let the overload limits and ``pressure`` retire HTTP/2
            connections too (GOAWAY; off by default: one decision moves every stream).
        :param on_decision: called with ``(facts, decision)`` for every HTTP response.
        :param decision_header: a response header name (e.g. ``"x-connmw"``) carrying the
            decision and its reason; ``None`` (default) sends nothing.
        :param connection_idle_timeout: seconds after which the state of an idle
            connection is forgotten; at least the server's keep-alive timeout.
        :param max_tracked_connections: a hard cap on per-connection state entries.
        :param strip_nominated_request_headers: remove the request headers the client's
            ``Connection`` nominates, except the protected ones.
        :param protected_request_headers: header names never stripped, besides Host,
            Authorization, Cookie, Content-Length, Content-Type, Forwarded, X-Forwarded-*.
        :param max_connection_tokens: how many ``Connection`` tokens of a request are honoured.
        :param clock: a monotonic clock in seconds (tests inject one).
        :param random: returns a float in [0, 1) (tests inject one).

        See :class:`connmw.Options` for the same options as a value (``from_mapping``,
        ``from_env``).
        """
        given = locals()
        self._check_app(app)
        self.app = app
        self.options = Options(**{name: given[name] for name in _FIELDS})
        self._engine = Engine(self.options, threaded=self._threaded)

    if not TYPE_CHECKING:
        # help(), IDEs and inspect.signature show the parameters of __init__, not __new__'s.
        __new__.__signature__ = inspect.signature(__init__)

        _typed_init = __init__

        @functools.wraps(_typed_init)
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            # Starlette before 0.41 builds its middleware as ``cls(app=app, **options)``.
            if not args and "app" in kwargs:
                args = (kwargs.pop("app"),)
            Configured._typed_init(self, *args, **kwargs)

    @staticmethod
    def _check_app(app: Any) -> None:
        """Raise :class:`TypeError` when ``app`` is of the wrong kind (adapters override)."""


def options_of_app(
    middleware: Callable[Concatenate[Any, P], object],
) -> Callable[[Callable[..., R]], Callable[Concatenate[Any, P], R]]:
    """Give ``func(app, **options)`` the typed options of ``middleware``, for editors and
    type checkers (``connmw.contrib``'s ``install()``); the function is returned as is."""

    def typed(func: Callable[..., R]) -> Callable[Concatenate[Any, P], R]:
        return func

    return typed


def options_of(
    middleware: Callable[Concatenate[Any, P], object],
) -> Callable[[Callable[..., R]], Callable[P, R]]:
    """As :func:`options_of_app`, for ``func(**options)`` without the application."""

    def typed(func: Callable[..., R]) -> Callable[P, R]:
        return func

    return typed


def _positional(app: object) -> tuple[int, float] | None:
    """How many positional arguments ``app`` requires and accepts, or None if unknown."""
    try:
        sig = inspect.signature(app)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    required = 0
    accepted: float = 0
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            accepted = float("inf")
        elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            accepted += 1
            if p.default is p.empty:
                required += 1
    return required, accepted


def _is_async(app: object) -> bool:
    if inspect.iscoroutinefunction(app):
        return True
    call = getattr(type(app), "__call__", None)  # noqa: B004 (the method itself, to inspect)
    return not inspect.isroutine(app) and not isinstance(app, type) and inspect.iscoroutinefunction(call)


def _describe(app: object) -> str:
    return f"{type(app).__name__} {app!r}"[:200]


def _require_callable(app: object, what: str) -> None:
    if not callable(app):
        raise TypeError(f"{what}, got {_describe(app)}")


def check_asgi_app(app: object) -> None:
    """``app`` must be an ASGI 3 application: ``async (scope, receive, send)``."""
    _require_callable(
        app, "ConnectionMiddleware wraps an ASGI application (async def app(scope, receive, send))"
    )
    arity = _positional(app)
    if arity is None or arity[0] <= 3 <= arity[1]:
        return
    if arity[0] <= 2 <= arity[1] and not _is_async(app):
        raise TypeError(
            f"ConnectionMiddleware got a WSGI application (it takes environ, start_response): "
            f"{_describe(app)}. Wrap it with WSGIConnectionMiddleware instead "
            "(Flask: connmw.contrib.flask.install(app); Django: connmw.contrib.django.get_wsgi_application())"
        )
    raise TypeError(
        f"ConnectionMiddleware wraps an ASGI 3 application taking (scope, receive, send), got "
        f"{_describe(app)} (an ASGI 2 class can be adapted with "
        "asgiref.compatibility.guarantee_single_callable)"
    )


def check_wsgi_app(app: object) -> None:
    """``app`` must be a PEP 3333 application: ``(environ, start_response)``, not async."""
    _require_callable(
        app, "WSGIConnectionMiddleware wraps a WSGI application (def app(environ, start_response))"
    )
    arity = _positional(app)
    if _is_async(app) or (arity is not None and arity[0] == 3):
        raise TypeError(
            f"WSGIConnectionMiddleware got an ASGI application (async, taking scope, receive, send): "
            f"{_describe(app)}. Wrap it with ConnectionMiddleware instead "
            "(FastAPI/Starlette: app.add_middleware(ConnectionMiddleware))"
        )
    if arity is not None and not arity[0] <= 2 <= arity[1]:
        raise TypeError(
            f"WSGIConnectionMiddleware wraps a WSGI application taking (environ, start_response), "
            f"got {_describe(app)}"
        )
