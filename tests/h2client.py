"""A minimal HTTP/2 client (prior knowledge or TLS with ALPN) on the ``h2`` library.

It sends requests on one connection and reports, per stream, the exact response
headers and body, and whether the connection survived (GOAWAY, reset, EOF).
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions


@dataclass
class H2Response:
    stream_id: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    ended: bool = False
    reset: bool = False

    @property
    def status(self) -> int:
        for k, v in self.headers:
            if k == b":status":
                return int(v)
        return 0


class H2Client:
    def __init__(
        self, port: int, *, tls: bool = False, host: str = "127.0.0.1", timeout: float = 5.0
    ) -> None:
        raw = socket.create_connection((host, port), timeout=timeout)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            self.sock: socket.socket = ctx.wrap_socket(raw, server_hostname=host)
        else:
            self.sock = raw
        self.host = host
        self.scheme = "https" if tls else "http"
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())
        self.terminated = False
        self.protocol_error = False
        self.eof = False
        self.responses: dict[int, H2Response] = {}

    def request(
        self, path: str = "/", method: str = "GET", headers: list[tuple[str, str]] | None = None
    ) -> H2Response:
        stream_id = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":path", path), (":scheme", self.scheme), (":authority", self.host)]
        hdrs += headers or []
        self.conn.send_headers(stream_id, hdrs, end_stream=True)
        self.sock.sendall(self.conn.data_to_send())
        resp = self.responses.setdefault(stream_id, H2Response(stream_id))
        deadline = time.monotonic() + 5.0
        while not (resp.ended or resp.reset or self.terminated or self.eof) and time.monotonic() < deadline:
            self._pump()
        return resp

    def _pump(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (TimeoutError, ssl.SSLError, ConnectionResetError):
            self.eof = True
            return
        if not data:
            self.eof = True
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.protocol_error = True
            self.terminated = True
            return
        for event in events:
            if isinstance(event, h2.events.ResponseReceived):
                self.responses.setdefault(event.stream_id, H2Response(event.stream_id)).headers = list(
                    event.headers
                )
            elif isinstance(event, h2.events.DataReceived):
                self.responses.setdefault(event.stream_id, H2Response(event.stream_id)).body += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.responses.setdefault(event.stream_id, H2Response(event.stream_id)).ended = True
            elif isinstance(event, h2.events.StreamReset):
                self.responses.setdefault(event.stream_id, H2Response(event.stream_id)).reset = True
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.terminated = True
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def close(self) -> None:
        try:
            self.conn.close_connection()
            self.sock.sendall(self.conn.data_to_send())
        except Exception:
            pass
        self.sock.close()
