"""A small HTTP/2 client on a raw socket (h2c prior knowledge or TLS with ALPN).

It reports the header block of each response exactly as decoded, the body, and
whether the connection was terminated (GOAWAY, EOF or a reset) along the way.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events


@dataclass
class H2Response:
    stream_id: int
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    ended: bool = False
    reset: int | None = None

    def names(self) -> list[bytes]:
        return [k.lower() for k, _ in self.headers]


class H2Client:
    def __init__(self, port: int, ssl_context: ssl.SSLContext | None = None, timeout: float = 5.0) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.scheme = b"http"
        self.sock: socket.socket = raw
        if ssl_context is not None:
            self.sock = ssl_context.wrap_socket(raw, server_hostname="localhost")
            self.scheme = b"https"
            if self.sock.selected_alpn_protocol() != "h2":
                raise AssertionError(f"ALPN chose {self.sock.selected_alpn_protocol()!r}, not h2")
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        self.terminated = False
        self.eof = False
        self.sock.sendall(self.conn.data_to_send())

    def close(self) -> None:
        self.sock.close()

    def request(self, *paths: str) -> list[H2Response]:
        """Send one GET per path, all at once, and read the responses."""
        pending: dict[int, H2Response] = {}
        order = []
        for path in paths:
            sid = self.conn.get_next_available_stream_id()
            headers = [
                (b":method", b"GET"),
                (b":path", path.encode()),
                (b":scheme", self.scheme),
                (b":authority", b"127.0.0.1"),
            ]
            self.conn.send_headers(sid, headers, end_stream=True)
            pending[sid] = H2Response(sid)
            order.append(sid)
        self.sock.sendall(self.conn.data_to_send())
        while any(not (r.ended or r.reset is not None) for r in pending.values()):
            if self.terminated or self.eof:
                break
            try:
                data = self.sock.recv(65536)
            except (ConnectionError, ssl.SSLError):
                data = b""
            if not data:
                self.eof = True
                break
            for event in self.conn.receive_data(data):
                resp = pending.get(getattr(event, "stream_id", 0) or 0)
                if isinstance(event, h2.events.ResponseReceived) and resp is not None:
                    for name, value in event.headers:
                        if name == b":status":
                            resp.status = int(value)
                        else:
                            resp.headers.append((name, value))
                elif isinstance(event, h2.events.DataReceived):
                    if resp is not None:
                        resp.body += event.data
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded) and resp is not None:
                    resp.ended = True
                elif isinstance(event, h2.events.StreamReset) and resp is not None:
                    resp.reset = event.error_code
                elif isinstance(event, h2.events.ConnectionTerminated):
                    self.terminated = True
            out = self.conn.data_to_send()
            if out:
                self.sock.sendall(out)
        return [pending[sid] for sid in order]
