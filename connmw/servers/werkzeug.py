"""werkzeug's development server (``run_simple``).

Facts (measured; the conformance suite is the source of truth)
-----
- It closes every connection and says so; its ``start_response`` is a closure of
  ``WSGIRequestHandler.run_wsgi`` that keeps the header list it is given (until
  the first ``write``) and holds ``write``, a closure over the handler.
- It sends chunked framing whenever the *server* speaks HTTP/1.1, even to an
  HTTP/1.0 client: the handler's ``protocol_version`` decides.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from .base import WsgiServer

__all__ = ["WERKZEUG", "werkzeug_handler"]


class _Werkzeug(WsgiServer):
    __slots__ = ()
    name = "werkzeug"
    always_closes = True

    def close(self, handle: Any, environ: MutableMapping[str, Any]) -> bool:
        # werkzeug writes ``Connection: close`` itself. It chunks whenever the
        # handler speaks HTTP/1.1: answer an HTTP/1.0 client in HTTP/1.0, so a
        # body without length is delimited by the close.
        if environ.get("SERVER_PROTOCOL") == "HTTP/1.0":
            handle.protocol_version = "HTTP/1.0"
        return True


def werkzeug_handler(fn: Any, depth: int = 0) -> Any:
    """The ``WSGIRequestHandler`` behind werkzeug's ``start_response``/``write``
    closures (``self`` in ``run_wsgi``; ``start_response`` reaches it through the
    ``write`` it returns), or None."""
    if getattr(fn, "__module__", None) != "werkzeug.serving":
        return None
    code = getattr(fn, "__code__", None)
    closure = getattr(fn, "__closure__", None)
    if code is None or closure is None:
        return None
    cells = dict(zip(code.co_freevars, closure, strict=False))
    try:
        if "self" in cells:
            return cells["self"].cell_contents
        if "write" in cells and depth == 0:
            return werkzeug_handler(cells["write"].cell_contents, 1)
    except ValueError:  # pragma: no cover - the cells are set before the app runs
        return None
    return None


WERKZEUG = _Werkzeug()
