"""wsgiref and Django's ``runserver`` (a wsgiref ``ServerHandler`` subclass).

Facts (measured; the conformance suite is the source of truth)
-----
- wsgiref asserts on hop-by-hop headers (a 500) and always closes; its handler
  (``start_response.__self__``) carries the headers that go out.
- Django's ``runserver`` handler closes when its outgoing headers say
  ``Connection: close``; it keeps the connection otherwise, and ignores a
  client's ``Connection: TE, close``.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from .base import WsgiServer

__all__ = ["DJANGO", "WSGIREF"]


class _Wsgiref(WsgiServer):
    __slots__ = ()
    name = "wsgiref"
    always_closes = True

    def close(self, handle: Any, environ: MutableMapping[str, Any]) -> bool:
        headers = getattr(handle, "headers", None)
        if headers is not None and not getattr(handle, "headers_sent", True):
            headers["Connection"] = "close"
        return True


class _Django(_Wsgiref):
    __slots__ = ()
    name = "django-runserver"
    always_closes = False

    def close(self, handle: Any, environ: MutableMapping[str, Any]) -> bool:
        # Called right after start_response: nothing is sent yet.
        handle.headers["Connection"] = "close"
        request_handler = getattr(handle, "request_handler", None)
        if request_handler is not None:
            request_handler.close_connection = True
        return True


WSGIREF = _Wsgiref()
DJANGO = _Django()
