"""HTTP semantics on the wire, on real servers (raw sockets).

A close announced is a close that happens; a connection that should stay open
answers a second request; exactly one ``Connection`` line; no chunked framing to
HTTP/1.0; the body is byte for byte what the application sent.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests import apps, servers, wire
from tests.h2client import H2Client

pytestmark = pytest.mark.server


@dataclass
class Server:
    name: str
    port: int
    asgi: bool
    keeps_alive: bool = True  # wsgiref closes after every response
    #: The server keeps an HTTP/1.0 keep-alive connection (so connmw says ``keep-alive``).
    keeps_http10: bool = False


SERVER_NAMES = ["uvicorn-h11", "uvicorn-httptools", "hypercorn", "waitress", "wsgiref", "gunicorn-gthread"]


@contextlib.contextmanager
def _start(name: str) -> Iterator[Server]:
    if name.startswith("uvicorn-"):
        with servers.uvicorn_thread(apps.asgi_app, http=name.split("-")[1]) as port:
            yield Server(name, port, asgi=True)
    elif name == "hypercorn":
        with servers.hypercorn_thread(apps.asgi_app) as port:
            yield Server(name, port, asgi=True)
    elif name == "waitress":
        with servers.waitress_thread(apps.wsgi_app) as port:
            yield Server(name, port, asgi=False, keeps_http10=True)
    elif name == "wsgiref":
        with servers.wsgiref_thread(apps.wsgi_app) as port:
            yield Server(name, port, asgi=False, keeps_alive=False)
    else:
        port = servers.free_port()
        with servers.subprocess_server(servers.gunicorn_argv("tests.apps:wsgi_app", port), port):
            yield Server(name, port, asgi=False, keeps_http10=True)


@pytest.fixture(scope="module", params=SERVER_NAMES)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with _start(request.param) as srv:
        yield srv


def _connection(resp: wire.Response) -> list[str]:
    return [v.lower() for v in resp.lines("connection")]


def test_http11_plain_stays_open(server: Server) -> None:
    resp, _, reader = wire.exchange(server.port, check_close=False)
    try:
        assert resp.status == 200 and resp.body == b"hello"
        if server.keeps_alive:
            assert "close" not in ",".join(_connection(resp))
            assert wire.still_open(reader)
        else:
            # An HTTP/1.0 response without keep-alive announces the close by itself.
            assert _connection(resp) == ["close"] or (resp.version == "HTTP/1.0" and _connection(resp) == [])
            assert reader.closed()
    finally:
        reader.sock.close()


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([("Connection", "close")], id="close"),
        pytest.param([("Connection", "TE, close"), ("TE", "trailers")], id="TE-close"),
        pytest.param([("Connection", "Close")], id="Close"),
        pytest.param([("Connection", "TE"), ("Connection", "close")], id="two-fields"),
    ],
)
def test_client_close_is_announced_once_and_real(server: Server, headers: list[tuple[str, str]]) -> None:
    resp, closed, reader = wire.exchange(server.port, headers=headers)
    reader.sock.close()
    assert resp.status == 200 and resp.body == b"hello"
    assert _connection(resp) == ["close"]
    assert closed


@pytest.mark.parametrize("path", ["/rule/x", "/handler", "/app-close", "/status/500"])
def test_policy_closes_are_announced_once_and_real(server: Server, path: str) -> None:
    resp, closed, reader = wire.exchange(server.port, path=path)
    reader.sock.close()
    assert resp.body == b"hello"
    assert _connection(resp) == ["close"]
    assert closed


def test_http10_keep_alive_is_honest(server: Server) -> None:
    resp, _, reader = wire.exchange(
        server.port, version="HTTP/1.0", headers=[("Connection", "keep-alive")], check_close=False
    )
    try:
        lines = _connection(resp)
        if server.keeps_http10:
            assert lines == ["keep-alive"]
            assert wire.still_open(reader, version="HTTP/1.0")
        else:
            assert lines == ["close"]
            assert reader.closed()
    finally:
        reader.sock.close()


def test_http10_plain_closes(server: Server) -> None:
    resp, closed, reader = wire.exchange(server.port, version="HTTP/1.0")
    reader.sock.close()
    assert resp.body == b"hello"
    assert "keep-alive" not in ",".join(_connection(resp))
    assert closed


def test_http10_stream_is_not_chunked(server: Server) -> None:
    resp, closed, reader = wire.exchange(server.port, path="/stream", version="HTTP/1.0")
    reader.sock.close()
    assert resp.lines("transfer-encoding") == []
    assert not resp.chunked
    assert resp.body == b"".join(apps.STREAM_PARTS)
    assert closed


def test_http11_stream_body_is_identical(server: Server) -> None:
    resp, _, reader = wire.exchange(server.port, path="/stream", check_close=False)
    reader.sock.close()
    assert resp.body == b"".join(apps.STREAM_PARTS)
    assert len(resp.lines("transfer-encoding")) <= 1


def test_app_hop_by_hop_headers(server: Server) -> None:
    resp, _, reader = wire.exchange(server.port, path="/hop", check_close=False)
    try:
        assert resp.status == 200 and resp.body == b"hello"
        assert len(resp.lines("connection")) <= 1
        assert resp.lines("proxy-connection") == []
        if not server.asgi:
            # PEP 3333: none of the app's hop-by-hop headers reach the server.
            assert resp.lines("upgrade") == [] and resp.lines("te") == []
            assert resp.lines("transfer-encoding") == []
        else:
            assert resp.lines("transfer-encoding") == []
        if server.keeps_alive:
            assert wire.still_open(reader)
    finally:
        reader.sock.close()


def test_pipelined_requests_behind_a_close() -> None:
    with servers.uvicorn_thread(apps.asgi_app) as port:
        sock = wire.connect(port)
        reader = wire.Reader(sock)
        sock.sendall(wire.build_request(path="/rule/x") + wire.build_request(path="/"))
        first = reader.read_response()
        assert _connection(first) == ["close"]
        assert reader.closed()
        sock.close()


@pytest.fixture(scope="module")
def hypercorn_h2c() -> Iterator[int]:
    with servers.hypercorn_thread(apps.asgi_app) as port:
        yield port


def test_http2_te_gzip_is_stripped_and_connection_survives(hypercorn_h2c: int) -> None:
    client = H2Client(hypercorn_h2c)
    try:
        first = client.request("/te")
        assert first.status == 200 and first.body == b"hello" and first.ended
        assert all(k != b"te" for k, _ in first.headers)
        hop = client.request("/hop")
        names = {k for k, _ in hop.headers}
        assert names.isdisjoint(
            {b"connection", b"keep-alive", b"proxy-connection", b"upgrade", b"te", b"x-hop"}
        )
        again = client.request("/", headers=[("te", "trailers")])
        assert again.status == 200 and again.body == b"hello"
        assert not client.terminated and not client.eof
    finally:
        client.close()


def test_http2_bare_app_te_gzip_breaks_hypercorn() -> None:
    """Why the stripping matters: without connmw, the same app kills the connection."""
    with servers.hypercorn_thread(apps.raw_asgi) as port:
        client = H2Client(port)
        try:
            first = client.request("/te")
            second = client.request("/") if not (client.terminated or client.eof) else None
            broken = not first.ended or client.terminated or client.eof or second is None or not second.ended
            assert broken
        finally:
            client.close()


def test_waitress_promises_keep_alive_only_where_it_keeps() -> None:
    """waitress closes a chunked HTTP/1.1 response: no Keep-Alive next to its close."""
    from connmw import WSGIConnectionMiddleware

    app = WSGIConnectionMiddleware(apps.raw_wsgi, keep_alive_timeout=5)
    with servers.waitress_thread(app) as port:
        resp, _, reader = wire.exchange(port, check_close=False)
        try:
            assert resp.lines("keep-alive") == ["timeout=5"]
            assert _connection(resp) == []
            assert wire.still_open(reader)
        finally:
            reader.sock.close()
        resp, closed, reader = wire.exchange(port, path="/stream")
        reader.sock.close()
        assert resp.body == b"".join(apps.STREAM_PARTS)
        assert _connection(resp) == ["close"]
        assert resp.lines("keep-alive") == []
        assert closed


def test_waitress_http10_keep_alive_is_advertised() -> None:
    from connmw import WSGIConnectionMiddleware

    app = WSGIConnectionMiddleware(apps.raw_wsgi, keep_alive_timeout=5, max_requests_per_connection=10)
    with servers.waitress_thread(app) as port:
        resp, _, reader = wire.exchange(
            port, version="HTTP/1.0", headers=[("Connection", "keep-alive")], check_close=False
        )
        try:
            assert _connection(resp) == ["keep-alive"]
            assert resp.lines("keep-alive") == ["timeout=5, max=9"]
            assert wire.still_open(reader, version="HTTP/1.0")
        finally:
            reader.sock.close()


def _outer_start_response_wrapper(app: Any) -> Any:
    """A middleware outside connmw that hides the server's start_response in a plain closure."""

    def outer(environ: Any, start_response: Any) -> Any:
        def wrapped(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, ("X-Outer", "1")], exc_info)

        return app(environ, wrapped)

    return outer


