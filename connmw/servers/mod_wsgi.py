"""mod_wsgi (Apache).

Facts (measured; the conformance suite is the source of truth)
-----
- mod_wsgi honours a ``Connection: close`` passed to ``start_response``; there is
  no other handle. Its ``start_response`` belongs to a type of module ``mod_wsgi``.
"""

from __future__ import annotations

from .base import HeaderCloses

__all__ = ["MOD_WSGI"]


class _ModWsgi(HeaderCloses):
    __slots__ = ()
    name = "mod_wsgi"
    http10_keep_alive = True
    keep_alive_header = False  # Apache writes its own on HTTP/1.0 keep-alive responses


MOD_WSGI = _ModWsgi()
