"""The table of conformance cases, run against every server.

Each case talks to a running server over a raw socket, asserts on the bytes on
the wire (status, every ``Connection``/``Keep-Alive``/``Transfer-Encoding`` line,
the body) and checks on the socket itself whether the connection closed
(``recv`` returned ``b""``) or stayed open (a second request was answered).
It returns a short word for the README's table (``closed``, ``open``, ``kept``).

An HTTP/2 or HTTP/3 row runs the multiplexed form of a case where one exists (no
``Connection`` header at all, forbidden headers removed, the connection still
serving streams).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass

from tests.apps import STREAM_PARTS
from tests.conformance.h2wire import H2Client, H2Response
from tests.h3client import H3Response, fetch
from tests.wire import Reader, Response, build_request, connect

HELLO = b"hello"
STREAM_BODY = b"".join(STREAM_PARTS)
#: How long a socket may take to report the server's close. Generous: the machine is shared.
CLOSE_WAIT = 3.0


@dataclass(frozen=True)
class Target:
    """A running server as the cases see it."""

    id: str
    port: int
    protocol: str = "h1"  # "h1", "h2c", "h2-tls" or "h3"
    #: The server closes every connection after one response (dev servers).
    always_closes: bool = False
    ssl_context: ssl.SSLContext | None = None
    #: The CA that signed the server's certificate (HTTP/3: aioquic takes a file).
    cafile: str | None = None


class NotApplicable(Exception):
    """The case has no form on this protocol."""


# --------------------------------------------------------------------------- helpers


def tokens(resp: Response) -> list[str]:
    return [t.strip().lower() for line in resp.lines("connection") for t in line.split(",") if t.strip()]


def check_message(resp: Response, request_version: str, body: bytes, status: int = 200) -> None:
    assert resp.status == status, f"status {resp.status}, wanted {status}: {resp.raw_head!r}"
    te = resp.lines("transfer-encoding")
    cl = resp.lines("content-length")
    assert len(te) <= 1, f"{len(te)} Transfer-Encoding lines: {resp.raw_head!r}"
    assert len(cl) <= 1, f"{len(cl)} Content-Length lines: {resp.raw_head!r}"
    assert not (te and cl), f"both Content-Length and Transfer-Encoding: {resp.raw_head!r}"
    if te:
        assert te[0].strip().lower() == "chunked", f"Transfer-Encoding {te[0]!r}"
    if request_version == "HTTP/1.0":
        assert not te, f"Transfer-Encoding sent to an HTTP/1.0 client: {resp.raw_head!r}"
    assert not resp.lines("proxy-connection"), f"Proxy-Connection on the wire: {resp.raw_head!r}"
    assert resp.body == body, f"body {resp.body!r}, the app sent {body!r}"


def check_closed(resp: Response, reader: Reader, request_version: str = "HTTP/1.1") -> str:
    """The response announces the close exactly once and the socket really closes."""
    lines = resp.lines("connection")
    implicit = request_version == "HTTP/1.0" or resp.version == "HTTP/1.0"
    if lines or not implicit:
        assert [v.strip().lower() for v in lines] == ["close"], (
            f"closing, so exactly one 'connection: close' line; got {lines}: {resp.raw_head!r}"
        )
    assert not resp.lines("keep-alive"), f"Keep-Alive on a closing response: {resp.raw_head!r}"
    assert reader.closed(CLOSE_WAIT), f"announced a close but the socket stayed open: {resp.raw_head!r}"
    assert reader.buf == b"", f"bytes after the last response: {reader.buf[:200]!r}"
    return "closed"


def check_open(resp: Response, reader: Reader, request_version: str = "HTTP/1.1") -> str:
    """The response does not announce a close and a second request is answered."""
    lines = resp.lines("connection")
    assert len(lines) <= 1, f"{len(lines)} Connection lines: {resp.raw_head!r}"
    assert "close" not in tokens(resp), f"announced a close on a kept connection: {resp.raw_head!r}"
    headers: list[tuple[str, str]] = []
    if request_version == "HTTP/1.0":
        assert "keep-alive" in tokens(resp), f"kept an HTTP/1.0 connection silently: {resp.raw_head!r}"
        headers = [("Connection", "keep-alive")]
    reader.sock.sendall(build_request("GET", "/", version=request_version, headers=headers))
    try:
        second = reader.read_response()
    except (OSError, EOFError) as exc:
        raise AssertionError(f"the connection was not kept: second request failed ({exc})") from exc
    check_message(second, request_version, HELLO)
    return "open"


def exchange(
    target: Target, path: str = "/", version: str = "HTTP/1.1", headers: list[tuple[str, str]] | None = None
) -> tuple[Response, Reader]:
    sock = connect(target.port)
    reader = Reader(sock)
    sock.sendall(build_request("GET", path, version=version, headers=headers))
    return reader.read_response(), reader


def _closes(target: Target, path: str = "/", headers: list[tuple[str, str]] | None = None) -> str:
    resp, reader = exchange(target, path, headers=headers)
    try:
        check_message(resp, "HTTP/1.1", HELLO)
        return check_closed(resp, reader)
    finally:
        reader.sock.close()


def _stays_open(target: Target, path: str = "/", version: str = "HTTP/1.1") -> str:
    resp, reader = exchange(target, path, version)
    try:
        check_message(resp, version, HELLO)
        if target.always_closes:
            return check_closed(resp, reader, version)
        return check_open(resp, reader, version)
    finally:
        reader.sock.close()


# --------------------------------------------------------------------------- HTTP/2 forms

H2_FORBIDDEN = {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}


def check_h2(resp: H2Response | H3Response, body: bytes) -> None:
    """An HTTP/2 or HTTP/3 response: complete, 200, no connection-specific header
    (RFC 9113 §8.2.2, RFC 9114 §4.2), the application's body."""
    if isinstance(resp, H2Response):
        assert resp.reset is None, f"stream {resp.stream_id} reset with code {resp.reset}"
    assert resp.ended, f"stream {resp.stream_id} did not end"
    assert resp.status == 200, f"status {resp.status}"
    for name, value in resp.headers:
        assert name.lower() not in H2_FORBIDDEN, f"forbidden HTTP/2 header {name!r}: {resp.headers}"
        if name.lower() == b"te":
            assert value.strip().lower() == b"trailers", f"te: {value!r} on HTTP/2"
        assert name.lower() != b"x-hop", (
            f"a header nominated by Connection reached the client: {resp.headers}"
        )
    assert resp.body == body, f"body {resp.body!r}, the app sent {body!r}"


