"""Rules: :class:`Rule`, the rule matcher, and the parsing of statuses and methods.

Checked once, at construction, like every option (see :mod:`connmw._policy`).

Facts
-----
- RFC 9110 §9.1: the method token is case-sensitive; the standard methods are GET,
  HEAD, POST, PUT, DELETE, CONNECT, OPTIONS and TRACE (§9.3), registered in the IANA
  HTTP Method Registry together with extensions such as PATCH (RFC 5789) and WebDAV's
  PROPFIND, PROPPATCH, MKCOL, COPY, MOVE, LOCK, UNLOCK (RFC 4918).
- RFC 9110 §9.3.2: HEAD is GET without the body.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KNOWN_METHODS", "Rule", "RuleMatcher", "match_rules"]

_METHOD_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")

#: Methods a rule accepts without ``custom_methods=True``: RFC 9110's, PATCH, WebDAV's
#: (RFC 4918, RFC 5323 SEARCH, RFC 3253 REPORT, RFC 4791 MKCALENDAR), QUERY (the IETF's
#: safe method with a body) and PURGE (the cache-invalidation extension of Varnish,
#: nginx and CDNs). Anything else is far more often a typo (``"GTE"``) than a method.
KNOWN_METHODS: frozenset[str] = frozenset(
    (
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE",
        "PATCH",
        "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH", "REPORT",
        "MKCALENDAR",
        "QUERY", "PURGE",
    )
)  # fmt: skip


def _type_name(value: object) -> str:
    return type(value).__name__


def _glob_to_regex(pattern: str) -> str:
    """Translate a path glob: ``*`` within one segment, ``**`` across segments."""
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                if pattern.startswith("/", i):
                    # "/**/x" also matches "/x": zero or more whole segments.
                    out.append("(?:[^/]*/)*")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _status_set(value: object, option: str) -> frozenset[int]:
    if isinstance(value, bool):
        raise TypeError(f"{option} must be an int, a range or a set of ints, not {value!r}")
    if isinstance(value, int):
        items: Iterable[object] = (value,)
    elif isinstance(value, (range, set, frozenset, list, tuple)):
        items = value
    else:
        raise TypeError(
            f"{option} must be an int, a range or a set of ints, not {_type_name(value)} {value!r}"
        )
    out: set[int] = set()
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int):
            raise TypeError(f"{option} must contain only ints, got {item!r} in {value!r}")
        if not 100 <= item <= 999:
            raise ValueError(f"{option} must contain HTTP statuses (100-999), got {item!r}")
        out.add(item)
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class Rule:
    """A per-route policy: close (or keep) connections for matching requests.

    :param path: a glob over the path the application sees (``root_path`` /
        ``SCRIPT_NAME`` included): ``*`` matches within one segment, ``**`` across
        segments (``/downloads/*``, ``/api/**/export``). ``None`` matches every path.
    :param methods: a method name or a set of them (case-insensitive); ``None``
        matches every method. ``GET`` includes ``HEAD``, as routes do.
    :param status: an int, a ``range`` or a set of ints; ``None`` matches every status.
    :param custom_methods: ``True`` accepts method names outside :data:`KNOWN_METHODS`
        (RFC 9110's, PATCH, WebDAV's, QUERY, PURGE); by default such a name is refused
        as a probable typo.
    :param close: ``True`` closes the connection after a matching response;
        ``False`` exempts matching requests from every close connmw would decide on
        its own (rules, statuses, request caps, age, overload, drain). A client's
        own ``close``, HTTP/1.0 rules and an explicit close from the application
        (its own ``Connection: close`` or :func:`connmw.request_close`) still close.

    Rules are tried in order; the first whose path, methods and status all match
    decides.
    """

    path: str | None = None
    methods: frozenset[str] | None = None
    status: frozenset[int] | None = None
    close: bool = True
    _regex: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __init__(
        self,
        path: str | None = None,
        *,
        methods: str | Iterable[str] | None = None,
        status: int | range | Iterable[int] | None = None,
        close: bool = True,
        custom_methods: bool = False,
    ) -> None:
        if path is not None and not isinstance(path, str):
            raise TypeError(f"Rule path must be a str glob or None, not {_type_name(path)} {path!r}")
        if path is not None and not path.startswith("/"):
            raise ValueError(f"Rule path must start with '/', got {path!r}")
        norm_methods: frozenset[str] | None = None
        if methods is not None:
            if isinstance(methods, str):
                methods = (methods,)
            try:
                items = list(methods)
            except TypeError:
                raise TypeError(
                    f"Rule methods must be a str or a set of str, not {_type_name(methods)} {methods!r}"
                ) from None
            if not isinstance(custom_methods, bool):
                raise TypeError(f"Rule custom_methods must be True or False, not {custom_methods!r}")
            for m in items:
                if not isinstance(m, str) or not _METHOD_RE.match(m):
                    raise ValueError(f"Rule methods must be HTTP method names, got {m!r}")
                if not custom_methods and m.upper() not in KNOWN_METHODS:
                    hint = difflib.get_close_matches(m.upper(), sorted(KNOWN_METHODS), n=1)
                    did = f" (did you mean {hint[0]!r}?)" if hint else ""
                    raise ValueError(
                        f"Rule methods: unknown method {m!r}{did}; to match a method outside "
                        "RFC 9110, PATCH, WebDAV, QUERY and PURGE, pass custom_methods=True"
                    )
            if not items:
                raise ValueError("Rule methods must not be empty (use None to match every method)")
            norm_methods = frozenset(m.upper() for m in items)
            if "GET" in norm_methods:
                # HEAD is GET without the body (RFC 9110 §9.3.2); frameworks answer it with
                # the GET route and nginx's limit_except GET allows it too.
                norm_methods |= {"HEAD"}
        norm_status = None if status is None else _status_set(status, "Rule status")
        if norm_status is not None and not norm_status:
            raise ValueError("Rule status must not be empty (use None to match every status)")
        if not isinstance(close, bool):
            raise TypeError(f"Rule close must be True or False, not {close!r}")
        regex = None
        if path is not None and any(c in path for c in "*?"):
            regex = re.compile(_glob_to_regex(path) + r"\Z")
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "methods", norm_methods)
        object.__setattr__(self, "status", norm_status)
        object.__setattr__(self, "close", close)
        object.__setattr__(self, "_regex", regex)

    def matches_request(self, method: str, path: str) -> bool:
        """True when ``method`` and ``path`` match (the status is checked later)."""
        if self.methods is not None and method.upper() not in self.methods:
            return False
        if self.path is None:
            return True
        if self._regex is None:
            return path == self.path
        return self._regex.match(path) is not None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Rule:
        """Build a rule from a mapping such as a TOML table or a parsed YAML item.

        Besides the keyword forms, ``methods`` may be a comma-separated string
        (``"GET,HEAD"``), ``status`` a string (``"500,503"``, ``"500-599"``) or a
        ``{"from": 500, "to": 599}`` table, and ``close`` a string (``"false"``).
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"rules items must be Rule objects or mappings, not {_type_name(data)} {data!r}")
        unknown = set(data) - {"path", "methods", "status", "close", "custom_methods"}
        if unknown:
            raise TypeError(f"Rule got unknown keys {sorted(map(str, unknown))!r} in {dict(data)!r}")
        # An empty string means the default (every method, every status), as for options.
        methods = data.get("methods")
        if isinstance(methods, str):
            methods = [m.strip() for m in methods.split(",") if m.strip()] or None
        status = data.get("status")
        status = None if isinstance(status, str) and not status.strip() else status
        status = _plain_status(status, "Rule status")
        close = data.get("close", True)
        if isinstance(close, str):
            close = _parse_bool(close, "Rule close")
        custom = data.get("custom_methods", False)
        if isinstance(custom, str):
            custom = _parse_bool(custom, "Rule custom_methods")
        return cls(data.get("path"), methods=methods, status=status, close=close, custom_methods=custom)


