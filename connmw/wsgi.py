"""PEP 3333 middleware: :class:`WSGIConnectionMiddleware`.

Facts
-----
- PEP 3333: an application or middleware must not pass hop-by-hop headers to
  ``start_response``; wsgiref and waitress turn one into a 500. So connmw removes
  them from the application's headers and makes the close real through the
  server's own objects (see :mod:`connmw.servers`). An application's ``Upgrade``
  therefore never goes out (RFC 9110 §7.8 would need ``upgrade`` in a
  ``Connection`` line the server writes); its own ``Keep-Alive`` goes out on a kept
  response where the server lets connmw add it, as on ASGI.
- Multiple ``Connection`` request fields reach the application joined with
  commas in ``HTTP_CONNECTION``.
- The decision is taken when ``start_response`` is called, before any body byte
  (after the first body byte a server can still close but can no longer say so);
  a call with ``exc_info`` replaces the headers, so the close is applied again.

Malformed input is handled conservatively: an unknown ``SERVER_PROTOCOL`` counts
as HTTP/1.1, a status line that does not start with three digits is passed
through untouched for the server to deal with.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ._api import join_outer
from ._configured import Configured, check_wsgi_app, subclassable
from ._controls import Controls
from ._decide import Decision, version_code
from ._engine import Engine, RequestFacts
from ._headers import WSGI_HOP_BY_HOP, connection_tokens, has_forbidden_chars
from ._state import wsgi_connection_key
from .servers import WsgiServer, wsgi_server

if TYPE_CHECKING:
    from _typeshed.wsgi import (
        StartResponse,
        WSGIApplication,  # noqa: F401 (the base class's type argument)
        WSGIEnvironment,
    )

__all__ = ["WSGIConnectionMiddleware"]

_WATCH_LEN = frozenset(len(n) for n in WSGI_HOP_BY_HOP) | {len("content-length")}
_NO_BODY_STATUS = frozenset((204, 304))
#: Status lines seen, with their code (an application uses a handful).
_CODES: dict[str, int] = {}
#: Running inside uWSGI (its ``uwsgi`` module exists before any application is
#: imported): there the server must be known before deciding, and a close may be
#: made after the body. Elsewhere the two checks below cost one global each.
_UWSGI = "uwsgi" in sys.modules


@subclassable
class WSGIConnectionMiddleware(Configured["WSGIApplication"], Controls):
    """Manage the HTTP ``Connection`` header of a WSGI application.

    :param app: the WSGI application to wrap.
    :param options: keyword-only, typed, validated here (see :class:`connmw.Options`);
        a misspelled name or a bad value raises at construction.

    Usage (Flask)::

        from connmw import WSGIConnectionMiddleware, Rule

        app.wsgi_app = WSGIConnectionMiddleware(
            app.wsgi_app, rules=[Rule("/export/*")], max_requests_per_connection=500
        )

    Hop-by-hop headers the application sets never reach ``start_response``; a close
    is made real through the server (gunicorn, waitress, wsgiref, ...). On a server
    connmw does not know, it warns once and sends no hop-by-hop header. The state of
    a connection is keyed on the server's connection where reachable, else on
    ``REMOTE_ADDR``/``REMOTE_PORT``: install connmw outside ``ProxyFix``-like
    middleware.
    """

    _check_app = staticmethod(check_wsgi_app)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        outer = environ.get("connmw")
        if outer is not None:
            join_outer(self._engine, outer)
            return self.app(environ, start_response)
        engine = self._engine
        version = version_code(environ.get("SERVER_PROTOCOL"))
        raw = environ.get("HTTP_CONNECTION")
        values = None
        if raw:
            values = [raw.encode("latin-1", "replace")]
        key = (
            (wsgi_connection_key(environ, start_response) or _no_identity(engine))
            if engine.table is not None
            else None
        )
        facts = RequestFacts(
            version,
            environ.get("REQUEST_METHOD", "GET"),
            environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
        )
        if not engine.plain:
            engine.begin(facts, values, key)
        elif values is not None:
            engine.read_client(facts, values)
        if engine.watching:
            engine.watch(facts, environ.get("REMOTE_ADDR"))
        environ["connmw"] = facts
        if values is not None and engine.strip_nominated:
            for name in engine.nominated(values):
                environ.pop("HTTP_" + name.decode("latin-1").upper().replace("-", "_"), None)

        # A partial, not a closure: mypyc cannot compile a closure in this class's methods.
        connmw_start_response = functools.partial(_start, engine, facts, environ, start_response)
        try:
            result = self.app(environ, connmw_start_response)
        except BaseException:
            # The server closes a connection whose application failed: its state goes.
            if key is not None and engine.table is not None:
                engine.table.forget(key)
            if engine.track_in_flight:
                engine.end(facts)
            raise
        if _UWSGI and (facts.after_body is not None or facts.decision is None):
            # The close is made once the body is written; an application that starts
            # its response while iterated is wrapped in case it closes.
            result = _AfterBody(result, engine, facts)
        if not engine.track_in_flight:
            return result
        wrapper_type = environ.get("wsgi.file_wrapper")
        if (
            isinstance(wrapper_type, type)
            and isinstance(result, wrapper_type)
            and _hook_close(result, engine, facts)
        ):
            # The server's own file wrapper stays what it is, so its sendfile path still applies.
            return result
        return (_SizedClosing if hasattr(result, "__len__") else _Closing)(result, engine, facts)


def _hook_close(result: Any, engine: Engine, facts: RequestFacts) -> bool:
    """Count the request out when the server closes its file wrapper; False when the
    wrapper cannot take the hook (then connmw wraps the result instead)."""
    original = getattr(result, "close", None)

    def close() -> None:
        try:
            if original is not None:
                original()
        finally:
            engine.end(facts)

    try:
        result.close = close
    except AttributeError:
        return False
    return True


def _start(
    engine: Engine,
    facts: RequestFacts,
    environ: WSGIEnvironment,
    start_response: Callable[..., Any],
    status: str,
    headers: list[tuple[str, str]],
    exc_info: Any = None,
) -> Any:
    code = _CODES.get(status) if type(status) is str else None
    if code is None:
        try:
            code = int(status[:3])
        except (TypeError, ValueError):
            # Not a status: the server's to reject.
            return _call(start_response, status, headers, exc_info)
        if len(_CODES) < 256:
            _CODES[status] = code
    if code == 101:
        # A protocol switch, its Connection and Upgrade headers included, belongs to the server.
        return _call(start_response, status, headers, exc_info)
    app_close = False
    known_length = code < 200 or code in _NO_BODY_STATUS or facts.method == "HEAD"
    clean = headers
    app_keep_alive: str | None = None
    for item in headers:  # indexed, not unpacked: faster compiled, the same interpreted
        name = item[0]
        if len(name) in _WATCH_LEN:
            lname = name.lower()
            value = item[1]
            if lname == "content-length":
                known_length = True
            elif lname in WSGI_HOP_BY_HOP:
                if clean is headers:
                    clean = []
                if lname == "connection" and b"close" in connection_tokens(
                    (value.encode("latin-1", "replace"),)
                ):
                    app_close = True
                elif lname == "keep-alive" and not has_forbidden_chars(value.encode("latin-1", "replace")):
                    app_keep_alive = value
    if clean is not headers:
        clean = [h for h in headers if h[0].lower() not in WSGI_HOP_BY_HOP]
    dh = engine.decision_header
    decision = None
    if facts.version != 10 and not _UWSGI:
        # Only HTTP/1.0, and uWSGI (which may close anyway), need to know the server
        # before deciding.
        decision = engine.respond(facts, code, app_close, known_length)
        if not decision.close and dh is None and not engine.advertises and app_keep_alive is None:
            # The common path: called directly, not through _call.
            return start_response(status, clean, exc_info) if exc_info else start_response(status, clean)
    server, handle = wsgi_server(start_response, None)
    made = None
    if handle is not None:
        if decision is None:
            decision = engine.respond(
                facts,
                code,
                app_close,
                known_length,
                server.http10_keep_alive,
                server.must_close(known_length),
            )
        extra = []
        if decision.close:
            if server.via_header:
                # The header is the server's only handle (mod_wsgi, granian, hypercorn,
                # uWSGI, gevent, an ASGI bridge): passed when the close will be real.
                made = server.close(handle, environ)
                if made:
                    extra.append(("Connection", "close"))
        elif server.keep_alive_header and facts.version < 20:
            advertised = _keep_alive(engine, facts, server, handle, app_keep_alive)
            if advertised is not None:
                extra.append(("Keep-Alive", advertised))
        if dh is not None:
            extra.append((dh.decode("ascii"), _decision_value(decision)))
        if extra:
            clean = [*clean, *extra]
    write = _call(start_response, status, clean, exc_info)
    late = handle is None
    if late:
        server, handle = wsgi_server(start_response, write)
    if decision is None:
        decision = engine.respond(facts, code, app_close, known_length, server.http10_keep_alive)
    if late and dh is not None and handle is not None:
        _add_header(handle, dh.decode("ascii"), _decision_value(decision))
    if decision.close:
        if made is None:
            made = handle is not None and server.close(handle, environ)
        if not made:
            where = _describe(start_response, write)
            engine.warn_once(
                "wsgi-close:" + where,
                "connmw: cannot make the close real on this WSGI server (%s); the connection "
                "may stay open. No Connection header was sent.%s",
                where,
                server.hint,
            )
        else:
            facts.after_body = server.after_body(handle)
    elif handle is not None and facts.version < 20 and not server.via_header:
        advertised = _keep_alive(engine, facts, server, handle, app_keep_alive)
        if advertised is not None:
            server.advertise(handle, advertised)
    return write


def _keep_alive(
    engine: Engine, facts: RequestFacts, server: WsgiServer, handle: Any, app_keep_alive: str | None
) -> str | None:
    """The Keep-Alive value for a kept response: connmw's own when it advertises, else
    the application's (as on ASGI: on a kept response only)."""
    ka = engine.keep_alive_value(facts, server, handle) if engine.advertises else None
    return ka.decode("ascii") if ka is not None else app_keep_alive


