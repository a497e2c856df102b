"""The HTTP/2 wire client, on the ``h2`` package (imported only when an HTTP/2 case runs).

Two cases: ``h2`` sends one request, then a second stream on the same connection;
``h2-streams`` keeps :data:`~.cases.H2_AT_ONCE` streams open at once until it has sent
``spec.requests`` of them, or until the server sends GOAWAY, and reports how every
stream ended.

Facts
-----
- RFC 9113 §6.8: streams at or below a GOAWAY's last stream id "might still complete
  successfully"; streams above it were not processed and may be retried. Receivers of a
  GOAWAY "MUST NOT open additional streams on the connection". Endpoints "SHOULD always
  send a GOAWAY frame before closing a connection".
- RFC 9113 §8.7: a stream reset with REFUSED_STREAM was not processed and may be retried.
- h2 moves the whole connection to CLOSED when a GOAWAY arrives (python-hyper/h2#1181) and
  then rejects every later frame, so the client here records the GOAWAY and reads on.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

from .cases import (
    H2_AT_ONCE,
    H2_FORBIDDEN,
    USER_AGENT,
    WATCHED,
    CaseFailed,
    CaseSpec,
    ProbeConfig,
    Target,
    UsageError,
)
from .findings import evaluate
from .results import MAX_STREAM_ID, REFUSED_STREAM, CaseResult, Goaway, StreamCounts, h2_error
from .wire import open_connection, remaining

_NO_H2 = "the server does not speak HTTP/2 with prior knowledge"
_MAX_DEBUG = 200


def import_h2() -> Any:
    try:
        import h2.config
        import h2.connection
        import h2.events
        import h2.exceptions
    except ImportError:
        raise UsageError('--http2 needs the h2 package: pip install "connmw[probe]" (or h2)') from None
    return h2


@functools.cache
def _client_class() -> Any:
    h2 = import_h2()
    base: Any = h2.connection.H2Connection

    class Client(base):  # type: ignore[misc]
        """An h2 client connection that stays open for the streams a GOAWAY lets complete."""

        def _receive_goaway_frame(self, frame: Any) -> tuple[list[Any], list[Any]]:
            event = h2.events.ConnectionTerminated()
            event.error_code = frame.error_code
            event.last_stream_id = frame.last_stream_id
            event.additional_data = frame.additional_data or None
            return [], [event]

    return Client


@dataclass
class _Stream:
    headers: list[tuple[bytes, bytes]] | None = None
    body: int = 0
    ended: bool = False
    reset: int | None = None

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None


class _H2Wire:
    """One client connection: streams by id, every GOAWAY, whether the server closed."""

    def __init__(self, sock: socket.socket, target: Target, config: ProbeConfig, spec: CaseSpec) -> None:
        h2 = import_h2()
        self.errors = h2.exceptions.ProtocolError
        self.events = h2.events
        self.sock = sock
        self.conn = _client_class()(
            config=h2.config.H2Configuration(
                client_side=True, header_encoding=None, validate_inbound_headers=False
            )
        )
        self.conn.initiate_connection()
        sock.sendall(self.conn.data_to_send())
        self.request: list[tuple[bytes, bytes]] = [
            (b":method", config.method.encode("latin-1")),
            (b":scheme", target.scheme.encode()),
            (b":authority", target.authority.encode("idna")),
            (b":path", (spec.path or target.path).encode("latin-1")),
        ]
        names = {n.lower() for n, _ in config.headers}
        if "user-agent" not in names:
            self.request.append((b"user-agent", USER_AGENT.encode()))
        for name, value in config.headers:
            if name.lower() != "host":
                self.request.append((name.lower().encode("latin-1"), value.encode("latin-1")))
        self.streams: dict[int, _Stream] = {}
        self.goaways: list[Goaway] = []
        self.eof = False
        #: The connection no longer takes data (the server closed); reading goes on.
        self.write_closed = False
        self.frames = False  # the server's first frame was SETTINGS
        self.checked = False

    def send(self) -> int:
        stream_id: int = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, self.request, end_stream=True)
        try:
            self.sock.sendall(self.conn.data_to_send())
        except (BrokenPipeError, ConnectionResetError):
            # The server closed while this stream was going out: what it sent before
            # (its GOAWAY, the last responses) is still to be read, then the error stands.
            self.read_rest()
            raise
        self.streams[stream_id] = _Stream()
        return stream_id

    def read_rest(self, timeout: float = 1.0) -> None:
        """Read what the server sent before the connection ended (bounded)."""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(OSError):
            while not self.eof and time.monotonic() < deadline:
                self.pump(deadline)
        self.eof = True

    def pump(self, deadline: float) -> None:
        """Read once and apply what arrived; EOF and resets set :attr:`eof`."""
        self.sock.settimeout(remaining(deadline))
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        if not data:
            self.eof = True
            return
        if not self.checked:
            self.checked = True
            self.frames = data[3:4] == b"\x04"
        ev = self.events
        for event in self.conn.receive_data(data):
            stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
            if isinstance(event, ev.ResponseReceived) and stream is not None:
                stream.headers = list(event.headers)
            elif isinstance(event, ev.DataReceived):
                if stream is not None:
                    stream.body += len(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, ev.StreamEnded) and stream is not None:
                stream.ended = True
            elif isinstance(event, ev.StreamReset) and stream is not None:
                stream.reset = int(event.error_code)
            elif isinstance(event, ev.ConnectionTerminated):
                debug = (event.additional_data or b"").decode("utf-8", "replace")[:_MAX_DEBUG]
                self.goaways.append(Goaway(int(event.error_code), event.last_stream_id, debug))
        out = self.conn.data_to_send()
        if out and not self.write_closed:
            try:
                self.sock.sendall(out)
            except (BrokenPipeError, ConnectionResetError):
                # The server closed: its acknowledgements are moot, what it sent is still read.
                self.write_closed = True

    @property
    def last_stream_id(self) -> int:
        return min((g.last_stream_id for g in self.goaways), default=MAX_STREAM_ID)

    def wait(self, stream_id: int, timeout: float) -> _Stream:
        """Read until ``stream_id`` ends; :class:`CaseFailed` when it cannot."""
        stream = self.streams[stream_id]
        deadline = time.monotonic() + timeout
        while not stream.done:
            if stream_id > self.last_stream_id:
                raise CaseFailed(f"the server sent GOAWAY (error code {self.goaways[-1].error_code})")
            if self.eof:
                if self.goaways:
                    raise CaseFailed(
                        f"the server sent GOAWAY (error code {self.goaways[-1].error_code}) and closed "
                        "the connection before the response ended"
                    )
                if not self.frames:
                    raise CaseFailed(f"{_NO_H2} (it closed the connection)")
                raise CaseFailed("the server closed the HTTP/2 connection before the response ended")
            self.pump(deadline)
        if stream.reset is not None:
            raise CaseFailed(f"the server reset the stream (error code {stream.reset})")
        return stream

    def wait_closed(self, wait: float) -> bool:
        deadline = time.monotonic() + wait
        try:
            while not self.eof:
                self.pump(deadline)
        except (TimeoutError, self.errors):
            return self.eof
        return True


def run_h2_case(target: Target, config: ProbeConfig, spec: CaseSpec) -> CaseResult:
    result = CaseResult(spec)
    start = time.monotonic()
    sock = open_connection(target, config, alpn=["h2"])
    wire: _H2Wire | None = None
    try:
        if isinstance(sock, ssl.SSLSocket) and sock.selected_alpn_protocol() != "h2":
            raise CaseFailed("the server did not negotiate HTTP/2 (ALPN h2)")
        wire = _H2Wire(sock, target, config, spec)
        try:
            if spec.requests > 1:
                _streams(wire, result, config, spec.requests)
            else:
                _one(wire, result, config)
        except wire.errors as exc:
            if wire.frames:
                raise CaseFailed(f"HTTP/2 protocol error in the server's frames: {exc}") from None
            raise CaseFailed(f"{_NO_H2} ({exc})") from None
    except TimeoutError:
        result.error = f"no complete HTTP/2 response within {config.timeout:g} s"
    except CaseFailed as exc:
        result.error = str(exc)
    except OSError as exc:
        if wire is not None:
            wire.eof = True
        what = "connection error" if wire is not None and wire.frames else _NO_H2
        result.error = f"{what}: {exc.strerror or exc}"
    finally:
        sock.close()
        if wire is not None:
            result.goaways = wire.goaways
            if result.streams is not None:
                _count(wire, result.streams)
    result.elapsed = time.monotonic() - start
    result.findings = evaluate(spec, result, config.close_wait)
    return result


def _record(result: CaseResult, stream: _Stream, capture: tuple[str, ...]) -> None:
    result.response_version = "HTTP/2"
    result.headers = {n: [] for n in WATCHED}
    result.captured = {n: [] for n in capture}
    for raw_name, raw_value in stream.headers or []:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if name == ":status":
            result.status = int(value)
            continue
        if name in H2_FORBIDDEN or name in WATCHED or name == "te":
            result.headers.setdefault(name, []).append(value)
            result.lines.append(f"{name}: {value}")
        if name in result.captured:
            result.captured[name].append(value)
    result.framing = "none"
    result.body_bytes = stream.body


def _one(wire: _H2Wire, result: CaseResult, config: ProbeConfig) -> None:
    """One request, then (unless the server said GOAWAY) a second stream on the connection."""
    _record(result, wire.wait(wire.send(), config.timeout), config.capture)
    if wire.goaways or wire.eof:
        result.closed, result.close_kind, result.closed_after = True, "goaway" if wire.goaways else "fin", 0.0
        return
    result.closed = False
    try:
        nxt = wire.wait(wire.send(), config.timeout)
    except (CaseFailed, OSError, TimeoutError, wire.errors):
        result.next_request = "not-answered"
    else:
        result.next_request = "answered"
        result.next_status = next((int(v) for k, v in nxt.headers or [] if k == b":status"), None)


def _streams(wire: _H2Wire, result: CaseResult, config: ProbeConfig, total: int) -> None:
    """Keep ``H2_AT_ONCE`` streams open until ``total`` were sent or a GOAWAY came; read every
    stream to its end (or the connection's), then see whether the server closes."""
    counts = result.streams = StreamCounts(H2_AT_ONCE)
    deadline = time.monotonic() + config.timeout
    while True:
        while not wire.goaways and not wire.eof and counts.sent < total and _open(wire) < H2_AT_ONCE:
            try:
                wire.send()
            except (BrokenPipeError, ConnectionResetError):
                # The connection ended; what it carried was read (wire.eof is set).
                if wire.goaways and counts.before_goaway is None:
                    counts.before_goaway = sum(s.ended and s.reset is None for s in wire.streams.values())
                break
            counts.sent += 1
        if wire.eof or not _open(wire):
            break
        done = sum(s.done for s in wire.streams.values())
        had_goaway = bool(wire.goaways)
        wire.pump(deadline)
        if wire.goaways and not had_goaway:
            counts.before_goaway = sum(s.ended and s.reset is None for s in wire.streams.values())
        if sum(s.done for s in wire.streams.values()) > done:
            deadline = time.monotonic() + config.timeout  # progress: a fresh wait for the next response
    first = next((s for s in wire.streams.values() if s.ended and s.headers is not None), None)
    if first is not None:
        _record(result, first, config.capture)
        result.lines, result.headers = [], {n: [] for n in WATCHED}  # judged once, in the h2 case
    if wire.eof:
        result.closed = True
    elif wire.goaways:
        result.closed = wire.wait_closed(config.close_wait)
    else:
        result.closed = False
    if result.closed:
        result.close_kind = "goaway" if wire.goaways else "fin"


def _open(wire: _H2Wire) -> int:
    """Streams in flight that the server may still answer (not above a GOAWAY's last id)."""
    last = wire.last_stream_id
    return sum(1 for sid, s in wire.streams.items() if not s.done and sid <= last)


def _count(wire: _H2Wire, counts: StreamCounts) -> None:
    last = wire.last_stream_id
    for sid, stream in wire.streams.items():
        if stream.ended and stream.reset is None:
            counts.completed += 1
        elif stream.reset == REFUSED_STREAM or (sid > last and stream.headers is None):
            counts.refused += 1
        elif stream.reset is not None:
            counts.reset += 1
        elif wire.eof:
            counts.cut += 1
        else:
            counts.unanswered += 1


__all__ = ["h2_error", "import_h2", "run_h2_case"]
