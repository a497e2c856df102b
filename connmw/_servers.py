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
- daphne hands ``send`` over as ``functools.partial(server.handle_reply, request)``;
  Twisted decides persistence from the request alone (``channel.persistent``),
  so an application's ``Connection: close`` goes out but the connection stays
  open, and when the client sent ``close`` Twisted has already put its own
  ``Connection: close`` in ``request.responseHeaders`` (a second line follows).
  Clearing ``channel.persistent`` before the response ends makes Twisted close.
- werkzeug's development server (``run_simple``) closes every connection and
  says so; its ``start_response`` is a closure of ``WSGIRequestHandler.run_wsgi``
  and it sends chunked framing whenever the *server* speaks HTTP/1.1, even to an
  HTTP/1.0 client: the handler's ``protocol_version`` decides.
- Django's ``runserver`` handler (a wsgiref ``ServerHandler`` subclass) closes
  when its outgoing headers say ``Connection: close``; it keeps the connection
  otherwise, and ignores a client's ``Connection: TE, close``.
- cheroot keeps the connection unless ``request.close_connection`` is set (it
  then writes ``Connection: close`` itself); it compares the client's
  ``Connection`` value to ``close`` byte for byte (``Close`` keeps it open).
- mod_wsgi (Apache) honours a ``Connection: close`` passed to ``start_response``;
  there is no other handle. Its ``start_response`` belongs to a type of module
  ``mod_wsgi``.
- No server reads an environ key to decide persistence; the server is told apart
  by the type of the objects it hands over, never by ``SERVER_SOFTWARE``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, MutableMapping
from types import ModuleType
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

    def close(self, send: Any) -> bool:
        """Make the connection close after this response, beyond the ``connection:
        close`` line connmw writes; False when that cannot be done. Servers that
        honour the line need nothing more."""
        return True


class _DaphneProfile(AsgiProfile):
    __slots__ = ()

    def close(self, send: Any) -> bool:
        for request in _reachable(send):
            channel = getattr(request, "channel", None)
            headers = getattr(request, "responseHeaders", None)
            if channel is not None and hasattr(channel, "persistent") and headers is not None:
                # Twisted's own line would duplicate connmw's.
                headers.removeHeader(b"connection")
                channel.persistent = False
                return True
        return False


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
        return _DaphneProfile("daphne")
    return _UNKNOWN_ASGI


def _profile_of_type(kind: type) -> AsgiProfile:
    profile = _ASGI_PROFILES.get(kind)
    if profile is None:
        profile = _asgi_profile_for(kind.__module__ or "")
        if len(_ASGI_PROFILES) < 256:
            _ASGI_PROFILES[kind] = profile
    return profile


def _reachable(fn: Any, depth: int = 4, budget: int = 32) -> Iterator[Any]:
    """The objects behind a server callable, nearest first: its ``__self__``, a
    ``functools.partial``'s arguments and function, ``__wrapped__``, and the
    callables captured by closures (another middleware's ``send`` wrapper).
    Bounded in depth and in the number of objects looked at."""
    queue = [(fn, 0)]
    while queue and budget > 0:
        obj, level = queue.pop(0)
        budget -= 1
        owner = getattr(obj, "__self__", None)
        if owner is not None and not isinstance(owner, ModuleType):
            yield owner
        if isinstance(obj, functools.partial):
            yield from obj.args
            queue.append((obj.func, level))
        if level >= depth:
            continue
        wrapped = getattr(obj, "__wrapped__", None)
        if wrapped is not None:
            queue.append((wrapped, level + 1))
        for cell in getattr(obj, "__closure__", None) or ():
            try:
                inner = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if callable(inner) and not isinstance(inner, type):
                queue.append((inner, level + 1))


