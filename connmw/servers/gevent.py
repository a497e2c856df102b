"""gevent's WSGI server (``gevent.pywsgi.WSGIServer``, and gunicorn's
``-k gevent_pywsgi`` worker, whose handler subclasses gevent's).

Facts (measured with gevent 26.9 and gunicorn 27; the conformance suite is the
source of truth)
-----
- ``start_response`` is a method of the connection's ``WSGIHandler``
  (``gevent.pywsgi``); the headers it is given are copied into
  ``handler.response_headers`` and written with the first body byte.
- An application's ``Connection: close`` (the value exactly ``close``) makes the
  handler close the connection after the response, and the line goes out once.
- gevent compares the client's ``Connection`` value to ``close`` as a whole, so
  ``TE, close`` keeps the connection open. It keeps an HTTP/1.0 connection
  when the client asks and adds ``Connection: keep-alive`` itself when the
  application sends no ``Connection`` header.
"""

from __future__ import annotations

from typing import Any

from .base import HeaderCloses

__all__ = ["GEVENT", "is_gevent_handler"]


class _Gevent(HeaderCloses):
    __slots__ = ()
    name = "gevent"
    http10_keep_alive = True


def is_gevent_handler(obj: Any) -> bool:
    """True for gevent's ``WSGIHandler`` or a subclass of it (gunicorn's)."""
    return any(kind.__module__ == "gevent.pywsgi" for kind in type(obj).__mro__) and hasattr(
        obj, "response_headers"
    )


GEVENT = _Gevent()
