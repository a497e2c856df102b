"""Pressure sources for the ``pressure`` option.

A pressure source is any callable returning a number in 0..1: the probability to
close the connection after each HTTP/1.x response (combined by max with the
in-flight ramp of ``overload_soft_limit``/``overload_hard_limit``).

Facts
-----
- An asyncio event loop that is late running its timers is a loaded loop: every
  coroutine it serves waits that long too. A repeating ``call_later`` that
  measures how late it fires is the usual probe (aiomonitor, aiodebug, uvicorn's
  own ``--limit-concurrency`` is the in-flight alternative).
- The probe runs on the loop that first asks for the pressure, so it measures the
  loop that serves the requests; it never starts a thread nor a loop of its own.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

__all__ = ["EventLoopLag"]


class EventLoopLag:
    """Pressure from asyncio event-loop lag, for ``pressure=``.

    :param low: seconds of lag below which the pressure is 0.
    :param high: seconds of lag at and above which the pressure is 1 (every
        response closes its connection); linear in between.
    :param interval: seconds between probes.
    :param clock: a monotonic clock (tests inject one).

    Usage::

        app = ConnectionMiddleware(app, pressure=EventLoopLag(low=0.05, high=0.5))

    The probe starts on the event loop of the first request that asks (from an
    ASGI middleware that is the loop serving requests); called outside a running
    loop (a WSGI server) it reports 0. The lag is the larger of the last probe's
    delay and how overdue the next probe is now, so a loop that is busy this very
    moment counts at once.
    """

    __slots__ = ("_clock", "_due", "_handle", "_loop", "high", "interval", "lag", "low")

    def __init__(
        self,
        low: float = 0.05,
        high: float = 0.5,
        interval: float = 0.1,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (("low", low), ("high", high), ("interval", interval)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise TypeError(f"EventLoopLag {name} must be a number of seconds, not {value!r}")
            if value < 0:
                raise ValueError(f"EventLoopLag {name} must be >= 0, got {value!r}")
        if high <= low:
            raise ValueError(f"EventLoopLag high must be above low, got low={low!r}, high={high!r}")
        if interval <= 0:
            raise ValueError(f"EventLoopLag interval must be > 0, got {interval!r}")
        self.low = float(low)
        self.high = float(high)
        self.interval = float(interval)
        self._clock = clock
        #: The last measured lag, in seconds.
        self.lag = 0.0
        self._due = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None

    def __call__(self) -> float:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return 0.0
        if loop is not self._loop:
            self.start(loop)
            return 0.0
        lag = self.lag
        overdue = self._clock() - self._due
        if overdue > lag:
            lag = overdue
        if lag <= self.low:
            return 0.0
        if lag >= self.high:
            return 1.0
        return (lag - self.low) / (self.high - self.low)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Probe ``loop`` (the first call from a running loop does it)."""
        self.stop()
        self._loop = loop
        self.lag = 0.0
        self._schedule()

    def stop(self) -> None:
        """Stop probing."""
        handle = self._handle
        self._handle = None
        self._loop = None
        if handle is not None:
            handle.cancel()

    def _schedule(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            self._loop = None
            return
        self._due = self._clock() + self.interval
        self._handle = loop.call_later(self.interval, self._tick)

    def _tick(self) -> None:
        lag = self._clock() - self._due
        self.lag = lag if lag > 0.0 else 0.0
        self._schedule()
