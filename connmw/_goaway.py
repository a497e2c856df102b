"""Retiring HTTP/2 connections: the two-phase GOAWAY, the registry, the timers.

This is the server-side effect of a decision taken in the engine (which option
retires which connection, and why: the same :data:`~connmw.Reason` values as on
HTTP/1.x). How to reach each server's connection lives in ``connmw/servers/``
(an :class:`~connmw.servers.h2.H2Handle` per server); this module only speaks
frames and keeps time.

Facts
-----
- RFC 9113 §6.8: a server that wants to stop taking streams sends GOAWAY; for a
  graceful shutdown, first a GOAWAY with the last stream id 2^31-1 and NO_ERROR,
  then, after at least one round trip (a PING), a GOAWAY with the real last
  stream id. Streams at or below it may complete; streams above it were not
  processed and the client may retry them elsewhere.
- RFC 9113 §6.8: GOAWAY (type 0x7) is sent on stream 0 and carries a 31-bit last
  stream id, a 32-bit error code (NO_ERROR is 0x0) and opaque debug data.
  §6.7: PING (type 0x6) carries 8 octets on stream 0; the receiver answers with
  the same octets and the ACK flag (0x1). §4.1: a frame header is a 24-bit
  length, an 8-bit type, 8-bit flags and a 31-bit stream id.
- h2 (python-hyper/h2#1181) moves its whole connection to CLOSED when it sends or
  receives GOAWAY, so a server that let h2 send it could no longer finish the
  streams in flight: the frames are written here, by hand, beside the server's
  own h2 state, which never learns about them.
- h2 and zttp keep delivering streams above the announced last id: connmw never
  hands them to the application (a retried non-idempotent request would run
  twice) and has the server write nothing for them.
- A middleware runs only when a request arrives: age and drain reach idle
  connections through this registry (weak references, bounded) and timers on the
  server's event loop.
- httpcore (httpx, <= 1.0.9) reads only when it sends, fails the requests it has in
  flight when any GOAWAY arrives (encode/httpcore#730), and the next request too
  unless the GOAWAY it reads names a last stream id below it (then it retries on a
  new connection). So the first GOAWAY goes out once the streams already handed to
  the application are answered (``QUIET_WAIT`` at most), and on an idle httpx
  connection (``user-agent: python-httpx/...``) the final GOAWAY follows at once: a
  client that sends one request at a time moves.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import struct
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .servers.h2 import H2Handle

__all__ = ["H2Conn", "H2Registry", "goaway_frame", "ping_frame"]

logger = logging.getLogger("connmw")

#: The highest stream id a GOAWAY can name: "I may still take anything you sent".
MAX_STREAM_ID = 2**31 - 1
NO_ERROR = 0
#: How long the final GOAWAY waits for the PING acknowledgement at most.
PING_WAIT = 1.0
#: How long the first GOAWAY waits at most for the streams already handed to the
#: application to be answered.
QUIET_WAIT = 1.0
_QUIET_EVERY = 0.005
#: How often a retired connection checks whether its last streams are out.
_CHECK_EVERY = 0.02

_OPEN, _WAITING, _ANNOUNCED, _FINAL, _CLOSED = 0, 1, 2, 3, 4
_opaque = itertools.count(0x636F6E6E6D770000)  # "connmw" then a counter


def goaway_frame(last_stream_id: int, error_code: int = NO_ERROR, debug: bytes = b"") -> bytes:
    """A GOAWAY frame (RFC 9113 §6.8)."""
    payload = struct.pack("!II", last_stream_id & MAX_STREAM_ID, error_code) + debug
    return struct.pack("!I", len(payload))[1:] + b"\x07\x00\x00\x00\x00\x00" + payload


def ping_frame(opaque: bytes, ack: bool = False) -> bytes:
    """A PING frame (RFC 9113 §6.7) carrying 8 octets."""
    return b"\x00\x00\x08\x06" + (b"\x01" if ack else b"\x00") + b"\x00\x00\x00\x00" + opaque


class H2Conn:
    """One HTTP/2 connection connmw knows: its limits, and its GOAWAY state."""

    __slots__ = (
        "__weakref__",
        "born",
        "count",
        "handle",
        "highest",
        "last_id",
        "loop",
        "max_age",
        "max_requests",
        "phase",
        "quiet_id",
        "quiet_tries",
        "quiet_until",
        "reads_when_sending",
        "reason",
        "ref",
        "registry",
        "timers",
        "waited",
    )

    def __init__(
        self,
        registry: H2Registry,
        obj: Any,
        handle: H2Handle,
        loop: asyncio.AbstractEventLoop,
        born: float,
        max_requests: int,
        max_age: float,
    ) -> None:
        self.registry = registry
        self.ref = weakref.ref(obj)
        self.handle = handle
        self.loop = loop
        self.born = born
        self.count = 0
        self.max_requests = max_requests
        self.max_age = max_age
        self.phase = _OPEN
        self.reason = ""
        self.highest = 0
        #: The client reads only when it sends (httpx): see :meth:`_announce`.
        self.reads_when_sending = False
        self.quiet_id = 0
        self.quiet_tries = 0
        self.quiet_until = 0.0
        #: The last stream id the final GOAWAY announced; None before it.
        self.last_id: int | None = None
        self.timers: dict[str, asyncio.TimerHandle] = {}
        #: The PING's round trip is over (acknowledged, or PING_WAIT elapsed).
        self.waited = False

    @property
    def retiring(self) -> bool:
        return self.phase != _OPEN

    def admit(self, stream_id: int) -> bool:
        """True when a stream may go to the application: at or below the last id."""
        if stream_id > self.highest:
            self.highest = stream_id
        last = self.last_id
        return last is None or stream_id <= last

    # -- timers (on the connection's loop) ------------------------------------------

    def later(self, name: str, delay: float, callback: Callable[[], None]) -> None:
        old = self.timers.pop(name, None)
        if old is not None:
            old.cancel()
        self.timers[name] = self.loop.call_later(max(delay, 0.0), self._fire, name, callback)

    def _fire(self, name: str, callback: Callable[[], None]) -> None:
        self.timers.pop(name, None)
        callback()

    def cancel(self, name: str) -> None:
        timer = self.timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _cancel_all(self) -> None:
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()

    # -- the two phases -------------------------------------------------------------

    def retire(self, reason: str) -> None:
        """Retire the connection: phase one once the streams already handed to the
        application are answered (``QUIET_WAIT`` at most)."""
        if self.phase != _OPEN:
            return
        if self.ref() is None:
            self.forget()
            return
        self.phase = _WAITING
        self.reason = reason
        for name in ("age", "drain"):
            self.cancel(name)
        self.quiet_id = self.highest
        self.quiet_until = self.loop.time() + QUIET_WAIT
        self._quiet()

    def _quiet(self) -> None:
        obj = self._alive(_WAITING)
        if obj is None:
            return
        if self.handle.pending(obj, self.quiet_id) and self.loop.time() < self.quiet_until:
            # Right after a stream ends, look again at once (a server may write the
            # last frame a moment after the application returns): a client that sends
            # one request at a time sends the next one as soon as it has the answer.
            self.quiet_tries += 1
            self.later("quiet", 0.0 if self.quiet_tries < 20 else _QUIET_EVERY, self._quiet)
            return
        self._announce(obj)

    def stream_done(self) -> None:
        """A stream's application returned."""
        if self.phase == _WAITING:
            self.quiet_tries = 0
            self._quiet()

    def _announce(self, obj: Any) -> None:
        """Phase one: a PING and GOAWAY(2^31-1, NO_ERROR, reason)."""
        self.phase = _ANNOUNCED
        reason = self.reason
        opaque = next(_opaque).to_bytes(8, "big")
        self.handle.watch_ping(obj, opaque, self._acked)
        # The PING first: a client on h2 takes no frame but GOAWAY after a GOAWAY.
        first = ping_frame(opaque) + goaway_frame(MAX_STREAM_ID, NO_ERROR, reason.encode())
        self.registry.sent(reason)
        if self.reads_when_sending and not self.handle.pending(obj, MAX_STREAM_ID):
            # httpcore reads only when it sends, and fails a request in flight on any
            # GOAWAY (encode/httpcore#730): on its idle connection the final GOAWAY goes
            # with the first, so its next request, above the last id, is retried on a
            # new connection, unprocessed. Every other client gets the round trip: a
            # request crossing the GOAWAYs is then still served (HAProxy does not retry
            # a refused stream; curl 7.88 fails it). The close still waits for the
            # PING's round trip, so that a request on its way meets no reset.
            logger.debug("HTTP/2 connection retired (%s), idle: PING and both GOAWAYs sent", reason)
            self._final(first, waited=False)
            return
        self.handle.write(obj, first)
        logger.debug("HTTP/2 connection retired (%s): PING and GOAWAY sent", reason)
        self.later("ping", PING_WAIT, self._final)

    def _acked(self) -> None:
        self.registry.ping_acks += 1
        # Called from inside the server's frame parser: go on after it returns.
        self.later("ping", 0.0, self._final if self.phase == _ANNOUNCED else self._round_trip)

    def _round_trip(self) -> None:
        self.waited = True
        self.check()

    def _final(self, before: bytes = b"", waited: bool = True) -> None:
        """Phase two: GOAWAY with the real last stream id (after ``before``)."""
        obj = self._alive(_ANNOUNCED)
        if obj is None:
            return
        last = max(self.handle.highest_stream_id(obj), self.highest)
        self.last_id = last
        self.phase = _FINAL
        self.waited = waited
        self.handle.write(obj, before + goaway_frame(last, NO_ERROR, self.reason.encode()))
        grace = self.registry.grace
        if grace is not None:
            self.later("grace", grace, self._expire)
        if not waited:
            self.later("ping", PING_WAIT, self._round_trip)
        self.check()

    def check(self) -> None:
        """Close once every stream at or below the last id is out."""
        obj = self._alive(_FINAL)
        if obj is None:
            return
        assert self.last_id is not None
        if not self.waited:
            return  # the PING's acknowledgement (or PING_WAIT) calls again
        if self.handle.pending(obj, self.last_id):
            self.later("check", _CHECK_EVERY, self.check)
            return
        self._close(obj)

    def _alive(self, phase: int) -> Any:
        """The server's connection object while the state machine is in ``phase``;
        None otherwise, and every timer stopped when the connection is gone."""
        if self.phase != phase:
            return None
        obj = self.ref()
        if obj is None or not self.handle.alive(obj):
            self.forget()
            return None
        return obj

    def _expire(self) -> None:
        obj = self.ref()
        if self.phase == _FINAL and obj is not None:
            logger.debug("HTTP/2 connection: streams still open after max_connection_age_grace; closing")
            self._close(obj)

    def _close(self, obj: Any) -> None:
        # The state stays in the registry until the server drops the connection:
        # streams the server parsed before the close still meet the last id.
        self.phase = _CLOSED
        self._cancel_all()
        self.handle.close(obj)

    def forget(self) -> None:
        """The connection is gone: stop every timer (the weak registry entry goes
        with the server's connection object)."""
        self.phase = _CLOSED
        self._cancel_all()


