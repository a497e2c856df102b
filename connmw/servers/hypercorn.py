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
"""

from __future__ import annotations

import sys
from typing import Any

from .base import AsgiProfile, number

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


class _HypercornProfile(AsgiProfile):
    __slots__ = ()
    idle_setting = "hypercorn --keep-alive"

    def idle_timeout(self, send: Any) -> float | None:
        config = getattr(getattr(send, "__self__", None), "config", None)
        return number(getattr(config, "keep_alive_timeout", None))


HYPERCORN = _HypercornProfile("hypercorn")
