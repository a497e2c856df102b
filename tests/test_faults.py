"""Faults: the application fails at every point of a response, the client goes
away mid-stream, WSGI's exc_info and close() paths.

Each case runs side by side, with and without connmw, and checks that the outcome
is the same (the same exception object, the same messages or bytes on the wire),
that no per-connection state or in-flight count is left behind, and that connmw
itself raises nothing of its own.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from connmw import ConnectionMiddleware, WSGIConnectionMiddleware
from tests import wire
from tests.fuzz.harness import CaptureStartResponse, asgi_scope, run_sync, wsgi_environ
from tests.servers import uvicorn_thread, waitress_thread

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

Message = dict[str, Any]

#: Options that switch on every piece of state: the connection table and the
#: in-flight counter.
STATEFUL: dict[str, Any] = {
    "max_requests_per_connection": 100,
    "max_connection_age": 600.0,
    "overload_soft_limit": 50,
    "overload_hard_limit": 100,
}


class Boom(Exception):
    pass


def assert_no_state(mw: ConnectionMiddleware | WSGIConnectionMiddleware) -> None:
    assert mw.engine.load.in_flight == 0
    assert mw.engine.table is not None
    assert len(mw.engine.table) == 0


# --------------------------------------------------------------------------- ASGI in-process

ASGI_FAULTS = ["before-start", "after-start", "mid-body", "disconnect", "receive-after", "cancelled"]


def fault_asgi(kind: str, error: BaseException) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "http.request"
        if kind == "before-start":
            raise error
        if kind == "cancelled":
            raise error
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        if kind == "after-start":
            raise error
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        if kind == "mid-body":
            raise error
        if kind == "disconnect":
            message = await receive()
            assert message["type"] == "http.disconnect"
            # A server's send raises once the client is gone; the app lets it through.
            await send({"type": "http.response.body", "body": b"more", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        if kind == "receive-after":
            message = await receive()
            assert message["type"] == "http.disconnect"

    return app


class FakeServer:
    """Records what reaches the server; after a disconnect, send raises OSError."""

    def __init__(self, disconnect_after: int | None = None) -> None:
        self.sent: list[Message] = []
        self.disconnect_after = disconnect_after
        self.received = 0

    async def receive(self) -> Message:
        self.received += 1
        if self.received == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.disconnect_after is not None and len(self.sent) >= self.disconnect_after:
            raise OSError("client disconnected")
        self.sent.append(dict(message))


def run_asgi(app: Any, server: FakeServer) -> BaseException | None:
    try:
        run_sync(app(asgi_scope([(b"host", b"x")]), server.receive, server.send))
    except BaseException as exc:
        return exc
    return None


@pytest.mark.parametrize("kind", ASGI_FAULTS)
@pytest.mark.parametrize("options", [{}, STATEFUL], ids=["default", "stateful"])
def test_asgi_fault_same_outcome_and_no_leak(kind: str, options: dict[str, Any]) -> None:
    import asyncio

    error: BaseException = asyncio.CancelledError() if kind == "cancelled" else Boom(kind)
    disconnect_after = 2 if kind == "disconnect" else None
    bare_server, mw_server = FakeServer(disconnect_after), FakeServer(disconnect_after)
    bare_exc = run_asgi(fault_asgi(kind, error), bare_server)
    mw = ConnectionMiddleware(fault_asgi(kind, error), **options)
    mw_exc = run_asgi(mw, mw_server)
    # The same exception object (or none), the same messages.
    assert type(mw_exc) is type(bare_exc)
    if kind in ("before-start", "after-start", "mid-body", "cancelled"):
        assert mw_exc is error
    if kind == "disconnect":
        assert isinstance(mw_exc, OSError)
    if kind == "receive-after":
        assert mw_exc is None
    assert [{k: v for k, v in m.items() if k != "headers"} for m in mw_server.sent] == [
        {k: v for k, v in m.items() if k != "headers"} for m in bare_server.sent
    ]
    for bare, wrapped in zip(bare_server.sent, mw_server.sent, strict=True):
        assert list(wrapped.get("headers", [])) == list(bare.get("headers", []))
    assert mw.engine.load.in_flight == 0
    if options:
        # A failed request's connection is closed by the server: its state goes.
        # After a clean response the connection is kept and tracked.
        expected = 1 if kind == "receive-after" else 0
        assert mw.engine.table is not None and len(mw.engine.table) == expected


def test_asgi_state_forgotten_after_failure_even_after_several_requests() -> None:
    fail = [False]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if fail[0]:
            raise Boom()
        await send({"type": "http.response.body", "body": b"ok"})

    mw = ConnectionMiddleware(app, **STATEFUL)
    for _ in range(3):
        assert run_asgi(mw, FakeServer()) is None
    assert mw.engine.table is not None and len(mw.engine.table) == 1
    fail[0] = True
    assert isinstance(run_asgi(mw, FakeServer()), Boom)
    assert_no_state(mw)


def test_asgi_on_decision_callback_raising_does_not_break_the_response() -> None:
    def on_decision(facts: Any, decision: Any) -> None:
        raise RuntimeError("callback bug")

    server = FakeServer()
    mw = ConnectionMiddleware(fault_asgi("receive-after", Boom()), on_decision=on_decision, **STATEFUL)
    assert run_asgi(mw, server) is None
    assert [m["type"] for m in server.sent] == [
        "http.response.start",
        "http.response.body",
        "http.response.body",
    ]
    assert mw.engine.load.in_flight == 0


# --------------------------------------------------------------------------- WSGI in-process

WSGI_FAULTS = ["before-start", "in-call-after-start", "mid-body", "exc-info-before-body", "close-raises"]


class FaultResult:
    """A WSGI iterable that can fail mid-iteration or in close()."""

    def __init__(self, kind: str, error: BaseException, log: list[str]) -> None:
        self.kind = kind
        self.error = error
        self.log = log

    def __iter__(self) -> Iterator[bytes]:
        yield b"part"
        if self.kind == "mid-body":
            raise self.error
        yield b"end"

    def close(self) -> None:
        self.log.append("closed")
        if self.kind == "close-raises":
            raise self.error


def fault_wsgi(
    kind: str, error: BaseException, log: list[str]
) -> Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if kind == "before-start":
            raise error
        start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "keep-alive")])
        if kind == "in-call-after-start":
            raise error
        if kind == "exc-info-before-body":
            try:
                raise error
            except Boom:
                start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
            return [b"failed"]
        return FaultResult(kind, error, log)

    return app


def run_wsgi(app: Any) -> tuple[BaseException | None, CaptureStartResponse, bytes, list[str]]:
    capture = CaptureStartResponse()
    body = b""
    exc: BaseException | None = None
    log: list[str] = []
    try:
        result = app(wsgi_environ([("Host", "x")]), capture)
        try:
            for chunk in result:
                body += chunk
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    except BaseException as e:
        exc = e
    return exc, capture, body, log


@pytest.mark.parametrize("kind", WSGI_FAULTS)
@pytest.mark.parametrize("options", [{}, STATEFUL], ids=["default", "stateful"])
def test_wsgi_fault_same_outcome_and_no_leak(kind: str, options: dict[str, Any]) -> None:
    error = Boom(kind)
    bare_log: list[str] = []
    mw_log: list[str] = []
    bare_exc, bare_cap, bare_body, _ = run_wsgi(fault_wsgi(kind, error, bare_log))
    mw = WSGIConnectionMiddleware(fault_wsgi(kind, error, mw_log), **options)
    mw_exc, mw_cap, mw_body, _ = run_wsgi(mw)
    if kind == "exc-info-before-body":
        assert bare_exc is None and mw_exc is None
    else:
        assert bare_exc is error and mw_exc is error
    assert mw_body == bare_body
    assert mw_log == bare_log
    # Same calls, the hop-by-hop header aside; the exc_info is handed on as is.
    assert [(s, [h for h in hs if h[0] != "Connection"], x and x[:2]) for s, hs, x in bare_cap.calls] == [
        (s, hs, x and x[:2]) for s, hs, x in mw_cap.calls
    ]
    assert mw.engine.load.in_flight == 0
    if options and kind in ("before-start", "in-call-after-start"):
        assert mw.engine.table is not None and len(mw.engine.table) == 0


def test_wsgi_exc_info_after_headers_sent_reraises_the_apps_error() -> None:
    error = Boom("late")

    class Server(CaptureStartResponse):
        headers_sent = False

        def __call__(
            self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], Any]:
            if exc_info and self.headers_sent:
                raise exc_info[1].with_traceback(exc_info[2])
            return super().__call__(status, headers, exc_info)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        write = start_response("200 OK", [("Content-Length", "4")])
        write(b"part")
        server.headers_sent = True
        try:
            raise error
        except Boom:
            start_response("500 Oops", [], sys.exc_info())
        return []

    for wrapped in (False, True):
        server = Server()
        mw = WSGIConnectionMiddleware(app, **STATEFUL) if wrapped else app
        with pytest.raises(Boom) as info:
            mw(wsgi_environ([]), server)
        assert info.value is error
        assert server.written == [b"part"]
        if isinstance(mw, WSGIConnectionMiddleware):
            assert_no_state(mw)


# --------------------------------------------------------------------------- on real servers, side by side


def _normalise(raw: bytes) -> bytes:
    lines = [
        line
        for line in raw.split(b"\r\n")
        if not line.lower().startswith((b"date:", b"server:", b"connection:", b"keep-alive:"))
    ]
    return b"\r\n".join(lines)


def wire_outcome(port: int, path: str, *, hang_up_after: int | None = None) -> bytes:
    """Send one request; return everything the server sent until it closed."""
    sock = wire.connect(port, timeout=5.0)
    try:
        sock.sendall(wire.build_request("GET", path, headers=[("Connection", "close")]))
        data = b""
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            data += chunk
            if hang_up_after is not None and len(data) >= hang_up_after:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                break
        return data
    finally:
        sock.close()


async def wire_fault_asgi(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/before-start":
        raise Boom(path)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    if path == "/after-start":
        raise Boom(path)
    await send({"type": "http.response.body", "body": b"part;", "more_body": True})
    if path == "/mid-body":
        raise Boom(path)
    if path == "/endless":
        import asyncio

        # uvicorn drops what an app sends after the client has gone, so the app runs every
        # chunk: 2 MB, 1 ms apart, is still a hundred times what the client reads (20 kB)
        # before it hangs up.
        for _ in range(500):
            await send({"type": "http.response.body", "body": b"x" * 4096, "more_body": True})
            await asyncio.sleep(0.001)
    await send({"type": "http.response.body", "body": b"done", "more_body": False})
    if path == "/receive-after":
        message = await receive()
        assert message["type"] in ("http.disconnect", "http.request")


def _wait(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


@pytest.mark.server
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_asgi_faults_on_uvicorn_side_by_side(caplog: pytest.LogCaptureFixture) -> None:
    mw = ConnectionMiddleware(wire_fault_asgi, close_on_status=set(), **STATEFUL)
    with uvicorn_thread(wire_fault_asgi) as bare_port, uvicorn_thread(mw) as mw_port:
        for path in ("/before-start", "/after-start", "/mid-body", "/receive-after", "/ok"):
            bare = _normalise(wire_outcome(bare_port, path))
            wrapped = _normalise(wire_outcome(mw_port, path))
            assert wrapped == bare, path
        # The client hangs up mid-stream.
        wire_outcome(mw_port, "/endless", hang_up_after=20000)
        assert _wait(lambda: mw.engine.load.in_flight == 0)
        assert _wait(lambda: mw.engine.table is not None and len(mw.engine.table) == 0)
    assert not [r for r in caplog.records if r.name == "connmw" and r.levelname in ("ERROR", "CRITICAL")]


class _WireFaultResult:
    def __init__(self, path: str, closed: list[str]) -> None:
        self.path = path
        self.closed = closed

    def __iter__(self) -> Iterator[bytes]:
        yield b"part;"
        if self.path == "/mid-body":
            raise Boom(self.path)
        if self.path == "/endless":
            for _ in range(2000):
                yield b"x" * 4096
                time.sleep(0.001)
        yield b"done"

    def close(self) -> None:
        self.closed.append(self.path)
        if self.path == "/close-raises":
            raise Boom(self.path)


def make_wire_fault_wsgi(closed: list[str]) -> Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        if path == "/before-start":
            raise Boom(path)
        start_response("200 OK", [("Content-Type", "text/plain")])
        if path == "/exc-info":
            try:
                raise Boom(path)
            except Boom:
                start_response("503 Service Unavailable", [("Content-Length", "4")], sys.exc_info())
            return [b"oops"]
        return _WireFaultResult(path, closed)

    return app


@pytest.mark.server
def test_wsgi_faults_on_waitress_side_by_side() -> None:
    bare_closed: list[str] = []
    mw_closed: list[str] = []
    mw = WSGIConnectionMiddleware(make_wire_fault_wsgi(mw_closed), close_on_status=set(), **STATEFUL)
    with waitress_thread(make_wire_fault_wsgi(bare_closed)) as bare_port, waitress_thread(mw) as mw_port:
        for path in ("/before-start", "/exc-info", "/mid-body", "/close-raises", "/ok"):
            bare = _normalise(wire_outcome(bare_port, path))
            wrapped = _normalise(wire_outcome(mw_port, path))
            assert wrapped == bare, path
        wire_outcome(mw_port, "/endless", hang_up_after=20000)
        assert _wait(lambda: "/endless" in mw_closed)
        assert _wait(lambda: mw.engine.load.in_flight == 0)
    assert mw_closed == [*bare_closed, "/endless"]