class H2Registry:
    """The HTTP/2 connections of one middleware, by weak reference, bounded.

    :ivar goaways: connections retired (first GOAWAY sent), by reason; each also
        advances ``counter`` (the middleware's ``stats()["goaways"]``).
    """

    def __init__(self, cap: int, grace: float | None, counter: itertools.count[int] | None = None) -> None:
        self.cap = cap
        self.grace = grace
        self.counter = counter
        self.goaways: dict[str, int] = {}
        #: PING acknowledgements that released a final GOAWAY (the rest waited PING_WAIT).
        self.ping_acks = 0
        self._lock = threading.Lock()
        self._conns: weakref.WeakKeyDictionary[Any, H2Conn] = weakref.WeakKeyDictionary()

    def __len__(self) -> int:
        return len(self._conns)

    def get(self, obj: Any) -> H2Conn | None:
        return self._conns.get(obj)

    def add(self, obj: Any, conn: H2Conn) -> None:
        with self._lock:
            conns = self._conns
            conns[obj] = conn
            while len(conns) > self.cap:
                # The oldest entry goes (insertion order); its timers with it.
                victim = conns.pop(next(iter(conns.keys())))
                victim._cancel_all()

    def snapshot(self) -> list[H2Conn]:
        with self._lock:
            return list(self._conns.values())

    def sent(self, reason: str) -> None:
        self.goaways[reason] = self.goaways.get(reason, 0) + 1
        if self.counter is not None:
            next(self.counter)

    def each(self, action: Callable[[H2Conn], None]) -> None:
        """Run ``action(conn)`` on each connection's own loop; safe from any thread."""
        for conn in self.snapshot():
            try:
                conn.loop.call_soon_threadsafe(action, conn)
            except RuntimeError:  # its loop is closed: the server is gone
                conn.forget()
