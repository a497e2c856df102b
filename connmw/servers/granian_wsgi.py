"""granian's WSGI interface (``granian --interface wsgi``).

Facts (measured with granian 2.8; the conformance suite is the source of truth)
-----
- ``start_response`` is a ``granian.wsgi.Response`` object (a callable, no
  ``__self__``); it keeps the header list it is given and the Rust side writes the
  response after the application returns.
- granian honours a ``Connection: close`` passed to ``start_response``: the line
  is sent once and the socket closes. It parses the client's ``Connection``
  token list itself, and keeps an HTTP/1.0 connection when the client asks and
  the response has a length.
- The environ has no ``REMOTE_PORT`` and nothing else that outlives one request:
  per-connection options (request caps, connection age) cannot apply here.
"""

from __future__ import annotations

from .base import HeaderCloses

__all__ = ["GRANIAN_WSGI"]


class _GranianWsgi(HeaderCloses):
    __slots__ = ()
    name = "granian"
    http10_keep_alive = True


GRANIAN_WSGI = _GranianWsgi()
