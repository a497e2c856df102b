"""Hello-world apps for the real-server benchmark, bare and wrapped in connmw."""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from connmw import ConnectionMiddleware, WSGIConnectionMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

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


asgi_connmw = ConnectionMiddleware(asgi_bare)
wsgi_connmw = WSGIConnectionMiddleware(wsgi_bare)
#: A request cap that wrk's connections reach: reconnects are part of the cost.
asgi_cap1000 = ConnectionMiddleware(asgi_bare, max_requests_per_connection=1000)
wsgi_cap1000 = WSGIConnectionMiddleware(wsgi_bare, max_requests_per_connection=1000)
