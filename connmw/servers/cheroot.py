"""cheroot (CherryPy's server).

Facts (measured; the conformance suite is the source of truth)
-----
- cheroot keeps the connection unless ``request.close_connection`` is set (it
  then writes ``Connection: close`` itself); an application's ``Connection:
  close`` is passed on but the connection is not closed.
- It compares the client's ``Connection`` value to ``close`` byte for byte
  (``Close`` keeps it open).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from .base import WsgiServer

__all__ = ["CHEROOT"]


class _Cheroot(WsgiServer):
    __slots__ = ()
    name = "cheroot"
    http10_keep_alive = True

    def close(self, handle: Any, environ: MutableMapping[str, Any]) -> bool:
        # Called right after start_response, before the headers go out; cheroot
        # then writes ``Connection: close`` itself on HTTP/1.1.
        handle.req.close_connection = True
        return True


CHEROOT = _Cheroot()
