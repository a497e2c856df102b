"""How a close is made real on each server: one module per server family.

Facts (measured, see SERVERS.md in the design notes; the conformance suite is the
source of truth)
-----
- No server reads an environ key or a scope key to decide persistence; the server
  is told apart by the type of the objects it hands over (``send``,
  ``start_response``, ``write``), never by ``SERVER_SOFTWARE``.
- Each module below states what its server does with an application's
  ``Connection`` header and which of its objects make a close real.

This package finds the server: :func:`asgi_server_profile` from an ASGI ``send``,
:func:`wsgi_server` from a WSGI ``start_response``/``write``. Lookups are cached
per type, bounded.
"""

from __future__ import annotations

import functools
from typing import Any

from .asgi_bridge import ASGI_BRIDGE, is_asgi_bridge
from .base import AsgiProfile, BodyHook, WsgiServer, reachable
from .cheroot import CHEROOT
from .daphne import DAPHNE
from .gevent import GEVENT, is_gevent_handler
from .granian_wsgi import GRANIAN_WSGI
from .gunicorn import GUNICORN
from .hypercorn import HYPERCORN
from .hypercorn_wsgi import HYPERCORN_WSGI, is_hypercorn_start_response
from .mod_wsgi import MOD_WSGI
from .uvicorn import UVICORN_H2, UVICORN_H11, UVICORN_HTTPTOOLS
from .uwsgi import uwsgi_server
from .waitress import WAITRESS
from .werkzeug import WERKZEUG, werkzeug_handler
from .wsgiref import DJANGO, WSGIREF

__all__ = [
    "AsgiProfile",
    "BodyHook",
    "WsgiServer",
    "asgi_idle_reader",
    "asgi_profile_for",
    "asgi_server_profile",
    "wsgi_server",
]

# --------------------------------------------------------------------------- ASGI

UNKNOWN_ASGI = AsgiProfile("unknown")
#: granian's objects are Rust: its idle timeout (an idle HTTP/1 connection closes
#: after ``--http1-header-read-timeout``, 30 s by default, measured) cannot be read.
_GRANIAN = AsgiProfile("granian", http10_keep_alive=True)
_ASGI_PROFILES: dict[type, AsgiProfile] = {}


def asgi_profile_for(module: str) -> AsgiProfile:
    """The profile of the server whose object lives in ``module``."""
    if module.startswith("uvicorn.protocols.http.httptools"):
        return UVICORN_HTTPTOOLS
    if module.startswith("uvicorn.protocols.http.zttp_h2"):
        return UVICORN_H2
    if module.startswith("uvicorn."):
        return UVICORN_H11
    if module.startswith("hypercorn."):
        return HYPERCORN
    if module.startswith("granian"):
        return _GRANIAN
    if module.startswith("daphne."):
        return DAPHNE
    return UNKNOWN_ASGI


def _profile_of_type(kind: type) -> AsgiProfile:
    profile = _ASGI_PROFILES.get(kind)
    if profile is None:
        profile = asgi_profile_for(kind.__module__ or "")
        if len(_ASGI_PROFILES) < 256:
            _ASGI_PROFILES[kind] = profile
    return profile


def asgi_server_profile(send: Any) -> AsgiProfile:
    """The profile of the server behind ``send``.

    A bound method is looked up by its owner's type (cached); a partial or a
    closure (``send`` wrapped by a middleware outside connmw) is searched with
    bounded effort, the first known server wins.
    """
    owner = getattr(send, "__self__", None)
    if owner is not None:
        kind = type(owner)
        profile = _profile_of_type(kind)
        if profile is not UNKNOWN_ASGI:
            return profile
        # A method of an object no profile knows (a middleware's class outside connmw):
        # what the search finds behind it depends only on its class and its function
        # (the function's closure and ``__wrapped__``), so it is searched once.
        func = getattr(send, "__func__", None)
        if func is not None:
            hit = _BY_METHOD.get(func)
            if hit is not None and hit[0] is kind:
                return hit[1]
            profile = _search(send)
            if len(_BY_METHOD) < 256:
                _BY_METHOD[func] = (kind, profile)
            return profile
    return _search(send)


#: Methods of unknown objects, with the profile found behind them.
_BY_METHOD: dict[Any, tuple[type, AsgiProfile]] = {}


def _search(send: Any) -> AsgiProfile:
    for candidate in reachable(send):
        profile = _profile_of_type(type(candidate))
        if profile is not UNKNOWN_ASGI:
            return profile
    return UNKNOWN_ASGI


def asgi_idle_reader(send: Any) -> AsgiProfile | None:
    """The profile that reads the idle timeout behind ``send``, found cheaply: by
    ``send.__self__``'s type, or through a ``functools.partial`` (daphne); None for
    a plain function (every reader needs the server's own object)."""
    owner = getattr(send, "__self__", None)
    if owner is not None:
        return _profile_of_type(type(owner))
    if type(send) is functools.partial:
        return asgi_server_profile(send)
    return None


# --------------------------------------------------------------------------- WSGI

UNKNOWN_WSGI = WsgiServer()
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
        return GUNICORN
    if module.startswith("waitress.") and hasattr(obj, "set_close_on_finish"):
        return WAITRESS
    if module.startswith("wsgiref."):
        return WSGIREF
    if module.startswith("django.core.servers.") and hasattr(obj, "request_handler"):
        return DJANGO
    if module.startswith("cheroot.") and hasattr(obj, "req"):
        return CHEROOT
    if module == "mod_wsgi":
        return MOD_WSGI
    if module == "granian.wsgi" and hasattr(obj, "headers"):
        return GRANIAN_WSGI
    if is_asgi_bridge(obj):
        return ASGI_BRIDGE
    if is_gevent_handler(obj):
        return GEVENT
    return None


def _wsgi_server_of_function(fn: Any) -> tuple[WsgiServer | None, Any]:
    """Servers whose ``start_response`` is a plain function, a closure or a callable
    object: the server and the object to act on, or ``(None, None)``."""
    handler = werkzeug_handler(fn)
    if handler is not None:
        return WERKZEUG, handler
    if is_hypercorn_start_response(fn):
        return HYPERCORN_WSGI, fn
    server, handle = uwsgi_server(fn)
    if server is not None:
        return server, handle
    server = _wsgi_server_for(fn)  # a callable object (granian's Response)
    return server, (fn if server is not None else None)


def wsgi_server(start_response: Any, write: Any) -> tuple[WsgiServer, Any]:
    """Find the server from the objects it handed over.

    Looks at ``start_response.__self__`` and ``write.__self__``, or at the callable
    itself where it has no owner (either may be wrapped by another middleware;
    ``__wrapped__`` chains are followed).
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
                server, handle = _wsgi_server_of_function(fn)
                if server is not None:
                    return server, handle
            fn = getattr(fn, "__wrapped__", None)
            seen += 1
    return UNKNOWN_WSGI, None