def h2_then_alive(target: Target, *paths: str, body: bytes = HELLO) -> str:
    """Each path answered on one HTTP/2 (or HTTP/3) connection, which then still
    serves a request: ``open``."""
    if target.protocol == "h3":
        return _h3_then_alive(target, paths, body)
    client = H2Client(target.port, target.ssl_context)
    try:
        for resp in client.request(*paths):
            check_h2(resp, body)
        # The connection still serves streams.
        (again,) = client.request("/")
        assert not client.terminated, "the server sent GOAWAY"
        check_h2(again, HELLO)
        return "open"
    finally:
        client.close()


def _h3_then_alive(target: Target, paths: tuple[str, ...], body: bytes) -> str:
    assert target.cafile is not None, "an HTTP/3 target needs its CA file"
    responses, goaways = fetch(target.port, [*paths, "/"], cafile=target.cafile, timeout=CLOSE_WAIT)
    for resp, want in zip(responses, [*(body for _ in paths), HELLO], strict=True):
        assert isinstance(resp, H3Response), f"HTTP/3 request failed: {resp}"
        check_h2(resp, want)
    assert not goaways, f"the server sent GOAWAY {goaways}"
    return "open"


# --------------------------------------------------------------------------- the cases


def plain(target: Target) -> str:
    """HTTP/1.1, no Connection header: the connection stays open."""
    if target.protocol != "h1":
        return h2_then_alive(target, "/")
    return _stays_open(target)


def client_close(target: Target) -> str:
    """``Connection: close``."""
    _h1_only(target)
    return _closes(target, headers=[("Connection", "close")])


def client_te_close(target: Target) -> str:
    """``Connection: TE, close``: a token list, not one token."""
    _h1_only(target)
    return _closes(target, headers=[("Connection", "TE, close"), ("TE", "trailers")])


def client_close_capital(target: Target) -> str:
    """``Connection: Close``: tokens are case-insensitive."""
    _h1_only(target)
    return _closes(target, headers=[("Connection", "Close")])


def client_two_fields(target: Target) -> str:
    """Two ``Connection`` fields, the close in the second."""
    _h1_only(target)
    return _closes(target, headers=[("Connection", "keep-alive"), ("Connection", "close")])


def http10_plain(target: Target) -> str:
    """HTTP/1.0 without keep-alive: closed."""
    _h1_only(target)
    resp, reader = exchange(target, version="HTTP/1.0")
    try:
        check_message(resp, "HTTP/1.0", HELLO)
        assert "keep-alive" not in tokens(resp), (
            f"keep-alive to an HTTP/1.0 client that did not ask: {resp.raw_head!r}"
        )
        return check_closed(resp, reader, "HTTP/1.0")
    finally:
        reader.sock.close()


def http10_keep_alive(target: Target) -> str:
    """HTTP/1.0 with ``Connection: keep-alive``: kept when the response says so, else closed."""
    _h1_only(target)
    resp, reader = exchange(target, version="HTTP/1.0", headers=[("Connection", "keep-alive")])
    try:
        check_message(resp, "HTTP/1.0", HELLO)
        if "keep-alive" in tokens(resp):
            assert resp.lines("content-length"), (
                f"kept an HTTP/1.0 response without length: {resp.raw_head!r}"
            )
            check_open(resp, reader, "HTTP/1.0")
            return "kept"
        return check_closed(resp, reader, "HTTP/1.0")
    finally:
        reader.sock.close()


