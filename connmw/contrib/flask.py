"""Flask integration: :func:`install` and the :func:`close_connection` view decorator.

Usage::

    from flask import Flask
    from connmw import Rule
    from connmw.contrib.flask import close_connection, install

    app = Flask(__name__)
    install(app, rules=[Rule("/export/**")])    # or app.config["CONNMW"] = {...}

    @app.get("/logout")
    @close_connection
    def logout():
        return "bye"

Flask is imported only when a decorated view runs or :func:`install` is called.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .._api import request_close
from .._configured import options_of_app
from .._policy import Options
from ..wsgi import WSGIConnectionMiddleware

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["close_connection", "install"]

F = TypeVar("F", bound=Callable[..., Any])


@options_of_app(WSGIConnectionMiddleware)
def install(app: Flask, **options: Any) -> WSGIConnectionMiddleware:
    """Wrap ``app.wsgi_app`` with :class:`~connmw.WSGIConnectionMiddleware`.

    Options come from ``app.config["CONNMW"]`` (a mapping with the option names,
    read with :meth:`connmw.Options.from_mapping`) and then from ``options``, which
    win. Bad values raise here, at start-up. Returns the middleware (for
    :meth:`~connmw.WSGIConnectionMiddleware.drain`).
    """
    settings = app.config.get("CONNMW") or {}
    merged = Options.from_mapping(settings, owner="app.config['CONNMW']").as_kwargs()
    merged.update(options)
    middleware = WSGIConnectionMiddleware(app.wsgi_app, **merged)
    app.wsgi_app = middleware  # type: ignore[method-assign]
    app.extensions["connmw"] = middleware
    return middleware


@overload
def close_connection(view: F, /) -> F: ...
@overload
def close_connection(*, reason: str | None = None) -> Callable[[F], F]: ...


def close_connection(view: F | None = None, /, *, reason: str | None = None) -> F | Callable[[F], F]:
    """Close the connection after every response of this view.

    Use it bare (``@close_connection``) or with a reason for ``on_decision`` and the
    log (``@close_connection(reason="export")``). Put it below ``@app.route``. Works
    for sync and async views; the close is requested before the view runs, so it
    holds for streamed responses and for errors too.
    """

    def decorate(func: F) -> F:
        why = reason or f"view {func.__qualname__}"
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_view(*args: Any, **kwargs: Any) -> Any:
                request_close(None, why)
                return await func(*args, **kwargs)

            return async_view  # type: ignore[return-value]

        @functools.wraps(func)
        def view(*args: Any, **kwargs: Any) -> Any:
            request_close(None, why)
            return func(*args, **kwargs)

        return view  # type: ignore[return-value]

    if view is not None:
        return decorate(view)
    return decorate
