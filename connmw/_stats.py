"""Counters behind ``middleware.stats()``: dependency-free, nearly free per request.

Facts
-----
- ``next()`` on an :func:`itertools.count` is one C call that cannot be
  interrupted by another Python thread, so a response is counted without a lock
  and no count is lost under a threaded WSGI server (``x += 1`` on an attribute
  is three steps, and loses counts when threads interleave). The value is read
  back from the counter's ``repr``.
- The requests-per-connection distribution is recorded when connmw stops
  tracking a connection (it closed it, the server dropped it, or it was idle past
  ``connection_idle_timeout``), inside the connection table's lock: only when
  connections are tracked (``max_requests_per_connection`` or
  ``max_connection_age``), and once per connection, never per request.
- Buckets are cumulative upper bounds, as Prometheus histograms use them.
"""

from __future__ import annotations

import bisect
import itertools
from typing import TYPE_CHECKING, TypedDict, get_args

from ._policy import Reason

if TYPE_CHECKING:
    from ._state import ConnectionTable, Load

__all__ = ["BUCKETS", "Counters", "Histogram", "Stats"]

#: Upper bounds of the requests-per-connection buckets (the last is +Inf).
BUCKETS: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 10_000)


class HistogramSnapshot(TypedDict):
    """Cumulative counts per upper bound (``"+Inf"`` last), their sum and count."""

    buckets: dict[str, int]
    count: int
    sum: int


class ResponseStats(TypedDict):
    kept: int
    closed: dict[str, int]
    http2: int


class ConnectionStats(TypedDict):
    tracked: int | None
    peak: int | None


class Stats(TypedDict):
    """What :meth:`connmw.ConnectionMiddleware.stats` returns (a plain, JSON-ready dict)."""

    responses: ResponseStats
    requests_per_connection: HistogramSnapshot | None
    connections: ConnectionStats
    in_flight: int | None
    draining: bool
    goaways: int


def value(counter: itertools.count[int]) -> int:
    """The next number ``counter`` would give, that is how often it was advanced."""
    return int(repr(counter)[6:-1])


class Histogram:
    """Requests per ended connection; the caller holds the table's lock."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0

    def observe(self, requests: int) -> None:
        self.counts[bisect.bisect_left(BUCKETS, requests)] += 1
        self.sum += requests

    def snapshot(self) -> HistogramSnapshot:
        buckets: dict[str, int] = {}
        running = 0
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), self.counts, strict=True):
            running += count
            buckets[bound] = running
        return {"buckets": buckets, "count": running, "sum": self.sum}


class Counters:
    """Responses kept and closed, per reason; HTTP/2 connections retired with GOAWAY."""

    __slots__ = ("closed", "goaways", "http2", "kept")

    def __init__(self) -> None:
        #: HTTP/1.x responses that kept their connection.
        self.kept = itertools.count()
        #: HTTP/2 and HTTP/3 responses (the server manages those connections).
        self.http2 = itertools.count()
        #: HTTP/1.x responses that closed their connection, per reason.
        self.closed: dict[str, itertools.count[int]] = {r: itertools.count() for r in get_args(Reason)}
        #: HTTP/2 connections connmw retired with GOAWAY, one per connection (``next(counters.goaways)``).
        self.goaways = itertools.count()

    def snapshot(self, table: ConnectionTable | None, load: Load, in_flight_counted: bool) -> Stats:
        return {
            "responses": {
                "kept": value(self.kept),
                "closed": {reason: value(c) for reason, c in self.closed.items()},
                "http2": value(self.http2),
            },
            "requests_per_connection": None if table is None else table.ended(),
            "connections": {
                "tracked": None if table is None else len(table),
                "peak": None if table is None else table.peak,
            },
            "in_flight": load.in_flight if in_flight_counted else None,
            "draining": load.drain_since is not None,
            "goaways": value(self.goaways),
        }
