"""``Keep-Alive: timeout=N``: what connmw advertises, never more than the server keeps.

Facts
-----
- ``Keep-Alive`` is not in RFC 9110/9112; it comes from RFC 2068 §19.7.1.1, and
  clients read ``timeout`` as the seconds the server keeps an idle connection
  open. A client that believes a longer value sends on a connection the server
  has already closed.
- Measured: Node's ``http.Agent`` uses ``timeout=N`` as N-1 s and, built without
  its own ``timeout``, stops reusing connections at N <= 1; Node's ``fetch``
  (undici) keeps an idle socket N-2 s and stops reusing at N <= 2; curl, requests,
  urllib3, httpx, aiohttp, nginx and HAProxy ignore the header; no client acts on
  ``max=``.
- The value is whole seconds: the server's idle timeout rounded down, so the
  promise never exceeds it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._engine import RequestFacts

__all__ = ["IdleTimeoutReader", "KeepAlive"]


class IdleTimeoutReader(Protocol):
    """A server profile (ASGI or WSGI) that reads the server's idle timeout."""

    idle_setting: str

    def idle_timeout(self, handle: Any, /) -> float | None: ...


class KeepAlive:
    """The ``Keep-Alive`` values of one middleware (``keep_alive_timeout``: seconds or ``"auto"``)."""

    __slots__ = ("_by_idle", "_configured", "_value", "_warn")

    def __init__(self, setting: float | str | None, warn: Callable[..., None]) -> None:
        #: The configured seconds (None for "auto" or off) and their value.
        self._configured = None if setting is None or setting == "auto" else float(setting)
        self._value = None if self._configured is None else b"timeout=%d" % int(self._configured)
        self._by_idle: dict[float | None, bytes] = {}
        self._warn = warn

    def value(
        self,
        facts: RequestFacts,
        server: IdleTimeoutReader | None,
        handle: Any,
        find: Callable[[Any], IdleTimeoutReader | None] | None = None,
    ) -> bytes | None:
        """The value for a response that keeps the connection, never above the idle
        timeout ``server`` (or the one ``find`` finds from ``handle``) reads from
        ``handle``: read once per tracked connection, the server found only then."""
        conn = facts.conn
        timeout = None if conn is None else conn.keep_alive
        if timeout is None:
            if server is None and find is not None:
                server = find(handle)
            timeout = self._for(None if server is None else server.idle_timeout(handle), server)
            if conn is not None:
                conn.keep_alive = timeout
        if not timeout:
            return None
        if conn is not None and conn.max_requests > 0:
            return b"%b, max=%d" % (timeout, max(conn.max_requests - conn.count, 0))
        return timeout

    def _for(self, idle: float | None, server: IdleTimeoutReader | None) -> bytes:
        """``timeout=N`` for a server whose idle timeout is ``idle`` seconds (None:
        unknown); ``b""`` when nothing may be advertised."""
        try:
            return self._by_idle[idle]
        except KeyError:
            pass
        configured = self._configured
        if idle is None or (configured is not None and configured <= idle):
            # Unknown: an explicit value is the user's word; "auto" has nothing to say.
            value = self._value or b""
            if idle is None and configured is None:
                self._warn(
                    "keep-alive-unknown",
                    'connmw: keep_alive_timeout="auto" cannot read the idle timeout of this server '
                    "(%s); no Keep-Alive is advertised. To advertise one, set keep_alive_timeout to "
                    "a number of seconds no longer than the server's idle timeout.",
                    getattr(server, "name", None) or "not one connmw knows",
                )
        else:
            if configured is not None:
                setting = server.idle_setting if server is not None and server.idle_setting else "server"
                self._warn(
                    "keep-alive-lowered",
                    "connmw: keep_alive_timeout=%g is longer than the server's idle timeout "
                    "(%s = %g s); advertising Keep-Alive: timeout=%d instead. Set "
                    'keep_alive_timeout to at most %d, or to "auto".',
                    configured,
                    setting,
                    idle,
                    int(idle),
                    int(idle),
                )
            value = b"timeout=%d" % int(idle) if idle >= 1 else b""
        if len(self._by_idle) < 64:
            self._by_idle[idle] = value
        return value
