"""HTTP/2 on real servers and real clients: the load options retire connections with
a graceful two-phase GOAWAY and no request is lost or run twice.

Figures go to stdout (``pytest -s``) for the README and the notes.
"""

from __future__ import annotations

import collections
import functools
import socket
import ssl
import struct
import time
from collections.abc import Callable
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest

from tests import goaway_wire as gw

pytestmark = pytest.mark.server

REQUESTS = 360  # at least 200; more, so that >= 8 connections are used with the overshoot
CAP = 25


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> gw.Tls:
    return gw.make_tls(tmp_path_factory.mktemp("tls"))


def _skip_unavailable(server: str) -> None:
    if server == "uvicorn-tls":
        why = gw.uvicorn_h2_missing()
        if why:
            pytest.skip(why)


def _check_load(run: gw.Running, result: gw.ClientRun, *, two_phase_debug: bytes = b"max-requests") -> None:
    print(result.summary())
    assert result.failed == [], result.failed[:5]
    assert result.connections >= 8
    dups = {path: n for path, n in run.seen().items() if n > 1}
    assert dups == {}, "requests handed to the application twice"
    assert sum(run.seen().values()) == REQUESTS
    if result.goaways:
        # Every GOAWAY connmw sends is NO_ERROR and says why; the first of each
        # connection announces 2^31-1, the next one the real last stream id.
        first: dict[int, int] = {}
        for conn, last, code, debug in result.goaways:
            assert (code, debug) == (0, two_phase_debug)
            first.setdefault(conn, last)
        assert set(first.values()) == {2**31 - 1}


CLIENTS: dict[str, tuple[Callable[[gw.Running, int], gw.ClientRun], Callable[[], str | None]]] = {
    "h2lib": (gw.h2lib_load, lambda: None),
    "curl": (gw.curl_load, gw.curl_available),
    "node": (gw.node_load, gw.node_available),
}


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("server", gw.SERVERS)
def test_request_cap_loses_no_stream(server: str, client: str, tls: gw.Tls, tmp_path: Path) -> None:
    _skip_unavailable(server)
    run_load, missing = CLIENTS[client]
    why = missing()
    if server == "hypercorn-h2c" and client == "curl":
        why = (
            "curl 7.88 over h2c: a prior-knowledge connection cannot be reused (the second transfer "
            "fails); with the Upgrade, several transfers waiting for a new connection (as after any "
            "GOAWAY) make it send a second HTTP/1.1 request behind the upgrade, an invalid preface"
        )
    if why:
        pytest.skip(why)
    with gw.start(server, tmp_path, tls, {"max_requests_per_connection": CAP}) as run:
        result = run_load(run, REQUESTS)
        _check_load(run, result)
        if run.middleware is not None:
            h2 = run.middleware.engine.h2.registry
            assert h2.goaways["max-requests"] >= 7
            assert h2.ping_acks >= 1  # the final GOAWAY followed the acknowledgement
    if server.startswith("hypercorn"):
        # The same load against hypercorn's own keep_alive_max_requests: streams fail.
        with gw.start(server, tmp_path, tls, None, own_cap=CAP) as bare:
            # Cut streams are waited for: give up on them sooner than on connmw's.
            if client == "curl":
                own = gw.curl_load(bare, REQUESTS, max_time=0.5)
            elif client == "h2lib":
                own = gw.h2lib_load(bare, REQUESTS, stall=0.3)
            else:
                own = run_load(bare, REQUESTS)
        print(f"hypercorn's own cap: {own.summary()}")
        assert own.failed, "hypercorn's own cap lost nothing: re-check the comparison"


def test_streams_above_the_last_id_never_reach_the_application(tls: gw.Tls, tmp_path: Path) -> None:
    """A client that ignores the GOAWAY and the PING: the final GOAWAY comes after the
    bounded wait; a stream sent after it is not handed to the application and gets
    no frame at all; the connection closes once the stream below the last id ends."""
    with gw.start("hypercorn-h2c", tmp_path, tls, {"max_requests_per_connection": 1}) as run:
        sock = socket.create_connection(("127.0.0.1", run.port), timeout=5)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())

        def headers(path: str) -> list[tuple[bytes, bytes]]:
            return [
                (b":method", b"GET"),
                (b":path", path.encode()),
                (b":scheme", b"http"),
                (b":authority", b"x"),
            ]

        conn.send_headers(1, headers("/load/first"), end_stream=False)  # its request stays open
        sock.sendall(conn.data_to_send())
        frames = _read_frames(sock, until=lambda fs: sum(1 for f in fs if f[0] == 7) >= 2, timeout=5)
        goaways = [struct.unpack("!I", f[2][:4])[0] & 0x7FFFFFFF for f in frames if f[0] == 7]
        assert goaways == [2**31 - 1, 1]
        pings = [f for f in frames if f[0] == 6]
        assert pings and pings[0][1] == 0  # a PING the client never acknowledged
        conn.receive_data(b"".join(_raw(f) for f in frames if f[0] != 7))
        conn.data_to_send()  # the automatic PING ack is never sent
        conn.send_headers(3, headers("/load/late"), end_stream=True)
        sock.sendall(conn.data_to_send())
        late = _read_frames(sock, until=lambda fs: False, timeout=0.5)
        assert [f for f in late if f[3] == 3 or f[0] == -1] == []  # nothing for stream 3; still open
        assert run.seen() == collections.Counter({"/load/first": 1})
        body = [f for f in frames + late if f[0] == 0 and f[3] == 1]
        assert body and body[0][2] == b"/load/first"
        conn.end_stream(1)
        sock.sendall(conn.data_to_send())
        end = _read_frames(sock, until=lambda fs: bool(fs) and fs[-1][0] == -1, timeout=5)
        sock.close()
        assert end and end[-1][0] == -1  # the last stream at or below the last id ended: closed


