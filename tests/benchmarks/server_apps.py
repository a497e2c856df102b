"""Hello-world apps for the real-server benchmark: bare, under an empty layer (the
least any middleware that sees responses costs), and wrapped in connmw. The empty
layers are the in-process benchmarks' too."""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from connmw import ConnectionMiddleware, WSGIConnectionMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

BODY = b"hello, world"
_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"12")],
}
_BODY = {"type": "http.response.body", "body": BODY}


async def asgi_bare(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(_START)
    await send(_BODY)


def wsgi_bare(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "12")])
    return [BODY]


class Empty:
    """An empty ASGI layer that wraps ``send``: the cost of being a middleware at all."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def wrapped(message: MutableMapping[str, Any]) -> None:
            await send(message)

        await self.app(scope, receive, wrapped)


class EmptyWSGI:
    """An empty WSGI layer that wraps ``start_response``."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def wrapped(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, headers, exc_info)

        return self.app(environ, wrapped)


asgi_empty = Empty(asgi_bare)
wsgi_empty = EmptyWSGI(wsgi_bare)
asgi_connmw = ConnectionMiddleware(asgi_bare)
wsgi_connmw = WSGIConnectionMiddleware(wsgi_bare)
#: A request cap that wrk's connections reach: reconnects are part of the cost.
asgi_cap1000 = ConnectionMiddleware(asgi_bare, max_requests_per_connection=1000)
wsgi_cap1000 = WSGIConnectionMiddleware(wsgi_bare, max_requests_per_connection=1000)
