"""gunicorn (sync, gthread, gevent, eventlet workers).

Facts (measured; the conformance suite is the source of truth)
-----
- gunicorn drops an application's ``Connection`` header and keeps the
  connection; its ``Response`` (``start_response.__self__``) has
  ``force_close()``, honoured until the first body byte.
- gthread keeps an HTTP/1.0 connection when the client asks and the response
  has a length.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from .base import WsgiServer

__all__ = ["GUNICORN"]


class _Gunicorn(WsgiServer):
    __slots__ = ()
    name = "gunicorn"
    http10_keep_alive = True

    def close(self, handle: Any, environ: MutableMapping[str, Any]) -> bool:
        handle.force_close()
        return True

    def advertise(self, handle: Any, value: str) -> bool:
        handle.headers.append(("Keep-Alive", value))
        return True


GUNICORN = _Gunicorn()
