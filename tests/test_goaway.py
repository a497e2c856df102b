"""HTTP/2: the load options retire connections with a graceful two-phase GOAWAY.

Unit tests for the frames, the frame filter, the decision and the options; the
wire tests (real servers, real clients) are in ``test_goaway_wire.py``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import weakref
from typing import Any

import pytest
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, PingFrame, WindowUpdateFrame

import connmw
from connmw import ConnectionMiddleware, Options
from connmw._decide import CLOSE, KEEP, decide_h2
from connmw._goaway import MAX_STREAM_ID, H2Conn, H2Registry, goaway_frame, ping_frame
from connmw.servers.h2 import GoawayFilter, H2Handle

# -- frames --------------------------------------------------------------------------


def _parse(data: bytes) -> Frame:
    frame, length = Frame.parse_frame_header(memoryview(data[:9]))
    frame.parse_body(memoryview(data[9 : 9 + length]))
    assert len(data) == 9 + length
    return frame


def test_goaway_frame_is_what_rfc_9113_describes() -> None:
    frame = _parse(goaway_frame(MAX_STREAM_ID, 0, b"max-requests"))
    assert isinstance(frame, GoAwayFrame)
    assert (frame.stream_id, frame.last_stream_id, frame.error_code) == (0, 2**31 - 1, 0)
    assert frame.additional_data == b"max-requests"
    frame = _parse(goaway_frame(41))
    assert isinstance(frame, GoAwayFrame)
    assert (frame.last_stream_id, frame.additional_data) == (41, b"")


def test_ping_frame_carries_eight_octets() -> None:
    frame = _parse(ping_frame(b"12345678"))
    assert isinstance(frame, PingFrame)
    assert frame.opaque_data == b"12345678" and "ACK" not in frame.flags
    assert "ACK" in _parse(ping_frame(b"12345678", ack=True)).flags


# -- the client's GOAWAY is kept from the server's h2 ----------------------------------


def _stream() -> tuple[bytes, bytes]:
    """Frames with two GOAWAYs among them, and the same without the GOAWAYs."""
    wu = WindowUpdateFrame(0)
    wu.window_increment = 1000
    headers = HeadersFrame(3)
    headers.data = b"x" * 40
    headers.flags.add("END_HEADERS")
    ping = PingFrame(0)
    ping.opaque_data = b"abcdefgh"
    ping.flags.add("ACK")
    keep = [wu.serialize(), headers.serialize(), ping.serialize(), wu.serialize()]
    goaway = goaway_frame(0, 0, b"client bye")
    mixed = keep[0] + goaway + keep[1] + keep[2] + goaway_frame(0) + keep[3]
    return mixed, b"".join(keep)


@pytest.mark.parametrize("seed", range(20))
def test_goaway_filter_removes_goaway_frames_however_the_reads_are_cut(seed: int) -> None:
    mixed, expected = _stream()
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(mixed)), rng.randint(1, 12)))
    scan = GoawayFilter()
    out = b""
    for a, b in zip([0, *cuts], [*cuts, len(mixed)], strict=True):
        out += scan.feed(mixed[a:b])
    assert out == expected


@pytest.mark.parametrize("held", [3, 9, 13])
def test_goaway_filter_resumes_inside_a_frame_the_parser_already_holds(held: int) -> None:
    mixed, expected = _stream()
    # The parser holds the first `held` bytes of the first frame (13 bytes long).
    scan = GoawayFilter(mixed[:held])
    assert mixed[:held] + scan.feed(mixed[held:]) == expected


def test_goaway_filter_lets_a_goaway_the_parser_started_pass() -> None:
    mixed, _ = _stream()
    scan = GoawayFilter(mixed[13:15])  # two header bytes of the first GOAWAY
    assert scan.feed(mixed[15:]) == mixed[15:].replace(goaway_frame(0), b"")


# -- the decision ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({}, KEEP, id="nothing"),
        pytest.param({"requests_exhausted": True, "age_exhausted": True}, CLOSE["max-requests"], id="cap"),
        pytest.param({"age_exhausted": True, "drain": 1.0}, CLOSE["max-age"], id="age"),
        pytest.param({"drain": 1.0, "overload": 1.0}, CLOSE["drain"], id="drain"),
        pytest.param({"overload": 1.0}, CLOSE["overload"], id="overload"),
        pytest.param({"drain": 0.5, "draw": lambda: 0.6}, KEEP, id="drain-draw-misses"),
        pytest.param({"overload": 0.5, "draw": lambda: 0.4}, CLOSE["overload"], id="overload-draw-hits"),
    ],
)
def test_decide_h2(kwargs: dict[str, Any], expected: connmw.Decision) -> None:
    assert decide_h2(**kwargs) == expected


# -- options -------------------------------------------------------------------------


def test_grace_and_overload_http2_are_validated() -> None:
    with pytest.raises(ValueError, match="max_connection_age_grace must be >= 0, got -1"):
        Options(max_connection_age_grace=-1)
    with pytest.raises(TypeError, match="max_connection_age_grace must be a number, not str '5'"):
        Options(max_connection_age_grace="5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="overload_http2 must be True or False, not 1"):
        Options(overload_http2=1)  # type: ignore[arg-type]
    opts = Options.from_env(
        environ={"CONNMW_MAX_CONNECTION_AGE_GRACE": "2.5", "CONNMW_OVERLOAD_HTTP2": "yes"}
    )
    assert (opts.max_connection_age_grace, opts.overload_http2) == (2.5, True)


# -- in process: the adapter ----------------------------------------------------------


def _h2_scope(path: str = "/") -> dict[str, Any]:
    return {"type": "http", "http_version": "2", "method": "GET", "path": path, "headers": []}


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def _noop_send(message: Any) -> None:
    pass


async def _noop_receive() -> Any:
    return {"type": "http.request"}


def test_request_close_returns_false_on_http2() -> None:
    answers = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        answers.append(connmw.request_close(scope, "logout"))
        await _ok(scope, receive, send)

    mw = ConnectionMiddleware(app)
    asyncio.run(mw(_h2_scope(), _noop_receive, _noop_send))
    assert answers == [False]


def test_unreachable_server_warns_once_naming_it_and_the_options(caplog: pytest.LogCaptureFixture) -> None:
    mw = ConnectionMiddleware(_ok, max_requests_per_connection=10, max_connection_age=60)

    async def run() -> None:
        for _ in range(3):
            await mw(_h2_scope(), _noop_receive, _noop_send)

    with caplog.at_level(logging.WARNING, logger="connmw"):
        asyncio.run(run())
        mw.drain()
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2, warnings
    assert "cannot reach unknown's HTTP/2 connections" in warnings[0]
    assert "max_requests_per_connection, max_connection_age, drain()" in warnings[0]
    assert "drain() cannot send GOAWAY on unknown's HTTP/2 connections" in warnings[1]


def test_no_warning_without_load_options(caplog: pytest.LogCaptureFixture) -> None:
    mw = ConnectionMiddleware(_ok)
    with caplog.at_level(logging.WARNING, logger="connmw"):
        asyncio.run(mw(_h2_scope(), _noop_receive, _noop_send))
    assert caplog.records == []


# -- the registry, with a handle that records instead of writing --------------------------


class _Server:
    """Stands for a server's connection object."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.open_streams: set[int] = set()
        self.highest = 0
        self.closed = False
        self.ping: tuple[bytes, Any] | None = None


