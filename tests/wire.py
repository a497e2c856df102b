"""A raw-socket HTTP/1.x client that reports the bytes on the wire.

No HTTP library in between: the header lines are kept exactly as received, and
whether the server closed the connection is checked on the socket itself.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

DEFAULT_TIMEOUT = 5.0


@dataclass
class Response:
    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes
    chunked: bool = False
    chunks: list[bytes] = field(default_factory=list)

    def lines(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in order."""
        low = name.lower()
        return [v for k, v in self.headers if k.lower() == low]

    def header(self, name: str) -> str | None:
        values = self.lines(name)
        return values[0] if values else None


def connect(port: int, host: str = "127.0.0.1", timeout: float = DEFAULT_TIMEOUT) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def build_request(
    method: str = "GET",
    path: str = "/",
    *,
    version: str = "HTTP/1.1",
    headers: list[tuple[str, str]] | None = None,
    host: str = "127.0.0.1",
    body: bytes = b"",
) -> bytes:
    lines = [f"{method} {path} {version}", f"Host: {host}"]
    for name, value in headers or ():
        lines.append(f"{name}: {value}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Reader:
    """Buffers what the socket sends so several responses can be read in turn."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.eof = False

    def _fill(self) -> bool:
        if self.eof:
            return False
        data = self.sock.recv(65536)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            if not self._fill():
                raise EOFError(f"connection closed before {marker!r}; got {self.buf!r}")
        head, _, self.buf = self.buf.partition(marker)
        return head

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"connection closed after {len(self.buf)} of {n} bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_to_eof(self) -> bytes:
        while self._fill():
            pass
        out, self.buf = self.buf, b""
        return out

    def read_response(self, method: str = "GET") -> Response:
        head = self.read_until(b"\r\n\r\n")
        while head.startswith(b"HTTP/1.1 100") or head.startswith(b"HTTP/1.0 100"):
            head = self.read_until(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        version, code, *rest = status_line.split(" ", 2)
        headers = []
        for line in header_lines:
            name, _, value = line.partition(":")
            headers.append((name, value.strip()))
        status = int(code)
        resp = Response(status, rest[0] if rest else "", version, headers, b"", head)
        te = ",".join(resp.lines("transfer-encoding")).lower()
        cl = resp.header("content-length")
        if method == "HEAD" or status < 200 or status in (204, 304):
            return resp
        if "chunked" in te:
            resp.chunked = True
            body = b""
            while True:
                size_line = self.read_until(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    self.read_until(b"\r\n")  # trailers end
                    break
                chunk = self.read_exact(size)
                resp.chunks.append(chunk)
                body += chunk
                self.read_exact(2)
            resp.body = body
        elif cl is not None:
            resp.body = self.read_exact(int(cl))
        else:
            resp.body = self.read_to_eof()
        return resp

    def closed(self, timeout: float = 2.0) -> bool:
        """True when the peer closes (recv returns b"") within ``timeout``, False when
        it is still open then. Bytes the peer sends after the responses read so far
        (a stray body, a response nobody asked for) fail the test: a closing
        connection sends nothing else."""
        if self.buf:
            raise AssertionError(f"unexpected bytes after the last response: {self.buf[:200]!r}")
        if self.eof:
            return True
        deadline = time.monotonic() + timeout
        old = self.sock.gettimeout()
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.sock.settimeout(left)
                try:
                    data = self.sock.recv(65536)
                except TimeoutError:
                    return False
                except ConnectionResetError:
                    self.eof = True
                    return True
                if not data:
                    self.eof = True
                    return True
                self.buf += data
                raise AssertionError(f"unexpected bytes after the last response: {data[:200]!r}")
        finally:
            self.sock.settimeout(old)


def exchange(
    port: int,
    method: str = "GET",
    path: str = "/",
    *,
    version: str = "HTTP/1.1",
    headers: list[tuple[str, str]] | None = None,
    check_close: bool = True,
    close_timeout: float = 2.0,
) -> tuple[Response, bool | None, Reader]:
    """One request on a fresh connection; returns the response, whether the server
    closed the connection, and the reader (still open when it did not close)."""
    sock = connect(port)
    reader = Reader(sock)
    sock.sendall(build_request(method, path, version=version, headers=headers))
    resp = reader.read_response(method)
    closed = reader.closed(close_timeout) if check_close else None
    return resp, closed, reader


def still_open(reader: Reader, path: str = "/", version: str = "HTTP/1.1") -> bool:
    """True when a second request on the same connection is answered."""
    try:
        reader.sock.sendall(build_request("GET", path, version=version))
        reader.read_response("GET")
    except (OSError, EOFError):
        return False
    return True


def expect(port: int, method: str, path: str, *, close: bool, status: int = 200) -> Response:
    """One request on a fresh connection, checked on the wire: with ``close``, exactly
    one ``Connection: close`` line and the server really closes; without, no
    ``Connection`` line and a second request on the same connection is answered."""
    resp, _, reader = exchange(port, method, path, check_close=False)
    try:
        assert resp.status == status, (path, resp.status)
        if close:
            assert resp.lines("connection") == ["close"], path
            assert reader.closed(5.0), f"{path}: the server should have closed the connection"
        else:
            assert resp.lines("connection") == [], path
            assert still_open(reader), f"{path}: the connection should stay open"
    finally:
        reader.sock.close()
    return resp
