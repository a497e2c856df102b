"""``connmw probe``: what a server does with the ``Connection`` header, read off the wire.

The probe speaks HTTP/1.x over a plain socket (TLS for ``https://`` URLs, with
certificate checks on unless ``--insecure``), so it reports the header lines exactly
as the server sent them and sees on the socket itself whether the server closed the
connection. It needs nothing outside the standard library, except ``--http2``, which
imports the ``h2`` package when asked.

Cases, each on a fresh connection:

=====================  ====================================================
``http11``             ``HTTP/1.1``, no ``Connection``
``http11-close``       ``HTTP/1.1``, ``Connection: close``
``http11-te-close``    ``HTTP/1.1``, ``Connection: TE, close`` (a token list)
``http11-close-case``  ``HTTP/1.1``, ``Connection: Close`` (tokens are case-insensitive)
``http10``             ``HTTP/1.0``, no ``Connection``
``http10-keep-alive``  ``HTTP/1.0``, ``Connection: keep-alive``
``h2``                 HTTP/2 with prior knowledge (``--http2``; ALPN ``h2`` over TLS)
=====================  ====================================================

For each case the probe sends the request, reads the response (the body is read
and discarded), then waits up to ``close_wait`` seconds for the server to close
the connection. When it does not, the same request is sent again on the same
connection to see whether it is answered. On HTTP/2 a second stream is sent on
the same connection instead.

Findings
--------
A *violation* makes the exit status 1; a *warning* is reported only.

==============================  =========  ==============  =====================================
code                            severity   reference       when
==============================  =========  ==============  =====================================
``close-announced-kept``        violation  RFC 9112 §9.6   the response says ``close``; the
                                                           connection stayed open
``client-close-kept``           violation  RFC 9112 §9.6   the request said ``close``; the
                                                           connection stayed open
``http10-kept``                 violation  RFC 9112 §9.3   HTTP/1.0 request without
                                                           ``keep-alive``; the connection stayed
                                                           open
``keep-alive-announced-closed`` violation  RFC 9112 §9.3   the response says ``keep-alive`` (or
                                                           carries ``Keep-Alive``); the server
                                                           closed before its advertised timeout
                                                           or dropped the next request
``duplicate-connection``        violation  RFC 9112 §9.6   several ``Connection`` lines that
                                                           contradict (``close`` and
                                                           ``keep-alive``)
``duplicate-connection``        warning    RFC 9110 §5.3   several ``Connection`` lines that
                                                           agree (legal, but some clients read
                                                           only one)
``chunked-to-http10``           violation  RFC 9112 §6.1   ``Transfer-Encoding`` in a response
                                                           to an HTTP/1.0 request
``length-and-chunked``          violation  RFC 9112 §6.1   ``Content-Length`` and
                                                           ``Transfer-Encoding`` together
``h2-forbidden-header``         violation  RFC 9113 §8.2.2 ``connection``, ``keep-alive``,
                                                           ``proxy-connection``,
                                                           ``transfer-encoding``, ``upgrade`` or
                                                           ``te`` other than ``trailers`` on
                                                           HTTP/2
``unannounced-close``           warning    RFC 9112 §9.6   an HTTP/1.1 response without
                                                           ``close``, then the server closed
``kept-without-keep-alive``     warning    RFC 9112 §9.3   HTTP/1.0 ``keep-alive`` request; the
                                                           response does not say ``keep-alive``
                                                           but the connection stayed open
==============================  =========  ==============  =====================================

JSON output (``--json``), schema ``connmw.probe/1``
---------------------------------------------------
Keys are only ever added within a schema version; a removal or a change of
meaning bumps it. ::

    {
      "schema": "connmw.probe/1",
      "tool": "connmw 0.1.0",
      "url": "http://127.0.0.1:8000/",
      "target": {"scheme": "http", "host": "127.0.0.1", "port": 8000, "path": "/",
                 "tls": false, "tls_verified": false},
      "options": {"method": "GET", "headers": ["X-Token: 1"], "timeout": 5.0,
                  "close_wait": 1.0, "concurrency": 1, "http2": false},
      "cases": [
        {
          "id": "http11-te-close",          # stable case id (table above)
          "title": "HTTP/1.1 TE, close",
          "protocol": "HTTP/1.1",           # "HTTP/1.1", "HTTP/1.0" or "HTTP/2"
          "request_connection": "TE, close",# the request's Connection value, or null
          "requests": 1,                    # requests sent before the close check
          "status": 200,                    # null when no response arrived (see "error")
          "response_version": "HTTP/1.1",   # status-line version; "HTTP/2" for h2
          "headers": {                      # values, one per line, as received
            "connection": ["close"], "keep-alive": [],
            "transfer-encoding": [], "content-length": ["5"]
          },
          "lines": ["Connection: close", "Content-Length: 5"],  # the exact lines
          "framing": "content-length",      # "content-length", "chunked", "close", "none"
          "body_bytes": 5,
          "closed": true,                   # the server closed (null: unknown)
          "close_kind": "fin",              # "fin", "reset", "goaway" or null
          "closed_after_ms": 0.4,           # from the end of the response; null if kept
          "next_request": null,             # "answered", "not-answered", null (not sent)
          "next_status": null,
          "findings": [{"code": "...", "severity": "violation", "rfc": "RFC 9112 §9.6",
                        "message": "..."}],
          "error": null,                    # why the case could not complete, or null
          "elapsed_ms": 3.1
        }
      ],
      "summary": {"violations": 0, "warnings": 0, "errors": 0},
      "exit_code": 0
    }

Exit status: 0 no violation; 1 at least one violation; 2 usage error, or the
target could not be reached (resolution, refusal, timeout, TLS failure), or a
case could not complete and no violation was found.

Bounds: one connection per case, at most ``concurrency`` at once (default 1, so
single-threaded servers work); every connect and every response has ``timeout``
seconds; the close check waits ``close_wait`` seconds; bodies are read and
discarded (never stored); a response head is capped at 64 KiB.
"""

