"""The pure decision: close the connection after this response, or keep it.

Facts
-----
- RFC 9112 §9.3: an HTTP/1.1 connection persists unless either side sends the
  ``close`` connection option. An HTTP/1.0 connection persists only when the
  client sent ``keep-alive``, the response says ``keep-alive`` too, and the
  response has a length the client can find without the connection closing.
- RFC 9112 §9.6: a server that does not intend to keep the connection sends
  ``close`` on its last response and then closes; it must not announce a close
  that will not happen.
- RFC 9113 §8.2.2, RFC 9114 §4.2: HTTP/2 and HTTP/3 have no ``Connection`` header;
  the server manages those connections (GOAWAY), not the application.

Nothing here sees a scope, an environ, ``send`` or ``start_response``: the
adapters reduce those to the plain facts below, so the whole policy can be tested
with tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import get_args

from ._policy import Reason, Rule

__all__ = ["CLOSE", "KEEP", "Decision", "decide", "decide_h2", "version_code"]


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one response: ``close`` and, when closing, the ``reason``."""

    close: bool
    reason: Reason | None = None


KEEP = Decision(False, None)
CLOSE: dict[Reason, Decision] = {r: Decision(True, r) for r in get_args(Reason)}

VERSION_CODES = {"1.1": 11, "1.0": 10, "1": 10, "2": 20, "2.0": 20, "3": 30, "3.0": 30, "0.9": 10}
#: The same, with WSGI's ``SERVER_PROTOCOL`` spelling too (``"HTTP/1.1"``): one lookup either way.
_PROTOCOL_CODES = {**VERSION_CODES, **{"HTTP/" + v: code for v, code in VERSION_CODES.items()}}


def version_code(http_version: object) -> int:
    """Map an ASGI ``http_version`` or WSGI ``SERVER_PROTOCOL`` to 10, 11, 20 or 30.

    granian reports ``"1"`` for HTTP/1.0. Anything unknown is treated as HTTP/1.1,
    the conservative choice: it keeps the headers HTTP/1.1 needs and never assumes
    the connection is managed elsewhere.
    """
    if isinstance(http_version, str):
        return _PROTOCOL_CODES.get(http_version, 11)
    return 11


def decide(
    *,
    version: int,
    status: int,
    client_close: bool = False,
    client_keep_alive: bool = False,
    known_length: bool = True,
    http10_keep_alive: bool = False,
    app_close: bool = False,
    handler_close: bool = False,
    rule: Rule | None = None,
    close_on_status: frozenset[int] = frozenset(),
    requests_exhausted: bool = False,
    age_exhausted: bool = False,
    server_close: bool = False,
    drain: float = 0.0,
    overload: float = 0.0,
    draw: Callable[[], float] | None = None,
) -> Decision:
    """Decide for one response.

    :param version: 10, 11, 20 or 30 (see :func:`version_code`).
    :param http10_keep_alive: the server really keeps an HTTP/1.0 connection alive
        when asked; when it does not, connmw must not promise it.
    :param server_close: the server ends the connection after this response anyway
        (or cannot frame its body otherwise); connmw announces it.
    :param rule: the first rule that matched the method, path and status, if any.
    :param drain: the probability (0..1) to close because the process drains.
    :param overload: the probability (0..1) to close because the process is loaded.
    :param draw: returns a float in [0, 1); only called for probabilities in (0, 1).
    """
    if version >= 20:
        return KEEP
    if client_close:
        return CLOSE["client"]
    if version == 10 and not (client_keep_alive and known_length and http10_keep_alive):
        return CLOSE["http-1.0"]
    if app_close:
        return CLOSE["app"]
    if handler_close:
        return CLOSE["handler"]
    if rule is not None:
        return CLOSE["rule"] if rule.close else KEEP
    if status in close_on_status:
        return CLOSE["status"]
    return _by_load(requests_exhausted, age_exhausted, drain, overload, draw, server_close)


def decide_h2(
    *,
    requests_exhausted: bool = False,
    age_exhausted: bool = False,
    drain: float = 0.0,
    overload: float = 0.0,
    draw: Callable[[], float] | None = None,
) -> Decision:
    """Decide whether an HTTP/2 (or HTTP/3) connection is retired with GOAWAY.

    Only the load options retire a multiplexed connection: a stream's own outcome
    (its status, a rule, the handler, the client's headers) says nothing about the
    other streams the connection carries. ``overload`` is 0 unless the
    ``overload_http2`` option lets the overload limits act here.
    """
    return _by_load(requests_exhausted, age_exhausted, drain, overload, draw)


def _by_load(
    requests_exhausted: bool,
    age_exhausted: bool,
    drain: float,
    overload: float,
    draw: Callable[[], float] | None,
    server_close: bool = False,
) -> Decision:
    """The closes both protocols share, in order: the request cap, the age, (on
    HTTP/1.x) a server that closes anyway, the drain, the overload."""
    if requests_exhausted:
        return CLOSE["max-requests"]
    if age_exhausted:
        return CLOSE["max-age"]
    if server_close:
        return CLOSE["server"]
    if drain > 0.0 and _chance(drain, draw):
        return CLOSE["drain"]
    if overload > 0.0 and _chance(overload, draw):
        return CLOSE["overload"]
    return KEEP


def _chance(p: float, draw: Callable[[], float] | None) -> bool:
    if p >= 1.0:
        return True
    if draw is None:
        return False
    return draw() < p
