"""``connmw probe --http2``: GOAWAY and the streams in flight, read off the wire.

- hypercorn h2c with its own ``keep_alive_max_requests``: a GOAWAY, then streams at or
  below its last stream id never complete (``h2-streams-lost``);
- hypercorn h2c with connmw's request cap: a two-phase GOAWAY, every stream completes;
- hypercorn h2c without a cap: 200 streams on one connection, no GOAWAY;
- a hand-written HTTP/2 server (below) for each way a connection can end: a two-phase
  GOAWAY that lets every stream finish, a one-phase GOAWAY that leaves later streams
  unprocessed (safe to retry), REFUSED_STREAM and other resets, a GOAWAY with an error,
  and a close without GOAWAY.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from connmw.asgi import Receive, Scope, Send
from connmw.cli import main
from connmw.probe import ProbeConfig, parse_url, run_case
from connmw.probe.cases import H2_AT_ONCE, H2_STREAMS_CASE
from connmw.probe.results import CaseResult, Goaway, StreamCounts, goaways_text
from tests.servers import bound_socket, hypercorn_thread

pytestmark = pytest.mark.server

#: Generous: only the hypercorn cap test waits its timeout out (streams stall after its GOAWAY).
CONFIG = ProbeConfig(timeout=10.0, close_wait=1.0)


def codes(result: CaseResult) -> list[str]:
    return [f.code for f in result.findings]


async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers after 20 ms, so the streams sent with a request are in flight when it ends."""
    if scope["type"] != "http":
        return
    await asyncio.sleep(0.02)
    body = scope["path"].encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


def probe_streams(port: int, path: str = "/", config: ProbeConfig = CONFIG) -> CaseResult:
    return run_case(parse_url(f"http://127.0.0.1:{port}{path}"), config, H2_STREAMS_CASE)


def test_hypercorn_own_request_cap_loses_streams_in_flight() -> None:
    with hypercorn_thread(slow_app, h2c=True, keep_alive_max_requests=25) as port:
        result = probe_streams(port, config=ProbeConfig(timeout=2.0))
    assert result.goaways, result
    first = result.goaways[0]
    assert first.error_code == 0
    assert first.last_stream_id < 2**31 - 1  # one phase: the highest stream it had received
    counts = result.streams
    assert counts is not None
    # the responses before the GOAWAY: the cap, give or take the streams in flight
    assert counts.before_goaway is not None and abs(counts.before_goaway - 25) <= H2_AT_ONCE
    assert counts.sent < 200  # no stream was opened after the GOAWAY
    assert counts.lost > 0, counts
    assert "h2-streams-lost" in codes(result)


def test_connmw_request_cap_is_a_graceful_goaway() -> None:
    from connmw import ConnectionMiddleware

    app = ConnectionMiddleware(slow_app, max_requests_per_connection=25)
    with hypercorn_thread(app, h2c=True) as port:
        result = probe_streams(port)
    assert result.error is None, result.error
    first, final = result.goaways[0], result.goaways[-1]
    assert (first.error_code, first.last_stream_id, first.debug_data) == (0, 2**31 - 1, "max-requests")
    assert len(result.goaways) == 2
    assert final.error_code == 0 and final.last_stream_id < 2**31 - 1
    counts = result.streams
    assert counts is not None
    assert counts.completed + counts.refused == counts.sent, counts
    assert counts.lost == 0
    assert counts.completed * 2 - 1 == final.last_stream_id  # every stream it announced completed
    assert result.closed is True and result.close_kind == "goaway"
    assert result.findings == []


def test_hypercorn_without_a_cap_answers_every_stream() -> None:
    with hypercorn_thread(slow_app, h2c=True) as port:
        result = probe_streams(port, "/abc")
    assert result.error is None
    assert result.goaways == []
    assert result.streams == StreamCounts(H2_AT_ONCE, sent=200, completed=200)
    assert result.status == 200
    assert result.body_bytes == 4
    assert result.closed is False
    assert result.findings == []


