"""gunicorn (sync, gthread, gevent, eventlet workers).

Facts (measured; the conformance suite is the source of truth)
-----
- gunicorn drops an application's ``Connection`` header and keeps the
  connection; its ``Response`` (``start_response.__self__``) has
  ``force_close()``, honoured until the first body byte.
- gthread keeps an HTTP/1.0 connection when the client asks and the response
  has a length. The sync worker calls ``force_close()`` before the application
  runs (``must_close``): no Keep-Alive goes out there.
- The idle timeout between requests is ``--keep-alive`` (``cfg.keepalive``,
  default 2 s; 0 turns keep-alive off); the ``Response`` holds the worker's
  ``cfg``, whose settings are read through a lookup, so the value is cached per
  ``cfg`` object (one per worker process).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, MutableMapping
from typing import Any

from .base import WsgiServer, number

__all__ = ["GUNICORN", "after_worker_signals"]

#: The last ``cfg`` read and its keep-alive: replaced as a whole, so threads never
#: see a value of one ``cfg`` paired with another.
_cached: tuple[object, float | None] = (None, None)


class _Gunicorn(WsgiServer):
    __slots__ = ()
    name = "gunicorn"
    http10_keep_alive = True
    idle_setting = "gunicorn --keep-alive"

    def idle_timeout(self, handle: Any) -> float | None:
        global _cached
        cfg = getattr(handle, "cfg", None)
        seen, value = _cached
        if cfg is None or cfg is not seen:
            value = number(getattr(cfg, "keepalive", None))
            _cached = (cfg, value)
        return value

    def close(self, handle: Any, environ: MutableMapping[str, Any]) -> bool:
        handle.force_close()
        return True

    def advertise(self, handle: Any, value: str) -> bool:
        if getattr(handle, "must_close", False):
            return False  # the sync worker forces every response to close
        handle.headers.append(("Keep-Alive", value))
        return True


GUNICORN = _Gunicorn()


def after_worker_signals(callback: Callable[[], None]) -> bool:
    """In a process just forked from a gunicorn master (``--preload``: the
    application was loaded before the fork), call ``callback`` right after the
    worker installs its own signal handlers (``Worker.init_signals``, in the
    worker's main thread, before it serves). False when gunicorn's workers are not
    loaded here. Facts: the master loads a preloaded application before it installs
    its own handlers; each worker then resets every signal and installs its own in
    ``init_signals``, without loading the application again. Workers that override
    ``init_signals`` without calling it (uvicorn's) are not reached: connmw's ASGI
    middleware installs again at lifespan startup there.
    """
    base = sys.modules.get("gunicorn.workers.base")
    worker = getattr(base, "Worker", None)
    original = getattr(worker, "init_signals", None)
    if worker is None or original is None:
        return False

    def init_signals(self: Any) -> None:
        original(self)
        callback()

    # Only this (forked) process's class changes: the master's is left alone.
    worker.init_signals = init_signals
    return True