def _raw(frame: tuple[int, int, bytes, int]) -> bytes:
    kind, flags, payload, sid = frame
    return struct.pack("!I", len(payload))[1:] + bytes([kind, flags]) + struct.pack("!I", sid) + payload


def _read_frames(
    sock: socket.socket | ssl.SSLSocket,
    until: Callable[[list[tuple[int, int, bytes, int]]], bool],
    timeout: float,
) -> list[tuple[int, int, bytes, int]]:
    """Frames as (type, flags, payload, stream id) until ``until`` says so, EOF or the timeout."""
    frames: list[tuple[int, int, bytes, int]] = []
    buf = b""
    deadline = time.monotonic() + timeout
    while not until(frames):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except (TimeoutError, ssl.SSLError, OSError):
            break
        if not data:
            frames.append((-1, 0, b"", 0))  # EOF
            break
        buf += data
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            sid = struct.unpack("!I", buf[5:9])[0] & 0x7FFFFFFF
            frames.append((buf[3], buf[4], buf[9 : 9 + length], sid))
            buf = buf[9 + length :]
    return frames


@pytest.mark.parametrize("server", ["hypercorn-tls", "daphne-tls", "uvicorn-tls"])
def test_httpx_one_request_at_a_time_moves_without_a_failure(
    server: str, tls: gw.Tls, tmp_path: Path
) -> None:
    """httpx (httpcore <= 1.0.9) fails requests in flight on any GOAWAY
    (encode/httpcore#730); one at a time, each retired connection is idle at its
    GOAWAY and the next request goes to a new connection."""
    import httpx

    _skip_unavailable(server)
    with gw.start(server, tmp_path, tls, {"max_requests_per_connection": 10}) as run:
        ports: set[int] = set()
        with httpx.Client(http2=True, verify=tls.client_context()) as client:
            for i in range(60):
                response = client.get(f"{run.url}/load/{i}", extensions={"trace": _trace(ports)})
                assert (response.http_version, response.content) == ("HTTP/2", f"/load/{i}".encode())
        assert len(ports) >= 6
        assert sum(run.seen().values()) == 60


def _trace(ports: set[int]) -> Callable[[str, dict[str, object]], None]:
    def trace(name: str, info: dict[str, object]) -> None:
        if name == "connection.connect_tcp.complete":
            stream = info["return_value"]
            ports.add(stream.get_extra_info("socket").getsockname()[1])  # type: ignore[attr-defined]

    return trace


# -- idle connections: age and drain reach them; the grace bounds long streams ---------------


def _open(run: gw.Running) -> tuple[socket.socket, h2.connection.H2Connection]:
    sock: socket.socket = socket.create_connection(("127.0.0.1", run.port), timeout=5)
    if run.tls is not None:
        sock = run.tls.client_context().wrap_socket(sock, server_hostname="localhost")
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def _get(sock: socket.socket, conn: h2.connection.H2Connection, path: str) -> int:
    sid: int = conn.get_next_available_stream_id()
    scheme = b"https" if isinstance(sock, ssl.SSLSocket) else b"http"
    headers = [(b":method", b"GET"), (b":path", path.encode()), (b":scheme", scheme), (b":authority", b"x")]
    conn.send_headers(sid, headers, end_stream=True)
    sock.sendall(conn.data_to_send())
    return sid


def _answered(frames: list[tuple[int, int, bytes, int]], sid: int) -> bool:
    """The stream's response ended (END_STREAM on a DATA or HEADERS frame)."""
    return any(f[3] == sid and f[0] in (0, 1) and f[1] & 0x1 for f in frames)


def _goaways(frames: list[tuple[int, int, bytes, int]]) -> list[tuple[int, int, bytes]]:
    out = []
    for kind, _, payload, _ in frames:
        if kind == 7:
            last, code = struct.unpack("!II", payload[:8])
            out.append((last & 0x7FFFFFFF, code, payload[8:]))
    return out


def _closed(frames: list[tuple[int, int, bytes, int]]) -> bool:
    return bool(frames) and frames[-1][0] == -1