class _Recording(H2Handle):
    __slots__ = ()

    def locate(self, send: Any) -> tuple[Any, int] | None:
        return send.__self__.server, send.__self__.stream_id

    def alive(self, conn: Any) -> bool:
        return not conn.closed

    def highest_stream_id(self, conn: Any) -> int:
        return int(conn.highest)

    def pending(self, conn: Any, last_id: int) -> bool:
        return any(s <= last_id for s in conn.open_streams)

    def write(self, conn: Any, data: bytes) -> None:
        conn.written.append(data)

    def watch_ping(self, conn: Any, opaque: bytes, callback: Any) -> None:
        conn.ping = (opaque, callback)

    def close(self, conn: Any) -> None:
        conn.closed = True


def test_registry_is_bounded_and_forgets_evicted_timers() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        reg = H2Registry(cap=2, grace=None)
        servers = [_Server() for _ in range(3)]
        conns = [H2Conn(reg, s, _Recording(), loop, 0.0, 0, float("inf")) for s in servers]
        for i, conn in enumerate(conns):
            conn.later("age", 60, lambda: None)
            reg.add(servers[i], conn)
        assert len(reg) == 2
        assert reg.get(servers[0]) is None and conns[0].timers == {}
        assert reg.get(servers[2]) is conns[2]
        ref = weakref.ref(servers[2])
        del servers[2]
        assert ref() is None and len(reg) == 1  # weak: a dropped connection leaves

    asyncio.run(run())


def test_final_goaway_waits_for_the_ping_at_most_ping_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    from connmw import _goaway

    monkeypatch.setattr(_goaway, "PING_WAIT", 0.05)

    async def run() -> _Server:
        loop = asyncio.get_running_loop()
        reg = H2Registry(cap=10, grace=None)
        server = _Server()
        server.highest = 7
        server.open_streams = {5, 9}
        conn = H2Conn(reg, server, _Recording(), loop, 0.0, 0, float("inf"))
        reg.add(server, conn)
        conn.retire("drain")
        conn.retire("drain")  # once only
        assert len(server.written) == 1 and reg.goaways == {"drain": 1}
        await asyncio.sleep(0.1)  # no acknowledgement: the bounded wait
        assert conn.last_id == 7 and not conn.admit(9) and conn.admit(5)
        assert not server.closed  # stream 5 is still open
        server.open_streams = {9}  # above the last id: not waited for
        await asyncio.sleep(0.1)
        assert server.closed and reg.ping_acks == 0
        assert len(reg) == 1 and not conn.admit(9)  # kept while the server holds the connection
        return server

    server = asyncio.run(run())
    final = _parse(server.written[1])
    assert isinstance(final, GoAwayFrame)
    assert (final.last_stream_id, final.additional_data) == (7, b"drain")