from __future__ import annotations

import concurrent.futures
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from . import __version__

__all__ = [
    "CASES",
    "H2_CASE",
    "SCHEMA",
    "CaseResult",
    "CaseSpec",
    "Finding",
    "ProbeConfig",
    "ProbeError",
    "Report",
    "Target",
    "UsageError",
    "evaluate",
    "parse_header",
    "parse_url",
    "run_case",
    "run_probe",
]

SCHEMA = "connmw.probe/1"
USER_AGENT = f"connmw-probe/{__version__}"
MAX_HEAD = 64 * 1024
_WATCHED = ("connection", "keep-alive", "transfer-encoding", "content-length")
#: Request headers the cases set themselves: ``--header`` may not override them.
RESERVED_HEADERS = frozenset(
    ("connection", "keep-alive", "transfer-encoding", "content-length", "te", "upgrade", "proxy-connection")
)
H2_FORBIDDEN = frozenset(("connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"))
_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))

Severity = Literal["violation", "warning"]


class UsageError(ValueError):
    """A bad command line: exit status 2."""


class ProbeError(Exception):
    """The target cannot be probed at all (resolution, refusal, timeout, TLS): exit status 2."""


class _CaseFailed(Exception):
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


def tokens(values: Iterable[str]) -> list[str]:
    """The lowercase tokens of ``Connection`` field values (RFC 9110 §7.6.1)."""
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip().lower()
            if part:
                out.append(part)
    return out


# -- results ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: Severity
    rfc: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "severity": self.severity, "rfc": self.rfc, "message": self.message}


