"""The probe's inputs: the target, the options, the cases; the errors it raises."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from .. import __version__

SCHEMA = "connmw.probe/1"
USER_AGENT = f"connmw-probe/{__version__}"
MAX_HEAD = 64 * 1024
WATCHED = ("connection", "keep-alive", "transfer-encoding", "content-length")
#: Request headers the cases set themselves: ``--header`` may not override them.
RESERVED_HEADERS = frozenset(
    ("connection", "keep-alive", "transfer-encoding", "content-length", "te", "upgrade", "proxy-connection")
)
H2_FORBIDDEN = frozenset(("connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"))
_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))

Severity = Literal["violation", "warning"]


class UsageError(ValueError):
    """A bad command line: exit status 2."""


class ProbeError(Exception):
    """The target cannot be probed at all (resolution, refusal, timeout, TLS): exit status 2."""


class CaseFailed(Exception):
    """One case could not complete; recorded in its result."""


# -- inputs -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    url: str

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.tls else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_url(url: str) -> Target:
    """``http://host[:port]/path?query`` or ``https://...``; anything else is a usage error."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"bad URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"the URL must start with http:// or https://, got {url!r}")
    if not parts.hostname:
        raise UsageError(f"the URL has no host: {url!r}")
    if any(c in url for c in "\r\n\t "):
        raise UsageError(f"the URL must not contain spaces or control characters: {url!r}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return Target(parts.scheme, parts.hostname, port, path, url)


def parse_header(text: str) -> tuple[str, str]:
    """``"Name: value"`` from ``--header``; reserved or malformed headers are usage errors."""
    name, sep, value = text.partition(":")
    name = name.strip()
    value = value.strip()
    if not sep or not _TOKEN_RE.match(name):
        raise UsageError(f"--header must look like 'Name: value', got {text!r}")
    if any(c in value for c in "\r\n\0"):
        raise UsageError(f"--header value must not contain CR, LF or NUL, got {text!r}")
    if name.lower() in RESERVED_HEADERS:
        raise UsageError(f"--header cannot set {name}: the probe cases set it themselves")
    return name, value


def check_method(method: str) -> str:
    if not _TOKEN_RE.match(method):
        raise UsageError(f"--method must be an HTTP method name, got {method!r}")
    if method.upper() == "CONNECT":
        raise UsageError("--method CONNECT opens a tunnel; the probe cannot use it")
    return method


@dataclass(frozen=True, slots=True)
class ProbeConfig:
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = 5.0
    close_wait: float = 1.0
    concurrency: int = 1
    insecure: bool = False
    cafile: str | None = None
    http2: bool = False
    #: extra response header names (lowercase) to report, e.g. ``x-connmw``
    capture: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CaseSpec:
    id: str
    title: str
    protocol: Literal["HTTP/1.1", "HTTP/1.0", "HTTP/2"] = "HTTP/1.1"
    connection: str | None = None
    #: requests sent one after the other before the close check (the last one is judged)
    requests: int = 1
    #: overrides the URL's path (``connmw demo`` probes several routes)
    path: str | None = None

    @property
    def request_tokens(self) -> list[str]:
        return tokens([self.connection] if self.connection is not None else [])


CASES: tuple[CaseSpec, ...] = (
    CaseSpec("http11", "HTTP/1.1"),
    CaseSpec("http11-close", "HTTP/1.1 close", connection="close"),
    CaseSpec("http11-te-close", "HTTP/1.1 TE, close", connection="TE, close"),
    CaseSpec("http11-close-case", "HTTP/1.1 Close", connection="Close"),
    CaseSpec("http10", "HTTP/1.0", protocol="HTTP/1.0"),
    CaseSpec("http10-keep-alive", "HTTP/1.0 keep-alive", protocol="HTTP/1.0", connection="keep-alive"),
)
H2_CASE = CaseSpec("h2", "HTTP/2", protocol="HTTP/2")
#: Streams open at once in the ``h2-streams`` case (below every server's default limit).
H2_AT_ONCE = 8
#: Enough streams on one connection to meet a request cap (nginx 1000, ALB 10,000 would need more;
#: hypercorn's ``keep_alive_max_requests`` and connmw's cap are usually set lower), yet bounded.
H2_STREAMS_CASE = CaseSpec(
    "h2-streams", f"HTTP/2 200 streams, {H2_AT_ONCE} at once", protocol="HTTP/2", requests=200
)
H2_CASES = (H2_CASE, H2_STREAMS_CASE)


def tokens(values: Iterable[str]) -> list[str]:
    """The lowercase tokens of ``Connection`` field values (RFC 9110 §7.6.1)."""
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip().lower()
            if part:
                out.append(part)
    return out
