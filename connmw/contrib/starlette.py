"""Starlette and FastAPI integration: :func:`install`, the :func:`close_connection`
endpoint decorator and the :class:`CloseConnection` FastAPI dependency.

Facts
-----
- Starlette builds its middleware stack when the application first runs (its first
  request or lifespan event): ``ServerErrorMiddleware`` outermost, then the
  middleware given to ``add_middleware`` or ``middleware=[...]``, then the
  exception middleware and the router. ``ServerErrorMiddleware`` answers an
  unhandled exception with a 500 of its own, outside every user middleware, then
  re-raises; the server then closes the connection. A ``ConnectionMiddleware``
  added with ``add_middleware`` never sees that 500, so that close goes
  unannounced, and it exists only once the stack is built.
- FastAPI answers a request whose parameters do not validate (422), or whose
  dependency raises, before the endpoint function runs.

So :func:`install` wraps the stack Starlette builds, placing connmw outside
``ServerErrorMiddleware``: every response is seen, 500s included, and the instance
exists at once (for :func:`connmw.drain_on_signal`). When the stack is built it also
wraps each route whose endpoint carries :func:`close_connection`, so the decorator
covers every response of its route, validation errors included.

Starlette::

    from starlette.routing import Route
    from connmw.contrib.starlette import close_connection

    @close_connection
    async def export(request): ...

    routes = [Route("/export", export)]

FastAPI (either form)::

    from fastapi import Depends
    from connmw.contrib.starlette import CloseConnection, close_connection

    @app.get("/export")
    @close_connection(reason="export")
    async def export(): ...

    @app.get("/report", dependencies=[Depends(CloseConnection("report"))])
    async def report(): ...

Installing it (before the application first runs)::

    from connmw.contrib.starlette import install

    app = FastAPI()
    middleware = install(app, rules=[Rule("/downloads/*")])
    connmw.drain_on_signal(app)      # or drain_on_signal(middleware)

A route-level ``Middleware(ConnectionMiddleware, rules=[...])`` works too: under an
application-wide instance it adds its rules in front of the outer ones (the outer
instance still owns the connection); alone, it is a full middleware for its route.

Starlette is imported only when a decorator or dependency is created.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

from .._api import request_close
from .._configured import options_of_app
from ..asgi import ConnectionMiddleware

__all__ = ["CloseConnection", "close_connection", "install", "installed"]

F = TypeVar("F", bound=Callable[..., Any])

#: The keyword the decorator adds to an endpoint's signature so FastAPI injects the request.
_INJECTED = "connmw_request"

#: The attribute the decorator sets on the endpoint it returns: the close reason.
_MARK = "__connmw_close__"


@options_of_app(ConnectionMiddleware)
def install(app: Any, **options: Any) -> ConnectionMiddleware:
    """Put :class:`~connmw.ConnectionMiddleware` outermost around a Starlette or
    FastAPI application, outside Starlette's error middleware.

    Call it once, before the application first runs. Options are validated here.
    Returns the middleware (also ``app.state.connmw``); ``connmw.drain_on_signal(app)``
    finds it. Routes whose endpoint carries :func:`close_connection` close the
    connection on every response, the 422 of a request that does not validate
    included (routes added after the application started are not marked).
    """
    if getattr(app, "middleware_stack", False) is not None or not callable(
        getattr(app, "build_middleware_stack", None)
    ):
        raise RuntimeError(
            f"connmw.contrib.starlette.install needs a Starlette or FastAPI application that has "
            f"not started yet, got {app!r}: call install(app) where the application is built"
        )
    if installed(app) is not None:
        raise RuntimeError("connmw.contrib.starlette.install: connmw is already installed on this app")
    build = app.build_middleware_stack
    placeholder = _Unbuilt(app)
    middleware = ConnectionMiddleware(placeholder, **options)

    def build_middleware_stack() -> Any:
        stack = build()
        _mark_routes(app.routes, set())
        holder: Any = middleware
        while holder.app is not placeholder:  # past drain_on_signal's installer, if any
            holder = holder.app
        holder.app = placeholder.stack = stack
        return middleware

    app.build_middleware_stack = build_middleware_stack
    app.state.connmw = middleware
    return middleware


def installed(app: Any) -> ConnectionMiddleware | None:
    """The middleware :func:`install` put on ``app``, or None."""
    found = getattr(getattr(app, "state", None), "connmw", None)
    return found if isinstance(found, ConnectionMiddleware) else None


class _Unbuilt:
    """What the middleware wraps until Starlette builds its stack: reached only when
    the middleware is called before the application ever ran."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.stack: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        app = self.app
        if app.middleware_stack is None:
            app.middleware_stack = app.build_middleware_stack()
        scope["app"] = app
        await self.stack(scope, receive, send)