@dataclass
class CaseResult:
    spec: CaseSpec
    status: int | None = None
    response_version: str | None = None
    headers: dict[str, list[str]] = field(default_factory=lambda: {n: [] for n in _WATCHED})
    lines: list[str] = field(default_factory=list)
    captured: dict[str, list[str]] = field(default_factory=dict)
    framing: str | None = None
    body_bytes: int = 0
    closed: bool | None = None
    close_kind: str | None = None
    closed_after: float | None = None
    next_request: Literal["answered", "not-answered"] | None = None
    next_status: int | None = None
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None
    elapsed: float = 0.0

    @property
    def violations(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "violation"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def as_dict(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "id": spec.id,
            "title": spec.title,
            "protocol": spec.protocol,
            "request_connection": spec.connection,
            "requests": spec.requests,
            "status": self.status,
            "response_version": self.response_version,
            "headers": {n: list(self.headers.get(n, [])) for n in _WATCHED},
            "lines": list(self.lines),
            "framing": self.framing,
            "body_bytes": self.body_bytes,
            "closed": self.closed,
            "close_kind": self.close_kind,
            "closed_after_ms": None if self.closed_after is None else round(self.closed_after * 1000, 1),
            "next_request": self.next_request,
            "next_status": self.next_status,
            "findings": [f.as_dict() for f in self.findings],
            "error": self.error,
            "elapsed_ms": round(self.elapsed * 1000, 1),
        }


@dataclass
class Report:
    target: Target
    config: ProbeConfig
    results: list[CaseResult]

    @property
    def violations(self) -> int:
        return sum(len(r.violations) for r in self.results)

    @property
    def warnings(self) -> int:
        return sum(len(r.warnings) for r in self.results)

    @property
    def errors(self) -> int:
        return sum(1 for r in self.results if r.error is not None)

    @property
    def exit_code(self) -> int:
        if self.violations:
            return 1
        return 2 if self.errors else 0

    def as_dict(self) -> dict[str, Any]:
        t, c = self.target, self.config
        return {
            "schema": SCHEMA,
            "tool": f"connmw {__version__}",
            "url": t.url,
            "target": {
                "scheme": t.scheme,
                "host": t.host,
                "port": t.port,
                "path": t.path,
                "tls": t.tls,
                "tls_verified": t.tls and not c.insecure,
            },
            "options": {
                "method": c.method,
                "headers": [f"{n}: {v}" for n, v in c.headers],
                "timeout": c.timeout,
                "close_wait": c.close_wait,
                "concurrency": c.concurrency,
                "http2": c.http2,
            },
            "cases": [r.as_dict() for r in self.results],
            "summary": {"violations": self.violations, "warnings": self.warnings, "errors": self.errors},
            "exit_code": self.exit_code,
        }


# -- the verdict (pure) -------------------------------------------------------


def _keep_alive_timeout(values: Sequence[str]) -> float | None:
    for value in values:
        for part in value.split(","):
            name, _, number = part.strip().partition("=")
            if name.strip().lower() == "timeout":
                try:
                    return float(number.strip())
                except ValueError:
                    return None
    return None


def evaluate(spec: CaseSpec, result: CaseResult, close_wait: float) -> list[Finding]:
    """The findings for one finished case; a pure function of what was observed."""
    out: list[Finding] = []
    if result.status is None:
        return out
    h = result.headers
    if spec.protocol == "HTTP/2":
        bad = [n for n in H2_FORBIDDEN if h.get(n)]
        bad += [f"te: {v}" for v in h.get("te", []) if v.strip().lower() != "trailers"]
        if bad:
            out.append(
                Finding(
                    "h2-forbidden-header",
                    "violation",
                    "RFC 9113 §8.2.2",
                    f"HTTP/2 response carries connection-specific headers ({', '.join(sorted(bad))}): "
                    "a conforming client must treat it as malformed",
                )
            )
        return out

    conn_lines = h["connection"]
    resp_tokens = tokens(conn_lines)
    announced_close = "close" in resp_tokens
    announced_ka = "keep-alive" in resp_tokens or bool(h["keep-alive"])
    client_close = "close" in spec.request_tokens
    client_ka = "keep-alive" in spec.request_tokens
    http10 = spec.protocol == "HTTP/1.0"
    waited = f"{close_wait:g} s"
    answered = " and answered the next request" if result.next_request == "answered" else ""

    if len(conn_lines) > 1:
        shown = " / ".join(f"Connection: {v}" for v in conn_lines)
        if announced_close and "keep-alive" in resp_tokens:
            out.append(
                Finding(
                    "duplicate-connection",
                    "violation",
                    "RFC 9112 §9.6",
                    f"{len(conn_lines)} Connection lines that contradict each other ({shown}): "
                    "clients that read one line disagree on whether the connection persists",
                )
            )
        else:
            out.append(
                Finding(
                    "duplicate-connection",
                    "warning",
                    "RFC 9110 §5.3",
                    f"{len(conn_lines)} Connection lines ({shown}): legal, but some clients read only one",
                )
            )
    if h["transfer-encoding"]:
        if http10:
            out.append(
                Finding(
                    "chunked-to-http10",
                    "violation",
                    "RFC 9112 §6.1",
                    f"Transfer-Encoding: {', '.join(h['transfer-encoding'])} in a response to an "
                    "HTTP/1.0 request, which cannot decode it",
                )
            )
        if h["content-length"]:
            out.append(
                Finding(
                    "length-and-chunked",
                    "violation",
                    "RFC 9112 §6.1",
                    "Content-Length and Transfer-Encoding in the same response (a request-smuggling risk "
                    "behind a proxy)",
                )
            )

    if result.closed is False:
        if announced_close:
            who = " (the client asked for it too)" if client_close else ""
            out.append(
                Finding(
                    "close-announced-kept",
                    "violation",
                    "RFC 9112 §9.6",
                    f"the response says Connection: close{who} but the connection stayed open "
                    f"for {waited}{answered}",
                )
            )
        elif client_close:
            out.append(
                Finding(
                    "client-close-kept",
                    "violation",
                    "RFC 9112 §9.6",
                    f'the request said "Connection: {spec.connection}" but the connection stayed open '
                    f"for {waited}{answered}",
                )
            )
        elif http10 and not client_ka:
            out.append(
                Finding(
                    "http10-kept",
                    "violation",
                    "RFC 9112 §9.3",
                    f"HTTP/1.0 request without keep-alive, but the connection stayed open for {waited}{answered}",
                )
            )
        elif http10 and "keep-alive" not in resp_tokens:
            out.append(
                Finding(
                    "kept-without-keep-alive",
                    "warning",
                    "RFC 9112 §9.3",
                    "HTTP/1.0 keep-alive request: the connection stayed open but the response does not "
                    "say Connection: keep-alive, so an HTTP/1.0 client will not reuse it",
                )
            )
        elif result.next_request == "not-answered":
            if announced_ka:
                out.append(
                    Finding(
                        "keep-alive-announced-closed",
                        "violation",
                        "RFC 9112 §9.3",
                        "the response announces keep-alive but the next request on the connection "
                        "got no answer",
                    )
                )
            else:
                out.append(
                    Finding(
                        "unannounced-close",
                        "warning",
                        "RFC 9112 §9.6",
                        "the response does not say Connection: close, yet the next request on the "
                        "connection got no answer",
                    )
                )
    elif result.closed is True and result.framing != "close":
        after = result.closed_after or 0.0
        if announced_ka and not announced_close:
            timeout = _keep_alive_timeout(h["keep-alive"])
            if timeout is None or after < timeout:
                out.append(
                    Finding(
                        "keep-alive-announced-closed",
                        "violation",
                        "RFC 9112 §9.3",
                        f"the response announces keep-alive but the server closed the connection "
                        f"{ms(after)} later",
                    )
                )
        elif (
            not announced_close
            and not client_close
            and not http10
            and result.response_version == "HTTP/1.1"
            and after < close_wait
        ):
            out.append(
                Finding(
                    "unannounced-close",
                    "warning",
                    "RFC 9112 §9.6",
                    f"the server closed the connection {ms(after)} after a response that "
                    "did not say Connection: close",
                )
            )
    return out


# -- the wire -----------------------------------------------------------------


def _tls_context(config: ProbeConfig, alpn: list[str] | None = None) -> ssl.SSLContext:
    if config.insecure:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=config.cafile)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def open_connection(target: Target, config: ProbeConfig, alpn: list[str] | None = None) -> socket.socket:
    """A connected (and, for https, TLS-wrapped) socket; :class:`ProbeError` when impossible."""
    where = f"{target.host}:{target.port}"
    try:
        sock = socket.create_connection((target.host, target.port), timeout=config.timeout)
    except socket.gaierror as exc:
        raise ProbeError(f"cannot resolve {target.host}: {exc.strerror or exc}") from None
    except ConnectionRefusedError:
        raise ProbeError(f"connection refused by {where}") from None
    except TimeoutError:
        raise ProbeError(f"timed out after {config.timeout:g} s connecting to {where}") from None
    except OSError as exc:
        raise ProbeError(f"cannot connect to {where}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if target.tls:
            ctx = _tls_context(config, alpn)
            sock = ctx.wrap_socket(sock, server_hostname=target.host)
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        raise ProbeError(
            f"TLS certificate check failed for {target.host}: {exc.verify_message} "
            "(--insecure skips the check, --cacert FILE trusts another CA)"
        ) from None
    except TimeoutError:
        sock.close()
        raise ProbeError(f"timed out after {config.timeout:g} s in the TLS handshake with {where}") from None
    except OSError as exc:
        sock.close()
        raise ProbeError(f"TLS handshake with {where} failed: {exc}") from None
    return sock


def _remaining(deadline: float) -> float:
    """Seconds left before ``deadline``; a past deadline makes the next ``recv`` time out at once."""
    return max(deadline - time.monotonic(), 0.001)


class _Wire:
    """A socket with a buffer and deadlines; bodies are counted, never stored."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.eof = False

    def _fill(self, deadline: float) -> None:
        self.sock.settimeout(_remaining(deadline))
        data = self.sock.recv(65536)
        if not data:
            self.eof = True
            raise _CaseFailed("the server closed the connection in the middle of a response")
        self.buf += data

    def read_until(self, marker: bytes, deadline: float, limit: int) -> bytes:
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out = self.buf[:i]
                self.buf = self.buf[i + len(marker) :]
                return out
            if len(self.buf) > limit:
                raise _CaseFailed(f"no end of line within {limit} bytes")
            self._fill(deadline)

    def skip(self, n: int, deadline: float) -> None:
        while n > 0:
            if not self.buf:
                self._fill(deadline)
            take = min(n, len(self.buf))
            self.buf = self.buf[take:]
            n -= take

    def skip_to_eof(self, deadline: float) -> int:
        total = len(self.buf)
        self.buf = b""
        while not self.eof:
            self.sock.settimeout(_remaining(deadline))
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                self.eof = True
            total += len(data)
        return total

    def wait_closed(self, wait: float) -> tuple[str | None, float]:
        """``("fin" | "reset" | None, seconds)``: whether the peer closes within ``wait``."""
        start = time.monotonic()
        deadline = start + wait
        while True:
            self.sock.settimeout(_remaining(deadline))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return None, wait
            except OSError:
                self.eof = True
                return "reset", time.monotonic() - start
            if not data:
                self.eof = True
                return "fin", time.monotonic() - start
            self.buf += data


@dataclass
class _Response:
    status: int
    version: str
    raw: list[tuple[str, str, str]]  # (name as sent, lowercase name, value)
    framing: str = "none"
    body_bytes: int = 0


def _request_bytes(target: Target, config: ProbeConfig, spec: CaseSpec) -> bytes:
    lines = [f"{config.method} {spec.path or target.path} {spec.protocol}"]
    names = {n.lower() for n, _ in config.headers}
    if "host" not in names:
        lines.append(f"Host: {target.authority}")
    if "user-agent" not in names:
        lines.append(f"User-Agent: {USER_AGENT}")
    if "accept" not in names:
        lines.append("Accept: */*")
    lines.extend(f"{n}: {v}" for n, v in config.headers)
    if spec.connection is not None:
        lines.append(f"Connection: {spec.connection}")
    if config.method.upper() in _BODY_METHODS:
        lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _read_response(wire: _Wire, method: str, timeout: float) -> _Response:
    deadline = time.monotonic() + timeout
    while True:
        head = wire.read_until(b"\r\n\r\n", deadline, MAX_HEAD)
        text = head.decode("latin-1")
        status_line, *header_lines = text.split("\r\n")
        m = re.match(r"^(HTTP/\d(?:\.\d)?) (\d{3})(?: |$)", status_line)
        if m is None:
            raise _CaseFailed(f"not an HTTP/1.x response: {status_line[:80]!r}")
        status = int(m.group(2))
        if 100 <= status < 200 and status != 101:
            continue
        break
    raw: list[tuple[str, str, str]] = []
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            raw.append((name, name.strip().lower(), value.strip(" \t")))
    resp = _Response(status, m.group(1), raw)
    te = tokens(v for _, n, v in raw if n == "transfer-encoding")
    lengths = {v for _, n, v in raw if n == "content-length"}
    if method.upper() == "HEAD" or status < 200 or status in (204, 304):
        resp.framing = "none"
    elif te:
        if te[-1] == "chunked":
            resp.framing = "chunked"
            resp.body_bytes = _skip_chunked(wire, deadline)
        else:
            resp.framing = "close"
            resp.body_bytes = wire.skip_to_eof(deadline)
    elif lengths:
        if len(lengths) != 1 or not next(iter(lengths)).isdigit():
            raise _CaseFailed(f"unusable Content-Length: {sorted(lengths)}")
        resp.framing = "content-length"
        resp.body_bytes = int(next(iter(lengths)))
        wire.skip(resp.body_bytes, deadline)
    else:
        resp.framing = "close"
        resp.body_bytes = wire.skip_to_eof(deadline)
    return resp


def _skip_chunked(wire: _Wire, deadline: float) -> int:
    total = 0
    while True:
        size_line = wire.read_until(b"\r\n", deadline, 4096)
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _CaseFailed(f"bad chunk size line {size_line[:40]!r}") from None
        if size == 0:
            while wire.read_until(b"\r\n", deadline, MAX_HEAD):
                pass  # trailer lines
            return total
        wire.skip(size + 2, deadline)
        total += size


def _record(result: CaseResult, resp: _Response, capture: Sequence[str]) -> None:
    result.status = resp.status
    result.response_version = resp.version
    result.headers = {n: [] for n in _WATCHED}
    result.lines = []
    result.captured = {n: [] for n in capture}
    for name, low, value in resp.raw:
        if low in result.headers:
            result.headers[low].append(value)
            result.lines.append(f"{name}: {value}")
        if low in result.captured:
            result.captured[low].append(value)
    result.framing = resp.framing
    result.body_bytes = resp.body_bytes


def run_case(target: Target, config: ProbeConfig, spec: CaseSpec) -> CaseResult:
    """Run one case on a fresh connection. Connection failures raise :class:`ProbeError`."""
    if spec.protocol == "HTTP/2":
        return _run_h2_case(target, config, spec)
    result = CaseResult(spec)
    start = time.monotonic()
    sock = open_connection(target, config)
    wire = _Wire(sock)
    request = _request_bytes(target, config, spec)
    try:
        for i in range(spec.requests):
            try:
                sock.sendall(request)
                resp = _read_response(wire, config.method, config.timeout)
            except (_CaseFailed, OSError) as exc:
                if i == 0 or isinstance(exc, TimeoutError):
                    raise
                # The server closed (FIN or reset) after an earlier response.
                detail = (
                    str(exc) if isinstance(exc, _CaseFailed) else f"connection error: {exc.strerror or exc}"
                )
                raise _CaseFailed(f"request {i + 1} of {spec.requests} on the connection: {detail}") from None
            _record(result, resp, config.capture)
        if resp.framing == "close":
            result.closed, result.close_kind, result.closed_after = True, "fin", 0.0
        else:
            kind, after = wire.wait_closed(config.close_wait)
            result.closed = kind is not None
            result.close_kind = kind
            result.closed_after = after if kind is not None else None
            if kind is None:
                try:
                    sock.sendall(request)
                    nxt = _read_response(wire, config.method, config.timeout)
                except (_CaseFailed, OSError):
                    result.next_request = "not-answered"
                else:
                    result.next_request = "answered"
                    result.next_status = nxt.status
    except TimeoutError:
        result.error = f"no complete response within {config.timeout:g} s"
    except _CaseFailed as exc:
        result.error = str(exc)
    except OSError as exc:
        result.error = f"connection error: {exc.strerror or exc}"
    finally:
        sock.close()
    result.elapsed = time.monotonic() - start
    result.findings = evaluate(spec, result, config.close_wait)
    return result


# -- HTTP/2 ---------------------------------------------------------------------


def _import_h2() -> Any:
    try:
        import h2.config
        import h2.connection
        import h2.events
        import h2.exceptions
    except ImportError:
        raise UsageError("--http2 needs the h2 package: pip install h2") from None
    return h2


def _run_h2_case(target: Target, config: ProbeConfig, spec: CaseSpec) -> CaseResult:
    h2 = _import_h2()
    result = CaseResult(spec)
    start = time.monotonic()
    sock = open_connection(target, config, alpn=["h2"])
    state: dict[str, Any] = {"ended": False, "frames": False}
    try:
        if isinstance(sock, ssl.SSLSocket) and sock.selected_alpn_protocol() != "h2":
            raise _CaseFailed("the server did not negotiate HTTP/2 (ALPN h2)")
        conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(
                client_side=True, header_encoding=None, validate_inbound_headers=False
            )
        )
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        request: list[tuple[bytes, bytes]] = [
            (b":method", config.method.encode("latin-1")),
            (b":scheme", target.scheme.encode()),
            (b":authority", target.authority.encode("idna")),
            (b":path", (spec.path or target.path).encode("latin-1")),
        ]
        names = {n.lower() for n, _ in config.headers}
        if "user-agent" not in names:
            request.append((b"user-agent", USER_AGENT.encode()))
        for name, value in config.headers:
            if name.lower() != "host":
                request.append((name.lower().encode("latin-1"), value.encode("latin-1")))
        try:
            headers = _h2_exchange(h2, sock, conn, 1, request, config.timeout, state)
        except h2.exceptions.ProtocolError as exc:
            if state["frames"]:
                raise _CaseFailed(f"HTTP/2 protocol error in the server's frames: {exc}") from None
            raise _CaseFailed(f"{_NO_H2} ({exc})") from None
        result.response_version = "HTTP/2"
        result.headers = {n: [] for n in _WATCHED}
        result.captured = {n: [] for n in config.capture}
        for raw_name, raw_value in headers:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            if name == ":status":
                result.status = int(value)
                continue
            if name in H2_FORBIDDEN or name in _WATCHED or name == "te":
                result.headers.setdefault(name, []).append(value)
                result.lines.append(f"{name}: {value}")
            if name in result.captured:
                result.captured[name].append(value)
        result.framing = "none"
        result.body_bytes = state.get("body", 0)
        if state.get("terminated"):
            result.closed, result.close_kind, result.closed_after = True, "goaway", 0.0
        else:
            result.closed = False
            try:
                _h2_exchange(h2, sock, conn, 3, request, config.timeout, state)
            except (_CaseFailed, OSError, TimeoutError, h2.exceptions.ProtocolError):
                result.next_request = "not-answered"
            else:
                result.next_request = "answered"
                result.next_status = state.get("status")
    except TimeoutError:
        result.error = f"no complete HTTP/2 response within {config.timeout:g} s"
    except _CaseFailed as exc:
        result.error = str(exc)
    except OSError as exc:
        what = "connection error" if state["frames"] else _NO_H2
        result.error = f"{what}: {exc.strerror or exc}"
    finally:
        sock.close()
    result.elapsed = time.monotonic() - start
    result.findings = evaluate(spec, result, config.close_wait)
    return result


_NO_H2 = "the server does not speak HTTP/2 with prior knowledge"


def _h2_exchange(
    h2: Any,
    sock: socket.socket,
    conn: Any,
    stream_id: int,
    request: list[tuple[bytes, bytes]],
    timeout: float,
    state: dict[str, Any],
) -> list[tuple[bytes, bytes]]:
    """Send one request on ``stream_id`` and read its response headers and body."""
    ev = h2.events
    conn.send_headers(stream_id, request, end_stream=True)
    sock.sendall(conn.data_to_send())
    deadline = time.monotonic() + timeout
    headers: list[tuple[bytes, bytes]] | None = None
    state["body"] = 0
    while True:
        sock.settimeout(_remaining(deadline))
        data = sock.recv(65536)
        if not data:
            state["terminated"] = True
            if not state["frames"]:
                raise _CaseFailed(f"{_NO_H2} (it closed the connection)")
            raise _CaseFailed("the server closed the HTTP/2 connection before the response ended")
        if not state.get("checked"):
            state["checked"] = True
            state["frames"] = data[3:4] == b"\x04"  # an HTTP/2 server's first frame is SETTINGS
        events = conn.receive_data(data)
        for event in events:
            if isinstance(event, ev.ResponseReceived) and event.stream_id == stream_id:
                headers = list(event.headers)
                state["status"] = next((int(v) for k, v in headers if k == b":status"), None)
            elif isinstance(event, ev.DataReceived):
                if event.stream_id == stream_id:
                    state["body"] += len(event.data)
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, ev.StreamReset) and event.stream_id == stream_id:
                raise _CaseFailed(f"the server reset the stream (error code {event.error_code})")
            elif isinstance(event, ev.ConnectionTerminated):
                state["terminated"] = True
                if headers is None:
                    raise _CaseFailed(f"the server sent GOAWAY (error code {event.error_code})")
            elif isinstance(event, ev.StreamEnded) and event.stream_id == stream_id:
                state["ended"] = True
        sock.sendall(conn.data_to_send())
        if state.get("ended") and headers is not None:
            state["ended"] = False
            return headers


# -- running --------------------------------------------------------------------


def run_probe(
    target: Target,
    config: ProbeConfig,
    cases: Sequence[CaseSpec] | None = None,
    runner: Callable[[Target, ProbeConfig, CaseSpec], CaseResult] = run_case,
) -> Report:
    """Run the cases (the first alone, so an unreachable target fails fast).

    :raises ProbeError: the first case could not connect; nothing else was tried.
    """
    if cases is None:
        cases = CASES + ((H2_CASE,) if config.http2 else ())
    if not cases:
        return Report(target, config, [])
    if any(c.protocol == "HTTP/2" for c in cases):
        _import_h2()
    results: list[CaseResult] = [runner(target, config, cases[0])]
    rest = list(cases[1:])

    def one(spec: CaseSpec) -> CaseResult:
        try:
            return runner(target, config, spec)
        except ProbeError as exc:
            return CaseResult(spec, error=str(exc))

    workers = max(1, min(config.concurrency, len(rest) or 1))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        results.extend(pool.map(one, rest))
    return Report(target, config, results)


# -- output ---------------------------------------------------------------------

_COLORS = {"red": "31", "green": "32", "yellow": "33", "dim": "2", "bold": "1"}


class Style:
    """ANSI colour when ``enabled``; plain text otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, color: str) -> str:
        if not self.enabled or not text:
            return text
        return f"\x1b[{_COLORS[color]}m{text}\x1b[0m"


