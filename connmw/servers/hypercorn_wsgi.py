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
- The environ has no ``REMOTE_PORT`` and nothing else that outlives one request.
  ``run_app`` itself holds ``send``, a ``functools.partial`` over the stream's
  ``app_send``; the stream's ``send`` is a method of the connection's protocol
  object (``hypercorn.protocol``), which lives as long as the connection: it is
  found on the ``run_app`` frame that called the application (a bounded walk,
  only where a per-connection option needs it).
- The idle timeout is the protocol's ``config.keep_alive_timeout``
  (``--keep-alive``, default 5 s), as when hypercorn serves ASGI.
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

from .base import HeaderCloses, number

__all__ = ["HYPERCORN_WSGI", "hypercorn_connection", "is_hypercorn_start_response"]

#: How many frames are looked at for hypercorn's ``run_app``.
_MAX_FRAMES = 16


class _HypercornWsgi(HeaderCloses):
    __slots__ = ()
    name = "hypercorn"
    idle_setting = "hypercorn --keep-alive"

    def idle_timeout(self, handle: Any) -> float | None:
        # The protocol's config holds --keep-alive, as for hypercorn's ASGI side.
        config = getattr(hypercorn_connection(handle), "config", None)
        return number(getattr(config, "keep_alive_timeout", None))


def is_hypercorn_start_response(fn: Any) -> bool:
    """True for the ``start_response`` closure hypercorn hands a WSGI application."""
    return getattr(fn, "__module__", None) == "hypercorn.app_wrappers"


def hypercorn_connection(start_response: Any) -> Any:
    """The protocol object of the connection behind hypercorn's ``start_response``
    (looked for from the caller up: how many frames connmw's own calls take differs in
    the compiled build, whose functions have none), or None."""
    if not is_hypercorn_start_response(start_response):
        return None
    frame: FrameType | None = sys._getframe(1)
    for _ in range(_MAX_FRAMES):
        if frame is None:
            return None
        if frame.f_code.co_name == "run_app" and frame.f_locals.get("start_response") is start_response:
            args = getattr(frame.f_locals.get("send"), "args", ())
            stream = getattr(args[0], "__self__", None) if args else None
            protocol = getattr(getattr(stream, "send", None), "__self__", None)
            if (type(protocol).__module__ or "").startswith("hypercorn.protocol"):
                return protocol
            return None
        frame = frame.f_back
    return None


HYPERCORN_WSGI = _HypercornWsgi()
