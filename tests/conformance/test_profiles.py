"""In-process checks of the server profiles in :mod:`connmw.servers`, with the
servers' own objects where they can run inside the test process.

The wire-level proof for every server is ``test_conformance.py``; these tests
reach the same code in-process (so coverage sees it) and pin the edge cases a
server run cannot easily produce.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from connmw import ConnectionMiddleware, Rule, WSGIConnectionMiddleware
from connmw.servers import asgi_profile_for, asgi_server_profile
from tests import servers
from tests.apps import raw_asgi, raw_wsgi
from tests.conformance import cases
from tests.conformance.cases import Target


@pytest.mark.parametrize(
    ("module", "name"),
    [
        pytest.param("uvicorn.protocols.http.httptools_impl", "uvicorn-httptools", id="httptools"),
        pytest.param("uvicorn.protocols.http.h11_impl", "uvicorn-h11", id="h11"),
        pytest.param("hypercorn.protocol.http_stream", "hypercorn", id="hypercorn"),
        pytest.param("granian._granian", "granian", id="granian"),
        pytest.param("daphne.http_protocol", "daphne", id="daphne"),
        pytest.param("myserver.http", "unknown", id="unknown"),
    ],
)
def test_asgi_profile_by_module(module: str, name: str) -> None:
    assert asgi_profile_for(module).name == name


# --------------------------------------------------------------------------- daphne


class _Daphne:
    """daphne's real objects on Twisted's in-memory transport: the ``send`` is
    built exactly as daphne builds it, ``partial(server.handle_reply, request)``."""

    def __init__(self, client_close: bool = False) -> None:
        from daphne.http_protocol import HTTPFactory, WebRequest
        from daphne.server import Server
        from twisted.internet.testing import StringTransport

        self.server = Server(application=None, endpoints=["tcp:port=0:interface=127.0.0.1"])
        self.server.connections = {}
        protocol = HTTPFactory(self.server).buildProtocol(None)
        self.transport: Any = StringTransport()  # type: ignore[no-untyped-call]
        protocol.makeConnection(self.transport)
        self.channel = protocol._channel
        self.request = WebRequest(self.channel)
        self.request.method = b"GET"
        self.request.clientproto = b"HTTP/1.1"
        self.channel.requests.append(self.request)
        if client_close:  # what Twisted's checkPersistence does for ``Connection: close``
            self.request.responseHeaders.setRawHeaders(b"connection", [b"close"])
            self.channel.persistent = False
        self.send = functools.partial(self.server.handle_reply, self.request)


def _scope(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "path": path,
        "headers": [(b"host", b"x"), *(headers or [])],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def _head(wire: bytes) -> list[bytes]:
    return wire.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


@pytest.mark.parametrize("client_close", [False, True], ids=["rule", "client-close"])
def test_daphne_close_is_made_real(client_close: bool) -> None:
    daphne = _Daphne(client_close)
    assert asgi_server_profile(daphne.send).name == "daphne"
    app = ConnectionMiddleware(raw_asgi, rules=[Rule("/rule/*")])
    headers = [(b"connection", b"close")] if client_close else []
    asyncio.run(app(_scope("/rule/x", headers), _receive, daphne.send))
    lines = [line.lower() for line in _head(daphne.transport.value())]
    assert lines.count(b"connection: close") == 1, lines
    assert not [line for line in lines if line.startswith(b"connection") and line != b"connection: close"]
    assert daphne.channel.persistent is False
    assert daphne.transport.disconnecting, "Twisted did not drop the connection"


def test_daphne_keep_leaves_the_connection() -> None:
    daphne = _Daphne()
    app = ConnectionMiddleware(raw_asgi, rules=[Rule("/rule/*")])
    asyncio.run(app(_scope("/"), _receive, daphne.send))
    assert b"connection" not in daphne.transport.value().lower()
    assert daphne.channel.persistent
    assert not daphne.transport.disconnecting


def test_daphne_found_behind_a_send_wrapper() -> None:
    """Another middleware (Starlette's ServerErrorMiddleware, say) wraps daphne's send."""
    daphne = _Daphne()
    started: list[bool] = []

    def outer(send: Any) -> Any:
        async def wrapped(message: Any) -> None:
            if message["type"] == "http.response.start":
                started.append(True)
                helper()
            await send(message)

        def helper() -> None:
            pass

        return wrapped

    app = ConnectionMiddleware(raw_asgi, rules=[Rule("/rule/*")])
    asyncio.run(app(_scope("/rule/x"), _receive, outer(daphne.send)))
    assert started == [True]
    assert daphne.channel.persistent is False
    assert daphne.transport.disconnecting


def test_daphne_without_a_request_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    daphne = _Daphne()
    sent: list[Any] = []

    async def record(message: Any) -> None:
        sent.append(message)

    send = functools.partial(daphne.server.handle_reply, object())
    assert asgi_server_profile(send).name == "daphne"
    app = ConnectionMiddleware(raw_asgi, rules=[Rule("/rule/*")])
    with caplog.at_level(logging.WARNING, logger="connmw"):
        for _ in range(3):
            asyncio.run(app(_scope("/rule/x"), _receive, send))
    warnings = [r for r in caplog.records if "cannot make the close real" in r.getMessage()]
    assert len(warnings) == 1
    assert "daphne" in warnings[0].getMessage()


def test_closure_with_an_empty_cell_is_skipped() -> None:
    def make() -> Any:
        later: Any = None

        async def send(message: Any) -> None:
            later()  # noqa: F821  (deleted below on purpose)

        del later  # the closure keeps an empty cell
        return send

    profile = asgi_server_profile(make())
    assert profile.name == "unknown"


# --------------------------------------------------------------------------- Django


@contextlib.contextmanager
def _django_basehttp(app: Any) -> Iterator[int]:
    """The server ``runserver`` starts (django.core.servers.basehttp), in a thread."""
    import socketserver

    from django.core.servers.basehttp import WSGIRequestHandler, WSGIServer

    # What ``runserver`` uses, minus ThreadedWSGIServer's database clean-up
    # (no Django settings in this process).
    class Threaded(socketserver.ThreadingMixIn, WSGIServer):  # type: ignore[misc]
        daemon_threads = True

    class Quiet(WSGIRequestHandler):  # type: ignore[misc]
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = Threaded(("127.0.0.1", 0), Quiet, ipv6=False)
    server.set_app(app)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        servers.stopped(thread, "django basehttp")


@pytest.mark.server
@pytest.mark.parametrize(
    "case", ["http11-plain", "te-close", "Close", "two-fields", "rule", "handler", "hop", "pipelined"]
)
def test_django_basehttp_in_process(case: str) -> None:
    app = WSGIConnectionMiddleware(raw_wsgi, rules=[Rule("/rule/*")])
    with _django_basehttp(app) as port:
        cases.CASES[case](Target("django-basehttp", port))


# --------------------------------------------------------------------------- mod_wsgi


class _ModWsgiAdapter:
    """Has the type module of mod_wsgi's C ``Adapter`` (``mod_wsgi`` only runs
    inside Apache; the conformance suite runs the real one)."""

    __module__ = "mod_wsgi"

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.calls.append((status, list(headers)))
        return self.write

    def write(self, data: bytes) -> None:
        pass


@pytest.mark.parametrize(
    ("path", "environ", "close"),
    [
        pytest.param("/", {}, False, id="keep"),
        pytest.param("/rule/x", {}, True, id="rule"),
        pytest.param("/hop", {"HTTP_CONNECTION": "TE, close"}, True, id="client-te-close"),
        pytest.param(
            "/", {"SERVER_PROTOCOL": "HTTP/1.0", "HTTP_CONNECTION": "keep-alive"}, False, id="1.0-ka"
        ),
    ],
)
def test_mod_wsgi_close_goes_through_start_response(
    path: str, environ: dict[str, str], close: bool, caplog: pytest.LogCaptureFixture
) -> None:
    adapter = _ModWsgiAdapter()
    # Apache writes its own Keep-Alive line: connmw must not add a second one.
    app = WSGIConnectionMiddleware(raw_wsgi, rules=[Rule("/rule/*")], keep_alive_timeout=5)
    env: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "mod_wsgi.version": (4, 9, 4),
        **environ,
    }
    with caplog.at_level(logging.WARNING, logger="connmw"):
        body: Iterable[bytes] = app(env, adapter.start_response)
    assert b"".join(body) == b"hello"
    ((status, headers),) = adapter.calls
    assert status == "200 OK"
    connection = [v for k, v in headers if k.lower() == "connection"]
    assert connection == (["close"] if close else [])
    hop = {"keep-alive", "proxy-connection", "upgrade", "te", "transfer-encoding"}
    assert not [k for k, _ in headers if k.lower() in hop], headers
    assert not caplog.records


# --------------------------------------------------------------------------- unknown servers


def test_unknown_wsgi_server_never_500_never_hop_by_hop(caplog: pytest.LogCaptureFixture) -> None:
    """A server connmw does not know: the close cannot be enforced, so no
    hop-by-hop header goes to start_response, the response goes out, and one
    warning names the server."""
    calls: list[list[tuple[str, str]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        calls.append(list(headers))
        return lambda data: None

    app = WSGIConnectionMiddleware(raw_wsgi, rules=[Rule("/rule/*")])
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/rule/x", "SERVER_PROTOCOL": "HTTP/1.1"}
    with caplog.at_level(logging.WARNING, logger="connmw"):
        for path in ("/rule/x", "/hop", "/rule/y"):
            assert b"".join(app({**env, "PATH_INFO": path}, start_response)) == b"hello"
    hop = {"connection", "keep-alive", "proxy-connection", "upgrade", "te", "transfer-encoding"}
    assert all(not [k for k, _ in headers if k.lower() in hop] for headers in calls), calls
    warnings = [r.getMessage() for r in caplog.records if "cannot make the close real" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert __name__ in warnings[0] or "test_profiles" in warnings[0], warnings[0]


def test_wrapped_and_deep_sends_are_bounded() -> None:
    """``__wrapped__`` chains are followed; a chain deeper than the search bound is not."""
    daphne = _Daphne()

    def wrap(inner: Any) -> Any:
        async def outer(message: Any) -> None:
            await inner(message)

        outer.__wrapped__ = inner  # type: ignore[attr-defined]
        return outer

    assert asgi_server_profile(wrap(daphne.send)).name == "daphne"

    def closure(inner: Any) -> Any:
        async def outer(message: Any) -> None:
            await inner(message)

        return outer

    near: Any = daphne.send
    for _ in range(3):
        near = closure(near)
    assert asgi_server_profile(near).name == "daphne"
    deep = near
    for _ in range(5):
        deep = closure(deep)
    assert asgi_server_profile(deep).name == "unknown"
