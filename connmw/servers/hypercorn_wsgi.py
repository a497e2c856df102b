"""hypercorn serving a WSGI application (``hypercorn module:app`` on a WSGI
callable, or ``serve(app, config, mode="wsgi")``).

Facts (measured with hypercorn 0.18; the conformance suite is the source of truth)
-----
- ``start_response`` is a closure of ``WSGIWrapper.run_app`` in
  ``hypercorn.app_wrappers``; it copies the headers into the ASGI
  ``http.response.start`` message, so whatever reaches it reaches hypercorn's
  HTTP/1.1 layer (h11).
- h11 honours a ``Connection: close`` among those headers: the line goes out
  once and the connection closes after the response. It closes HTTP/1.0
  connections and parses the client's ``Connection`` token list itself.
- The environ has no ``REMOTE_PORT`` and nothing else that outlives one request:
  per-connection options (request caps, connection age) cannot apply here.
"""

from __future__ import annotations

from typing import Any

from .base import HeaderCloses

__all__ = ["HYPERCORN_WSGI", "is_hypercorn_start_response"]


class _HypercornWsgi(HeaderCloses):
    __slots__ = ()
    name = "hypercorn"


def is_hypercorn_start_response(fn: Any) -> bool:
    """True for the ``start_response`` closure hypercorn hands a WSGI application."""
    return getattr(fn, "__module__", None) == "hypercorn.app_wrappers"


HYPERCORN_WSGI = _HypercornWsgi()
