"""The load options on HTTP/2: which option retires which connection, and when.

The engine's HTTP/2 side. A stream's arrival, an age timer and a drain reach a
connection here; :func:`connmw._decide.decide_h2` decides (the same
:data:`~connmw.Reason` values as on HTTP/1.x); :mod:`connmw._goaway` carries the
decision out as a two-phase GOAWAY through the server's
:class:`~connmw.servers.h2.H2Handle`.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._decide import decide_h2
from ._goaway import H2Conn, H2Registry
from ._policy import Options
from ._state import Load, draw_limits

if TYPE_CHECKING:
    from .servers.h2 import H2Handle

__all__ = ["H2Load"]

Warn = Callable[..., None]


class H2Load:
    """The HTTP/2 connections of one middleware and the load options acting on them.

    :ivar registry: the connections, by weak reference; ``registry.goaways`` counts
        the GOAWAYs sent by reason.
    """

    __slots__ = ("_clock", "_load", "_options", "_overload", "_random", "_warn", "registry", "unreachable")

    def __init__(
        self,
        options: Options,
        load: Load,
        overload: Callable[[], float] | None,
        warn: Warn,
        counter: itertools.count[int],
    ) -> None:
        self._options = options
        self._load = load
        self._clock = options.clock
        self._random = options.random
        #: The overload probability, when ``overload_http2`` lets it act here.
        self._overload = overload
        self._warn = warn
        self.registry = H2Registry(options.max_tracked_connections, options.max_connection_age_grace, counter)
        #: The first server met whose HTTP/2 connections connmw cannot reach.
        self.unreachable: str | None = None

    def stream(
        self, obj: Any, handle: H2Handle, stream_id: int, headers: Iterable[tuple[bytes, bytes]] = ()
    ) -> H2Conn | None:
        """A new stream on the server's connection ``obj``: the connection's state,
        or None when the stream is above the last stream id a GOAWAY announced and
        must not reach the application. Counts the stream and retires the
        connection when a load option says so. ``headers`` (the request's) are read
        on a connection's first stream only."""
        conn = self.registry.get(obj)
        if conn is None:
            conn = self._new(obj, handle)
            conn.reads_when_sending = _httpx(headers)
        if not conn.admit(stream_id):
            return None
        conn.count += 1
        if not conn.retiring:
            now = self._clock()
            requests_exhausted = conn.max_requests > 0 and conn.count >= conn.max_requests
            age_exhausted = now - conn.born >= conn.max_age
            drain = self._load.drain_probability(now)
            overload = 0.0 if self._overload is None else self._overload()
            # Most streams meet no limit: decide_h2's keywords only when one may act.
            if requests_exhausted or age_exhausted or drain > 0.0 or overload > 0.0:
                decision = decide_h2(
                    requests_exhausted=requests_exhausted,
                    age_exhausted=age_exhausted,
                    drain=drain,
                    overload=overload,
                    draw=self._random,
                )
                if decision.reason is not None:
                    conn.retire(decision.reason)
        return conn

    def _new(self, obj: Any, handle: H2Handle) -> H2Conn:
        o = self._options
        cap = o.max_requests_per_connection
        age = o.max_connection_age
        max_requests, max_age = draw_limits(
            cap or 0,
            o.max_requests_jitter if cap is not None else 0,
            age if age is not None else float("inf"),
            o.max_connection_age_jitter if age is not None else 0.0,
            self._random,
        )
        loop = asyncio.get_running_loop()
        conn = H2Conn(self.registry, obj, handle, loop, self._clock(), max_requests, max_age)
        self.registry.add(obj, conn)
        if age is not None:
            # Reaches the connection even when it stays idle.
            conn.later("age", max_age, functools.partial(self._timer, conn, True))
        return conn

    def _timer(self, conn: H2Conn, age: bool) -> None:
        decision = decide_h2(age_exhausted=age, drain=0.0 if age else 1.0)
        if decision.reason is not None:
            conn.retire(decision.reason)

    def drain(self, window: float) -> None:
        """Retire every connection, idle ones included, each at a random moment in
        ``window``; safe from any thread."""
        if self.unreachable is not None:
            self._warn(
                "h2-drain",
                "connmw: drain() cannot send GOAWAY on %s's HTTP/2 connections (connmw cannot reach them)",
                self.unreachable,
            )
        if len(self.registry):
            self.registry.each(functools.partial(self._drain_at, window))

    def _drain_at(self, window: float, conn: H2Conn) -> None:
        # Spread over the window: the share of connections told to leave rises
        # linearly, as the HTTP/1.x drain probability does.
        if not conn.retiring:
            conn.later("drain", self._random() * window, functools.partial(self._timer, conn, False))

    def stop_draining(self) -> None:
        if len(self.registry):
            self.registry.each(_cancel_drain)

    def cannot_reach(self, server: str) -> None:
        """An HTTP/2 request on a server whose connections connmw cannot reach: one
        warning naming it and the options that cannot act there."""
        if self.unreachable is not None:
            return
        self.unreachable = server
        o = self._options
        acting = [
            name
            for name, on in (
                ("max_requests_per_connection", o.max_requests_per_connection is not None),
                ("max_connection_age", o.max_connection_age is not None),
                ("overload_http2", self._overload is not None),
            )
            if on
        ]
        if acting:
            self._warn(
                "h2-unreachable",
                "connmw: cannot reach %s's HTTP/2 connections: %s, drain() and drain_on_signal "
                "cannot send GOAWAY there (HTTP/1.x connections are not affected)",
                server,
                ", ".join(acting),
            )


def _httpx(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"user-agent":
            return value.startswith(b"python-httpx/")
    return False


def _cancel_drain(conn: H2Conn) -> None:
    conn.cancel("drain")