def http10_keep_alive_rule(target: Target) -> str:
    """HTTP/1.0 with ``Connection: keep-alive`` to a route whose rule closes: closed,
    said once (no ``keep-alive`` next to the close)."""
    _h1_only(target)
    resp, reader = exchange(target, "/rule/x", "HTTP/1.0", headers=[("Connection", "keep-alive")])
    try:
        check_message(resp, "HTTP/1.0", HELLO)
        assert "keep-alive" not in tokens(resp), f"keep-alive on a closing response: {resp.raw_head!r}"
        return check_closed(resp, reader, "HTTP/1.0")
    finally:
        reader.sock.close()


def stream_http10(target: Target) -> str:
    """A streamed body without length to HTTP/1.0: raw bytes, delimited by the close."""
    _h1_only(target)
    resp, reader = exchange(target, "/stream", "HTTP/1.0")
    try:
        check_message(resp, "HTTP/1.0", STREAM_BODY)
        assert not resp.chunked
        return check_closed(resp, reader, "HTTP/1.0")
    finally:
        reader.sock.close()


def stream_http11(target: Target) -> str:
    """A streamed body without length to HTTP/1.1: chunked and kept, or close-delimited and closed."""
    if target.protocol != "h1":
        return h2_then_alive(target, "/stream", body=STREAM_BODY)
    resp, reader = exchange(target, "/stream")
    try:
        check_message(resp, "HTTP/1.1", STREAM_BODY)
        framing = (
            "chunked" if resp.chunked else "length" if resp.lines("content-length") else "close-delimited"
        )
        # Whether a server keeps a connection after a chunked body is its choice
        # (waitress closes); what it announces must be what happens.
        if "close" in tokens(resp) or framing == "close-delimited" or target.always_closes:
            return check_closed(resp, reader) + f" ({framing})"
        return check_open(resp, reader) + f" ({framing})"
    finally:
        reader.sock.close()


def rule(target: Target) -> str:
    """A route whose rule closes (``Rule("/rule/*")``)."""
    if target.protocol != "h1":
        return h2_then_alive(target, "/rule/x")
    return _closes(target, "/rule/x")


def handler(target: Target) -> str:
    """Handler code calls ``connmw.request_close``."""
    if target.protocol != "h1":
        return h2_then_alive(target, "/handler")
    return _closes(target, "/handler")


def hop(target: Target) -> str:
    """The app sends hop-by-hop headers itself (``Connection: keep-alive, x-hop``,
    ``Keep-Alive``, ``Proxy-Connection``, ``Upgrade``, ``TE``; WSGI also
    ``Transfer-Encoding``): none of them breaks the framing or the connection."""
    if target.protocol != "h1":
        return h2_then_alive(target, "/hop")
    resp, reader = exchange(target, "/hop")
    try:
        check_message(resp, "HTTP/1.1", HELLO)
        # The app's own Keep-Alive may stay on a kept connection, once; the
        # app's Connection tokens are merged into at most one line.
        assert len(resp.lines("keep-alive")) <= 1, f"several Keep-Alive lines: {resp.raw_head!r}"
        assert len(resp.lines("connection")) <= 1, f"several Connection lines: {resp.raw_head!r}"
        if target.always_closes:
            return check_closed(resp, reader)
        return check_open(resp, reader)
    finally:
        reader.sock.close()


def pipelined(target: Target) -> str:
    """Two requests in one write; the first one's rule closes: one response, then the close."""
    if target.protocol != "h1":
        return h2_then_alive(target, "/rule/x", "/")
    sock = connect(target.port)
    reader = Reader(sock)
    try:
        sock.sendall(build_request("GET", "/rule/x") + build_request("GET", "/"))
        resp = reader.read_response()
        check_message(resp, "HTTP/1.1", HELLO)
        return check_closed(resp, reader)
    finally:
        sock.close()


def _h1_only(target: Target) -> None:
    if target.protocol != "h1":
        raise NotApplicable("an HTTP/1.x header case; HTTP/2 and HTTP/3 have no Connection header")


CASES: dict[str, Callable[[Target], str]] = {
    "http11-plain": plain,
    "close": client_close,
    "te-close": client_te_close,
    "Close": client_close_capital,
    "two-fields": client_two_fields,
    "http10-plain": http10_plain,
    "http10-keep-alive": http10_keep_alive,
    "http10-keep-alive-rule": http10_keep_alive_rule,
    "stream-http10": stream_http10,
    "stream-http11": stream_http11,
    "rule": rule,
    "handler": handler,
    "hop": hop,
    "pipelined": pipelined,
}