def test_grace_closes_a_connection_whose_streams_stay_open() -> None:
    async def run() -> _Server:
        loop = asyncio.get_running_loop()
        reg = H2Registry(cap=10, grace=0.05)
        server = _Server()
        server.open_streams = {1}
        server.highest = 1
        conn = H2Conn(reg, server, _Recording(), loop, 0.0, 0, float("inf"))
        reg.add(server, conn)
        conn.retire("max-age")
        assert server.ping is not None
        server.ping[1]()  # the acknowledgement
        await asyncio.sleep(0.01)
        assert conn.last_id == 1 and reg.ping_acks == 1 and not server.closed
        await asyncio.sleep(0.1)
        assert server.closed
        return server

    asyncio.run(run())


def test_a_dead_connection_is_forgotten_not_written_to() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        reg = H2Registry(cap=10, grace=None)
        server = _Server()
        conn = H2Conn(reg, server, _Recording(), loop, 0.0, 0, float("inf"))
        reg.add(server, conn)
        server.closed = True
        conn.retire("drain")
        assert server.written == [] and reg.goaways == {} and conn.timers == {}

    asyncio.run(run())


# -- the engine's HTTP/2 side, with the recording handle ----------------------------------


class _Send:
    """Stands for a server's ``send``: ``locate`` reads its ``__self__``."""

    def __init__(self, server: _Server, stream_id: int) -> None:
        self.server = server
        self.stream_id = stream_id


def _engine(**options: Any) -> connmw.ConnectionMiddleware:
    return ConnectionMiddleware(_ok, **options)


def test_overload_retires_http2_only_when_opted_in() -> None:
    async def run(opt_in: bool) -> dict[str, int]:
        mw = _engine(pressure=lambda: 1.0, overload_http2=opt_in)
        server = _Server()
        conn = mw.engine.h2.stream(server, _Recording(), 1)
        assert conn is not None and conn.count == 1
        await asyncio.sleep(0.01)
        return mw.engine.h2.registry.goaways

    assert asyncio.run(run(True)) == {"overload": 1}
    assert asyncio.run(run(False)) == {}


def test_request_cap_counts_streams_and_refuses_above_the_last_id() -> None:
    async def run() -> None:
        mw = _engine(max_requests_per_connection=2)
        server = _Server()
        handle = _Recording()
        h2 = mw.engine.h2
        first = h2.stream(server, handle, 1, [(b"user-agent", b"python-httpx/0.28.1")])
        assert first is not None
        first.stream_done()  # one request at a time
        conn = h2.stream(server, handle, 3)  # the 2nd: retires
        assert conn is first and conn.retiring
        server.highest = 3
        conn.stream_done()
        await asyncio.sleep(0.01)
        # httpx, idle: both GOAWAYs in one write.
        frames = server.written[0]
        assert frames.count(b"\x07\x00\x00\x00\x00\x00") == 2
        assert conn.last_id == 3
        assert h2.stream(server, handle, 5) is None  # above the last id
        assert mw.stats()["goaways"] == 1

    asyncio.run(run())


def test_age_timer_and_drain_reach_idle_connections() -> None:
    async def run() -> None:
        mw = _engine(max_connection_age=0.05)
        aged, drained, kept = _Server(), _Server(), _Server()
        h2 = mw.engine.h2
        h2.stream(aged, _Recording(), 1)
        await asyncio.sleep(0.1)
        assert h2.registry.goaways == {"max-age": 1}

        mw2 = _engine()
        h2b = mw2.engine.h2
        h2b.stream(drained, _Recording(), 1)
        h2b.stream(kept, _Recording(), 1)
        mw2.drain(window=0.05)
        await asyncio.sleep(0.2)
        assert h2b.registry.goaways == {"drain": 2}

        mw3 = _engine()
        h2c = mw3.engine.h2
        h2c.stream(_Server(), _Recording(), 1)
        mw3.drain(window=10)
        await asyncio.sleep(0.01)
        mw3.stop_draining()
        await asyncio.sleep(0.01)
        assert all("drain" not in c.timers for c in h2c.registry.snapshot())
        assert not mw3.draining

    asyncio.run(run())


def test_each_forgets_connections_whose_loop_is_closed() -> None:
    reg = H2Registry(cap=4, grace=None)
    loop = asyncio.new_event_loop()
    server = _Server()
    conn = H2Conn(reg, server, _Recording(), loop, 0.0, 0, float("inf"))
    reg.add(server, conn)
    loop.close()
    reg.each(lambda c: None)
    assert conn.phase == 4  # closed: the server is gone with its loop


def test_an_idle_connection_of_any_other_client_gets_the_round_trip() -> None:
    async def run() -> _Server:
        mw = _engine(max_requests_per_connection=1)
        server = _Server()
        conn = mw.engine.h2.stream(server, _Recording(), 1, [(b"user-agent", b"curl/7.88.1")])
        assert conn is not None
        conn.stream_done()
        await asyncio.sleep(0.01)
        return server

    server = asyncio.run(run())
    # A PING and the first GOAWAY only: a request crossing them is still served.
    assert len(server.written) == 1 and server.written[0].count(b"\x07\x00\x00\x00\x00\x00") == 1
