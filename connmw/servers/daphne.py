"""daphne (Twisted).

Facts (measured; the conformance suite is the source of truth)
-----
- daphne hands ``send`` over as ``functools.partial(server.handle_reply, request)``.
- Twisted decides persistence from the request alone (``channel.persistent``), so
  an application's ``Connection: close`` goes out but the connection stays open;
  clearing ``channel.persistent`` before the response ends makes Twisted close.
- When the client sent ``close``, Twisted has already put its own
  ``Connection: close`` in ``request.responseHeaders`` (a second line would follow).
- The idle timeout between requests is Twisted's ``HTTPFactory.timeOut`` (60 s;
  daphne does not change it; its ``--http-timeout`` bounds a response, not idle
  time), copied onto each channel; while a request is being answered the
  channel's own ``timeOut`` is suspended (None), so it is read from the factory,
  ``request.channel.factory.timeOut``.
- HTTP/2 (TLS with ALPN): the request's ``channel`` is Twisted's ``H2Stream``
  (``.streamID``), its ``._conn`` the ``H2Connection`` (``.conn`` the h2 connection,
  ``.streams`` until a stream's last frame is written, ``.transport``). Control
  frames queue behind a blocked transport (``._consumerBlocked``,
  ``._bufferedControlFrames``): frames connmw writes take the same queue.
- An application that returns without a response gets nothing written: daphne
  answers only on a timeout, and HTTP/2 has none by default.
- On SIGTERM daphne sends no GOAWAY and kills requests in flight.
- Twisted's TLS transport closes on ``loseConnection()`` only once no producer is
  registered on it, and the HTTP channel stays registered for the connection's life:
  ``unregisterProducer()`` after ``loseConnection()`` lets it close.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import AsgiProfile, number, reachable
from .h2 import H2Handle, h2_open_at_or_below, h2_retiring

__all__ = ["DAPHNE"]


class _DaphneProfile(AsgiProfile):
    __slots__ = ()
    idle_setting = "Twisted HTTPFactory.timeOut"

    def idle_timeout(self, send: Any) -> float | None:
        for request in reachable(send):
            factory = getattr(getattr(request, "channel", None), "factory", None)
            if factory is not None:
                return number(getattr(factory, "timeOut", None))
        return None

    def close(self, send: Any) -> bool:
        for request in reachable(send):
            channel = getattr(request, "channel", None)
            headers = getattr(request, "responseHeaders", None)
            if channel is not None and hasattr(channel, "persistent") and headers is not None:
                # Twisted's own line would duplicate connmw's.
                headers.removeHeader(b"connection")
                channel.persistent = False
                return True
        return False


class _DaphneH2(H2Handle):
    __slots__ = ()

    def locate(self, send: Any) -> tuple[Any, int] | None:
        for request in reachable(send):
            channel = getattr(request, "channel", None)
            stream_id = getattr(channel, "streamID", None)
            conn = getattr(channel, "_conn", None)
            if isinstance(stream_id, int) and conn is not None and hasattr(conn, "streams"):
                return conn, stream_id
        return None

    def alive(self, conn: Any) -> bool:
        transport = conn.transport
        return transport is not None and not getattr(transport, "disconnecting", False)

    def highest_stream_id(self, conn: Any) -> int:
        return int(conn.conn.highest_inbound_stream_id)

    def pending(self, conn: Any, last_id: int) -> bool:
        return (
            bool(conn._bufferedControlFrames)
            or any(sid <= last_id for sid in conn.streams)
            or h2_open_at_or_below(conn.conn, last_id)
        )

    def write(self, conn: Any, data: bytes) -> None:
        conn._tryToWriteControlData()  # what h2 itself has queued goes first
        if conn._consumerBlocked is None and not conn._bufferedControlFrames:
            conn.transport.write(data)
        else:
            conn._bufferedControlFrames.append(data)
            conn._bufferedControlFrameBytes += len(data)

    def watch_ping(self, conn: Any, opaque: bytes, callback: Callable[[], None]) -> None:
        h2_retiring(conn.conn, opaque, callback)

    def close(self, conn: Any) -> None:
        transport = conn.transport
        transport.loseConnection()
        # A TLS transport waits for its producer (the HTTP channel) to go before it
        # shuts down, and that producer stays for the connection's life.
        transport.unregisterProducer()


DAPHNE = _DaphneProfile("daphne", h2=_DaphneH2())
