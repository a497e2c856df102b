"""hypercorn HTTP/3 (``--quic-bind``, aioquic): the handle that retires its connections.

connmw's retirement (``connmw._goaway``) speaks HTTP/2 frames: a GOAWAY naming the
last stream id 2^31-1 and a PING, then a GOAWAY naming the real last stream id. This
handle turns them into their HTTP/3 equivalents on the QUIC connection.

Facts
-----
- RFC 9114 §5.2: the server sends GOAWAY on its control stream; it carries a client-
  initiated bidirectional stream id: requests on streams with that id or above were
  not processed (the client may retry them), those below may complete. Later GOAWAYs
  may only lower the id. A graceful shutdown first sends the largest id (2^62-4),
  then, after a round trip, the real one.
- RFC 9000 §2.1: client-initiated bidirectional stream ids are 0, 4, 8, ...; the
  engine counts streams in HTTP/2 terms (1, 3, 5, ...), so stream ``q`` is
  ``q // 2 + 1`` there and HTTP/2 last id ``n`` is the HTTP/3 GOAWAY id ``2 * (n + 1)``.
- RFC 9000 §19.2: a QUIC PING is acknowledged like any ack-eliciting frame; aioquic
  reports it as ``PingAcknowledged(uid)`` when sent with ``send_ping(uid)``.
- RFC 9114 §4.1.1: a request rejected with H3_REQUEST_REJECTED (0x10b) was not
  processed, the client may retry it.
- hypercorn (measured, 0.18): on HTTP/3 ``send.__self__`` is the stream, its
  ``.send.__self__`` the ``H3Protocol``: ``.connection`` is aioquic's ``H3Connection``,
  ``.send()`` transmits what the QUIC connection holds, ``.handle(event)`` receives
  every QUIC event, ``.streams`` holds a stream until its final frame is written.
  GOAWAY is reachable only through aioquic privates: ``H3Connection._quic`` and
  ``._local_control_stream_id``; the QUIC connection's streams are ``_streams``.
- aioquic's own client ignores GOAWAY and keeps sending on the connection: such
  requests above the announced id are rejected with H3_REQUEST_REJECTED.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .h2 import H2Handle

__all__ = ["HypercornH2orH3", "HypercornH3", "h2_to_h3_id", "h3_to_h2_id", "hypercorn_stream"]

#: The largest client-initiated bidirectional stream id (RFC 9000 §2.1, 62-bit ids).
MAX_H3_ID = 2**62 - 4
_MAX_H2_ID = 2**31 - 1
H3_NO_ERROR = 0x100
H3_REQUEST_REJECTED = 0x10B
_GOAWAY, _PING = 0x7, 0x6

_tasks: set[asyncio.Task[None]] = set()


def _spawn(coro: Any) -> None:
    task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def h3_to_h2_id(quic_id: int) -> int:
    """Client bidirectional QUIC stream 0, 4, 8, ... counted as HTTP/2 stream 1, 3, 5, ..."""
    return quic_id // 2 + 1


def h2_to_h3_id(last_id: int) -> int:
    """The HTTP/3 GOAWAY id (first stream not processed) for an HTTP/2 last stream id."""
    return MAX_H3_ID if last_id >= _MAX_H2_ID else 2 * (last_id + 1)


def _frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, flags, payload) of each whole HTTP/2 frame in ``data``."""
    out = []
    i = 0
    while i + 9 <= len(data):
        length = int.from_bytes(data[i : i + 3], "big")
        out.append((data[i + 3], data[i + 4], data[i + 9 : i + 9 + length]))
        i += 9 + length
    return out


def hypercorn_stream(send: Any) -> tuple[Any, Any]:
    """The protocol (the connection) and the stream id behind a hypercorn stream's
    ``send`` (HTTP/2 and HTTP/3 alike); either is None when ``send`` is not one."""
    stream = getattr(send, "__self__", None)
    return getattr(getattr(stream, "send", None), "__self__", None), getattr(stream, "stream_id", None)


