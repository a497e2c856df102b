"""uWSGI serving HTTP itself (``--http-socket``, ``--http11-socket``).

Facts (measured with uWSGI 2.0.30 from the ``pyuwsgi`` wheel; the conformance
suite is the source of truth)
-----
- ``start_response`` is the built-in ``uwsgi_spit``; ``uwsgi.opt`` holds the
  options the server was started with, so the socket kind can be told apart.
  Both socket kinds pass an application's ``Connection`` header to the client
  as it is.
- ``--http-socket`` closes the connection after every response, on HTTP/1.1 too,
  without saying so.
- ``--http11-socket`` keeps HTTP/1.1 connections, but ignores ``Connection:
  close`` from the client and from the application (the header goes out, the
  connection stays: announced, not made). Shutting down the connection's socket
  (``uwsgi.connection_fd()``) once the body is written makes the close real; the
  server then ends the connection. It never chunks: a body without length is
  written raw on a connection it keeps, so the client cannot find its end unless
  the connection closes. HTTP/1.0 connections are closed.
- ``--http11-socket`` closes a kept connection that stays idle for
  ``--socket-timeout`` seconds (default 4; measured 4.0 s, and 2.0 s with
  ``--socket-timeout 2``), read from ``uwsgi.opt``.
- Pipelined requests are dropped: after the first response the server closes
  without saying so (behind a close connmw announced, nothing is lost to it).
- Any other way uWSGI speaks HTTP (``--http`` router, ``--socket`` behind a web
  server) puts another program between the application and the client: connmw
  treats it as a server it does not know.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from typing import Any

from .base import HeaderCloses, WsgiServer, number

__all__ = ["UWSGI_HTTP", "UWSGI_HTTP11", "uwsgi_server"]

#: uWSGI options that open a socket, by kind; an instance may open several.
_PLAIN = frozenset(("http-socket", "https-socket"))
_HTTP11 = frozenset(("http11-socket",))
_OTHER = frozenset(
    (
        "socket",
        "uwsgi-socket",
        "suwsgi-socket",
        "ssl-socket",
        "http",
        "https",
        "http-to",
        "fastcgi-socket",
        "fastcgi-nph-socket",
        "scgi-socket",
        "scgi-nph-socket",
        "raw-socket",
        "puwsgi-socket",
        "shared-socket",
        "zmq",
        "zeromq",
    )
)


class _UwsgiHttp(HeaderCloses):
    """``--http-socket``: every response is the last on its connection."""

    __slots__ = ()
    name = "uwsgi --http-socket"
    always_closes = True

    def must_close(self, known_length: bool) -> bool:
        return True


#: uWSGI's ``--socket-timeout`` when it is not given.
_DEFAULT_SOCKET_TIMEOUT = 4.0


class _UwsgiHttp11(HeaderCloses):
    """``--http11-socket``: kept connections; the line connmw passes is made real
    after the body (:meth:`after_body`)."""

    __slots__ = ()
    name = "uwsgi --http11-socket"
    idle_setting = "uwsgi --socket-timeout"

    def must_close(self, known_length: bool) -> bool:
        return not known_length

    def after_body(self, handle: Any) -> Callable[[], None] | None:
        return _Shutdown(handle.connection_fd())

    def idle_timeout(self, handle: Any) -> float | None:
        opt = getattr(handle, "opt", None)
        if not isinstance(opt, dict):
            return None
        raw = opt.get("socket-timeout", opt.get(b"socket-timeout"))
        if raw is None:
            return _DEFAULT_SOCKET_TIMEOUT
        if isinstance(raw, list):  # a repeated option: the last one counts
            raw = raw[-1] if raw else None
        if isinstance(raw, bytes):
            raw = raw.decode("latin-1")
        try:
            return number(float(raw))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None


class _Shutdown:
    """Ends the connection on descriptor ``fd`` in both directions: the client reads
    the end of the stream after the body, the server's next read of this
    connection returns nothing and it lets the connection go."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __call__(self) -> None:
        try:
            # fromfd duplicates the descriptor; shutdown acts on the socket itself.
            with socket.fromfd(self.fd, socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # the client is already gone


UWSGI_HTTP = _UwsgiHttp()
UWSGI_HTTP11 = _UwsgiHttp11()
_kind: list[WsgiServer | None] = []


def uwsgi_server(fn: Any) -> tuple[WsgiServer | None, Any]:
    """The profile and handle (the ``uwsgi`` module) when ``fn`` is uWSGI's
    ``start_response``; ``(None, None)`` otherwise, or when uWSGI serves HTTP
    through something connmw does not know."""
    if getattr(fn, "__name__", None) != "uwsgi_spit":
        return None, None
    module = sys.modules.get("uwsgi")
    if module is None:
        return None, None
    if not _kind:
        _kind.append(_socket_kind(getattr(module, "opt", {})))
    return _kind[0], module


def _socket_kind(opt: Any) -> WsgiServer | None:
    try:
        names = {key.decode("latin-1") if isinstance(key, bytes) else str(key) for key in opt}
    except TypeError:
        return None
    opened = names & (_PLAIN | _HTTP11 | _OTHER)
    if opened and opened <= _PLAIN:
        return UWSGI_HTTP
    if opened and opened <= _HTTP11:
        return UWSGI_HTTP11
    return None
