"""HTTP/2 on real servers and real clients: the load options retire connections with
a graceful two-phase GOAWAY and no request is lost or run twice.

Figures go to stdout (``pytest -s``) for the README and the notes.
"""

from __future__ import annotations

import collections
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
            # curl waits for every cut stream: give up on each after a second.
            own = gw.curl_load(bare, REQUESTS, max_time=1) if client == "curl" else run_load(bare, REQUESTS)
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
