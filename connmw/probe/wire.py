"""The HTTP/1.x wire client: a plain (or TLS) socket, responses read byte by byte."""

from __future__ import annotations

import re
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .cases import (
    BODY_METHODS,
    MAX_HEAD,
    USER_AGENT,
    WATCHED,
    CaseFailed,
    CaseSpec,
    ProbeConfig,
    ProbeError,
    Target,
    tokens,
)
from .findings import evaluate
from .results import CaseResult


def _tls_context(config: ProbeConfig, alpn: list[str] | None = None) -> ssl.SSLContext:
    if config.insecure:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=config.cafile)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def open_connection(target: Target, config: ProbeConfig, alpn: list[str] | None = None) -> socket.socket:
    """A connected (and, for https, TLS-wrapped) socket; :class:`ProbeError` when impossible."""
    where = f"{target.host}:{target.port}"
    try:
        sock = socket.create_connection((target.host, target.port), timeout=config.timeout)
    except socket.gaierror as exc:
        raise ProbeError(f"cannot resolve {target.host}: {exc.strerror or exc}") from None
    except ConnectionRefusedError:
        raise ProbeError(f"connection refused by {where}") from None
    except TimeoutError:
        raise ProbeError(f"timed out after {config.timeout:g} s connecting to {where}") from None
    except OSError as exc:
        raise ProbeError(f"cannot connect to {where}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if target.tls:
            ctx = _tls_context(config, alpn)
            sock = ctx.wrap_socket(sock, server_hostname=target.host)
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        raise ProbeError(
            f"TLS certificate check failed for {target.host}: {exc.verify_message} "
            "(--insecure skips the check, --cacert FILE trusts another CA)"
        ) from None
    except TimeoutError:
        sock.close()
        raise ProbeError(f"timed out after {config.timeout:g} s in the TLS handshake with {where}") from None
    except OSError as exc:
        sock.close()
        raise ProbeError(f"TLS handshake with {where} failed: {exc}") from None
    return sock


def remaining(deadline: float) -> float:
    """Seconds left before ``deadline``; a past deadline makes the next ``recv`` time out at once."""
    return max(deadline - time.monotonic(), 0.001)


class _Wire:
    """A socket with a buffer and deadlines; bodies are counted, never stored."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.eof = False

    def _fill(self, deadline: float) -> None:
        self.sock.settimeout(remaining(deadline))
        data = self.sock.recv(65536)
        if not data:
            self.eof = True
            raise CaseFailed("the server closed the connection in the middle of a response")
        self.buf += data

    def read_until(self, marker: bytes, deadline: float, limit: int) -> bytes:
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out = self.buf[:i]
                self.buf = self.buf[i + len(marker) :]
                return out
            if len(self.buf) > limit:
                raise CaseFailed(f"no end of line within {limit} bytes")
            self._fill(deadline)

    def skip(self, n: int, deadline: float) -> None:
        while n > 0:
            if not self.buf:
                self._fill(deadline)
            take = min(n, len(self.buf))
            self.buf = self.buf[take:]
            n -= take

    def skip_to_eof(self, deadline: float) -> int:
        total = len(self.buf)
        self.buf = b""
        while not self.eof:
            self.sock.settimeout(remaining(deadline))
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                self.eof = True
            total += len(data)
        return total

    def wait_closed(self, wait: float) -> tuple[str | None, float]:
        """``("fin" | "reset" | None, seconds)``: whether the peer closes within ``wait``."""
        start = time.monotonic()
        deadline = start + wait
        while True:
            self.sock.settimeout(remaining(deadline))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return None, wait
            except OSError:
                self.eof = True
                return "reset", time.monotonic() - start
            if not data:
                self.eof = True
                return "fin", time.monotonic() - start
            self.buf += data


@dataclass
class _Response:
    status: int
    version: str
    raw: list[tuple[str, str, str]]  # (name as sent, lowercase name, value)
    framing: str = "none"
    body_bytes: int = 0


def _request_bytes(target: Target, config: ProbeConfig, spec: CaseSpec) -> bytes:
    lines = [f"{config.method} {spec.path or target.path} {spec.protocol}"]
    names = {n.lower() for n, _ in config.headers}
    if "host" not in names:
        lines.append(f"Host: {target.authority}")
    if "user-agent" not in names:
        lines.append(f"User-Agent: {USER_AGENT}")
    if "accept" not in names:
        lines.append("Accept: */*")
    lines.extend(f"{n}: {v}" for n, v in config.headers)
    if spec.connection is not None:
        lines.append(f"Connection: {spec.connection}")
    if config.method.upper() in BODY_METHODS:
        lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _read_response(wire: _Wire, method: str, timeout: float) -> _Response:
    deadline = time.monotonic() + timeout
    while True:
        head = wire.read_until(b"\r\n\r\n", deadline, MAX_HEAD)
        text = head.decode("latin-1")
        status_line, *header_lines = text.split("\r\n")
        m = re.match(r"^(HTTP/\d(?:\.\d)?) (\d{3})(?: |$)", status_line)
        if m is None:
            raise CaseFailed(f"not an HTTP/1.x response: {status_line[:80]!r}")
        status = int(m.group(2))
        if 100 <= status < 200 and status != 101:
            continue
        break
    raw: list[tuple[str, str, str]] = []
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            raw.append((name, name.strip().lower(), value.strip(" \t")))
    resp = _Response(status, m.group(1), raw)
    te = tokens(v for _, n, v in raw if n == "transfer-encoding")
    lengths = {v for _, n, v in raw if n == "content-length"}
    if method.upper() == "HEAD" or status < 200 or status in (204, 304):
        resp.framing = "none"
    elif te:
        if te[-1] == "chunked":
            resp.framing = "chunked"
            resp.body_bytes = _skip_chunked(wire, deadline)
        else:
            resp.framing = "close"
            resp.body_bytes = wire.skip_to_eof(deadline)
    elif lengths:
        if len(lengths) != 1 or not next(iter(lengths)).isdigit():
            raise CaseFailed(f"unusable Content-Length: {sorted(lengths)}")
        resp.framing = "content-length"
        resp.body_bytes = int(next(iter(lengths)))
        wire.skip(resp.body_bytes, deadline)
    else:
        resp.framing = "close"
        resp.body_bytes = wire.skip_to_eof(deadline)
    return resp


def _skip_chunked(wire: _Wire, deadline: float) -> int:
    total = 0
    while True:
        size_line = wire.read_until(b"\r\n", deadline, 4096)
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise CaseFailed(f"bad chunk size line {size_line[:40]!r}") from None
        if size == 0:
            while wire.read_until(b"\r\n", deadline, MAX_HEAD):
                pass  # trailer lines
            return total
        wire.skip(size + 2, deadline)
        total += size


def _record(result: CaseResult, resp: _Response, capture: Sequence[str]) -> None:
    result.status = resp.status
    result.response_version = resp.version
    result.headers = {n: [] for n in WATCHED}
    result.lines = []
    result.captured = {n: [] for n in capture}
    for name, low, value in resp.raw:
        if low in result.headers:
            result.headers[low].append(value)
            result.lines.append(f"{name}: {value}")
        if low in result.captured:
            result.captured[low].append(value)
    result.framing = resp.framing
    result.body_bytes = resp.body_bytes


def run_h1_case(target: Target, config: ProbeConfig, spec: CaseSpec) -> CaseResult:
    """Run one HTTP/1.x case on a fresh connection. Connection failures raise :class:`ProbeError`."""
    result = CaseResult(spec)
    start = time.monotonic()
    sock = open_connection(target, config)
    wire = _Wire(sock)
    request = _request_bytes(target, config, spec)
    try:
        for i in range(spec.requests):
            try:
                sock.sendall(request)
                resp = _read_response(wire, config.method, config.timeout)
            except (CaseFailed, OSError) as exc:
                if i == 0 or isinstance(exc, TimeoutError):
                    raise
                # The server closed (FIN or reset) after an earlier response.
                detail = (
                    str(exc) if isinstance(exc, CaseFailed) else f"connection error: {exc.strerror or exc}"
                )
                raise CaseFailed(f"request {i + 1} of {spec.requests} on the connection: {detail}") from None
            _record(result, resp, config.capture)
        if resp.framing == "close":
            result.closed, result.close_kind, result.closed_after = True, "fin", 0.0
        else:
            kind, after = wire.wait_closed(config.close_wait)
            result.closed = kind is not None
            result.close_kind = kind
            result.closed_after = after if kind is not None else None
            if kind is None:
                try:
                    sock.sendall(request)
                    nxt = _read_response(wire, config.method, config.timeout)
                except (CaseFailed, OSError):
                    result.next_request = "not-answered"
                else:
                    result.next_request = "answered"
                    result.next_status = nxt.status
    except TimeoutError:
        result.error = f"no complete response within {config.timeout:g} s"
    except CaseFailed as exc:
        result.error = str(exc)
    except OSError as exc:
        result.error = f"connection error: {exc.strerror or exc}"
    finally:
        sock.close()
    result.elapsed = time.monotonic() - start
    result.findings = evaluate(spec, result, config.close_wait)
    return result
