"""Django integration: settings-driven setup for ``wsgi.py``/``asgi.py`` and the
:func:`close_connection` view decorator.

connmw wraps the whole WSGI or ASGI application (a Django ``MIDDLEWARE`` entry
runs too late and too deep to close a socket). In ``wsgi.py``::

    from connmw.contrib.django import get_wsgi_application

    application = get_wsgi_application()

and in ``asgi.py``::

    from connmw.contrib.django import get_asgi_application

    application = get_asgi_application()

Options come from ``settings.CONNMW``, a dict with the option names of
:class:`connmw.Options` (rules may be :class:`connmw.Rule` objects or dicts)::

    CONNMW = {
        "rules": [{"path": "/exports/**"}, {"path": "/healthz", "close": False}],
        "max_requests_per_connection": 1000,
    }

They are read once, when the application is built; a bad value raises
:class:`~django.core.exceptions.ImproperlyConfigured` then, at start-up, with the
same message as keyword construction. In a view::

    from connmw.contrib.django import close_connection

    @close_connection
    def export(request): ...

Django is imported only when these functions run.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

from .._api import request_close
from .._configured import options_of, options_of_app
from .._policy import Options
from ..asgi import ConnectionMiddleware
from ..wsgi import WSGIConnectionMiddleware

__all__ = [
    "close_connection",
    "get_asgi_application",
    "get_wsgi_application",
    "options_from_settings",
    "wrap_asgi",
    "wrap_wsgi",
]

F = TypeVar("F", bound=Callable[..., Any])


@options_of(ConnectionMiddleware)
def options_from_settings(**overrides: Any) -> dict[str, Any]:
    """``settings.CONNMW`` (validated) updated with ``overrides``, as keyword options.

    :raises django.core.exceptions.ImproperlyConfigured: for a bad setting.
    """
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    raw = getattr(settings, "CONNMW", None) or {}
    try:
        options = Options.from_mapping(raw, owner="settings.CONNMW").as_kwargs()
        options.update(overrides)
        Options.from_kwargs("settings.CONNMW", options)
    except (TypeError, ValueError) as exc:
        text = str(exc)
        if not text.startswith("settings.CONNMW"):
            text = f"settings.CONNMW: {text}"
        raise ImproperlyConfigured(text) from exc
    return options


@options_of_app(WSGIConnectionMiddleware)
def wrap_wsgi(application: Any, **overrides: Any) -> WSGIConnectionMiddleware:
    """Wrap a Django WSGI application with options from ``settings.CONNMW``."""
    return WSGIConnectionMiddleware(application, **options_from_settings(**overrides))


@options_of_app(ConnectionMiddleware)
def wrap_asgi(application: Any, **overrides: Any) -> ConnectionMiddleware:
    """Wrap a Django ASGI application with options from ``settings.CONNMW``."""
    return ConnectionMiddleware(application, **options_from_settings(**overrides))


@options_of(WSGIConnectionMiddleware)
def get_wsgi_application(**overrides: Any) -> WSGIConnectionMiddleware:
    """Django's ``get_wsgi_application()``, wrapped by connmw (for ``wsgi.py``)."""
    from django.core.wsgi import get_wsgi_application as django_wsgi

    return wrap_wsgi(django_wsgi(), **overrides)


@options_of(ConnectionMiddleware)
def get_asgi_application(**overrides: Any) -> ConnectionMiddleware:
    """Django's ``get_asgi_application()``, wrapped by connmw (for ``asgi.py``)."""
    from django.core.asgi import get_asgi_application as django_asgi

    return wrap_asgi(django_asgi(), **overrides)


def _request_of(args: tuple[Any, ...]) -> Any:
    # A function view gets the request first; a method_decorator-wrapped method too.
    for arg in args:
        if hasattr(arg, "META"):
            return arg
    raise TypeError("connmw close_connection: the decorated view got no HttpRequest")


@overload
def close_connection(view: F, /) -> F: ...
@overload
def close_connection(*, reason: str | None = None) -> Callable[[F], F]: ...


def close_connection(view: F | None = None, /, *, reason: str | None = None) -> F | Callable[[F], F]:
    """Close the connection after every response of this view (sync or async).

    ``@close_connection`` or ``@close_connection(reason="export")``; on a class-based
    view use ``@method_decorator(close_connection, name="dispatch")``. The close needs
    the request to come through connmw (see :func:`get_wsgi_application`); Django's
    test ``Client`` bypasses ``wsgi.py``, so there the decorator changes nothing (the
    view answers as usual; the install hint is logged once): test the close through
    the wrapped application.
    """

    def decorate(func: F) -> F:
        why = reason or f"view {func.__qualname__}"
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_view(*args: Any, **kwargs: Any) -> Any:
                request_close(_request_of(args), why)
                return await func(*args, **kwargs)

            return async_view  # type: ignore[return-value]

        @functools.wraps(func)
        def sync_view(*args: Any, **kwargs: Any) -> Any:
            request_close(_request_of(args), why)
            return func(*args, **kwargs)

        return sync_view  # type: ignore[return-value]

    if view is not None:
        return decorate(view)
    return decorate
