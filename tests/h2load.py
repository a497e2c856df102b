"""An HTTP/2 load client on the ``h2`` library that follows RFC 9113 §6.8.

It keeps ``concurrency`` requests in flight over one connection at a time. On a
GOAWAY it stops opening streams on that connection and opens the next one at
once; streams above the announced last stream id were not processed and are
retried on the next connection; streams at or below it are waited for. GOAWAY
frames are taken out of the byte stream before h2 sees them: h2 would otherwise
move the whole connection to CLOSED and drop the streams that may still complete
(python-hyper/h2#1181).

A request fails when its connection ends (EOF, reset, a stall with streams open
after a GOAWAY) before its response ended, or on a stream reset other than
REFUSED_STREAM. Every outcome is recorded: status, body, connection number.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events

_GOAWAY = 0x7
_REFUSED_STREAM = 0x7


@dataclass
class GoawaySeen:
    conn: int
    last_stream_id: int
    error_code: int
    debug: bytes
    at: float


@dataclass
class Outcome:
    status: int = 0
    body: bytes = b""
    conn: int = 0
    error: str = ""


@dataclass
class LoadResult:
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    connections: int = 0
    retried: int = 0
    goaways: list[GoawaySeen] = field(default_factory=list)
    #: Seconds from a connection's first GOAWAY to the next connection's first request.
    moved_after: list[float] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def failed(self) -> list[int]:
        return sorted(i for i, o in self.outcomes.items() if o.error or o.status == 0)


class _Conn:
    def __init__(
        self, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, scheme: bytes
    ):
        self.number = number
        self.reader = reader
        self.writer = writer
        self.scheme = scheme
        self.h2 = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.h2.initiate_connection()
        self.writer.write(self.h2.data_to_send())
        self.going_away = False
        self.last_id: int | None = None
        self.first_goaway: float | None = None
        self.closed = False
        self.streams: dict[int, tuple[asyncio.Future[tuple[int, bytes]], list[bytes], list[int]]] = {}
        self._buf = b""

    def start(self, path: str) -> asyncio.Future[tuple[int, bytes]]:
        sid = self.h2.get_next_available_stream_id()
        headers = [(b":method", b"GET"), (b":path", path.encode()), (b":scheme", self.scheme)]
        headers.append((b":authority", b"127.0.0.1"))
        self.h2.send_headers(sid, headers, end_stream=True)
        self.writer.write(self.h2.data_to_send())
        future: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self.streams[sid] = (future, [], [0])
        return future

    def _split(self, data: bytes) -> bytes:
        """Take GOAWAY frames out of the byte stream; return the rest for h2."""
        self._buf += data
        out = []
        buf = self._buf
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            frame, buf = buf[: 9 + length], buf[9 + length :]
            if frame[3] == _GOAWAY:
                last, code = struct.unpack("!II", frame[9:17])
                self._goaway(last & 0x7FFFFFFF, code, frame[17:])
            else:
                out.append(frame)
        self._buf = buf
        return b"".join(out)

    def _goaway(self, last: int, code: int, debug: bytes) -> None:
        self.going_away = True
        if self.first_goaway is None:
            self.first_goaway = time.monotonic()
        self.on_goaway(GoawaySeen(self.number, last, code, debug, time.monotonic()))
        self.last_id = last if self.last_id is None else min(last, self.last_id)
        for sid in [s for s in self.streams if s > last]:
            future, _, _ = self.streams.pop(sid)
            if not future.done():
                future.set_exception(_Refused())

    on_goaway: Callable[[GoawaySeen], None] = staticmethod(lambda g: None)

    async def run(self, stall: float) -> None:
        """Read until the connection ends or, after a GOAWAY, every stream is done."""
        try:
            while not self.closed:
                if self.going_away and not self.streams:
                    break
                timeout = stall if self.going_away else 10.0
                try:
                    data = await asyncio.wait_for(self.reader.read(65536), timeout)
                except (TimeoutError, asyncio.TimeoutError):
                    self._fail_all("stalled after GOAWAY" if self.going_away else "no data for 10 s")
                    break
                except (ConnectionError, ssl.SSLError, OSError) as exc:
                    self._fail_all(f"connection error: {exc!r}")
                    break
                if not data:
                    self._fail_all("EOF")
                    break
                try:
                    events = self.h2.receive_data(self._split(data))
                except Exception as exc:  # a protocol error ends the connection
                    self._fail_all(f"h2 error: {exc!r}")
                    break
                for event in events:
                    self._event(event)
                out = self.h2.data_to_send()
                if out:
                    self.writer.write(out)
        finally:
            self.closed = True
            self._fail_all("connection closed")
            self.writer.close()

    def _event(self, event: h2.events.Event) -> None:
        sid = getattr(event, "stream_id", None)
        entry = self.streams.get(sid) if sid else None
        if isinstance(event, h2.events.ResponseReceived) and entry is not None:
            entry[2][0] = int(dict(event.headers).get(b":status", b"0"))
        elif isinstance(event, h2.events.DataReceived):
            if entry is not None:
                entry[1].append(event.data)
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded) and entry is not None:
            del self.streams[event.stream_id]
            if not entry[0].done():
                entry[0].set_result((entry[2][0], b"".join(entry[1])))
        elif isinstance(event, h2.events.StreamReset) and entry is not None:
            del self.streams[event.stream_id]
            if not entry[0].done():
                refused = event.error_code == _REFUSED_STREAM
                entry[0].set_exception(_Refused() if refused else _Failed(f"reset {event.error_code!r}"))
        elif isinstance(event, h2.events.ConnectionTerminated):  # pragma: no cover - GOAWAY is split off
            self.going_away = True

    def _fail_all(self, why: str) -> None:
        for future, _, _ in self.streams.values():
            if not future.done():
                future.set_exception(_Failed(why))
        self.streams.clear()


class _Refused(Exception):
    """Not processed by the server (above the last stream id, or REFUSED_STREAM)."""


class _Failed(Exception):
    pass


async def run_load(
    port: int,
    requests: int,
    *,
    concurrency: int = 8,
    ssl_context: ssl.SSLContext | None = None,
    path: Callable[[int], str] = lambda i: f"/load/{i}",
    stall: float = 1.0,
    attempts: int = 3,
    deadline: float = 30.0,
) -> LoadResult:
    """Send ``requests`` GETs, ``concurrency`` at a time, as described above."""
    result = LoadResult()
    state: dict[str, _Conn | None] = {"conn": None}
    readers: list[asyncio.Task[None]] = []
    opening: asyncio.Lock = asyncio.Lock()
    last_goaway: list[float] = []

    def on_goaway(seen: GoawaySeen) -> None:
        result.goaways.append(seen)
        if not last_goaway:
            last_goaway.append(seen.at)

    async def connection() -> _Conn:
        async with opening:
            conn = state["conn"]
            if conn is not None and not conn.going_away and not conn.closed:
                return conn
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=ssl_context, server_hostname="localhost" if ssl_context else None
            )
            if ssl_context is not None:
                alpn = writer.get_extra_info("ssl_object").selected_alpn_protocol()
                assert alpn == "h2", f"ALPN chose {alpn!r}"
            result.connections += 1
            conn = _Conn(result.connections, reader, writer, b"https" if ssl_context else b"http")
            conn.on_goaway = on_goaway
            if last_goaway:
                result.moved_after.append(time.monotonic() - last_goaway.pop())
            state["conn"] = conn
            readers.append(asyncio.create_task(conn.run(stall)))
            return conn

    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            outcome = Outcome()
            for _ in range(attempts):
                conn = await connection()
                try:
                    status, body = await conn.start(path(i))
                except _Refused:
                    result.retried += 1
                    continue
                except _Failed as exc:
                    outcome = Outcome(conn=conn.number, error=str(exc))
                    break
                outcome = Outcome(status, body, conn.number)
                break
            else:
                outcome.error = f"refused {attempts} times"
            result.outcomes[i] = outcome

    start = time.monotonic()
    try:
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(requests))), deadline)
    finally:
        result.elapsed = time.monotonic() - start
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    return result


def load(port: int, requests: int, **kw: object) -> LoadResult:
    """:func:`run_load` from synchronous code (a fresh event loop)."""
    return asyncio.run(run_load(port, requests, **kw))  # type: ignore[arg-type]
