"""What connmw needs to know about a server: the two base profiles, and how to
reach the server's own objects behind the callables it hands over."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, MutableMapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .h2 import H2Handle

__all__ = ["AsgiProfile", "BodyHook", "WsgiServer", "number", "reachable"]

BodyHook = Callable[[MutableMapping[str, Any]], None]


class AsgiProfile:
    """What connmw needs to know about an ASGI server.

    ``h2`` is how to reach its HTTP/2 connections, or None where connmw cannot.
    """

    __slots__ = ("h2", "http10_keep_alive", "name")

    #: The server setting behind :meth:`idle_timeout`, as its users spell it.
    idle_setting = ""

    def __init__(self, name: str, http10_keep_alive: bool = False, h2: H2Handle | None = None) -> None:
        self.name = name
        self.http10_keep_alive = http10_keep_alive
        self.h2 = h2

    def idle_timeout(self, send: Any) -> float | None:
        """Seconds the server keeps an idle HTTP/1.x connection open between
        requests, read from its own objects behind ``send``; None when unknown."""
        return None

    def close_delimit(self, send: Any) -> BodyHook | None:
        """Make an HTTP/1.0 response without length go out close-delimited."""
        return None

    def close(self, send: Any) -> bool:
        """Make the connection close after this response, beyond the ``connection:
        close`` line connmw writes; False when that cannot be done. Servers that
        honour the line need nothing more."""
        return True


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
    #: (found from ``start_response`` alone; :meth:`close` is then asked before
    #: ``start_response`` is called, and the line passed only when it says yes).
    via_header = False
    #: The server setting behind :meth:`idle_timeout`, as its users spell it.
    idle_setting = ""
    #: Added to the warning when a close cannot be made real here.
    hint = ""
    #: A ``Keep-Alive`` passed to ``start_response`` goes out as it is: connmw passes
    #: its value with the headers instead of calling :meth:`advertise` after.
    keep_alive_header = False

    def idle_timeout(self, handle: Any) -> float | None:
        """Seconds the server keeps an idle connection open between requests, read
        from ``handle`` (the server object found from ``start_response``); None
        when unknown."""
        return None

    def close(self, handle: Any, environ: MutableMapping[str, Any]) -> bool:
        """Make this response the last on its connection; True when it will be."""
        return self.always_closes

    def advertise(self, handle: Any, value: str) -> bool:
        """Add ``Keep-Alive: value`` to the response; True when it was added."""
        return False

    def must_close(self, known_length: bool) -> bool:
        """The connection cannot outlive this response on this server (it closes
        anyway, or cannot frame the body otherwise): connmw announces the close."""
        return False

    def after_body(self, handle: Any) -> Callable[[], None] | None:
        """What makes a close real once the body is written, for servers that need
        it (called when connmw closes; None: nothing to do)."""
        return None


class HeaderCloses(WsgiServer):
    """A server that honours a ``Connection: close`` passed to ``start_response``:
    connmw passes the line when it closes, and that makes the close real. It sends
    a ``Keep-Alive`` passed the same way as it is."""

    __slots__ = ()
    via_header = True
    keep_alive_header = True

    def close(self, handle: Any, environ: MutableMapping[str, Any]) -> bool:
        return True


def number(value: object) -> float | None:
    """``value`` as seconds when it is a real number (not a bool), else None: what a
    server's setting holds is read, never trusted."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
        return float(value)
    return None


def reachable(fn: Any, depth: int = 4, budget: int = 32) -> Iterator[Any]:
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
