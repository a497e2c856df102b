"""Small ASGI and WSGI applications the tests run under connmw and real servers.

Routes (both flavours):
- ``/``            200, ``hello`` with a Content-Length
- ``/stream``      200, three body parts, no length
- ``/rule/...``    200; the test configuration closes it by rule
- ``/handler``     200; the handler calls ``connmw.request_close``
- ``/app-close``   200; the application sends ``Connection: close`` itself
- ``/hop``         200; the application sends hop-by-hop headers of every kind
- ``/te``          200; the application sends ``te: gzip`` (fatal on HTTP/2 servers)
- ``/status/N``    status N
- ``/count``       200; body is the request's number on its connection (or ``-``)

``CONNMW_TEST_OPTIONS`` (JSON) configures the wrapped apps when a server imports
this module in another process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import connmw
from connmw import ConnectionMiddleware, Options, Rule, WSGIConnectionMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from connmw.asgi import Receive, Scope, Send

STREAM_PARTS = (b"part-1;", b"part-2;", b"part-3.")
HOP_HEADERS_ASGI = [
    (b"connection", b"keep-alive, x-hop"),
    (b"x-hop", b"1"),
    (b"keep-alive", b"timeout=99"),
    (b"proxy-connection", b"keep-alive"),
    (b"upgrade", b"h2c"),
    (b"te", b"gzip"),
]


def _status_of(path: str) -> int:
    if path.startswith("/status/"):
        try:
            return int(path[len("/status/") :])
        except ValueError:
            return 400
    return 200


async def raw_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "http"
    # Drain the request body.
    while True:
        message = await receive()
        if not message.get("more_body", False):
            break
    path: str = scope["path"]
    if path == "/stream":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        for i, part in enumerate(STREAM_PARTS):
            await send({"type": "http.response.body", "body": part, "more_body": i < len(STREAM_PARTS) - 1})
        return
    headers: list[tuple[bytes, bytes]] = [(b"content-type", b"text/plain")]
    body = b"hello"
    if path == "/handler":
        connmw.request_close(scope, "test handler")
    elif path == "/app-close":
        headers.append((b"connection", b"close"))
    elif path == "/hop":
        headers.extend(HOP_HEADERS_ASGI)
    elif path == "/te":
        headers.append((b"te", b"gzip"))
    elif path == "/count":
        facts = scope.get("connmw")
        count = getattr(facts, "request_count", None)
        body = str(count if count is not None else "-").encode()
    status = _status_of(path)
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_REASONS = {
    200: "OK",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    404: "Not Found",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def raw_wsgi(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    length = environ.get("CONTENT_LENGTH")
    if length:
        environ["wsgi.input"].read(int(length))
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter(STREAM_PARTS)
    headers = [("Content-Type", "text/plain")]
    body = b"hello"
    if path == "/handler":
        connmw.request_close(environ, "test handler")
    elif path == "/app-close":
        headers.append(("Connection", "close"))
    elif path == "/hop":
        headers.extend(
            [
                ("Connection", "keep-alive, x-hop"),
                ("Keep-Alive", "timeout=99"),
                ("Proxy-Connection", "keep-alive"),
                ("Upgrade", "h2c"),
                ("TE", "gzip"),
                ("Transfer-Encoding", "chunked"),
            ]
        )
    elif path == "/count":
        facts = environ.get("connmw")
        count = getattr(facts, "request_count", None)
        body = str(count if count is not None else "-").encode()
    status = _status_of(path)
    headers.append(("Content-Length", str(len(body))))
    start_response(f"{status} {_REASONS.get(status, 'Status')}", headers)
    return [body]


def install_hint_logs(caplog: Any) -> list[str]:
    """The install hints ``request_close`` logged, its once-per-process memory cleared
    first (call before and after the code under test)."""
    import connmw._api

    connmw._api._warned.clear()
    return [r.getMessage() for r in caplog.records if "did not pass through connmw" in r.getMessage()]


def app_options() -> dict[str, Any]:
    """The options the wrapped apps use: a rule for ``/rule/*`` plus the environment's."""
    extra = json.loads(os.environ.get("CONNMW_TEST_OPTIONS", "{}"))
    parsed = Options.from_mapping(extra)
    options: dict[str, Any] = {"rules": [Rule("/rule/*")]}
    for key in extra:
        name = key.lower().replace("-", "_")
        options[name] = getattr(parsed, name)
    return options


asgi_app = ConnectionMiddleware(raw_asgi, **app_options())
wsgi_app = WSGIConnectionMiddleware(raw_wsgi, **app_options())
