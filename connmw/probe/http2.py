"""The HTTP/2 wire client, on the ``h2`` package (imported only when an HTTP/2 case runs)."""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any

from .cases import H2_FORBIDDEN, USER_AGENT, WATCHED, CaseFailed, CaseSpec, ProbeConfig, Target, UsageError
from .findings import evaluate
from .results import CaseResult
from .wire import open_connection, remaining


def import_h2() -> Any:
    try:
        import h2.config
        import h2.connection
        import h2.events
        import h2.exceptions
    except ImportError:
        raise UsageError('--http2 needs the h2 package: pip install "connmw[probe]" (or h2)') from None
    return h2


def run_h2_case(target: Target, config: ProbeConfig, spec: CaseSpec) -> CaseResult:
    h2 = import_h2()
    result = CaseResult(spec)
    start = time.monotonic()
    sock = open_connection(target, config, alpn=["h2"])
    state: dict[str, Any] = {"ended": False, "frames": False}
    try:
        if isinstance(sock, ssl.SSLSocket) and sock.selected_alpn_protocol() != "h2":
            raise CaseFailed("the server did not negotiate HTTP/2 (ALPN h2)")
        conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(
                client_side=True, header_encoding=None, validate_inbound_headers=False
            )
        )
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        request: list[tuple[bytes, bytes]] = [
            (b":method", config.method.encode("latin-1")),
            (b":scheme", target.scheme.encode()),
            (b":authority", target.authority.encode("idna")),
            (b":path", (spec.path or target.path).encode("latin-1")),
        ]
        names = {n.lower() for n, _ in config.headers}
        if "user-agent" not in names:
            request.append((b"user-agent", USER_AGENT.encode()))
        for name, value in config.headers:
            if name.lower() != "host":
                request.append((name.lower().encode("latin-1"), value.encode("latin-1")))
        try:
            headers = _h2_exchange(h2, sock, conn, 1, request, config.timeout, state)
        except h2.exceptions.ProtocolError as exc:
            if state["frames"]:
                raise CaseFailed(f"HTTP/2 protocol error in the server's frames: {exc}") from None
            raise CaseFailed(f"{_NO_H2} ({exc})") from None
        result.response_version = "HTTP/2"
        result.headers = {n: [] for n in WATCHED}
        result.captured = {n: [] for n in config.capture}
        for raw_name, raw_value in headers:
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
        result.body_bytes = state.get("body", 0)
        if state.get("terminated"):
            result.closed, result.close_kind, result.closed_after = True, "goaway", 0.0
        else:
            result.closed = False
            try:
                _h2_exchange(h2, sock, conn, 3, request, config.timeout, state)
            except (CaseFailed, OSError, TimeoutError, h2.exceptions.ProtocolError):
                result.next_request = "not-answered"
            else:
                result.next_request = "answered"
                result.next_status = state.get("status")
    except TimeoutError:
        result.error = f"no complete HTTP/2 response within {config.timeout:g} s"
    except CaseFailed as exc:
        result.error = str(exc)
    except OSError as exc:
        what = "connection error" if state["frames"] else _NO_H2
        result.error = f"{what}: {exc.strerror or exc}"
    finally:
        sock.close()
    result.elapsed = time.monotonic() - start
    result.findings = evaluate(spec, result, config.close_wait)
    return result


_NO_H2 = "the server does not speak HTTP/2 with prior knowledge"


def _h2_exchange(
    h2: Any,
    sock: socket.socket,
    conn: Any,
    stream_id: int,
    request: list[tuple[bytes, bytes]],
    timeout: float,
    state: dict[str, Any],
) -> list[tuple[bytes, bytes]]:
    """Send one request on ``stream_id`` and read its response headers and body."""
    ev = h2.events
    conn.send_headers(stream_id, request, end_stream=True)
    sock.sendall(conn.data_to_send())
    deadline = time.monotonic() + timeout
    headers: list[tuple[bytes, bytes]] | None = None
    state["body"] = 0
    while True:
        sock.settimeout(remaining(deadline))
        data = sock.recv(65536)
        if not data:
            state["terminated"] = True
            if not state["frames"]:
                raise CaseFailed(f"{_NO_H2} (it closed the connection)")
            raise CaseFailed("the server closed the HTTP/2 connection before the response ended")
        if not state.get("checked"):
            state["checked"] = True
            state["frames"] = data[3:4] == b"\x04"  # an HTTP/2 server's first frame is SETTINGS
        events = conn.receive_data(data)
        for event in events:
            if isinstance(event, ev.ResponseReceived) and event.stream_id == stream_id:
                headers = list(event.headers)
                state["status"] = next((int(v) for k, v in headers if k == b":status"), None)
            elif isinstance(event, ev.DataReceived):
                if event.stream_id == stream_id:
                    state["body"] += len(event.data)
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, ev.StreamReset) and event.stream_id == stream_id:
                raise CaseFailed(f"the server reset the stream (error code {event.error_code})")
            elif isinstance(event, ev.ConnectionTerminated):
                state["terminated"] = True
                if headers is None:
                    raise CaseFailed(f"the server sent GOAWAY (error code {event.error_code})")
            elif isinstance(event, ev.StreamEnded) and event.stream_id == stream_id:
                state["ended"] = True
        sock.sendall(conn.data_to_send())
        if state.get("ended") and headers is not None:
            state["ended"] = False
            return headers