class HypercornH3(H2Handle):
    """hypercorn's ``H3Protocol`` as connmw's connection object."""

    __slots__ = ()

    def locate(self, send: Any) -> tuple[Any, int] | None:
        protocol, stream_id = hypercorn_stream(send)
        h3 = getattr(protocol, "connection", None)
        if not isinstance(stream_id, int) or not hasattr(h3, "_local_control_stream_id"):
            return None
        return protocol, h3_to_h2_id(stream_id)

    def alive(self, conn: Any) -> bool:
        return getattr(conn.connection._quic, "_close_event", None) is None

    def highest_stream_id(self, conn: Any) -> int:
        ids = [q for q in conn.connection._quic._streams if q % 4 == 0]
        return h3_to_h2_id(max(ids)) if ids else 0

    def pending(self, conn: Any, last_id: int) -> bool:
        return any(h3_to_h2_id(q) <= last_id for q in list(conn.streams))

    def write(self, conn: Any, data: bytes) -> None:
        h3 = conn.connection
        quic = h3._quic
        from aioquic.buffer import encode_uint_var
        from aioquic.h3.connection import FrameType, encode_frame

        for kind, flags, payload in _frames(data):
            if kind == _GOAWAY:
                last = int.from_bytes(payload[:4], "big") & _MAX_H2_ID
                frame = encode_frame(FrameType.GOAWAY, encode_uint_var(h2_to_h3_id(last)))
                quic.send_stream_data(h3._local_control_stream_id, frame)
            elif kind == _PING and not flags & 0x1:
                quic.send_ping(int.from_bytes(payload[:8], "big"))
        _spawn(conn.send())

    def watch_ping(self, conn: Any, opaque: bytes, callback: Callable[[], None]) -> None:
        watched: dict[int, Callable[[], None]] | None = getattr(conn, "_connmw_pings", None)
        if watched is None:
            watched = {}
            original = conn.handle

            async def handle(event: Any) -> None:
                if type(event).__name__ == "PingAcknowledged":
                    found = watched.pop(getattr(event, "uid", -1), None)
                    if found is not None:
                        found()
                await original(event)

            conn.handle = handle
            conn._connmw_pings = watched
        watched[int.from_bytes(opaque, "big")] = callback

    def refuse(self, send: Any) -> None:
        stream = send.__self__
        stream.closed = True
        protocol = stream.send.__self__
        quic = protocol.connection._quic
        quic.reset_stream(stream.stream_id, H3_REQUEST_REJECTED)
        quic.stop_stream(stream.stream_id, H3_REQUEST_REJECTED)
        _spawn(protocol.send())

    def close(self, conn: Any) -> None:
        _spawn(_close(conn))


async def _close(conn: Any) -> None:
    # aioquic sends nothing but CONNECTION_CLOSE once closing: the final GOAWAY first.
    await conn.send()
    conn.connection._quic.close(error_code=H3_NO_ERROR)
    await conn.send()


class HypercornH2orH3(H2Handle):
    """hypercorn's HTTP/2 handle for ``H2Protocol`` connections, :class:`HypercornH3` for
    ``H3Protocol`` ones (both serve their streams through the same ``HTTPStream``)."""

    __slots__ = ("h2", "h3")

    def __init__(self, h2: H2Handle, h3: H2Handle) -> None:
        self.h2 = h2
        self.h3 = h3

    def _of(self, conn: Any) -> H2Handle:
        return self.h2 if hasattr(conn, "stream_buffers") else self.h3

    def locate(self, send: Any) -> tuple[Any, int] | None:
        return self.h2.locate(send) or self.h3.locate(send)

    def alive(self, conn: Any) -> bool:
        return self._of(conn).alive(conn)

    def highest_stream_id(self, conn: Any) -> int:
        return self._of(conn).highest_stream_id(conn)

    def pending(self, conn: Any, last_id: int) -> bool:
        return self._of(conn).pending(conn, last_id)

    def write(self, conn: Any, data: bytes) -> None:
        self._of(conn).write(conn, data)

    def watch_ping(self, conn: Any, opaque: bytes, callback: Callable[[], None]) -> None:
        self._of(conn).watch_ping(conn, opaque, callback)

    def refuse(self, send: Any) -> None:
        found = self.h2.locate(send)
        (self.h2 if found is not None else self.h3).refuse(send)

    def close(self, conn: Any) -> None:
        self._of(conn).close(conn)
