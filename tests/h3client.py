"""A minimal HTTP/3 client on aioquic: requests on one QUIC connection, frames as received.

It reports, per request, the response headers and body exactly as aioquic's H3
layer delivered them, whether the stream ended, and every GOAWAY the server sent
on its control stream (aioquic's own client drops GOAWAY frames, so they are read
here from the raw control stream).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aioquic._buffer import Buffer, BufferReadError
from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, FrameType, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived, StreamReset


@dataclass
class H3Response:
    stream_id: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    ended: bool = False

    @property
    def status(self) -> int:
        return next((int(v) for k, v in self.headers if k == b":status"), 0)


class _Client(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.responses: dict[int, H3Response] = {}
        self.waiters: dict[int, asyncio.Future[H3Response]] = {}
        #: stream id -> bytes of the server's control stream (unidirectional, type 0x00)
        self.control = b""
        self.control_id: int | None = None
        self.goaways: list[int] = []
        self.terminated = False

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self.terminated = True
            for waiter in self.waiters.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError(f"connection closed: {event.reason_phrase}"))
        if isinstance(event, StreamReset):
            reset = self.waiters.get(event.stream_id)
            if reset is not None and not reset.done():
                reset.set_exception(ConnectionError(f"stream reset: error code 0x{event.error_code:x}"))
        if isinstance(event, StreamDataReceived) and event.stream_id % 4 == 3:
            self._read_control(event.stream_id, event.data)
        for h3_event in self.h3.handle_event(event):
            self._h3_event(h3_event)

    def _read_control(self, stream_id: int, data: bytes) -> None:
        if self.control_id is None:
            if not data or data[0] != 0x00:  # not the control stream (QPACK streams)
                return
            self.control_id = stream_id
            data = data[1:]
        elif stream_id != self.control_id:
            return
        self.control += data
        buf = Buffer(data=self.control)
        while not buf.eof():
            start = buf.tell()
            try:
                kind = buf.pull_uint_var()
                length = buf.pull_uint_var()
                payload = buf.pull_bytes(length)
            except BufferReadError:
                buf.seek(start)
                break
            if kind == FrameType.GOAWAY:
                self.goaways.append(Buffer(data=payload).pull_uint_var())
        self.control = self.control[buf.tell() :]

    def _h3_event(self, event: H3Event) -> None:
        stream_id = getattr(event, "stream_id", None)
        if stream_id not in self.responses:
            return
        resp = self.responses[stream_id]
        if isinstance(event, HeadersReceived):
            resp.headers += list(event.headers)
        elif isinstance(event, DataReceived):
            resp.body += event.data
        if getattr(event, "stream_ended", False):
            resp.ended = True
            waiter = self.waiters.get(stream_id)
            if waiter is not None and not waiter.done():
                waiter.set_result(resp)

    async def get(self, authority: str, path: str) -> H3Response:
        stream_id = self._quic.get_next_available_stream_id()
        self.responses[stream_id] = H3Response(stream_id)
        waiter: asyncio.Future[H3Response] = asyncio.get_running_loop().create_future()
        self.waiters[stream_id] = waiter
        headers = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", authority.encode())]
        self.h3.send_headers(stream_id, [*headers, (b":path", path.encode())], end_stream=True)
        self.transmit()
        return await asyncio.shield(waiter)


async def _fetch(
    port: int, paths: list[str], cafile: str, timeout: float, linger: float, concurrent: bool
) -> tuple[list[H3Response | str], list[int]]:
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    config.load_verify_locations(cafile)
    config.verify_mode = ssl.CERT_REQUIRED
    config.server_name = "localhost"
    out: list[H3Response | str] = []
    async with connect("127.0.0.1", port, configuration=config, create_protocol=_Client) as proto:
        client: _Client = proto  # type: ignore[assignment]

        async def one(path: str, delay: float = 0.0) -> H3Response | str:
            await asyncio.sleep(delay)
            try:
                return await asyncio.wait_for(client.get(f"localhost:{port}", path), timeout)
            except TimeoutError:
                return "timeout"
            except ConnectionError as exc:
                return str(exc)

        if concurrent:
            # "0.4 /path" starts that request 0.4 s after the others
            timed = [(float(p.split()[0]), p.split()[1]) if " " in p else (0.0, p) for p in paths]
            out += await asyncio.gather(*(one(p, d) for d, p in timed))
        else:
            for path in paths:
                out.append(await one(path))
        await asyncio.sleep(linger)
        return out, list(client.goaways)


def fetch(
    port: int,
    paths: list[str],
    *,
    cafile: str,
    timeout: float = 3.0,
    linger: float = 0.0,
    concurrent: bool = False,
) -> tuple[list[H3Response | str], list[int]]:
    """GET each path in turn on one HTTP/3 connection: (responses or "timeout", GOAWAY ids seen)."""
    return asyncio.run(_fetch(port, paths, cafile, timeout, linger, concurrent))


def write_tls(directory: Path) -> dict[str, str]:
    """A trustme CA and a certificate for ``localhost``: paths of ``ca``, ``cert``, ``key``."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    files = {name: str(directory / f"{name}.pem") for name in ("ca", "cert", "key")}
    ca.cert_pem.write_to_path(files["ca"])
    cert.cert_chain_pems[0].write_to_path(files["cert"])
    cert.private_key_pem.write_to_path(files["key"])
    return files


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
