"""Per-connection and per-process bookkeeping.

The connection table is bounded: an entry is dropped once its connection has
been idle longer than ``idle_timeout`` (it has most likely been closed by the
server or the client), when connmw itself closes the connection, when the
server's connection object is garbage collected (identity keys, below) and, as a
last resort, the least recently used entry goes when the table is full. Every
method takes a lock, so threaded WSGI servers can share one table; under asyncio
the lock is never contended.

Facts (connection identity)
-----
- An HTTP/1.x connection is one TCP 4-tuple while it lives, so the client and
  server addresses identify it; but once the client closes, the OS may hand the
  same source port to a new connection (behind a proxy with few addresses and many
  short connections, within minutes), which would inherit the old count and age.
- Where a server hands over an object that lives exactly as long as the
  connection, connmw keys on that object instead (through a weak reference, so the
  entry goes when the server drops the connection): uvicorn (h11 and httptools),
  ``send.__self__.transport``; hypercorn, the protocol behind
  ``send.__self__.send``; gunicorn, the client socket ``start_response.__self__.sock``;
  waitress, the channel behind ``environ["waitress.client_disconnected"]``;
  hypercorn serving WSGI, its protocol object (see ``servers/hypercorn_wsgi.py``).
- ``weakref.ref(obj)`` without a callback returns the same cached object each time,
  and hashes and compares by its referent while alive: looking a connection up
  allocates nothing after its first request.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from ._stats import Histogram, HistogramSnapshot
from .servers.hypercorn_wsgi import hypercorn_connection

__all__ = [
    "ConnectionTable",
    "ConnState",
    "Load",
    "LoopLoad",
    "asgi_connection_key",
    "draw_limits",
    "wsgi_connection_key",
]


_NEVER = float("inf")


def _address_key(client: Any, server: Any) -> Hashable | None:
    if client is None:
        return None
    # Some servers (daphne) give lists: a key must be hashable.
    if type(client) is not tuple:
        client = tuple(client)
    if server is not None and type(server) is not tuple:
        server = tuple(server)
    return (client, server)


def asgi_connection_key(scope: Mapping[str, Any], send: Any) -> Hashable | None:
    """Identify the connection of an ASGI request (see the facts above)."""
    owner = getattr(send, "__self__", None)
    if owner is not None:
        transport = getattr(owner, "transport", None)  # uvicorn
        if transport is not None:
            try:
                return weakref.ref(transport)
            except TypeError:
                pass
        else:
            protocol = getattr(getattr(owner, "send", None), "__self__", None)  # hypercorn
            if protocol is not None and type(protocol).__module__.startswith("hypercorn.protocol"):
                return weakref.ref(protocol)
    try:
        return _address_key(scope.get("client"), scope.get("server"))
    except TypeError:
        return None


def wsgi_connection_key(environ: Mapping[str, Any], start_response: Any) -> Hashable | None:
    """Identify the connection of a WSGI request (see the facts above)."""
    owner = getattr(start_response, "__self__", None)
    if owner is not None:
        sock = getattr(owner, "sock", None)
        if sock is not None and type(owner).__module__.startswith("gunicorn."):
            try:
                return weakref.ref(sock)
            except TypeError:
                pass
    check = environ.get("waitress.client_disconnected")
    if check is not None:
        channel = getattr(check, "__self__", None)
        if channel is not None and type(channel).__module__.startswith("waitress."):
            return weakref.ref(channel)
    addr = environ.get("REMOTE_ADDR")
    port = environ.get("REMOTE_PORT")
    if addr is None or not port:
        protocol = hypercorn_connection(start_response)
        return None if protocol is None else weakref.ref(protocol)
    return (addr, port, environ.get("SERVER_PORT"))


def draw_limits(
    requests: int, requests_jitter: int, age: float, age_jitter: float, random: Callable[[], float]
) -> tuple[int, float]:
    """One connection's request cap and age limit, each raised by its jitter at random."""
    if requests_jitter:
        requests += int(random() * (requests_jitter + 1))
    if age_jitter:
        age += random() * age_jitter
    return requests, age


class ConnState:
    """What connmw knows about one connection."""

    # Five slots: every tracked connection pays for each one (bench_memory).
    __slots__ = ("count", "expires", "keep_alive", "max_requests", "seen")

    def __init__(self, born: float, max_requests: int, expires: float) -> None:
        #: The ``timeout=N`` this connection advertises (b"": none), once known.
        self.keep_alive: bytes | None = None
        self.count = 0
        self.seen = born
        #: 0: no request cap.
        self.max_requests = max_requests
        #: When the connection reaches its age limit (``inf``: no age limit).
        self.expires = expires