def _mark_routes(routes: Any, seen: set[int]) -> None:
    for route in routes:
        if id(route) in seen:
            continue
        seen.add(id(route))
        why = getattr(getattr(route, "endpoint", None), _MARK, None)
        if isinstance(why, str) and callable(getattr(route, "app", None)):
            route.app = _closing_route(route.app, why)
        _mark_routes(getattr(route, "routes", ()) or (), seen)


def _closing_route(app: Any, why: str) -> Any:
    async def route_app(scope: Any, receive: Any, send: Any) -> None:
        request_close(scope, why)
        await app(scope, receive, send)

    return route_app


def _request_class() -> type[Any]:
    from starlette.requests import Request

    return Request


class CloseConnection:
    """A FastAPI dependency: close the connection after this route's response.

    ``Depends(CloseConnection())`` or ``Depends(CloseConnection("export"))``, in a
    route's ``dependencies=[...]`` or a router's.
    """

    __slots__ = ("__signature__", "reason")

    def __init__(self, reason: str | None = None) -> None:
        self.reason = reason
        request = inspect.Parameter(
            "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=_request_class()
        )
        self.__signature__ = inspect.Signature([request], return_annotation=None)

    def __call__(self, request: Any) -> None:
        request_close(request, self.reason or "dependency")

    def __repr__(self) -> str:
        return f"CloseConnection({self.reason!r})"


def _find_request(args: tuple[Any, ...], kwargs: dict[str, Any], injected: bool) -> Any:
    if injected:
        request = kwargs.pop(_INJECTED, None)
        if request is not None:
            return request
    request_class = _request_class()
    for value in (*args, *kwargs.values()):
        if isinstance(value, request_class):
            return value
    raise TypeError("connmw close_connection: the decorated endpoint got no Request")


def _with_request(func: Callable[..., Any], wrapper: Callable[..., Any]) -> bool:
    """Give ``wrapper`` the signature of ``func`` plus a keyword-only Request
    parameter, so FastAPI passes the request along (Starlette ignores it).
    False when the signature cannot be read or already takes the request."""
    try:
        sig = inspect.signature(func, eval_str=True)
    except (NameError, TypeError, ValueError):
        return False
    request_class = _request_class()
    # The evaluated signature: older FastAPI (0.110 to 0.115 at least) resolves string annotations
    # (``from __future__ import annotations``) in the wrapper's module, not the endpoint's.
    wrapper.__signature__ = sig  # type: ignore[attr-defined]
    if _INJECTED in sig.parameters:
        return False
    for p in sig.parameters.values():
        # FastAPI hands the request to one parameter only: use the endpoint's own.
        if isinstance(p.annotation, type) and issubclass(p.annotation, request_class):
            return False
    params = list(sig.parameters.values())
    extra = inspect.Parameter(_INJECTED, inspect.Parameter.KEYWORD_ONLY, annotation=request_class)
    at = len(params)
    for i, p in enumerate(params):
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            at = i
            break
    params.insert(at, extra)
    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return True


@overload
def close_connection(endpoint: F, /) -> F: ...
@overload
def close_connection(*, reason: str | None = None) -> Callable[[F], F]: ...


def close_connection(endpoint: F | None = None, /, *, reason: str | None = None) -> F | Callable[[F], F]:
    """Close the connection after every response of this endpoint.

    ``@close_connection`` or ``@close_connection(reason="export")``, below the
    route decorator. Works for Starlette endpoints (``request`` first) and for
    FastAPI path operations with any signature, sync or async. The close is
    requested before the endpoint runs, so it holds for streamed responses too.
    Under :func:`install` it covers every response of the route, including those
    FastAPI sends before the endpoint runs (422, a dependency's error); otherwise
    only the responses of the endpoint once it runs.
    """

    def decorate(func: F) -> F:
        why = reason or f"endpoint {func.__qualname__}"
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_endpoint(*args: Any, **kwargs: Any) -> Any:
                request_close(_find_request(args, kwargs, injected), why)
                return await func(*args, **kwargs)

            injected = _with_request(func, async_endpoint)
            setattr(async_endpoint, _MARK, why)
            return async_endpoint  # type: ignore[return-value]

        @functools.wraps(func)
        def sync_endpoint(*args: Any, **kwargs: Any) -> Any:
            request_close(_find_request(args, kwargs, injected), why)
            return func(*args, **kwargs)

        injected = _with_request(func, sync_endpoint)
        setattr(sync_endpoint, _MARK, why)
        return sync_endpoint  # type: ignore[return-value]

    if endpoint is not None:
        return decorate(endpoint)
    return decorate
