"""mod_wsgi (Apache).

Facts (measured; the conformance suite is the source of truth)
-----
- mod_wsgi honours a ``Connection: close`` passed to ``start_response``; there is
  no other handle. Its ``start_response`` belongs to a type of module ``mod_wsgi``.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from .base import WsgiServer

__all__ = ["MOD_WSGI"]


class _ModWsgi(WsgiServer):
    __slots__ = ()
    name = "mod_wsgi"
    http10_keep_alive = True
    via_header = True

    def close(self, handle: Any, environ: MutableMapping[str, Any]) -> bool:
        return True  # connmw passed ``Connection: close`` to start_response


MOD_WSGI = _ModWsgi()
