"""What both middlewares offer besides being called: drain, its state, and stats."""

from __future__ import annotations

from ._engine import Engine
from ._stats import Stats

__all__ = ["Controls"]


class Controls:
    """What both middlewares offer besides being called: drain, and its state."""

    _engine: Engine

    def drain(self, window: float = 0.0) -> None:
        """From now on, close the connection after each HTTP/1.x response, and
        retire every HTTP/2 connection with GOAWAY, idle ones included.

        With ``window`` (seconds), the probability to close rises from 0 to 1 over
        the window (each HTTP/2 connection gets its GOAWAY at a random moment in
        it), so clients do not all reconnect at once. Safe from any thread.
        """
        if isinstance(window, bool) or not isinstance(window, (int, float)):
            raise TypeError(
                f"drain window must be a number of seconds, not {type(window).__name__} {window!r}"
            )
        if not 0 <= window < float("inf"):  # also refuses NaN, which compares false
            raise ValueError(
                f"drain window must be a finite number of seconds >= 0, got {window!r} "
                "(0 closes from the next response on; drain(window=30) spreads the closes over 30 s)"
            )
        self._engine.drain(float(window))

    def stop_draining(self) -> None:
        """Undo :meth:`drain`."""
        self._engine.stop_draining()

    @property
    def draining(self) -> bool:
        return self._engine.load.drain_since is not None

    def stats(self) -> Stats:
        """A snapshot of this middleware's counters, as a plain dict:

        - ``responses``: ``kept`` (HTTP/1.x responses that kept their connection),
          ``closed`` (per reason: ``client``, ``http-1.0``, ``app``, ``handler``,
          ``rule``, ``status``, ``max-requests``, ``max-age``, ``server``,
          ``overload``, ``drain``), ``http2`` (HTTP/2 and HTTP/3 responses);
        - ``requests_per_connection``: cumulative ``buckets`` (``"1"``, ``"2"``,
          ``"5"``, ... ``"+Inf"``), ``count`` and ``sum`` over the connections
          connmw stopped tracking (None unless ``max_requests_per_connection`` or
          ``max_connection_age`` is set);
        - ``connections``: ``tracked`` now and their ``peak`` (None when untracked);
        - ``in_flight``: requests inside the application now (None unless the
          overload limits are set);
        - ``draining``: whether :meth:`drain` is on;
        - ``goaways``: HTTP/2 connections retired with GOAWAY (one per connection).

        Counts are per middleware instance and per process, since it was built.
        """
        engine = self._engine
        return engine.counters.snapshot(engine.table, engine.load, engine.track_in_flight)

    @property
    def engine(self) -> Engine:
        return self._engine