@pytest.mark.parametrize("server", ["hypercorn-h2c", "daphne-tls", "uvicorn-tls"])
def test_age_reaches_an_idle_connection(server: str, tls: gw.Tls, tmp_path: Path) -> None:
    """max_connection_age=1 (+0.5 jitter): a connection that sent one request and
    then nothing gets its GOAWAY within age + jitter + 1 s of opening, then is closed."""
    _skip_unavailable(server)
    options = {"max_connection_age": 1, "max_connection_age_jitter": 0.5}
    with gw.start(server, tmp_path, tls, options) as run:
        opened = time.monotonic()
        sock, conn = _open(run)
        sid = _get(sock, conn, "/load/age")
        frames = _read_frames(sock, until=lambda fs: bool(_goaways(fs)), timeout=1 + 0.5 + 1 + 1)
        seen = time.monotonic() - opened
        frames += _read_frames(sock, until=_closed, timeout=5)
        sock.close()
    print(f"{server}: idle connection's GOAWAY {seen:.2f} s after it opened")
    assert _answered(frames, sid)
    goaways = _goaways(frames)
    assert goaways and seen <= 1 + 0.5 + 1
    assert goaways[0] == (2**31 - 1, 0, b"max-age") and goaways[-1] == (sid, 0, b"max-age")
    assert _closed(frames)


@pytest.mark.parametrize("server", ["hypercorn-tls", "daphne-tls", "uvicorn-tls"])
def test_drain_reaches_every_connection_and_streams_in_flight_complete(
    server: str, tls: gw.Tls, tmp_path: Path
) -> None:
    """drain(window=0.5) (daphne: drain_on_signal on SIGUSR1): three idle connections
    and one with a 0.3 s stream in flight each get their GOAWAY within the window
    (+1 s); the stream in flight completes."""
    import os
    import signal

    _skip_unavailable(server)
    with gw.start(server, tmp_path, tls, {}, drain_signal=int(signal.SIGUSR1)) as run:
        idle = [_open(run) for _ in range(3)]
        for sock, conn in idle:
            sid = _get(sock, conn, "/load/idle")
            answered = _read_frames(sock, until=functools.partial(_answered, sid=sid), timeout=5)
            assert _answered(answered, sid)
        busy_sock, busy_conn = _open(run)
        busy = _get(busy_sock, busy_conn, "/slow/busy")
        time.sleep(0.1)  # the slow stream is inside the application
        started = time.monotonic()
        if run.middleware is not None:
            run.middleware.drain(window=0.5)
        else:
            assert run.proc is not None
            os.kill(run.proc.pid, signal.SIGUSR1)
        got = []
        for sock, _ in [*idle, (busy_sock, busy_conn)]:
            frames = _read_frames(sock, until=lambda fs: bool(_goaways(fs)), timeout=0.5 + 1 + 1)
            got.append((time.monotonic() - started, frames))
        busy_frames = got[-1][1] + _read_frames(busy_sock, until=_closed, timeout=5)
        for sock, _ in [*idle, (busy_sock, busy_conn)]:
            sock.close()
    print(f"{server}: drain GOAWAYs after " + ", ".join(f"{t:.2f} s" for t, _ in got))
    for elapsed, frames in got:
        goaways = _goaways(frames)
        assert goaways and goaways[0][1:] == (0, b"drain") and elapsed <= 0.5 + 1
    assert _answered(busy_frames, busy) and _closed(busy_frames)
    assert (busy, 0, b"drain") in _goaways(busy_frames)


def test_grace_bounds_a_stream_that_outlives_the_final_goaway(tls: gw.Tls, tmp_path: Path) -> None:
    """max_connection_age_grace=0.3: a stream still open 0.3 s after the final GOAWAY
    does not keep the connection open; without the grace the 5 s stream would."""
    options = {"max_requests_per_connection": 1, "max_connection_age_grace": 0.3}
    # The 5 s stream is still running in hypercorn when the test ends: its stop need not wait for it.
    with gw.start("hypercorn-h2c", tmp_path, tls, options, graceful_timeout=0.2) as run:
        sock, conn = _open(run)
        sid = _get(sock, conn, "/hang/long")
        frames = _read_frames(sock, until=_closed, timeout=4.5)
        sock.close()
    goaways = _goaways(frames)
    assert goaways[-1] == (sid, 0, b"max-requests")
    assert _closed(frames) and not _answered(frames, sid)


def test_granian_http2_warns_once_that_it_cannot_be_reached(tmp_path: Path) -> None:
    """granian's HTTP/2 lives in Rust: one warning names it and the options that
    cannot act, and the requests are answered as usual."""
    from tests import servers

    log = tmp_path / "connmw.log"
    port = servers.free_port()
    env = {"CONNMW_MAX_REQUESTS_PER_CONNECTION": "25", "GOAWAY_LOG": str(log)}
    argv = servers.granian_argv("tests.goaway_apps:app", port, http="2")
    with servers.subprocess_server(argv, port, env=env):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        sids = [_get(sock, conn, f"/load/{i}") for i in range(3)]
        frames = _read_frames(sock, until=lambda fs: all(_answered(fs, s) for s in sids), timeout=5)
        sock.close()
    assert all(_answered(frames, s) for s in sids) and _goaways(frames) == []
    lines = log.read_text().splitlines()
    assert lines == [
        "connmw: cannot reach granian's HTTP/2 connections: max_requests_per_connection, drain() and "
        "drain_on_signal cannot send GOAWAY there (HTTP/1.x connections are not affected)"
    ]