@pytest.mark.parametrize("where", ["waitress", "wsgiref"])
def test_close_is_real_behind_an_outer_start_response_wrapper(where: str) -> None:
    from connmw import WSGIConnectionMiddleware

    app = _outer_start_response_wrapper(WSGIConnectionMiddleware(apps.raw_wsgi))
    runner = servers.waitress_thread if where == "waitress" else servers.wsgiref_thread
    with runner(app) as port:
        resp, closed, reader = wire.exchange(port, headers=[("Connection", "TE, close")])
        reader.sock.close()
        assert resp.lines("x-outer") == ["1"]
        assert resp.body == b"hello"
        assert closed
        if where == "waitress":
            assert _connection(resp) == ["close"]


# -- WSGI and HTTP/1.0 on the servers that keep HTTP/1.0 connections --------------------

_HTTP10_OPTIONS: dict[str, Any] = {"decision_header": "x-connmw", "keep_alive_timeout": 5}


@contextlib.contextmanager
def _wsgi_http10_server(name: str) -> Iterator[int]:
    if name == "waitress":
        from connmw import Rule, WSGIConnectionMiddleware

        app = WSGIConnectionMiddleware(apps.raw_wsgi, rules=[Rule("/rule/*")], **_HTTP10_OPTIONS)
        with servers.waitress_thread(app) as port:
            yield port
    else:
        port = servers.free_port()
        argv = servers.gunicorn_argv("tests.apps:wsgi_app", port)
        env = {"CONNMW_TEST_OPTIONS": json.dumps(_HTTP10_OPTIONS)}
        with servers.subprocess_server(argv, port, env=env):
            yield port


