"""Configuration: :class:`Rule`, :class:`Options` and their validation.

Everything here is checked once, at construction. A bad value raises
:class:`TypeError` (wrong type) or :class:`ValueError` (right type, bad value) with a
message that names the option and repeats the value, so a typo in a settings file
is found at start-up, not on the first request.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import os
import random as _random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ._coerce import _coerce
from ._rules import (
    _METHOD_RE,
    Rule,
    RuleMatcher,
    _status_set,
    _type_name,
    match_rules,
)

__all__ = [
    "DEFAULT_CLOSE_ON_STATUS",
    "Options",
    "Reason",
    "Rule",
    "RuleMatcher",
    "match_rules",
]

#: Why a connection is closed. ``None`` in a :class:`~connmw.Decision` means kept.
Reason = Literal[
    "client",
    "http-1.0",
    "app",
    "handler",
    "rule",
    "status",
    "max-requests",
    "max-age",
    "server",
    "overload",
    "drain",
]

#: Statuses after which nginx and Apache close the connection: the request
#: stream may be out of sync (400, 408, 413, 414, 431) or the server is unwell
#: (500, 501, 503).
DEFAULT_CLOSE_ON_STATUS: frozenset[int] = frozenset((400, 408, 413, 414, 431, 500, 501, 503))


def suggest_option(name: str) -> str | None:
    """The option a misspelled or shortened ``name`` most likely means, or None.

    An option that contains every word of ``name`` comes first (``max_requests`` is
    ``max_requests_per_connection``, not its ``_jitter``), then the closest spelling.
    """
    known = Options.field_names()
    words = set(name.lower().replace("-", "_").split("_")) - {""}
    if words:
        containing = [k for k in known if words <= set(k.split("_"))]
        if containing:
            return min(containing, key=lambda k: (k.endswith("_jitter"), len(k)))
    close = difflib.get_close_matches(name.lower().replace("-", "_"), known, n=1)
    return close[0] if close else None


def unknown_option(owner: str, given: str, name: str) -> str:
    """The message for an option ``given`` (normalised: ``name``) that does not exist."""
    hint = suggest_option(name)
    extra = f" (did you mean {hint!r}?)" if hint else ""
    return f"{owner} got an unknown option {given!r}{extra}"


def _check_number(
    name: str,
    value: object,
    *,
    integer: bool = False,
    minimum: float = 0.0,
    inclusive: bool = True,
    optional: bool = True,
) -> None:
    if value is None:
        if optional:
            return
        raise TypeError(f"{name} must not be None")
    kind = "an int" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise TypeError(f"{name} must be {kind}, not {_type_name(value)} {value!r}")
    assert isinstance(value, (int, float))
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if value < minimum or (not inclusive and value == minimum):
        op = ">=" if inclusive else ">"
        raise ValueError(f"{name} must be {op} {minimum:g}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Options:
    """Every setting of :class:`~connmw.ConnectionMiddleware` and
    :class:`~connmw.WSGIConnectionMiddleware`, validated at construction.

    :param rules: :class:`Rule` objects, tried in order, first match wins.
    :param close_on_status: statuses that close the connection (default: nginx's and
        Apache's set, 400 408 413 414 431 500 501 503); an empty set turns it off.
    :param max_requests_per_connection: the Nth response on a connection closes it.
    :param max_requests_jitter: each connection's cap is raised by a random 0..jitter,
        so a fleet does not reconnect in lockstep.
    :param max_connection_age: seconds; the first response after a connection is this
        old closes it.
    :param max_connection_age_jitter: seconds added at random (0..jitter) per connection.
    :param max_connection_age_grace: seconds an HTTP/2 connection may keep streams open
        after its final GOAWAY (long-lived streams, server-sent events) before it is
        closed anyway, as gRPC's MAX_CONNECTION_AGE_GRACE; ``None`` (default) waits for
        every stream. Applies to every GOAWAY connmw sends (request cap, age, drain,
        overload).
    :param keep_alive_timeout: seconds, or ``"auto"``: advertised as ``Keep-Alive:
        timeout=N`` (with ``max=remaining`` when a request cap is set) on HTTP/1.x
        responses that keep the connection. ``"auto"`` advertises the server's own
        idle timeout where connmw can read it (nothing where it cannot); a number
        above the server's idle timeout is lowered to it, with one warning.
    :param overload_soft_limit: in-flight requests (per process) from which responses
        start to close keep-alive connections, with a probability rising linearly...
    :param overload_hard_limit: ...to 1 at this many in-flight requests.
    :param pressure: a callable returning 0..1: the probability to close each response
        (see :class:`connmw.EventLoopLag`); combined with the in-flight ramp by max.
    :param overload_http2: let ``overload_*`` and ``pressure`` also retire HTTP/2
        connections (GOAWAY), drawn once per new stream. Off by default: one decision
        moves every stream of the connection, not one client request.
    :param on_decision: called with ``(facts, decision)`` for every HTTP response.
    :param decision_header: a response header name (e.g. ``"x-connmw"``) that carries
        the decision and its reason, for debugging; ``None`` (default) sends nothing.
    :param connection_idle_timeout: seconds after which the state of a connection that
        sent nothing is forgotten. Should be at least the server's keep-alive timeout.
    :param max_tracked_connections: a hard cap on per-connection state entries.
    :param strip_nominated_request_headers: remove, before the application sees them,
        request headers the client's ``Connection`` field nominates (as a proxy would),
        except the ``protected_request_headers``.
    :param protected_request_headers: header names never stripped by the option above,
        in addition to Host, Authorization, Cookie, Content-Length, Content-Type,
        Forwarded and ``X-Forwarded-*``.
    :param max_connection_tokens: how many ``Connection`` tokens of a request are honoured.
    :param clock: a monotonic clock in seconds (tests inject one).
    :param random: returns a float in [0, 1) (tests inject one).
    """

    rules: tuple[Rule, ...] = ()
    close_on_status: frozenset[int] = DEFAULT_CLOSE_ON_STATUS
    max_requests_per_connection: int | None = None
    max_requests_jitter: int = 0
    max_connection_age: float | None = None
    max_connection_age_jitter: float = 0.0
    max_connection_age_grace: float | None = None
    keep_alive_timeout: float | Literal["auto"] | None = None
    overload_soft_limit: int | None = None
    overload_hard_limit: int | None = None
    pressure: Callable[[], float] | None = None
    overload_http2: bool = False
    on_decision: Callable[[Any, Any], object] | None = None
    decision_header: str | None = None
    connection_idle_timeout: float = 300.0
    max_tracked_connections: int = 100_000
    strip_nominated_request_headers: bool = False
    protected_request_headers: frozenset[str] = frozenset()
    max_connection_tokens: int = 32
    clock: Callable[[], float] = time.monotonic
    random: Callable[[], float] = _random.random

    def __post_init__(self) -> None:
        rules = self.rules
        if isinstance(rules, (Rule, str, bytes, Mapping)) or not isinstance(rules, Iterable):
            raise TypeError(f"rules must be a list of Rule objects, not {_type_name(rules)} {rules!r}")
        built: list[Rule] = []
        for item in rules:
            if isinstance(item, Rule):
                built.append(item)
            elif isinstance(item, Mapping):
                built.append(Rule.from_mapping(item))
            else:
                raise TypeError(f"rules must contain Rule objects, got {_type_name(item)} {item!r}")
        object.__setattr__(self, "rules", tuple(built))
        cos: object = self.close_on_status
        if cos is None or cos is False:
            cos = frozenset()
        object.__setattr__(self, "close_on_status", _status_set(cos, "close_on_status"))
        _check_number(
            "max_requests_per_connection", self.max_requests_per_connection, integer=True, minimum=1
        )
        _check_number("max_requests_jitter", self.max_requests_jitter, integer=True, optional=False)
        _check_number("max_connection_age", self.max_connection_age, minimum=0, inclusive=False)
        _check_number("max_connection_age_jitter", self.max_connection_age_jitter, optional=False)
        _check_number("max_connection_age_grace", self.max_connection_age_grace)
        for jitter, base in (
            ("max_requests_jitter", "max_requests_per_connection"),
            ("max_connection_age_jitter", "max_connection_age"),
        ):
            if getattr(self, jitter) and getattr(self, base) is None:
                raise ValueError(
                    f"{jitter}={getattr(self, jitter)!r} has no effect without {base}: "
                    f"set {base} too, or drop {jitter}"
                )
        kat = self.keep_alive_timeout
        if isinstance(kat, str) and kat != "auto":
            raise ValueError(f"keep_alive_timeout must be a number of seconds (>= 1) or 'auto', got {kat!r}")
        if kat != "auto":
            _check_number("keep_alive_timeout", kat, minimum=1)
        idle = self.connection_idle_timeout
        if isinstance(kat, (int, float)) and isinstance(idle, (int, float)) and idle < kat:
            raise ValueError(
                f"connection_idle_timeout={idle!r} is shorter than keep_alive_timeout={kat!r}: connmw "
                "would forget connections clients still reuse (and restart their request count); "
                f"set connection_idle_timeout to at least {kat!r}"
            )
        _check_number("overload_soft_limit", self.overload_soft_limit, integer=True, minimum=0)
        _check_number("overload_hard_limit", self.overload_hard_limit, integer=True, minimum=1)
        soft, hard = self.overload_soft_limit, self.overload_hard_limit
        if (soft is None) != (hard is None):
            raise ValueError(
                "overload_soft_limit and overload_hard_limit go together, got "
                f"overload_soft_limit={soft!r}, overload_hard_limit={hard!r}"
            )
        if soft is not None and hard is not None and soft >= hard:
            raise ValueError(
                f"overload_soft_limit must be below overload_hard_limit, got {soft!r} >= {hard!r}"
            )
        for name in ("pressure", "on_decision", "clock", "random"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be callable, not {_type_name(value)} {value!r}")
        if self.clock is None or self.random is None:
            raise TypeError("clock and random must be callables, not None")
        dh = self.decision_header
        if dh is not None:
            if not isinstance(dh, str) or not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", dh):
                raise ValueError(f"decision_header must be a header name such as 'x-connmw', got {dh!r}")
            if dh.lower() in ("connection", "keep-alive", "content-length", "transfer-encoding"):
                raise ValueError(f"decision_header must not be a framing header, got {dh!r}")
            object.__setattr__(self, "decision_header", dh.lower())
        _check_number(
            "connection_idle_timeout",
            self.connection_idle_timeout,
            minimum=0,
            inclusive=False,
            optional=False,
        )
        _check_number(
            "max_tracked_connections", self.max_tracked_connections, integer=True, minimum=1, optional=False
        )
        if not isinstance(self.overload_http2, bool):
            raise TypeError(f"overload_http2 must be True or False, not {self.overload_http2!r}")
        if not isinstance(self.strip_nominated_request_headers, bool):
            raise TypeError(
                f"strip_nominated_request_headers must be True or False, not {self.strip_nominated_request_headers!r}"
            )
        prh = self.protected_request_headers
        if isinstance(prh, (str, bytes)) or not isinstance(prh, Iterable):
            raise TypeError(f"protected_request_headers must be a set of header names, not {prh!r}")
        names: set[str] = set()
        for name in prh:
            if not isinstance(name, str) or not name:
                raise TypeError(f"protected_request_headers must contain header names (str), got {name!r}")
            if not _METHOD_RE.match(name):
                # Header names and method names share the token grammar (RFC 9110 §5.1).
                raise ValueError(f"protected_request_headers must contain header names, got {name!r}")
            names.add(name.lower())
        object.__setattr__(self, "protected_request_headers", frozenset(names))
        _check_number(
            "max_connection_tokens", self.max_connection_tokens, integer=True, minimum=1, optional=False
        )

    @property
    def tracks_connections(self) -> bool:
        """True when some option needs per-connection state."""
        return self.max_requests_per_connection is not None or self.max_connection_age is not None

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if not f.name.startswith("_"))

    @classmethod
    def from_kwargs(cls, owner: str, options: Mapping[str, Any]) -> Options:
        """Build from keyword options, with a helpful error for unknown names."""
        known = cls.field_names()
        for key in options:
            if key not in known:
                raise TypeError(unknown_option(owner, key, key))
        return cls(**options)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], *, owner: str = "Options") -> Options:
        """Build from a mapping of plain values, e.g. a TOML table, YAML, Django
        settings or environment variables.

        Option names are case-insensitive and may use ``-`` for ``_``. Strings are
        accepted where a number, a boolean, a status set (``"500,503"``,
        ``"500-599"``, ``"none"``) or a set of names (``"x-a,x-b"``) is expected;
        ``rules`` is a list of mappings with ``path``, ``methods``, ``status`` and
        ``close`` keys (or that list as a JSON string); a callable option (``on_decision``,
        ``pressure``, ``clock``, ``random``) may be an import path
        ``"package.module:name"``. The same validation and messages as keyword
        construction apply.
        """
        if not isinstance(mapping, Mapping):
            raise TypeError(
                f"{owner} must be a mapping of option names to values, not {_type_name(mapping)} {mapping!r}"
            )
        known = cls.field_names()
        kwargs: dict[str, Any] = {}
        for key, value in mapping.items():
            if not isinstance(key, str):
                raise TypeError(f"{owner} option names must be str, got {key!r}")
            name = key.lower().replace("-", "_")
            if name not in known:
                raise TypeError(unknown_option(owner, key, name))
            if isinstance(value, str) and not value.strip():
                continue  # empty means the default, for every option ("none" means off)
            kwargs[name] = _coerce(name, value)
        return cls(**kwargs)

    @classmethod
    def from_env(cls, prefix: str = "CONNMW_", environ: Mapping[str, str] | None = None) -> Options:
        """Build from environment variables named ``prefix`` + the option name in
        capitals: ``CONNMW_MAX_REQUESTS_PER_CONNECTION=1000``,
        ``CONNMW_CLOSE_ON_STATUS=none``, ``CONNMW_RULES='[{"path": "/export/*"}]'``.
        An empty variable means the option's default, as everywhere; ``none`` turns an
        option off. A variable with the prefix that names no option is ignored with one
        warning on the ``connmw`` logger naming it and the closest option: the prefix is
        shared with other tools' variables, so it does not stop start-up. Bad values of
        real options raise, as with keyword construction.
        """
        env = os.environ if environ is None else environ
        known = cls.field_names()
        found: dict[str, str] = {}
        for key, value in env.items():
            if not key.startswith(prefix):
                continue
            name = key[len(prefix) :]
            if name.lower().replace("-", "_") in known:
                found[name] = value
                continue
            hint = suggest_option(name)
            logging.getLogger("connmw").warning(
                "environment variable %s names no connmw option and is ignored%s",
                key,
                f" (did you mean {prefix}{hint.upper()}?)" if hint else "",
            )
        return cls.from_mapping(found, owner=f"environment ({prefix}*)")

    def as_kwargs(self) -> dict[str, Any]:
        """The options that differ from the defaults, as keyword arguments."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = value
        return out