def asgi_server_profile(send: Any) -> AsgiProfile:
    """The profile of the server behind ``send``.

    A bound method is looked up by its owner's type (cached); a partial or a
    closure (``send`` wrapped by a middleware outside connmw) is searched with
    bounded effort, the first known server wins.
    """
    owner = getattr(send, "__self__", None)
    if owner is not None:
        profile = _profile_of_type(type(owner))
        if profile is not _UNKNOWN_ASGI:
            return profile
    for candidate in _reachable(send):
        profile = _profile_of_type(type(candidate))
        if profile is not _UNKNOWN_ASGI:
            return profile
    return _UNKNOWN_ASGI


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
    #: The close is made by passing ``Connection: close`` to ``start_response``
    #: (found from ``start_response`` alone, before it is called).
    via_header = False

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
        # waitress closes an HTTP/1.1 response it has to chunk; it knows whether it
        # will only when the body starts, so Keep-Alive is promised only when the
        # application gave the length itself.
        headers = handle.response_headers
        if not any(name.lower() == "content-length" for name, _ in headers):
            return False
        headers.append(("Keep-Alive", value))
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


class _Django(_Wsgiref):
    __slots__ = ()
    name = "django-runserver"
    always_closes = False

    def close(self, handle: Any, environ: MutableMapping[str, Any]) -> bool:
        # Called right after start_response: nothing is sent yet.
        handle.headers["Connection"] = "close"
        request_handler = getattr(handle, "request_handler", None)
        if request_handler is not None:
            request_handler.close_connection = True
        return True


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


class _Cheroot(WsgiServer):
    __slots__ = ()
    name = "cheroot"
    http10_keep_alive = True

    def close(self, handle: Any, environ: MutableMapping[str, Any]) -> bool:
        # Called right after start_response, before the headers go out; cheroot
        # then writes ``Connection: close`` itself on HTTP/1.1.
        handle.req.close_connection = True
        return True


class _ModWsgi(WsgiServer):
    __slots__ = ()
    name = "mod_wsgi"
    http10_keep_alive = True
    via_header = True

    def close(self, handle: Any, environ: MutableMapping[str, Any]) -> bool:
        return True  # connmw passed ``Connection: close`` to start_response


_UNKNOWN_WSGI = WsgiServer()
_GUNICORN = _Gunicorn()
_WAITRESS = _Waitress()
_WSGIREF = _Wsgiref()
_DJANGO = _Django()
_WERKZEUG = _Werkzeug()
_CHEROOT = _Cheroot()
_MOD_WSGI = _ModWsgi()


_WSGI_BY_TYPE: dict[type, WsgiServer | None] = {}


def _wsgi_server_for(obj: Any) -> WsgiServer | None:
    kind = type(obj)
    try:
        return _WSGI_BY_TYPE[kind]
    except KeyError:
        pass
    server = _wsgi_server_of_type(obj)
    if len(_WSGI_BY_TYPE) < 256:
        _WSGI_BY_TYPE[kind] = server
    return server


def _wsgi_server_of_type(obj: Any) -> WsgiServer | None:
    module = type(obj).__module__ or ""
    if module.startswith("gunicorn.") and hasattr(obj, "force_close"):
        return _GUNICORN
    if module.startswith("waitress.") and hasattr(obj, "set_close_on_finish"):
        return _WAITRESS
    if module.startswith("wsgiref."):
        return _WSGIREF
    if module.startswith("django.core.servers.") and hasattr(obj, "request_handler"):
        return _DJANGO
    if module.startswith("cheroot.") and hasattr(obj, "req"):
        return _CHEROOT
    if module == "mod_wsgi":
        return _MOD_WSGI
    return None


def _werkzeug_handler(fn: Any) -> Any:
    """The ``WSGIRequestHandler`` behind werkzeug's ``start_response``/``write``
    closures (``self`` in ``run_wsgi``), or None."""
    if getattr(fn, "__module__", None) != "werkzeug.serving":
        return None
    code = getattr(fn, "__code__", None)
    closure = getattr(fn, "__closure__", None)
    if code is None or closure is None:
        return None
    for name, cell in zip(code.co_freevars, closure, strict=False):
        if name == "self":
            try:
                return cell.cell_contents
            except ValueError:  # pragma: no cover - the cell is set before the app runs
                return None
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
            else:
                handler = _werkzeug_handler(fn)
                if handler is not None:
                    return _WERKZEUG, handler
            fn = getattr(fn, "__wrapped__", None)
            seen += 1
    return _UNKNOWN_WSGI, None