def match_rules(rules: tuple[Rule, ...], method: str, path: str) -> tuple[Rule, ...]:
    """The rules that may decide for ``method`` and ``path``, in order.

    The list stops at the first rule without a status condition: nothing after it
    can be reached. The first of them whose status matches decides the response.
    """
    found: list[Rule] | None = None
    for rule in rules:
        if rule.matches_request(method, path):
            if rule.status is None and found is None:
                return (rule,)  # the common case, without a list
            if found is None:
                found = []
            found.append(rule)
            if rule.status is None:
                break
    return () if found is None else tuple(found)


class RuleMatcher:
    """:func:`match_rules` over a fixed tuple of rules, with one combined path
    pattern tried first: a request no rule's path matches (most requests) costs one
    regular-expression match, however many rules there are. The pattern only
    rules out; the rules themselves still decide. The paths it ruled out last are
    remembered (a set, bounded: clients choose paths), so a path seen again costs one
    set lookup."""

    __slots__ = ("_misses", "_prefilter", "rules")

    #: Paths remembered as matching no rule, at most; the set starts over when full.
    MISSES = 1024

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self.rules = rules
        self._prefilter: re.Pattern[str] | None = None
        if rules and all(rule.path is not None for rule in rules):
            parts = [
                rule._regex.pattern if rule._regex is not None else re.escape(str(rule.path)) + r"\Z"
                for rule in rules
            ]
            self._prefilter = re.compile("|".join(f"(?:{part})" for part in parts))
        self._misses: set[str] = set()

    def __call__(self, method: str, path: str) -> tuple[Rule, ...]:
        prefilter = self._prefilter
        if prefilter is not None:
            misses = self._misses
            if path in misses:
                return ()
            if prefilter.match(path) is None:
                if len(misses) >= self.MISSES:
                    misses.clear()
                misses.add(path)
                return ()
        return match_rules(self.rules, method, path)


def _plain_status(value: Any, option: str) -> Any:
    """Statuses from plain data: a string list/range or a ``{from, to}`` table."""
    if isinstance(value, str):
        return _parse_status_text(value, option)
    if isinstance(value, Mapping):
        if set(value) != {"from", "to"}:
            raise ValueError(f"{option} as a table must have exactly 'from' and 'to', got {dict(value)!r}")
        lo, hi = value["from"], value["to"]
        for bound in (lo, hi):
            if isinstance(bound, bool) or not isinstance(bound, int):
                raise TypeError(f"{option} 'from' and 'to' must be ints, got {dict(value)!r}")
        if lo > hi:
            raise ValueError(f"{option} 'from' must not exceed 'to', got {dict(value)!r}")
        return range(lo, hi + 1)
    return value


_OFF_WORDS = frozenset(("", "none", "off", "false"))


def _parse_bool(text: str, option: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{option} must be a boolean (true/false), got {text!r}")


def _parse_status_text(text: str, option: str) -> frozenset[int]:
    """``"500,503"`` or ``"500-599"`` or ``"400, 500-504"``; empty or ``none`` means none."""
    out: set[int] = set()
    if text.strip().lower() in _OFF_WORDS:
        return frozenset()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = part.split("-", 1)
                if int(lo) > int(hi):
                    raise ValueError
                out.update(range(int(lo), int(hi) + 1))
            else:
                out.add(int(part))
        except ValueError:
            raise ValueError(
                f"{option} must list statuses like '500,503' or '500-599', got {text!r}"
            ) from None
    return _status_set(out, option)
