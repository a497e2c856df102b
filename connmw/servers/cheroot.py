"""cheroot (CherryPy's server).

Facts (measured; the conformance suite is the source of truth)
-----
- cheroot keeps the connection unless ``request.close_connection`` is set (it
  then writes ``Connection: close`` itself); an application's ``Connection:
  close`` is passed on but the connection is not closed.
- It compares the client's ``Connection`` value to ``close`` byte for byte
  (``Close`` keeps it open).
- An idle keep-alive connection is closed once unused for the server's
  ``timeout`` (default 10 s), checked every ``expiration_interval`` (0.5 s); the
  gateway reaches the server as ``req.server``.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from .base import WsgiServer, number

__all__ = ["CHEROOT"]


class _Cheroot(WsgiServer):
    __slots__ = ()
    name = "cheroot"
    http10_keep_alive = True
    idle_setting = "cheroot timeout"

    def idle_timeout(self, handle: Any) -> float | None:
        server = getattr(getattr(handle, "req", None), "server", None)
        return number(getattr(server, "timeout", None))

    def close(self, handle: Any, environ: MutableMapping[str, Any]) -> bool:
        # Called right after start_response, before the headers go out; cheroot
        # then writes ``Connection: close`` itself on HTTP/1.1.
        handle.req.close_connection = True
        return True


CHEROOT = _Cheroot()
