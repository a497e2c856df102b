"""A WSGI application mounted in an ASGI one (a2wsgi's or Starlette's
``WSGIMiddleware``): connmw's WSGI middleware inside the mount meets the bridge as
its server.

Facts (measured with a2wsgi 1.10 and Starlette 1.x under uvicorn; the tests are the
source of truth)
-----
- The bridge's ``start_response`` is a method of its ``WSGIResponder``
  (``a2wsgi.wsgi``, ``starlette.middleware.wsgi``); it turns the headers into
  the ASGI ``http.response.start`` message and sends it at once, so anything to
  add must be passed to it.
- Every header passed reaches the ASGI side, ``Connection`` included. An ASGI
  connmw outside the mount (its facts are in the scope: a2wsgi hands the scope
  over as ``environ["asgi.scope"]``, Starlette's responder keeps it as
  ``.scope``) treats the application's ``Connection: close`` as the
  application's close and makes it real on whatever ASGI server runs. Without
  one, whether the ASGI server honours the line depends on the server (daphne
  does not): connmw then announces nothing.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from .base import WsgiServer

__all__ = ["ASGI_BRIDGE", "is_asgi_bridge"]

_MODULES = ("a2wsgi.", "starlette.middleware.wsgi")


class _AsgiBridge(WsgiServer):
    __slots__ = ()
    name = "a WSGI-in-ASGI bridge"
    via_header = True
    keep_alive_header = False  # the ASGI side decides what it advertises
    hint = (
        " Wrap the ASGI application around the mount in connmw.ConnectionMiddleware: it then "
        "makes the closes of the mounted WSGI application real."
    )

    def close(self, handle: Any, environ: MutableMapping[str, Any]) -> bool:
        # An ASGI connmw outside the mount takes the Connection: close connmw passes.
        scope = environ.get("asgi.scope")
        if not isinstance(scope, MutableMapping):
            scope = getattr(handle, "scope", None)
        return isinstance(scope, MutableMapping) and scope.get("connmw") is not None


def is_asgi_bridge(obj: Any) -> bool:
    """True for the ``WSGIResponder`` of a2wsgi or Starlette."""
    return (type(obj).__module__ or "").startswith(_MODULES) and hasattr(obj, "start_response")


ASGI_BRIDGE = _AsgiBridge()
