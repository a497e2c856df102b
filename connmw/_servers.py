"""How a close is made real on each server.

Facts (measured, see SERVERS.md in the design notes; the conformance suite is the
source of truth)
-----
- gunicorn (gthread, gevent, eventlet) drops an application's ``Connection``
  header and keeps the connection; its ``Response`` (``start_response.__self__``)
  has ``force_close()``, honoured until the first body byte.
- waitress raises ``AssertionError`` (a 500) on any hop-by-hop header; its task
  (``write.__self__``) has ``set_close_on_finish()``, which also writes
  ``Connection: close``. For HTTP/1.0 keep-alive requests the request's
  ``CONNECTION`` header must say ``close`` too, or waitress adds ``Keep-Alive``.
- wsgiref asserts on hop-by-hop headers (a 500) and always closes; its handler
  (``start_response.__self__``) carries the headers that go out.
- uvicorn's httptools protocol sends chunked framing even to HTTP/1.0 clients
  when the application gives no length; its cycle (``send.__self__``) decides
  the framing from ``chunked_encoding`` and ``expected_content_length``.
- No server reads an environ key to decide persistence; the server is told apart
  by the type of the objects it hands over, never by ``SERVER_SOFTWARE``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from typing import Any

__all__ = ["AsgiProfile", "WsgiServer", "asgi_server_profile", "wsgi_server"]

logger = logging.getLogger("connmw")

BodyHook = Callable[[MutableMapping[str, Any]], None]


# --------------------------------------------------------------------------- ASGI


class AsgiProfile:
    """What connmw needs to know about an ASGI server."""

    __slots__ = ("http10_keep_alive", "name")

    def __init__(self, name: str, http10_keep_alive: bool = False) -> None:
        self.name = name
        self.http10_keep_alive = http10_keep_alive

    def close_delimit(self, send: Any) -> BodyHook | None:
        """Make an HTTP/1.0 response without length go out close-delimited."""
        return None


class _HttptoolsProfile(AsgiProfile):
    __slots__ = ()

    def close_delimit(self, send: Any) -> BodyHook | None:
        cycle = getattr(send, "__self__", None)
        if (
            cycle is None
            or not hasattr(cycle, "chunked_encoding")
            or not hasattr(cycle, "expected_content_length")
        ):
            return None
        # Raw body, no chunk markers: the connection's close delimits it.
        cycle.chunked_encoding = False

        def hook(message: MutableMapping[str, Any]) -> None:
            if message.get("type") == "http.response.body":
                body = message.get("body", b"")
                # uvicorn checks the bytes written against this count; keep it
                # one ahead until the last message so it never sees a mismatch.
                cycle.expected_content_length = len(body) + (1 if message.get("more_body", False) else 0)

        hook(  # the count starts at 0: make room for the first message
            {"type": "http.response.body", "body": b"", "more_body": True}
        )
        return hook


_UNKNOWN_ASGI = AsgiProfile("unknown")
_ASGI_PROFILES: dict[type, AsgiProfile] = {}


def _asgi_profile_for(module: str) -> AsgiProfile:
    if module.startswith("uvicorn.protocols.http.httptools"):
        return _HttptoolsProfile("uvicorn-httptools")
    if module.startswith("uvicorn."):
        return AsgiProfile("uvicorn-h11")
    if module.startswith("hypercorn."):
        return AsgiProfile("hypercorn")
    if module.startswith("granian"):
        return AsgiProfile("granian", http10_keep_alive=True)
    if module.startswith("daphne."):
        return AsgiProfile("daphne")
    return _UNKNOWN_ASGI


def asgi_server_profile(send: Any) -> AsgiProfile:
    """The profile of the server behind ``send`` (cached per type)."""
    owner = getattr(send, "__self__", send)
    kind = type(owner)
    profile = _ASGI_PROFILES.get(kind)
    if profile is None:
        profile = _asgi_profile_for(kind.__module__ or "")
        if len(_ASGI_PROFILES) < 256:
            _ASGI_PROFILES[kind] = profile
    return profile


# --------------------------------------------------------------------------- WSGI


class WsgiServer:
    """How to make a close real (and advertise keep-alive) on one WSGI server."""

    __slots__ = ()

    name = "unknown"
    #: The server keeps an HTTP/1.0 connection alive when the client asks and the
    #: response has a length.
    http10_keep_alive = False
    #: The server closes after every response anyway.
    always_closes = False

    def close(self, handle: Any, environ: MutableMapping[str, Any]) -> bool:
        """Make this response the last on its connection; True when it will be."""
        return self.always_closes

    def advertise(self, handle: Any, value: str) -> bool:
        """Add ``Keep-Alive: value`` to the response; True when it was added."""
        return False


class _Gunicorn(WsgiServer):
    __slots__ = ()
    name = "gunicorn"
    http10_keep_alive = True

    def close(self, handle: Any, environ: MutableMapping[str, Any]) -> bool:
        handle.force_close()
        return True

    def advertise(self, handle: Any, value: str) -> bool:
        handle.headers.append(("Keep-Alive", value))
        return True


class _Waitress(WsgiServer):
    __slots__ = ()
    name = "waitress"
    http10_keep_alive = True

    def close(self, handle: Any, environ: MutableMapping[str, Any]) -> bool:
        request = getattr(handle, "request", None)
        headers = getattr(request, "headers", None)
        if isinstance(headers, dict) and "CONNECTION" in headers:
            headers["CONNECTION"] = "close"
        handle.set_close_on_finish()
        return True

    def advertise(self, handle: Any, value: str) -> bool:
        handle.response_headers.append(("Keep-Alive", value))
        return True


class _Wsgiref(WsgiServer):
    __slots__ = ()
    name = "wsgiref"
    always_closes = True

    def close(self, handle: Any, environ: MutableMapping[str, Any]) -> bool:
        headers = getattr(handle, "headers", None)
        if headers is not None and not getattr(handle, "headers_sent", True):
            headers["Connection"] = "close"
        return True


_UNKNOWN_WSGI = WsgiServer()
_GUNICORN = _Gunicorn()
_WAITRESS = _Waitress()
_WSGIREF = _Wsgiref()


def _wsgi_server_for(obj: Any) -> WsgiServer | None:
    module = type(obj).__module__ or ""
    if module.startswith("gunicorn.") and hasattr(obj, "force_close"):
        return _GUNICORN
    if module.startswith("waitress.") and hasattr(obj, "set_close_on_finish"):
        return _WAITRESS
    if module.startswith("wsgiref."):
        return _WSGIREF
    return None


def wsgi_server(start_response: Any, write: Any) -> tuple[WsgiServer, Any]:
    """Find the server from the objects it handed over.

    Looks at ``start_response.__self__`` and ``write.__self__`` (either may be
    wrapped by another middleware; ``__wrapped__`` chains are followed).
    Returns the server and the object to act on; ``(unknown, None)`` when no known
    server is found.
    """
    for fn in (start_response, write):
        seen = 0
        while fn is not None and seen < 8:
            owner = getattr(fn, "__self__", None)
            if owner is not None:
                server = _wsgi_server_for(owner)
                if server is not None:
                    return server, owner
            fn = getattr(fn, "__wrapped__", None)
            seen += 1
    return _UNKNOWN_WSGI, None