class ConnectionTable:
    """A bounded, thread-safe map from connection identity to :class:`ConnState`."""

    __slots__ = (
        "_age",
        "_age_jitter",
        "_cap",
        "_dead",
        "_ended",
        "_entries",
        "_idle",
        "_lock",
        "_random",
        "_requests",
        "_requests_jitter",
        "peak",
    )

    def __init__(
        self,
        *,
        max_requests: int | None,
        max_requests_jitter: int,
        max_age: float | None,
        max_age_jitter: float,
        idle_timeout: float,
        cap: int,
        random: Callable[[], float],
    ) -> None:
        self._entries: OrderedDict[Hashable, ConnState] = OrderedDict()
        self._lock = threading.Lock()
        # Weak keys whose connection object was collected; the callback may run in
        # any thread, inside this lock too, so it only appends (atomic) and the next
        # begin() removes them.
        self._dead: list[weakref.ref[Any]] = []
        self._requests = max_requests if max_requests is not None else 0
        self._requests_jitter = max_requests_jitter if max_requests is not None else 0
        self._age = max_age if max_age is not None else _NEVER
        self._age_jitter = max_age_jitter if max_age is not None else 0.0
        self._idle = idle_timeout
        self._cap = cap
        self._random = random
        self.peak = 0
        #: Requests per connection, recorded when an entry leaves the table.
        self._ended = Histogram()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def begin(self, key: Hashable, now: float) -> ConnState:
        """Count one more request on ``key`` and return its state."""
        entries = self._entries
        lock = self._lock
        lock.acquire()  # not ``with``: this runs for every request, and is twice as fast
        try:
            if self._dead:
                self._drop_dead()
            state = entries.get(key)
            if state is not None and now - state.seen > self._idle:
                # Idle past the timeout: that connection is gone; this is a new one
                # that reuses the address.
                del entries[key]
                self._ended.observe(state.count)
                state = None
            if state is None:
                state = self._new(now)
                if type(key) is weakref.ref:
                    obj = key()
                    if obj is not None:
                        key = weakref.ref(obj, self._dead.append)
                entries[key] = state
                self._evict(now)
            else:
                entries.move_to_end(key)
            state.count += 1
            state.seen = now
            return state
        finally:
            lock.release()

    def _new(self, now: float) -> ConnState:
        max_requests, max_age = draw_limits(
            self._requests, self._requests_jitter, self._age, self._age_jitter, self._random
        )
        # No age limit: one shared ``inf`` rather than a float per connection.
        return ConnState(now, max_requests, _NEVER if max_age == _NEVER else now + max_age)

    def _evict(self, now: float) -> None:
        entries = self._entries
        ended = self._ended
        while len(entries) > self._cap:
            ended.observe(entries.popitem(last=False)[1].count)
        idle = self._idle
        # Oldest first: stop at the first entry still in use.
        while entries:
            key, state = next(iter(entries.items()))
            if now - state.seen <= idle:
                break
            del entries[key]
            ended.observe(state.count)
        if len(entries) > self.peak:
            self.peak = len(entries)

    def forget(self, key: Hashable) -> None:
        """Drop ``key`` (the connection is closing)."""
        with self._lock:
            state = self._entries.pop(key, None)
            if state is not None:
                self._ended.observe(state.count)

    def _drop_dead(self) -> None:
        # The server dropped these connections (their objects were collected).
        entries, dead, ended = self._entries, self._dead, self._ended
        while dead:
            state = entries.pop(dead.pop(), None)
            if state is not None:
                ended.observe(state.count)

    def ended(self) -> HistogramSnapshot:
        """Requests per connection, over the connections no longer tracked."""
        with self._lock:
            self._drop_dead()
            return self._ended.snapshot()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._dead.clear()


class Load:
    """In-flight requests of this process (per middleware instance) and the drain state.

    The count is taken under a lock: WSGI servers call the application from many
    threads. :class:`LoopLoad` is the same without the lock.
    """

    __slots__ = ("_lock", "drain_since", "drain_window", "in_flight")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0
        self.drain_since: float | None = None
        self.drain_window = 0.0

    def enter(self) -> None:
        lock = self._lock
        lock.acquire()  # not ``with``: twice as fast, and nothing in between can raise
        self.in_flight += 1
        lock.release()

    def leave(self) -> None:
        lock = self._lock
        lock.acquire()
        self.in_flight -= 1
        lock.release()

    def drain(self, now: float, window: float) -> None:
        # One tuple-free assignment each: safe from any thread. The window is set
        # first so a reader never sees a start time with a stale window.
        self.drain_window = window
        if self.drain_since is None:
            self.drain_since = now

    def stop_draining(self) -> None:
        self.drain_since = None
        self.drain_window = 0.0

    def drain_probability(self, now: float) -> float:
        since = self.drain_since
        if since is None:
            return 0.0
        window = self.drain_window
        if window <= 0.0:
            return 1.0
        elapsed = now - since
        if elapsed >= window:
            return 1.0
        return max(elapsed, 0.0) / window


class LoopLoad(Load):
    """:class:`Load` for an ASGI application: every request of one middleware runs on
    one event-loop thread (uvicorn, hypercorn, daphne, granian each run one loop per
    worker), so the count needs no lock."""

    __slots__ = ()

    def enter(self) -> None:
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
