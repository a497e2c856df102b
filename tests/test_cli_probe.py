"""``connmw probe`` against real servers on loopback.

- uvicorn with connmw: every case conforms, exit 0;
- gunicorn gthread without connmw: ``Connection: TE, close`` leaves the connection
  open, a real violation the probe must catch (exit 1);
- a hand-written misbehaving server (below), one path per misbehaviour;
- TLS (a trustme CA), HTTP/2 over h2c (hypercorn) and over TLS with ALPN;
- unreachable ports and usage errors: exit 2 with one line on stderr.

The probe runs in this process (``connmw.cli.main``), so coverage counts it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connmw.cli import main
from connmw.probe import H2_CASE, ProbeConfig, parse_url, run_case
from tests.apps import asgi_app, raw_asgi
from tests.servers import (
    free_port,
    gunicorn_argv,
    hypercorn_thread,
    stopped,
    subprocess_server,
    uvicorn_thread,
)

pytestmark = pytest.mark.server

FAST = ["--close-wait", "0.5", "--timeout", "3", "--concurrency", "6"]
#: For real servers whose closes the tests assert: room for a loaded machine.
REAL = ["--close-wait", "1", "--timeout", "5", "--concurrency", "6"]
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def probe_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["probe", *args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def case(report: dict[str, Any], case_id: str) -> dict[str, Any]:
    found = [c for c in report["cases"] if c["id"] == case_id]
    assert len(found) == 1, [c["id"] for c in report["cases"]]
    result: dict[str, Any] = found[0]
    return result


def codes(item: dict[str, Any], severity: str = "violation") -> list[str]:
    return [f["code"] for f in item["findings"] if f["severity"] == severity]


# -- a misbehaving server ---------------------------------------------------------


def _response(
    *lines: str, body: bytes = b"ok", length: bool = True, status: str = "200 OK", version: str = "HTTP/1.1"
) -> bytes:
    head = [f"{version} {status}", *lines]
    if length:
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


CHUNKED = b"2\r\nok\r\n0\r\n\r\n"


class Misbehaving:
    """A raw socket server; the request path picks the misbehaviour.

    After a response the connection is closed when ``close`` is true, otherwise the
    next request on it is read (``drop_next``: closed without an answer).
    """

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.conns: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            with self.lock:
                self.conns.append(conn)
            t = threading.Thread(target=self.handle, args=(conn,), daemon=True)
            with self.lock:
                self.threads.append(t)
            t.start()

    def handle(self, conn: socket.socket) -> None:
        try:
            self._handle(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def _handle(self, conn: socket.socket) -> None:
        buf = b""
        served = 0
        while not self.stop.is_set():
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                if buf.startswith(b"PRI "):
                    self.handle_h2(conn, buf)
                    return
            head, _, buf = buf.partition(b"\r\n\r\n")
            line, *hdrs = head.decode("latin-1").split("\r\n")
            _method, path, version = line.split(" ")
            conn_hdr = ",".join(h.partition(":")[2] for h in hdrs if h.lower().startswith("connection:"))
            wants_close = "close" in conn_hdr.lower() or version == "HTTP/1.0"
            served += 1
            if self.special(conn, path):
                return
            reply, close, drop_next = self.respond(path.lstrip("/"), version, wants_close, served)
            if reply is None:
                return
            conn.sendall(reply)
            if close:
                if path == "/reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if drop_next:
                while b"\r\n\r\n" not in buf:
                    more = conn.recv(65536)
                    if not more:
                        return
                    buf += more
                return

    def special(self, conn: socket.socket, path: str) -> bool:
        """Misbehaviours over time or below HTTP; true when the connection is done."""
        if path in ("/drip", "/drip-no-length"):
            if path == "/drip":
                conn.sendall(_response("Content-Length: 100", length=False, body=b""))
            else:
                conn.sendall(_response(length=False, body=b""))
            for _ in range(40):
                if self.stop.wait(0.05):
                    break
                conn.sendall(b"x")
            return True
        if path == "/huge-head":
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 70_000)
            return True
        if path == "/half-close":  # FIN after the response, then read (and drop) what comes
            conn.sendall(_response("Connection: close"))
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(65536):
                pass
            return True
        if path in ("/reset-body", "/reset-head"):
            if path == "/reset-body":
                conn.sendall(_response(length=False, body=b"abc"))
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n")
            time.sleep(0.05)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return True
        return False

    def respond(
        self, what: str, version: str, wants_close: bool, served: int
    ) -> tuple[bytes | None, bool, bool]:
        """``(bytes, close after, close on the next request)``."""
        if what == "good":
            if wants_close:
                return _response("Connection: close"), True, False
            return _response(), False, False
        if what == "close-kept":
            return _response("Connection: close"), False, False
        if what == "ignore-close":  # honours nothing, says nothing
            return _response(), False, False
        if what == "dup":
            return _response("Connection: keep-alive", "Connection: close"), True, False
        if what == "dup-same":
            return _response("Connection: close", "Connection: close"), True, False
        if what == "chunked10":
            return _response("Transfer-Encoding: chunked", body=CHUNKED, length=False), wants_close, False
        if what == "cl-te":
            return (
                _response("Transfer-Encoding: chunked", "Content-Length: 2", body=CHUNKED, length=False),
                True,
                False,
            )
        if what == "trailers":
            body = b"2;ext=1\r\nok\r\n0\r\nX-Trailer: 1\r\n\r\n"
            return (
                _response("Connection: close", "Transfer-Encoding: gzip, chunked", body=body, length=False),
                True,
                False,
            )
        if what == "ka-closed":
            return _response("Connection: keep-alive", "Keep-Alive: timeout=5"), True, False
        if what == "ka-short":  # closes after the advertised (short) idle timeout: fine
            return _response("Keep-Alive: timeout=0"), True, False
        if what == "ka-dropped":
            return _response("Connection: keep-alive"), False, True
        if what == "silent-drop":
            return _response(), False, True
        if what == "unannounced":
            return _response(), True, False
        if what == "no-length":
            return _response(length=False, body=b"until the end"), True, False
        if what == "te-identity":  # a transfer coding other than chunked: body ends at close
            return _response("Transfer-Encoding: identity", length=False, body=b"abc"), True, False
        if what == "http10-kept":  # keeps 1.0 connections, never says keep-alive
            return _response(version="HTTP/1.0"), False, False
        if what == "interim":
            return b"HTTP/1.1 100 Continue\r\n\r\n" + _response("Connection: close"), True, False
        if what == "chatty":  # bytes nobody asked for after the response
            return _response() + b"surprise", False, False
        if what == "nocolon":
            return _response("Connection: close", "A line without a colon"), True, False
        if what == "head-only":
            return (
                _response("Connection: close", status="204 No Content", length=False, body=b""),
                True,
                False,
            )
        if what == "reset":
            return _response("Connection: close"), True, False
        if what == "garbage":
            return b"SSH-2.0-OpenSSH_9.0\r\n\r\n", True, False
        if what == "bad-length":
            return _response("Content-Length: 2", "Content-Length: 3", length=False), True, False
        if what == "bad-chunk":
            return _response("Transfer-Encoding: chunked", body=b"zz\r\n", length=False), True, False
        if what == "cut":
            return _response("Content-Length: 100", length=False, body=b"short"), True, False
        if what == "silent":
            time.sleep(2)
            return None, True, False
        if what == "second-fails" and served > 1:
            return _response("Content-Length: x", length=False), True, False
        if what == "second-fails":
            return _response(), False, False
        return _response(status="404 Not Found"), True, False

    def handle_h2(self, conn: socket.socket, first: bytes) -> None:
        import h2.config
        import h2.connection
        import h2.events
        import h2.exceptions

        h2c = h2.connection.H2Connection(
            config=h2.config.H2Configuration(
                client_side=False, validate_outbound_headers=False, normalize_outbound_headers=False
            )
        )
        h2c.initiate_connection()
        conn.sendall(h2c.data_to_send())
        data = first
        answered = 0
        while data:
            try:
                events = h2c.receive_data(data)
            except h2.exceptions.ProtocolError:
                return
            for event in events:
                if isinstance(event, h2.events.RequestReceived):
                    path = dict(event.headers)[b":path"]
                    answered += 1
                    if path == b"/h2-silent":
                        continue
                    if path == b"/h2-once" and answered > 1:
                        h2c.reset_stream(event.stream_id)
                        continue
                    headers = [(b":status", b"200"), (b"content-length", b"2")]
                    if path == b"/h2-bad":
                        headers += [(b"connection", b"keep-alive"), (b"te", b"gzip"), (b"upgrade", b"h2c")]
                    if path == b"/h2-reset":
                        h2c.reset_stream(event.stream_id)
                        continue
                    if path == b"/h2-goaway":
                        h2c.close_connection()
                        conn.sendall(h2c.data_to_send())
                        return
                    h2c.send_headers(event.stream_id, headers)
                    h2c.send_data(event.stream_id, b"ok", end_stream=True)
                    if path == b"/h2-goaway-after":
                        h2c.close_connection()
                        conn.sendall(h2c.data_to_send())
                        # Half-close and drain, so no unread byte turns the close into a reset.
                        conn.shutdown(socket.SHUT_WR)
                        while conn.recv(65536):
                            pass
                        return
            conn.sendall(h2c.data_to_send())
            data = conn.recv(65536)

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        with self.lock:
            conns, threads = list(self.conns), list(self.threads)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()
        for t in threads:
            stopped(t, "a connection thread of the misbehaving server", 5)


@pytest.fixture(scope="module")
def bad_server() -> Iterator[int]:
    server = Misbehaving()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server.port
    finally:
        server.close()
        stopped(thread, "the misbehaving server", 5)


# -- uvicorn + connmw: no violation ---------------------------------------------------


def test_uvicorn_with_connmw_has_no_violation(capsys: pytest.CaptureFixture[str]) -> None:
    with uvicorn_thread(asgi_app, http="h11") as port:
        code, report = probe_json(capsys, f"http://127.0.0.1:{port}/", *REAL)
    assert code == 0, report
    assert report["summary"] == {"violations": 0, "warnings": 0, "errors": 0}
    reuse = case(report, "http11")
    assert reuse["status"] == 200
    assert reuse["closed"] is False
    assert reuse["next_request"] == "answered"
    assert reuse["next_status"] == 200
    for cid in ("http11-close", "http11-te-close", "http11-close-case", "http10", "http10-keep-alive"):
        item = case(report, cid)
        assert item["closed"] is True, item
        assert item["headers"]["connection"] == ["close"], item
        assert item["closed_after_ms"] is not None
        assert item["closed_after_ms"] < 1000


def test_uvicorn_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    with uvicorn_thread(asgi_app, http="h11") as port:
        code = main(["probe", f"http://127.0.0.1:{port}/", *REAL])
    out = capsys.readouterr().out
    assert code == 0
    assert "\x1b[" not in out  # captured output is not a terminal: no colour
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("case"))
    for column in (
        "status",
        "Connection",
        "Keep-Alive",
        "Transfer-Encoding",
        "Content-Length",
        "server closed",
    ):
        assert column in header
    row = next(line for line in lines if line.startswith("HTTP/1.1 TE, close"))
    assert "close" in row
    assert "yes" in row
    assert "0 violations, 0 warnings, 0 errors (exit 0)" in out


# -- gunicorn gthread without connmw: a real violation ------------------------------------


def test_gunicorn_gthread_keeps_te_close_open(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    with subprocess_server(gunicorn_argv("tests.apps:raw_wsgi", port), port):
        code, report = probe_json(capsys, f"http://127.0.0.1:{port}/", *REAL)
    assert code == 1
    te = case(report, "http11-te-close")
    assert te["closed"] is False
    assert te["next_request"] == "answered"
    assert "client-close-kept" in codes(te)
    [finding] = [f for f in te["findings"] if f["code"] == "client-close-kept"]
    assert finding["rfc"] == "RFC 9112 §9.6"
    assert "TE, close" in finding["message"]
    # The plain close is honoured: gunicorn only misses the token list.
    plain = case(report, "http11-close")
    assert plain["closed"] is True
    assert plain["findings"] == []
    assert report["summary"]["violations"] >= 1


# -- the misbehaving server ------------------------------------------------------------------


def test_close_announced_but_kept(bad_server: int, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = probe_json(capsys, f"http://127.0.0.1:{bad_server}/close-kept", *FAST)
    assert code == 1
    reuse = case(report, "http11")
    assert reuse["lines"] == ["Connection: close", "Content-Length: 2"]
    assert reuse["closed"] is False
    assert reuse["next_request"] == "answered"
    assert codes(reuse) == ["close-announced-kept"]
    assert reuse["findings"][0]["rfc"] == "RFC 9112 §9.6"
    assert "and answered the next request" in reuse["findings"][0]["message"]
    client = case(report, "http11-close")
    assert codes(client) == ["close-announced-kept"]
    assert "the client asked for it too" in client["findings"][0]["message"]


def test_client_close_ignored(bad_server: int, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = probe_json(capsys, f"http://127.0.0.1:{bad_server}/ignore-close", *FAST)
    assert code == 1
    for cid in ("http11-close", "http11-te-close", "http11-close-case"):
        assert codes(case(report, cid)) == ["client-close-kept"]
    assert codes(case(report, "http10")) == ["http10-kept"]
    ka = case(report, "http10-keep-alive")
    assert codes(ka) == []
    assert codes(ka, "warning") == ["kept-without-keep-alive"]
    assert case(report, "http11")["findings"] == []


def test_duplicate_connection_lines(bad_server: int, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = probe_json(capsys, f"http://127.0.0.1:{bad_server}/dup", *FAST)
    assert code == 1
    reuse = case(report, "http11")
    assert reuse["headers"]["connection"] == ["keep-alive", "close"]
    assert codes(reuse) == ["duplicate-connection"]
    code, report = probe_json(capsys, f"http://127.0.0.1:{bad_server}/dup-same", *FAST)
    assert code == 0
    reuse = case(report, "http11")
    assert codes(reuse) == []
    assert codes(reuse, "warning") == ["duplicate-connection"]
    assert reuse["findings"][0]["rfc"] == "RFC 9110 §5.3"


def test_chunked_to_http10(bad_server: int, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = probe_json(capsys, f"http://127.0.0.1:{bad_server}/chunked10", *FAST)
    assert code == 1
    for cid in ("http10", "http10-keep-alive"):
        item = case(report, cid)
        assert item["headers"]["transfer-encoding"] == ["chunked"]
        assert item["framing"] == "chunked"
        assert item["body_bytes"] == 2
        assert "chunked-to-http10" in codes(item)
    assert codes(case(report, "http11")) == []


def test_length_and_chunked(bad_server: int, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = probe_json(capsys, f"http://127.0.0.1:{bad_server}/cl-te", *FAST)
    assert code == 1
    assert "length-and-chunked" in codes(case(report, "http11-close"))


def test_keep_alive_announced_then_closed(bad_server: int, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = probe_json(capsys, f"http://127.0.0.1:{bad_server}/ka-closed", *FAST)
    assert code == 1
    reuse = case(report, "http11")
    assert reuse["closed"] is True
    assert reuse["close_kind"] == "fin"
    assert codes(reuse) == ["keep-alive-announced-closed"]
    code, report = probe_json(capsys, f"http://127.0.0.1:{bad_server}/ka-dropped", *FAST)
    assert code == 1
    reuse = case(report, "http11")
    assert reuse["closed"] is False
    assert reuse["next_request"] == "not-answered"
    assert codes(reuse) == ["keep-alive-announced-closed"]


def test_keep_alive_closed_after_its_advertised_timeout_is_fine(
    bad_server: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = probe_json(capsys, f"http://127.0.0.1:{bad_server}/ka-short", *FAST)
    assert code == 0
    assert case(report, "http11")["findings"] == []


def test_unannounced_close_is_a_warning(bad_server: int, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = probe_json(capsys, f"http://127.0.0.1:{bad_server}/unannounced", *FAST)
    assert code == 0
    assert codes(case(report, "http11"), "warning") == ["unannounced-close"]
    code, report = probe_json(capsys, f"http://127.0.0.1:{bad_server}/silent-drop", *FAST)
    assert code == 1  # it keeps the connections the client asked to close, too
    reuse = case(report, "http11")
    assert codes(reuse) == []
    assert reuse["next_request"] == "not-answered"
    assert codes(reuse, "warning") == ["unannounced-close"]


@pytest.mark.parametrize(
    ("path", "framing", "body"),
    [
        pytest.param("no-length", "close", 13, id="no-length"),
        pytest.param("te-identity", "close", 3, id="te-identity"),
        pytest.param("trailers", "chunked", 2, id="chunked-trailers"),
        pytest.param("interim", "content-length", 2, id="100-continue-first"),
        pytest.param("head-only", "none", 0, id="204"),
    ],
)
def test_framings(
    bad_server: int, capsys: pytest.CaptureFixture[str], path: str, framing: str, body: int
) -> None:
    _, report = probe_json(capsys, f"http://127.0.0.1:{bad_server}/{path}", *FAST)
    item = case(report, "http11-close")
    assert item["error"] is None, item
    assert item["framing"] == framing
    assert item["body_bytes"] == body
    assert item["closed"] is True
    if framing == "close":
        assert case(report, "http11")["findings"] == []  # a close-delimited body is not an unannounced close


def test_reset_is_reported(bad_server: int, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = probe_json(capsys, f"http://127.0.0.1:{bad_server}/reset", *FAST)
    assert code == 0
    item = case(report, "http11-close")
    assert item["closed"] is True
    assert item["close_kind"] in ("reset", "fin")  # an RST may be seen as either, depending on timing


@pytest.mark.parametrize(
    ("path", "error"),
    [
        pytest.param("garbage", "not an HTTP/1.x response", id="garbage"),
        pytest.param("bad-length", "unusable Content-Length", id="two-lengths"),
        pytest.param("bad-chunk", "bad chunk size", id="bad-chunk"),
        pytest.param("cut", "closed the connection in the middle", id="truncated"),
    ],
)
def test_broken_responses_are_case_errors(
    bad_server: int, capsys: pytest.CaptureFixture[str], path: str, error: str
) -> None:
    code, report = probe_json(capsys, f"http://127.0.0.1:{bad_server}/{path}", *FAST)
    assert code == 2
    assert report["summary"]["errors"] == len(report["cases"])
    assert error in case(report, "http11")["error"]
    assert case(report, "http11")["status"] is None


def test_unsolicited_bytes_after_a_response(bad_server: int, capsys: pytest.CaptureFixture[str]) -> None:
    _, report = probe_json(capsys, f"http://127.0.0.1:{bad_server}/chatty", *FAST)
    reuse = case(report, "http11")
    assert reuse["closed"] is False
    assert reuse["next_request"] == "not-answered"  # the extra bytes spoil the next response


def test_header_lines_without_colon_are_skipped(bad_server: int, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = probe_json(capsys, f"http://127.0.0.1:{bad_server}/nocolon", *FAST)
    assert code == 0
    assert case(report, "http11")["lines"] == ["Connection: close", "Content-Length: 2"]


@pytest.mark.parametrize(
    ("path", "error"),
    [
        pytest.param("drip", "no complete response within 0.3 s", id="slow-body"),
        pytest.param("drip-no-length", "no complete response within 0.3 s", id="slow-close-delimited"),
        pytest.param("huge-head", "no end of line within 65536 bytes", id="huge-head"),
        pytest.param("reset-head", "connection error", id="reset-in-head"),
    ],
)
def test_bounded_reads(bad_server: int, capsys: pytest.CaptureFixture[str], path: str, error: str) -> None:
    start = time.monotonic()
    argv = ["--timeout", "0.3", "--concurrency", "6", "--json"]
    code = main(["probe", f"http://127.0.0.1:{bad_server}/{path}", *argv])
    report = json.loads(capsys.readouterr().out)
    assert code == 2
    assert error in case(report, "http11")["error"]
    assert time.monotonic() - start < 10


def test_reset_ends_a_close_delimited_body(bad_server: int, capsys: pytest.CaptureFixture[str]) -> None:
    _, report = probe_json(capsys, f"http://127.0.0.1:{bad_server}/reset-body", *FAST)
    item = case(report, "http11")
    assert item["error"] is None, item
    assert item["framing"] == "close"
    assert item["closed"] is True


def test_second_answer_broken_means_not_answered(bad_server: int, capsys: pytest.CaptureFixture[str]) -> None:
    _, report = probe_json(capsys, f"http://127.0.0.1:{bad_server}/second-fails", *FAST)
    reuse = case(report, "http11")
    assert reuse["next_request"] == "not-answered"


def test_silent_server_times_out(bad_server: int, capsys: pytest.CaptureFixture[str]) -> None:
    start = time.monotonic()
    code = main(["probe", f"http://127.0.0.1:{bad_server}/silent", "--timeout", "0.3", "--concurrency", "8"])
    elapsed = time.monotonic() - start
    out = capsys.readouterr().out
    assert code == 2
    assert "no complete response within 0.3 s" in out
    assert elapsed < 10  # 6 cases, 8 at once: bounded by the timeout, not by the server


def test_several_requests_before_the_check(bad_server: int) -> None:
    from connmw.probe import CaseSpec, ProbeConfig, parse_url, run_case

    target = parse_url(f"http://127.0.0.1:{bad_server}/good")
    config = ProbeConfig(close_wait=0.2, timeout=3)
    result = run_case(target, config, CaseSpec("three", "three", requests=3))
    assert result.error is None
    assert result.status == 200
    assert result.next_request == "answered"
    # The server closes after the first response: the second request fails.
    twice = CaseSpec("twice", "twice", requests=2)
    result = run_case(parse_url(f"http://127.0.0.1:{bad_server}/half-close"), config, twice)
    assert result.error == (
        "request 2 of 2 on the connection: the server closed the connection in the middle of a response"
    )
    assert result.status == 200  # the first response is kept
    result = run_case(parse_url(f"http://127.0.0.1:{bad_server}/reset"), config, twice)
    assert result.error is not None
    assert result.error.startswith("request 2 of 2 on the connection: connection error: "), result.error


@contextlib.contextmanager
def one_shot_server(reply: bytes, wait_request: bool = True) -> Iterator[tuple[int, list[bytes]]]:
    """Answers every connection with ``reply`` (after its request head) and closes it."""
    seen: list[bytes] = []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            with conn, contextlib.suppress(OSError):
                conn.settimeout(3)
                data = b""
                while wait_request and b"\r\n\r\n" not in data:
                    more = conn.recv(4096)
                    if not more:
                        break
                    data += more
                seen.append(data)
                conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1], seen
    finally:
        stop.set()
        stopped(thread, "the scripted server", 5)
        srv.close()


def test_probe_sends_method_and_headers(capsys: pytest.CaptureFixture[str]) -> None:
    with one_shot_server(_response("Connection: close")) as (port, seen):
        code = main(
            ["probe", f"http://127.0.0.1:{port}/p?q=1", "--method", "POST", "-H", "X-Token: abc",
             "--header", "Host: example.test", *FAST]
        )  # fmt: skip
    capsys.readouterr()
    assert code == 0
    assert len(seen) == 6
    first = seen[0].decode()
    assert first.startswith("POST /p?q=1 HTTP/1.1\r\n")
    assert "\r\nX-Token: abc\r\n" in first
    assert "\r\nHost: example.test\r\n" in first
    assert "127.0.0.1" not in first  # the given Host replaces the URL's
    assert "\r\nContent-Length: 0\r\n" in first
    assert any("\r\nConnection: TE, close\r\n" in s.decode() for s in seen)
    assert sum(s.startswith(b"POST /p?q=1 HTTP/1.0\r\n") for s in seen) == 2


# -- unreachable targets ------------------------------------------------------------------


def test_refused_port_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert main(["probe", f"http://127.0.0.1:{port}/"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"connmw: error: connection refused by 127.0.0.1:{port}\n"


def test_refused_port_from_the_command_line() -> None:
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "connmw", "probe", f"http://127.0.0.1:{port}/", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(Path(__file__).resolve().parent.parent),
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr
    assert "connection refused" in proc.stderr


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        pytest.param(socket.gaierror(-2, "Name or service not known"), "cannot resolve", id="dns"),
        pytest.param(TimeoutError(), "timed out after 5 s connecting", id="timeout"),
        pytest.param(OSError(113, "No route to host"), "No route to host", id="no-route"),
    ],
)
def test_connect_failures_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], exc: Exception, message: str
) -> None:
    def fail(*args: object, **kwargs: object) -> socket.socket:
        raise exc

    monkeypatch.setattr(socket, "create_connection", fail)
    assert main(["probe", "http://unreachable.test/"]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_later_case_cannot_connect(bad_server: int) -> None:
    """The first case connects; when a later one cannot, it is an error of that case."""
    from connmw import probe as _probe
    from connmw.probe import ProbeConfig, ProbeError, parse_url, run_probe

    calls: list[str] = []

    def runner(target: _probe.Target, config: ProbeConfig, spec: _probe.CaseSpec) -> _probe.CaseResult:
        calls.append(spec.id)
        if len(calls) > 1:
            raise ProbeError("connection refused by nowhere")
        return _probe.run_case(target, config, spec)

    report = run_probe(
        parse_url(f"http://127.0.0.1:{bad_server}/good"), ProbeConfig(close_wait=0.2), runner=runner
    )
    assert report.results[0].error is None
    assert all(r.error == "connection refused by nowhere" for r in report.results[1:])
    assert report.exit_code == 2


# -- TLS -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    d = tmp_path_factory.mktemp("tls")
    files = {"ca": str(d / "ca.pem"), "cert": str(d / "cert.pem"), "key": str(d / "key.pem")}
    ca.cert_pem.write_to_path(files["ca"])
    cert.cert_chain_pems[0].write_to_path(files["cert"])
    cert.private_key_pem.write_to_path(files["key"])
    return files


def test_tls_checks_certificates(tls_files: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    with uvicorn_thread(
        asgi_app, http="h11", ssl_certfile=tls_files["cert"], ssl_keyfile=tls_files["key"]
    ) as port:
        url = f"https://127.0.0.1:{port}/"
        assert main(["probe", url, *REAL]) == 2
        err = capsys.readouterr().err
        assert "TLS certificate check failed for 127.0.0.1" in err
        assert "--insecure" in err
        code, report = probe_json(capsys, url, "--insecure", *REAL)
        assert code == 0, report
        assert report["target"]["tls"] is True
        assert report["target"]["tls_verified"] is False
        assert case(report, "http11-te-close")["closed"] is True
        assert case(report, "http11")["next_request"] == "answered"
        code, report = probe_json(capsys, url, "--cacert", tls_files["ca"], *REAL)
        assert code == 0
        assert report["target"]["tls_verified"] is True
        # uvicorn has no HTTP/2: ALPN does not pick h2, which is an error of that case.
        h2 = run_case(parse_url(url), ProbeConfig(cafile=tls_files["ca"]), H2_CASE)
        assert h2.error == "the server did not negotiate HTTP/2 (ALPN h2)"


def test_tls_to_a_plain_server_fails_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    with one_shot_server(_response(status="400 Bad Request"), wait_request=False) as (port, _):
        assert main(["probe", f"https://127.0.0.1:{port}/", "--insecure", *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"connmw: error: TLS handshake with 127.0.0.1:{port} failed")
    assert err.count("\n") == 1


def test_tls_handshake_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)  # accepts (in the backlog) but never speaks
    port = srv.getsockname()[1]
    try:
        assert main(["probe", f"https://127.0.0.1:{port}/", "--insecure", "--timeout", "0.3"]) == 2
    finally:
        srv.close()
    assert "timed out after 0.3 s in the TLS handshake" in capsys.readouterr().err


# -- HTTP/2 ---------------------------------------------------------------------------------


def test_http2_prior_knowledge_on_hypercorn(capsys: pytest.CaptureFixture[str]) -> None:
    with hypercorn_thread(asgi_app, h2c=True) as port:
        code, report = probe_json(capsys, f"http://127.0.0.1:{port}/hop", "--http2", *REAL)
    h2 = case(report, "h2")
    assert h2["protocol"] == "HTTP/2"
    assert h2["error"] is None, h2
    assert h2["status"] == 200
    assert h2["response_version"] == "HTTP/2"
    # connmw removed the app's connection-specific headers (te: gzip among them).
    assert h2["findings"] == []
    assert h2["next_request"] == "answered"
    assert h2["body_bytes"] == 5
    assert "h2" in [c["id"] for c in report["cases"]]
    del code  # the HTTP/1.1 cases of /hop are not this test's subject


def test_http2_te_gzip_breaks_hypercorn_without_connmw(capsys: pytest.CaptureFixture[str]) -> None:
    """An app's ``te: gzip`` desyncs hypercorn's HPACK state: the probe reports the broken stream."""
    with hypercorn_thread(raw_asgi, h2c=True) as port:
        h2 = run_case(parse_url(f"http://127.0.0.1:{port}/te"), ProbeConfig(), H2_CASE)
    assert h2.status is None
    assert h2.error is not None
    assert "HTTP/2 protocol error in the server's frames" in h2.error


def test_http2_over_tls_with_alpn(tls_files: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    with hypercorn_thread(asgi_app, certfile=tls_files["cert"], keyfile=tls_files["key"]) as port:
        code, report = probe_json(
            capsys, f"https://127.0.0.1:{port}/", "--http2", "--cacert", tls_files["ca"], *REAL
        )
    assert code == 0, report
    assert case(report, "h2")["status"] == 200


def test_http2_forbidden_headers(bad_server: int, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = probe_json(capsys, f"http://127.0.0.1:{bad_server}/h2-bad", "--http2", *FAST)
    assert code == 1
    h2 = case(report, "h2")
    assert codes(h2) == ["h2-forbidden-header"]
    assert h2["findings"][0]["rfc"] == "RFC 9113 §8.2.2"
    assert "connection" in h2["findings"][0]["message"]
    assert "te: gzip" in h2["findings"][0]["message"]
    assert "connection: keep-alive" in h2["lines"]
    assert h2["headers"]["connection"] == ["keep-alive"]


@pytest.mark.parametrize(
    ("path", "error"),
    [
        pytest.param("h2-reset", "reset the stream", id="rst-stream"),
        pytest.param("h2-goaway", "GOAWAY", id="goaway"),
    ],
)
def test_http2_failures_are_case_errors(
    bad_server: int, capsys: pytest.CaptureFixture[str], path: str, error: str
) -> None:
    _, report = probe_json(capsys, f"http://127.0.0.1:{bad_server}/{path}", "--http2", *FAST)
    assert error in case(report, "h2")["error"]


def test_http2_against_an_http1_server(capsys: pytest.CaptureFixture[str]) -> None:
    with uvicorn_thread(asgi_app, http="h11") as port:
        err = run_case(parse_url(f"http://127.0.0.1:{port}/"), ProbeConfig(), H2_CASE).error
    assert err is not None
    # uvicorn answers the preface with an HTTP/1.1 400 and closes; depending on timing the
    # probe sees the bytes, the close, or a broken pipe: always the same explanation.
    assert err.startswith("the server does not speak HTTP/2 with prior knowledge"), err


def test_http2_sends_the_given_headers(bad_server: int, capsys: pytest.CaptureFixture[str]) -> None:
    from connmw.probe import CaseSpec, ProbeConfig, parse_url, run_case

    argv = ["-H", "User-Agent: probe-test", "-H", "Host: example.test", "-H", "X-A: 1", "--http2", *FAST]
    code, report = probe_json(capsys, f"http://127.0.0.1:{bad_server}/h2-good", *argv)
    assert case(report, "h2")["body_bytes"] == 2
    assert case(report, "h2")["error"] is None
    del code  # the HTTP/1.1 cases of this path are not this test's subject
    config = ProbeConfig(capture=("content-length",), close_wait=0.2)
    url = parse_url(f"http://127.0.0.1:{bad_server}/h2-good")
    result = run_case(url, config, CaseSpec("h2", "h2", "HTTP/2"))
    assert result.captured == {"content-length": ["2"]}
    assert result.next_request == "answered"
    assert result.next_status == 200


def test_http2_goaway_after_the_response(bad_server: int, capsys: pytest.CaptureFixture[str]) -> None:
    _, report = probe_json(capsys, f"http://127.0.0.1:{bad_server}/h2-goaway-after", "--http2", *FAST)
    h2 = case(report, "h2")
    assert h2["status"] == 200
    assert h2["closed"] is True
    assert h2["close_kind"] == "goaway"
    assert h2["next_request"] is None


def test_http2_second_stream_refused(bad_server: int, capsys: pytest.CaptureFixture[str]) -> None:
    _, report = probe_json(capsys, f"http://127.0.0.1:{bad_server}/h2-once", "--http2", *FAST)
    h2 = case(report, "h2")
    assert h2["status"] == 200
    assert h2["next_request"] == "not-answered"


def test_http2_timeout(bad_server: int, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--http2", "--timeout", "0.3", "--concurrency", "7", "--json"]
    assert main(["probe", f"http://127.0.0.1:{bad_server}/h2-silent", *argv]) == 2
    report = json.loads(capsys.readouterr().out)
    assert case(report, "h2")["error"] == "no complete HTTP/2 response within 0.3 s"


def test_http2_without_h2_installed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("h2", "h2.config", "h2.connection", "h2.events", "h2.exceptions"):
        monkeypatch.setitem(sys.modules, name, None)
    assert main(["probe", "http://127.0.0.1:9/", "--http2"]) == 2
    assert (
        capsys.readouterr().err
        == 'connmw: error: --http2 needs the h2 package: pip install "connmw[probe]" (or h2)\n'
    )
