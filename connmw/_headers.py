"""Bytes-level helpers for connection-specific headers.

Facts
-----
- RFC 9110 §7.6.1: ``Connection`` is a comma-separated list of case-insensitive
  tokens; the field may appear more than once, and the lists concatenate. Every
  header field it nominates is hop-by-hop.
- RFC 9110 §5.6.1: empty list elements (``a, , b``) are allowed and ignored.
- RFC 9113 §8.2.2 (HTTP/2) and RFC 9114 §4.2 (HTTP/3): a message that carries
  ``connection``, ``keep-alive``, ``proxy-connection``, ``transfer-encoding`` or
  ``upgrade``, or ``te`` with any value other than ``trailers``, is malformed.
- PEP 3333: a WSGI application must not send hop-by-hop headers through
  ``start_response``.
- RFC 9110 §5.6.2: a token is one or more ``tchar``
  (``!#$%&'*+-.^_`|~``, digits, letters); RFC 9110 §5.5: CR, LF and NUL are
  never valid in a field value. connmw only writes a value it built from tokens it
  checked, so no byte from a request or an application can split a header block.

Malformed input never raises here: bytes that are not ASCII, empty tokens and
absurdly long lists are handled conservatively (a token is compared as bytes; the
number of tokens looked at is capped, and a ``close`` token anywhere in the part
that was looked at still counts).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "H1_APP_HOP_BY_HOP",
    "H2_FORBIDDEN",
    "PROTECTED_REQUEST_HEADERS",
    "WSGI_HOP_BY_HOP",
    "connection_tokens",
    "nominated_to_strip",
    "has_forbidden_chars",
    "is_token",
]

#: Headers an HTTP/2 or HTTP/3 message must not carry (``te`` is handled apart:
#: it is allowed with the exact value ``trailers``).
H2_FORBIDDEN: frozenset[bytes] = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)

#: Headers an ASGI application's HTTP/1.x response never passes through as is:
#: connmw writes the single ``connection`` line itself, framing belongs to the
#: server, and ``proxy-connection`` is never valid in a response.
H1_APP_HOP_BY_HOP: frozenset[bytes] = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding")
)

#: PEP 3333's hop-by-hop set (as wsgiref and waitress enforce it), lowercased str.
WSGI_HOP_BY_HOP: frozenset[str] = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    )
)

#: How many tokens of one request's ``Connection`` fields are looked at. Envoy
#: rejects a request at 10 or more; connmw never rejects, it reads the first
#: tokens and, past the cap, only looks for ``close``.
MAX_TOKENS = 32

_WS = b" \t"
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")


def connection_tokens(values: Iterable[bytes], limit: int = MAX_TOKENS) -> list[bytes]:
    """Split ``Connection`` field values into lowercase tokens, in order.

    Empty elements are dropped, optional whitespace around each token is
    stripped, repeated fields concatenate. At most ``limit`` tokens are returned;
    when the list is longer and a ``close`` token lies beyond the limit, ``close``
    is appended so that a client's request to close is never lost.
    """
    tokens: list[bytes] = []
    overflow = False
    for value in values:
        if overflow:
            if b"close" in value.lower():
                _add_close_if_token(tokens, value)
            continue
        for raw in value.split(b","):
            token = raw.strip(_WS)
            if not token:
                continue
            if len(tokens) >= limit:
                overflow = True
                if b"close" in value.lower():
                    _add_close_if_token(tokens, value)
                break
            tokens.append(token.lower())
    return tokens


def _add_close_if_token(tokens: list[bytes], value: bytes) -> None:
    if b"close" in tokens:
        return
    for raw in value.split(b","):
        if raw.strip(_WS).lower() == b"close":
            tokens.append(b"close")
            return


def has_forbidden_chars(value: bytes) -> bool:
    """True when a header value would split or corrupt a header block."""
    return b"\r" in value or b"\n" in value or b"\x00" in value


def is_token(value: bytes) -> bool:
    """True when ``value`` is an RFC 9110 token (safe to write into a header)."""
    return _TOKEN.match(value) is not None


#: Request headers a client's ``Connection`` field can never make connmw strip: a
#: proxy that dropped them would hand the application a different request.
PROTECTED_REQUEST_HEADERS: frozenset[bytes] = frozenset(
    (b"host", b"authorization", b"cookie", b"content-length", b"content-type", b"forwarded", b"connection")
)


def nominated_to_strip(values: list[bytes], protected: frozenset[bytes], limit: int) -> set[bytes]:
    """The lowercase request header names the client's ``Connection`` fields nominate,
    less the connection options themselves, ``protected`` and ``X-Forwarded-*``."""
    return {
        name
        for name in connection_tokens(values, limit)
        if name != b"close"
        and name != b"keep-alive"
        and name not in protected
        and not name.startswith(b"x-forwarded-")
    }
