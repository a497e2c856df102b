"""What connmw needs to retire a server's HTTP/2 connections: the handle each server
module provides, and the helpers for servers built on the ``h2`` library.

Facts
-----
- h2 (python-hyper/h2#1181) moves its whole connection to CLOSED when it sends or
  receives GOAWAY; hypercorn and Twisted then close the socket, cutting the
  streams still to complete.
- hypercorn and Twisted ignore PING acknowledgements (h2 reports them as
  ``PingAckReceived`` events).
- RFC 9113 §4.1: a frame is a 9-octet header (24-bit length, type, flags, stream
  id) and its payload; GOAWAY is type 0x7.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["GoawayFilter", "H2Handle", "h2_open_at_or_below", "h2_retiring"]


class H2Handle:
    """How connmw acts on one server's HTTP/2 connection (see ``connmw._goaway``).

    Every method but :meth:`locate` and :meth:`refuse` takes the server's own
    connection object, which connmw holds only by weak reference.
    """

    __slots__ = ()

    def locate(self, send: Any) -> tuple[Any, int] | None:
        """The connection object and the stream id behind an HTTP/2 ``send``."""
        raise NotImplementedError

    def alive(self, conn: Any) -> bool:
        raise NotImplementedError

    def highest_stream_id(self, conn: Any) -> int:
        """The highest stream id the server has received."""
        raise NotImplementedError

    def pending(self, conn: Any, last_id: int) -> bool:
        """True while a stream at or below ``last_id`` has not been fully written."""
        raise NotImplementedError

    def write(self, conn: Any, data: bytes) -> None:
        """Write whole frames, in order with the server's own."""
        raise NotImplementedError

    def watch_ping(self, conn: Any, opaque: bytes, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the PING carrying ``opaque`` is acknowledged."""
        raise NotImplementedError

    def refuse(self, send: Any) -> None:
        """The stream behind ``send`` will not reach the application: have the
        server write nothing for it."""

    def close(self, conn: Any) -> None:
        """Close the connection (after the final GOAWAY), flushing what was written."""
        raise NotImplementedError


def h2_open_at_or_below(h2conn: Any, last_id: int) -> bool:
    """True while the ``h2`` connection has a stream at or below ``last_id`` that is
    not closed: received but not yet handed to the server's stream table too."""
    return any(sid <= last_id and not stream.closed for sid, stream in list(h2conn.streams.items()))


class GoawayFilter:
    """Takes GOAWAY frames out of a stream of HTTP/2 frames, from any point in it.

    A client often answers the server's GOAWAY with its own (Node's http2 does, in
    the same packet as the PING acknowledgement). h2 then moves the server's whole
    connection to CLOSED and the servers on it close the socket, cutting the
    streams that were still to complete; a client's GOAWAY only refuses
    server-initiated streams (RFC 9113 §6.8), which these servers do not open
    once connmw retires the connection. So, on a retiring connection, the server's
    h2 never sees the client's GOAWAY.

    ``buffered`` is what h2 already holds of a frame it has not parsed yet (less
    than one frame): the scan resumes inside it.
    """

    __slots__ = ("drop", "head", "left", "passed")

    def __init__(self, buffered: bytes = b"") -> None:
        self.head = b""  # header bytes of the current frame, while fewer than 9
        self.passed = 0  # how many of them the parser already has
        self.left = 0  # payload bytes left in the current frame
        self.drop = False
        if len(buffered) >= 9:
            self.left = 9 + int.from_bytes(buffered[:3], "big") - len(buffered)
        else:
            self.head = buffered
            self.passed = len(buffered)

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        i, n = 0, len(data)
        while i < n:
            if self.left:
                take = min(self.left, n - i)
                if not self.drop:
                    out.append(data[i : i + take])
                i += take
                self.left -= take
                continue
            piece = data[i : i + 9 - len(self.head)]
            i += len(piece)
            self.head += piece
            if len(self.head) < 9:
                break  # the rest of the header comes with the next read
            self.drop = self.head[3] == 0x7 and self.passed == 0
            if not self.drop:
                out.append(self.head[self.passed :])
            self.left = int.from_bytes(self.head[:3], "big")
            self.head = b""
            self.passed = 0
        return b"".join(out)


def h2_retiring(h2conn: Any, opaque: bytes, callback: Callable[[], None]) -> None:
    """Prepare an ``h2`` connection that connmw retires: call ``callback`` when the
    PING carrying ``opaque`` is acknowledged (servers on h2 ignore PING acks), and
    keep the client's GOAWAY from h2 (see :class:`GoawayFilter`). The instance's
    ``receive_data`` is wrapped once."""
    watched: dict[bytes, Callable[[], None]] | None = getattr(h2conn, "_connmw_pings", None)
    if watched is None:
        watched = {}
        original = h2conn.receive_data
        buffered = getattr(getattr(h2conn, "incoming_buffer", None), "data", b"")
        scan = GoawayFilter(bytes(buffered))

        def receive_data(data: bytes) -> Any:
            events = original(scan.feed(data))
            for event in events:
                if type(event).__name__ == "PingAckReceived":
                    found = watched.pop(getattr(event, "ping_data", b""), None)
                    if found is not None:
                        found()
            return events

        h2conn.receive_data = receive_data
        h2conn._connmw_pings = watched
    watched[opaque] = callback
