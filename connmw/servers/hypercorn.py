"""hypercorn.

Facts (measured; the conformance suite is the source of truth)
-----
- hypercorn (h11) honours an application's ``connection: close`` and closes.
- With worker processes (``--workers`` 1 or more, the default 1) the supervisor
  alone handles SIGTERM and stops its workers by setting a shared
  ``multiprocessing`` event, never by a signal; the application is imported in
  each worker (a ``multiprocessing`` child), never in the supervisor. With
  ``--workers 0`` the server runs in the process and handles signals on its loop.
- The idle timeout between requests is ``--keep-alive`` (``config.keep_alive_timeout``,
  default 5 s): the server closes a connection with no stream for that long. On
  HTTP/1 ``send.__self__`` is the stream, which holds the ``config``.
- HTTP/2: ``send.__self__`` is the stream (``.stream_id``); its ``.send.__self__`` is
  the ``H2Protocol``: ``.connection`` is the h2 connection, ``.send(RawData(...))``
  writes under the server's send lock, ``.stream_buffers`` holds a stream until
  its final frame is written (after the application's last ``send`` returned),
  ``.send(Closed())`` closes (without the lock).
- An HTTP/2 stream whose application returns without a response gets a 500
  unless the stream is marked ``closed``; then nothing is written for it.
- hypercorn's own ``keep_alive_max_requests`` on HTTP/2 calls h2's
  ``close_connection()``, which fails the streams in flight (python-hyper/h2#1181).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from typing import Any

from .base import AsgiProfile, number
from .h2 import H2Handle, h2_open_at_or_below, h2_retiring
from .hypercorn_h3 import HypercornH2orH3, HypercornH3, hypercorn_stream

__all__ = ["HYPERCORN", "stopped_without_signal"]

#: Modules a hypercorn worker runs from (asyncio, uvloop and trio workers).
_WORKER_MODULES = ("hypercorn.asyncio.run", "hypercorn.trio.run")


def stopped_without_signal() -> bool:
    """True in a worker process hypercorn started itself (``--workers`` 1 or more):
    no signal ever reaches it, so nothing can drain on one."""
    if not any(name in sys.modules for name in _WORKER_MODULES):
        return False
    import multiprocessing

    return multiprocessing.parent_process() is not None


_tasks: set[asyncio.Task[None]] = set()


def _spawn(coro: Any) -> None:
    task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


class _HypercornH2(H2Handle):
    __slots__ = ()

    def locate(self, send: Any) -> tuple[Any, int] | None:
        protocol, stream_id = hypercorn_stream(send)
        if protocol is None or not isinstance(stream_id, int) or not hasattr(protocol, "stream_buffers"):
            return None
        return protocol, stream_id

    def alive(self, conn: Any) -> bool:
        return not conn.closed

    def highest_stream_id(self, conn: Any) -> int:
        return int(conn.connection.highest_inbound_stream_id)

    def pending(self, conn: Any, last_id: int) -> bool:
        return any(sid <= last_id for sid in conn.stream_buffers) or h2_open_at_or_below(
            conn.connection, last_id
        )

    def write(self, conn: Any, data: bytes) -> None:
        from hypercorn.events import RawData

        _spawn(conn.send(RawData(data=data)))

    def watch_ping(self, conn: Any, opaque: bytes, callback: Callable[[], None]) -> None:
        h2_retiring(conn.connection, opaque, callback)

    def refuse(self, send: Any) -> None:
        send.__self__.closed = True

    def close(self, conn: Any) -> None:
        _spawn(_close(conn))


async def _close(conn: Any) -> None:
    from hypercorn.events import Closed, RawData

    # Closed skips the send lock: queue behind the frames written before it.
    await conn.send(RawData(data=b""))
    with contextlib.suppress(OSError):  # TLS: the client wrote after our close_notify
        await conn.send(Closed())


class _HypercornProfile(AsgiProfile):
    __slots__ = ()
    idle_setting = "hypercorn --keep-alive"

    def idle_timeout(self, send: Any) -> float | None:
        config = getattr(getattr(send, "__self__", None), "config", None)
        return number(getattr(config, "keep_alive_timeout", None))


# HTTP/2 and HTTP/3 streams share hypercorn's HTTPStream: one handle serves both.
HYPERCORN = _HypercornProfile("hypercorn", h2=HypercornH2orH3(_HypercornH2(), HypercornH3()))
