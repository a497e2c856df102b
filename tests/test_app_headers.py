"""The application's own Upgrade and Keep-Alive headers on HTTP/1.1, on the wire.

RFC 9110 §7.8: an Upgrade header goes out only with ``upgrade`` in the Connection
line. An application's Keep-Alive goes out on kept responses only, on ASGI and WSGI
alike, and never when its value could split the header block."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from connmw import ConnectionMiddleware, Rule, WSGIConnectionMiddleware

from . import servers, wire

pytestmark = pytest.mark.server

# path -> the application's headers (besides Content-Length)
APP_HEADERS: dict[str, list[tuple[str, str]]] = {
    "/upgrade": [("Upgrade", "h2c")],
    "/upgrade-nominated": [("Upgrade", "h2c"), ("Connection", "Upgrade")],
    "/keep-alive": [("Keep-Alive", "timeout=3")],
    "/keep-alive-evil": [("Keep-Alive", "timeout=3\r\nSet-Cookie: evil=1")],
}
RULES = [Rule("/close/*")]


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    path = scope["path"].removeprefix("/close")
    headers = [(n.lower().encode(), v.encode("latin-1")) for n, v in APP_HEADERS[path]]
    headers.append((b"content-length", b"2"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


def wsgi_app(environ: Any, start_response: Any) -> Iterator[bytes]:
    path = environ["PATH_INFO"].removeprefix("/close")
    start_response("200 OK", [*APP_HEADERS[path], ("Content-Length", "2")])
    yield b"ok"


def fetch(port: int, path: str) -> tuple[wire.Response, bool]:
    """The response, and whether the server closed the connection after it (a kept
    connection is one that answers a second request)."""
    resp, _, reader = wire.exchange(port, "GET", path, check_close=False)
    try:
        assert resp.body == b"ok", path
        assert "evil" not in resp.raw_head.decode("latin-1").lower(), path
        closed = not wire.still_open(reader, path)
        assert not closed or reader.closed(5.0), path
    finally:
        reader.sock.close()
    return resp, closed


def test_asgi_upgrade_goes_out_with_upgrade_in_connection() -> None:
    with servers.uvicorn_thread(ConnectionMiddleware(asgi_app, rules=RULES)) as port:
        for path in ("/upgrade", "/upgrade-nominated"):
            resp, closed = fetch(port, path)
            assert (resp.lines("upgrade"), resp.lines("connection"), closed) == (["h2c"], ["upgrade"], False)
            resp, closed = fetch(port, "/close" + path)
            assert (resp.lines("upgrade"), resp.lines("connection"), closed) == (
                ["h2c"],
                ["upgrade, close"],
                True,
            )


def test_wsgi_upgrade_never_goes_out() -> None:
    """The server writes the Connection line: connmw cannot add ``upgrade`` to it."""
    with servers.waitress_thread(WSGIConnectionMiddleware(wsgi_app, rules=RULES)) as port:
        for path in ("/upgrade", "/upgrade-nominated", "/close/upgrade"):
            resp, _ = fetch(port, path)
            assert resp.lines("upgrade") == [], path


@pytest.mark.parametrize("kind", ["asgi-uvicorn", "wsgi-waitress", "wsgi-gunicorn"])
def test_app_keep_alive_on_kept_responses_only(kind: str) -> None:
    with _serve(kind) as port:
        resp, closed = fetch(port, "/keep-alive")
        assert (resp.lines("keep-alive"), closed) == (["timeout=3"], False)
        resp, closed = fetch(port, "/keep-alive-evil")
        assert (resp.lines("keep-alive"), closed) == ([], False)
        resp, closed = fetch(port, "/close/keep-alive")
        assert (resp.lines("keep-alive"), resp.lines("connection"), closed) == ([], ["close"], True)


def gunicorn_app() -> WSGIConnectionMiddleware:
    """``gunicorn 'tests.test_app_headers:gunicorn_app()'``"""
    return WSGIConnectionMiddleware(wsgi_app, rules=RULES)


@contextlib.contextmanager
def _serve(kind: str) -> Iterator[int]:
    if kind == "asgi-uvicorn":
        with servers.uvicorn_thread(ConnectionMiddleware(asgi_app, rules=RULES)) as port:
            yield port
    elif kind == "wsgi-waitress":
        with servers.waitress_thread(WSGIConnectionMiddleware(wsgi_app, rules=RULES)) as port:
            yield port
    else:
        port = servers.free_port()
        argv = servers.gunicorn_argv("tests.test_app_headers:gunicorn_app()", port)
        with servers.subprocess_server(argv, port):
            yield port