def ms(seconds: float) -> str:
    """``<0.1 ms``, ``0.4 ms``, ``12 ms``, ``1.5 s``."""
    if seconds < 0.0001:
        return "<0.1 ms"
    if seconds < 0.01:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.1f} s"


def _cell(values: Sequence[str]) -> str:
    return " | ".join(values) if values else "-"


def closed_text(result: CaseResult) -> str:
    if result.closed is None:
        return "?"
    if result.close_kind == "goaway":
        return "yes (GOAWAY)"
    if result.closed:
        if result.framing == "close":
            return "yes (body ends at close)"
        how = " (reset)" if result.close_kind == "reset" else ""
        return f"yes{how}, {ms(result.closed_after or 0.0)}"
    return "no"


def next_text(result: CaseResult) -> str:
    if result.next_request == "answered":
        return f"answered {result.next_status}"
    if result.next_request == "not-answered":
        return "no answer"
    return "-"


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    colors: Sequence[str | None],
    style: Style,
    color_column: int = -1,
) -> list[str]:
    """Left-aligned columns; a cell may hold several lines. ``colors[i]`` colours the
    ``color_column`` cell of row ``i`` (the padding stays plain)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, *(len(x) for x in c.split("\n"))) for w, c in zip(widths, row, strict=True)]
    out = [style("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(), "bold")]
    col = color_column % len(headers)
    for row, color in zip(rows, colors, strict=True):
        split = [c.split("\n") for c in row]
        for i in range(max(len(c) for c in split)):
            cells = []
            for j, (c, w) in enumerate(zip(split, widths, strict=True)):
                text = c[i] if i < len(c) else ""
                cell = text.ljust(w)
                if color is not None and j == col and text:
                    cell = style(text, color) + " " * (w - len(text))
                cells.append(cell)
            out.append("  ".join(cells).rstrip())
    return out


def verdict(result: CaseResult) -> tuple[str, str]:
    """``(text, colour)`` for a case."""
    if result.error is not None:
        return "error", "red"
    n = len(result.violations)
    if n:
        return f"{n} violation{'s' if n > 1 else ''}", "red"
    if result.warnings:
        n = len(result.warnings)
        return f"{n} warning{'s' if n > 1 else ''}", "yellow"
    return "ok", "green"


def format_report(report: Report, style: Style) -> str:
    t, c = report.target, report.config
    tls = ""
    if t.tls:
        tls = ", TLS without certificate check" if c.insecure else ", TLS verified"
    lines = [
        style(f"connmw probe {t.url}", "bold"),
        f"{c.method} {t.path} on {t.host}:{t.port}{tls}; one fresh connection per case; "
        f"close check waits {c.close_wait:g} s",
        "",
    ]
    rows: list[list[str]] = []
    colors: list[str | None] = []
    for r in report.results:
        text, color = verdict(r)
        rows.append(
            [
                r.spec.title,
                "-" if r.status is None else str(r.status),
                _cell(r.headers.get("connection", [])),
                _cell(r.headers.get("keep-alive", [])),
                _cell(r.headers.get("transfer-encoding", [])),
                _cell(r.headers.get("content-length", [])),
                closed_text(r),
                next_text(r),
                text,
            ]
        )
        colors.append(color)
    lines += render_table(
        [
            "case",
            "status",
            "Connection",
            "Keep-Alive",
            "Transfer-Encoding",
            "Content-Length",
            "server closed",
            "next request",
            "verdict",
        ],
        rows,
        colors,
        style,
    )
    lines.append(
        style("(case: request version and its Connection value; '|' separates repeated lines)", "dim")
    )
    notes: list[str] = []
    for r in report.results:
        if r.error is not None:
            notes.append(f"  {style('error', 'red')}      {r.spec.title}: {r.error}")
        for f in r.findings:
            label = style("VIOLATION", "red") if f.severity == "violation" else style("warning  ", "yellow")
            notes.append(f"  {label}  {r.spec.title}: {f.message} [{f.code}, {f.rfc}]")
    if notes:
        lines += ["", *notes]
    summary = (
        f"{report.violations} violation{'s' if report.violations != 1 else ''}, "
        f"{report.warnings} warning{'s' if report.warnings != 1 else ''}, "
        f"{report.errors} error{'s' if report.errors != 1 else ''} (exit {report.exit_code})"
    )
    color = "red" if report.exit_code else ("yellow" if report.warnings else "green")
    lines += ["", style(summary, color)]
    return "\n".join(lines) + "\n"
