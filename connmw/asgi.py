"""ASGI 3 middleware: :class:`ConnectionMiddleware`.

Facts
-----
- ASGI HTTP spec: ``http_version`` is ``"1.0"``, ``"1.1"`` or ``"2"`` (granian says
  ``"1"`` for HTTP/1.0, some servers ``"2.0"`` or ``"3"``); request header names
  are lowercased by the server; response headers go out in ``http.response.start``.
- No ASGI server strips hop-by-hop headers on HTTP/1.x: what the application sends
  reaches the client, so connmw writes the single ``connection`` line itself.
- RFC 9110 §7.8: a sender of ``Upgrade`` (in any response but 101, an
  advertisement) must list ``upgrade`` in ``Connection``; connmw adds the token to
  the line it writes when the application sends ``Upgrade``.
- On HTTP/2 the h2 layers drop most forbidden headers silently, but an app's
  ``te: gzip`` kills hypercorn's whole connection and raises inside daphne: those
  headers are removed before ``http.response.start`` leaves.

Malformed input is handled conservatively: an unknown ``http_version`` is treated
as HTTP/1.1, a ``Connection`` field with odd bytes is split as bytes, a missing
or odd ``status`` is passed through for the server to reject.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._api import join_outer
from ._configured import Configured, check_asgi_app, subclassable
from ._controls import Controls
from ._decide import VERSION_CODES
from ._engine import Engine, RequestFacts
from ._goaway import H2Conn
from ._headers import H1_APP_HOP_BY_HOP, H2_FORBIDDEN, connection_tokens, has_forbidden_chars, is_token
from ._state import asgi_connection_key
from .servers import asgi_idle_reader, asgi_server_profile

__all__ = ["ConnectionMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Lengths of the response header names connmw looks at; others are skipped unread.
_WATCH_LEN = frozenset((7, 10, 16, 17))
_WATCH_LEN_H10 = _WATCH_LEN | {14}
_H2_WATCH_LEN = frozenset(len(name) for name in H2_FORBIDDEN) | {len(b"te")}
_NO_BODY_STATUS = frozenset((204, 304))
_CLOSE_LINE = (b"connection", b"close")
_KEEP_ALIVE_LINE = (b"connection", b"keep-alive")


async def _serve(self: ConnectionMiddleware, scope: Scope, receive: Receive, send: Send) -> None:
    """``ConnectionMiddleware.__call__``: a module-level coroutine function, which the
    compiled build keeps recognisable as one (servers check before calling an ASGI 3 app)."""
    if scope["type"] != "http":
        await self.app(scope, receive, send)
        return
    outer = scope.get("connmw")
    if outer is not None:
        join_outer(self._engine, outer)
        await self.app(scope, receive, send)
        return
    engine = self._engine
    http_version = scope.get("http_version", "1.1")
    version = 11 if http_version == "1.1" else VERSION_CODES.get(http_version, 11)
    values: list[bytes] | None = None
    if version < 20:
        for item in scope["headers"]:
            if item[0] == b"connection":
                if values is None:
                    values = [item[1]]
                else:
                    values.append(item[1])
    path = scope.get("path", "/")
    root = scope.get("root_path")
    if root and path != root and not path.startswith(root + "/"):
        path = root + path  # an older server: "path" without the mount prefix
    facts = _Exchange(version, scope.get("method", "GET"), path, engine, send)
    if engine.plain:
        key = None
        if values is not None:
            engine.read_client(facts, values)
    else:
        key = asgi_connection_key(scope, send) if engine.table is not None else None
        engine.begin(facts, values, key)
    if engine.watching:
        client = scope.get("client")
        engine.watch(facts, client[0] if isinstance(client, (tuple, list)) and client else None)
    scope["connmw"] = facts
    if engine.strip_nominated and values is not None:
        nominated = engine.nominated(values)
        if nominated:
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k.lower() not in nominated]
    h2conn: H2Conn | None = None
    try:
        if version >= 20:  # HTTP/2 and HTTP/3: GOAWAY, never Connection
            admitted = _h2_admit(engine, send, scope)
            if isinstance(admitted, _Refused):
                return
            h2conn = admitted
        await self.app(scope, receive, facts.send)
    except BaseException:
        # The server closes a connection whose application failed: its state goes.
        if key is not None and engine.table is not None:
            engine.table.forget(key)
        raise
    finally:
        # The server's send often holds the scope, which holds the facts: let go of
        # it so every request is freed by reference counting, not by the cycle
        # collector (whose pauses show in the tail latency).
        facts.server_send = _send_after_return
        if engine.track_in_flight:
            engine.end(facts)
        if h2conn is not None:
            h2conn.stream_done()


@subclassable
class ConnectionMiddleware(Configured["ASGIApp"], Controls):
    """Manage the HTTP ``Connection`` header of an ASGI application.

    :param app: the ASGI 3 application to wrap (first, so Starlette's
        ``add_middleware(ConnectionMiddleware, ...)`` works).
    :param options: keyword-only, typed, validated here (see :class:`connmw.Options`);
        a misspelled name or a bad value raises at construction.

    Usage::

        from connmw import ConnectionMiddleware, Rule

        app = ConnectionMiddleware(
            app,
            rules=[Rule("/downloads/*")],
            max_requests_per_connection=1000,
            keep_alive_timeout=5,
        )

    ``websocket`` and ``lifespan`` scopes, and ``101 Switching Protocols`` responses,
    pass through untouched. A request that merely asks to upgrade (``Connection:
    upgrade``) is handled like any other: the client cannot switch connmw off.

    Per-connection state is keyed on the server's own connection object where connmw
    can reach it, else on ``scope["client"]`` and ``scope["server"]``: install connmw
    outside any proxy-headers middleware that rewrites them.
    """

    _check_app = staticmethod(check_asgi_app)
    _threaded = False

    __call__ = _serve


class _Refused:
    """A stream above the last id a GOAWAY announced (a sentinel of its own type, which
    the compiled build's typed code accepts)."""


_REFUSED = _Refused()


def _h2_admit(engine: Engine, send: Send, scope: Scope) -> H2Conn | _Refused | None:
    """Count an HTTP/2 stream on its connection (which may retire it) and return the
    connection's state (None when connmw cannot reach it); ``_REFUSED`` when the
    stream is above the last id a GOAWAY announced: the application never sees it,
    the server writes nothing for it, the client retries it elsewhere."""
    profile = asgi_server_profile(send)
    handle = profile.h2
    found = None if handle is None else handle.locate(send)
    if handle is None or found is None:
        engine.h2.cannot_reach(profile.name)
        return None
    conn = engine.h2.stream(found[0], handle, found[1], scope["headers"])
    if conn is None:
        handle.refuse(send)
        return _REFUSED
    return conn


async def _send_after_return(message: Message) -> None:
    raise RuntimeError("the application sent a message after it returned")


class _Exchange(RequestFacts):
    """One ASGI request: its facts, and the ``send`` connmw hands to the application.

    The wrapper is a bound method of the facts object, so a request costs one
    object rather than an object and a closure.
    """

    def __init__(self, version: int, method: str, path: str, engine: Engine, send: Send) -> None:
        self.version = version
        self.method = method
        self.path = path
        self.engine = engine
        self.server_send = send

    def send(self, message: Message) -> Awaitable[None]:
        # A plain function handing back the server's awaitable: no coroutine of
        # connmw's own per message. What it does before that cannot block.
        if message["type"] == "http.response.start":
            message = _on_start(self.engine, self, message, self.server_send)
        elif self.body_hook is not None:
            self.body_hook(message)
        return self.server_send(message)


def _on_start(engine: Engine, facts: RequestFacts, message: Message, send: Send) -> Message:
    status = message.get("status", 200)
    if not isinstance(status, int) or status == 101:
        # A protocol switch belongs to the server; an odd status is the server's to reject.
        return message
    headers = message.get("headers") or ()
    if type(headers) is not list and type(headers) is not tuple:
        # Any iterable is allowed: read it once, hand the same list on.
        headers = list(headers)
        message = {**message, "headers": headers}
    version = facts.version
    if version >= 20:
        engine.respond_multiplexed(facts)
        return _clean_h2(engine, message, headers)
    tried = False  # keeps_plainly() already said no: not asked twice
    if version == 11 and engine.keep_fast:
        # The common case first: no header connmw looks at, nothing that closes.
        for item in headers:  # indexed, not unpacked: faster compiled, the same interpreted
            n = len(item[0])
            if n == 10 or n == 7 or n == 16 or n == 17:  # _WATCH_LEN, as int compares
                break
        else:
            if engine.keeps_plainly(facts, status):
                return message
            tried = True

    app_close = False
    # The length matters only to HTTP/1.0 (RFC 9112 §9.3): 1.1 does not even look.
    if version == 10:
        known_length = status < 200 or status in _NO_BODY_STATUS or facts.method == "HEAD"
        watch = _WATCH_LEN_H10
    else:
        known_length = True
        watch = _WATCH_LEN
    touched = False
    app_tokens: list[bytes] | None = None
    app_keep_alive: bytes | None = None
    app_upgrade = False
    for item in headers:
        name = item[0]
        if len(name) in watch:
            lname = name.lower()
            value = item[1]
            if lname == b"content-length":
                known_length = True
            elif lname == b"connection":
                touched = True
                toks = connection_tokens((value,))
                if b"close" in toks:
                    app_close = True
                if app_tokens is None:
                    app_tokens = toks
                else:
                    app_tokens.extend(toks)
            elif lname == b"keep-alive":
                touched = True
                app_keep_alive = value
            elif lname == b"transfer-encoding" or lname == b"proxy-connection":
                touched = True
            elif lname == b"upgrade":
                touched = app_upgrade = True
    if not touched and not tried and engine.keep_fast and engine.keeps_plainly(facts, status):
        return message
    # The server's profile matters only for HTTP/1.0 and for a close: the fast path skips it.
    profile = asgi_server_profile(send) if version == 10 else None
    decision = engine.respond(
        facts, status, app_close, known_length, profile is not None and profile.http10_keep_alive
    )
    close = decision.close
    dh = engine.decision_header
    if not close and not touched and version == 11 and dh is None and not engine.advertises:
        return message
    keep_alive = None
    if not close and engine.advertises:
        keep_alive = engine.keep_alive_value(facts, profile, send, asgi_idle_reader)

    if touched:
        out: list[Any] = []
        for item in headers:
            name = item[0]
            if len(name) in _WATCH_LEN and name.lower() in H1_APP_HOP_BY_HOP:
                continue
            out.append(item)
    else:
        out = list(headers)  # nothing to take out: only lines to add
    # Only well-formed tokens from the application are copied into the line connmw writes.
    tokens = (
        [t for t in app_tokens if t != b"close" and t != b"keep-alive" and is_token(t)]
        if app_tokens
        else None
    )
    if app_upgrade:
        # RFC 9110 §7.8: a sender of Upgrade lists "upgrade" in Connection.
        if not tokens:
            tokens = [b"upgrade"]
        elif b"upgrade" not in tokens:
            tokens.append(b"upgrade")
    if not tokens:
        if close:
            out.append(_CLOSE_LINE)
        elif version == 10:
            out.append(_KEEP_ALIVE_LINE)
    else:
        if close:
            tokens.append(b"close")
        elif version == 10:
            tokens.append(b"keep-alive")
        out.append((b"connection", b", ".join(dict.fromkeys(tokens))))
    if not close:
        if keep_alive is not None:
            out.append((b"keep-alive", keep_alive))
        elif app_keep_alive is not None and not has_forbidden_chars(app_keep_alive):
            out.append((b"keep-alive", app_keep_alive))
    if dh is not None:
        # One debug line, connmw's own: applying connmw twice gives the same result.
        out = [item for item in out if item[0].lower() != dh]
        out.append((dh, b"close; reason=" + decision.reason.encode() if decision.reason else b"keep"))
    if close:
        if profile is None:
            profile = asgi_server_profile(send)
        if not profile.close(send):
            engine.warn_once(
                "asgi-close:" + profile.name,
                "connmw: cannot make the close real on this ASGI server (%s); "
                "the client is told to close, the server may keep the connection open",
                profile.name,
            )
        if version == 10 and not known_length:
            facts.body_hook = profile.close_delimit(send)
    new = dict(message)
    new["headers"] = out
    return new


def _clean_h2(engine: Engine, message: Message, headers: Any) -> Message:
    nominated: set[bytes] | None = None
    dirty = False
    for item in headers:  # indexed, not unpacked: faster compiled, the same interpreted
        name = item[0]
        if len(name) not in _H2_WATCH_LEN:
            continue  # no forbidden name has this length: not even lowercased
        lname = name.lower()
        value = item[1]
        if lname in H2_FORBIDDEN or (lname == b"te" and value.lower() != b"trailers"):
            dirty = True
            if lname == b"connection":
                if nominated is None:
                    nominated = set()
                nominated.update(connection_tokens((value,)))
    dh = engine.decision_header
    if not dirty and dh is None:
        return message
    out: list[Any] = []
    for item in headers:
        name, value = item[0], item[1]
        lname = name.lower()
        if lname in H2_FORBIDDEN:
            continue
        if lname == b"te" and value.lower() != b"trailers":
            continue
        if nominated is not None and lname in nominated:
            continue
        out.append(item)
    if dh is not None:
        out = [item for item in out if item[0].lower() != dh]
        out.append((dh, b"keep"))
    new = dict(message)
    new["headers"] = out
    return new