def _no_identity(engine: Engine) -> Hashable | None:
    """No connection key: say once that per-connection options cannot apply."""
    engine.warn_once(
        "wsgi-key",
        "connmw: this WSGI server gives no connection identity (no REMOTE_PORT); "
        "per-connection options (max_requests_per_connection, max_connection_age) "
        "do not apply here",
    )
    return None


def _decision_value(decision: Decision) -> str:
    return "close; reason=" + decision.reason if decision.reason else "keep"


def _call(
    start_response: Callable[..., Any], status: str, headers: list[tuple[str, str]], exc_info: Any
) -> Any:
    """Call the server's ``start_response`` as the application did (``exc_info`` only when given)."""
    return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)


def _add_header(handle: Any, name: str, value: str) -> None:
    """Add a header after ``start_response`` returned, on a server found only then
    (waitress, through ``write``)."""
    headers = getattr(handle, "response_headers", None)
    if headers is None:
        headers = getattr(handle, "headers", None)
    if isinstance(headers, list):
        headers.append((name, value))


def _describe(start_response: Any, write: Any) -> str:
    for fn in (start_response, write):
        owner = getattr(fn, "__self__", None)
        if owner is not None:
            return f"{type(owner).__module__}.{type(owner).__qualname__}"
    module = getattr(start_response, "__module__", None) or type(start_response).__module__
    return f"{module}.{getattr(start_response, '__qualname__', type(start_response).__qualname__)}"


class _Closing:
    """Wraps the application's iterable to count the request as done on close()."""

    __slots__ = ("_engine", "_facts", "_result")

    def __init__(self, result: Iterable[bytes], engine: Engine, facts: RequestFacts) -> None:
        self._result = result
        self._engine = engine
        self._facts = facts

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._result)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._done()

    def _done(self) -> None:
        self._engine.end(self._facts)


class _AfterBody(_Closing):
    """Runs ``facts.after_body`` once the server has written the body and closes
    the application's iterable."""

    __slots__ = ()

    def _done(self) -> None:
        hook = self._facts.after_body
        if hook is not None:
            hook()


class _SizedClosing(_Closing):
    """As :class:`_Closing`, for a result with a length: servers look for ``__len__``
    to set Content-Length on one-part bodies (PEP 3333), so it stays visible."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self._result)  # type: ignore[arg-type]