def test_table_and_json_show_the_goaway(capsys: pytest.CaptureFixture[str]) -> None:
    with hypercorn_thread(slow_app, h2c=True, keep_alive_max_requests=25) as port:
        argv = ["--http2", "--concurrency", "4", "--timeout", "2"]
        code = main(["probe", f"http://127.0.0.1:{port}/", *argv])
    out = capsys.readouterr().out
    assert code == 1
    assert "HTTP/2 200 streams, 8 at once: GOAWAY NO_ERROR last stream " in out
    assert "[h2-streams-lost, RFC 9113 \u00a76.8]" in out


# -- a hand-written HTTP/2 server, one way of ending the connection per path ----------------------


class H2Server:
    """Answers ``/<mode>`` requests on h2c; after :attr:`CAP` requests it ends the connection the
    way the mode says. Frames the modes need and h2 would not send are written by hand."""

    CAP = 10

    def __init__(self) -> None:
        self.sock = bound_socket()
        self.sock.setblocking(True)
        self.port = self.sock.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self.conns: list[socket.socket] = []
        self.accept = threading.Thread(target=self.serve, daemon=True)
        self.accept.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            t = threading.Thread(target=self.handle, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def handle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            self._handle(conn)
            # Half-close and drain, so no unread byte turns the close into a reset.
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(2)
            while conn.recv(65536):
                pass

    def _handle(self, conn: socket.socket) -> None:
        import h2.config
        import h2.connection
        import h2.events
        from hyperframe.frame import GoAwayFrame

        def goaway(last: int, code: int = 0, debug: bytes = b"") -> bytes:
            frame = GoAwayFrame(0)
            frame.last_stream_id, frame.error_code, frame.additional_data = last, code, debug
            return bytes(frame.serialize())

        h2c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
        h2c.initiate_connection()
        conn.sendall(h2c.data_to_send())
        answered, highest, last, mode = 0, 0, 2**31 - 1, ""
        pending: list[int] = []  # received after the cap in two-phase mode, answered on the PING ack
        while True:
            data = conn.recv(65536)
            if not data:
                return
            out = b""
            for event in h2c.receive_data(data):
                if isinstance(event, h2.events.PingAckReceived) and mode == "two-phase":
                    last = highest
                    out += h2c.data_to_send() + goaway(last)
                    for sid in pending:
                        h2c.send_headers(sid, [(":status", "200"), ("content-length", "2")])
                        h2c.send_data(sid, b"ok", end_stream=True)
                    out += h2c.data_to_send()
                    conn.sendall(out)
                    return
                if not isinstance(event, h2.events.RequestReceived):
                    continue
                sid = event.stream_id
                highest = max(highest, sid)
                mode = dict(event.headers)[b":path"].decode().strip("/")
                if sid > last:
                    continue  # above the announced last stream: not processed, nothing written
                if answered >= self.CAP:
                    if mode == "two-phase":
                        pending.append(sid)
                        continue
                    if mode == "refuse":
                        h2c.reset_stream(sid, error_code=7)
                        continue
                    if mode == "cancel":
                        h2c.reset_stream(sid, error_code=8)
                        continue
                    if mode == "close":
                        return
                answered += 1
                h2c.send_headers(sid, [(":status", "200"), ("content-length", "2")])
                h2c.send_data(sid, b"ok", end_stream=True)
                if answered == self.CAP:
                    if mode == "two-phase":
                        out += h2c.data_to_send() + goaway(2**31 - 1, debug=b"max requests")
                        h2c.ping(b"connmw-p")
                    elif mode == "one-phase":
                        last = sid
                        out += h2c.data_to_send() + goaway(last)
                    elif mode == "error":
                        out += h2c.data_to_send() + goaway(sid, 11, b"calm down")
                        conn.sendall(out)
                        return
            out += h2c.data_to_send()
            if out:
                conn.sendall(out)
            if mode == "one-phase" and last < 2**31 - 1:
                return

    def close(self) -> None:
        # Closing a socket does not wake a thread blocked in its accept(); shutting it down does.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        for t in self.threads:
            t.join(5)
        self.accept.join(5)
        assert not self.accept.is_alive(), "the H2Server's accept thread did not end"


@pytest.fixture(scope="module")
def h2_server() -> Iterator[H2Server]:
    server = H2Server()
    try:
        yield server
    finally:
        server.close()


def test_two_phase_goaway_completes_every_stream(h2_server: H2Server) -> None:
    result = probe_streams(h2_server.port, "/two-phase")
    assert result.goaways[0].last_stream_id == 2**31 - 1
    assert result.goaways[0].debug_data == "max requests"
    assert len(result.goaways) == 2
    counts = result.streams
    assert counts is not None
    # More than CAP when streams were already open as the first GOAWAY arrived: how many
    # is timing (under load the client may see it before opening an eleventh).
    assert counts.sent >= H2Server.CAP
    assert counts.completed == counts.sent, counts
    assert counts.as_dict()["all_completed"] is True
    assert counts.before_goaway is not None and counts.before_goaway >= H2Server.CAP
    assert result.closed is True and result.close_kind == "goaway"
    assert result.findings == []


def test_one_phase_goaway_leaves_later_streams_unprocessed(h2_server: H2Server) -> None:
    result = probe_streams(h2_server.port, "/one-phase")
    counts = result.streams
    assert counts is not None
    assert counts.completed == H2Server.CAP
    # Streams above the cap are refused; whether any were open when the GOAWAY arrived is timing.
    assert counts.refused == counts.sent - H2Server.CAP >= 0
    assert counts.lost == 0
    assert result.findings == []
    if counts.refused:
        assert "refused (not processed, safe to retry)" in counts.text


def test_refused_stream_resets_are_safe(h2_server: H2Server) -> None:
    result = probe_streams(h2_server.port, "/refuse")
    counts = result.streams
    assert counts is not None
    assert counts.sent == 200
    assert counts.completed == H2Server.CAP
    assert counts.refused == 200 - H2Server.CAP
    assert result.findings == []


def test_other_resets_are_lost(h2_server: H2Server) -> None:
    result = probe_streams(h2_server.port, "/cancel")
    counts = result.streams
    assert counts is not None
    assert counts.reset == 200 - H2Server.CAP
    assert codes(result) == ["h2-streams-lost"]
    assert "190 reset, 0 cut when the connection ended, 0 left unanswered" in result.findings[0].message


def test_goaway_with_an_error_is_a_warning(h2_server: H2Server) -> None:
    result = probe_streams(h2_server.port, "/error")
    assert result.goaways == [Goaway(11, H2Server.CAP * 2 - 1, "calm down")]
    assert "h2-goaway-error" in codes(result)
    assert "GOAWAY ENHANCE_YOUR_CALM last stream 19 'calm down'" in result.findings[-1].message


def test_close_without_goaway(h2_server: H2Server) -> None:
    result = probe_streams(h2_server.port, "/close")
    counts = result.streams
    assert counts is not None
    assert counts.cut > 0
    assert result.close_kind == "fin"
    assert codes(result) == ["h2-streams-lost", "h2-close-without-goaway"]


def test_goaway_text() -> None:
    same = Goaway(0, 5, "")
    assert goaways_text([same, same, Goaway(1, 5, "x")]) == (
        "GOAWAY NO_ERROR last stream 5 (2 times) then GOAWAY PROTOCOL_ERROR last stream 5 'x'"
    )
    assert Goaway(99, 2**31 - 1, "").text == "GOAWAY 0x63 last stream 2^31-1"


def test_a_goaway_sent_before_the_server_closed_is_read_when_sending_fails() -> None:
    """A stream that cannot go out (the server closed) does not hide the GOAWAY the server
    sent before closing: it is read, then the send error stands."""
    import h2.config
    import h2.connection
    from hyperframe.frame import GoAwayFrame

    from connmw.probe.http2 import _H2Wire

    client, server = socket.socketpair()
    with client, server:
        client.settimeout(2.0)
        wire = _H2Wire(client, parse_url("http://127.0.0.1:1/"), CONFIG, H2_STREAMS_CASE)
        h2s = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
        h2s.initiate_connection()
        frame = GoAwayFrame(0)
        frame.last_stream_id, frame.error_code, frame.additional_data = 0, 0, b"bye"
        server.sendall(h2s.data_to_send() + bytes(frame.serialize()))
        server.close()  # what the client writes now fails; what the server wrote stays readable
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            wire.send()  # a Unix socket pair fails the first write once the peer closed
        assert wire.eof
        assert wire.goaways == [Goaway(0, 0, "bye")]