@pytest.mark.parametrize("name", ["waitress", "gunicorn-gthread"])
def test_wsgi_http10_keep_alive_on_servers_that_keep_it(name: str) -> None:
    """HTTP/1.0 with ``Connection: keep-alive`` (RFC 9112 §9.3): kept only with a length,
    said once either way, and what connmw decided (``x-connmw``) is what happens."""
    ka = [("Connection", "keep-alive")]
    with _wsgi_http10_server(name) as port:
        # A length: kept, and said so.
        resp, _, reader = wire.exchange(port, version="HTTP/1.0", headers=ka, check_close=False)
        try:
            assert resp.body == b"hello"
            assert resp.lines("x-connmw") == ["keep"]
            assert _connection(resp) == ["keep-alive"]
            assert resp.lines("keep-alive") == ["timeout=5"]
            assert wire.still_open(reader, version="HTTP/1.0")
        finally:
            reader.sock.close()
        # No length: the close delimits the body, so the connection cannot be kept.
        resp, closed, reader = wire.exchange(port, "GET", "/stream", version="HTTP/1.0", headers=ka)
        reader.sock.close()
        assert resp.body == b"".join(apps.STREAM_PARTS)
        assert resp.lines("x-connmw") == ["close; reason=http-1.0"]
        assert "keep-alive" not in _connection(resp)
        assert resp.lines("keep-alive") == []
        assert closed
        # A rule closes it: exactly one Connection line, and it says close.
        resp, closed, reader = wire.exchange(port, "GET", "/rule/x", version="HTTP/1.0", headers=ka)
        reader.sock.close()
        assert resp.body == b"hello"
        assert resp.lines("x-connmw") == ["close; reason=rule"]
        assert _connection(resp) == ["close"], resp.raw_head
        assert resp.lines("keep-alive") == []
        assert closed
