"""What one case observed, its findings, and the whole report (with its JSON form)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .. import __version__
from .cases import SCHEMA, WATCHED, CaseSpec, ProbeConfig, Severity, Target


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: Severity
    rfc: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "severity": self.severity, "rfc": self.rfc, "message": self.message}


#: RFC 9113 §7 error codes, by value.
H2_ERRORS = (
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "INTERNAL_ERROR",
    "FLOW_CONTROL_ERROR",
    "SETTINGS_TIMEOUT",
    "STREAM_CLOSED",
    "FRAME_SIZE_ERROR",
    "REFUSED_STREAM",
    "CANCEL",
    "COMPRESSION_ERROR",
    "CONNECT_ERROR",
    "ENHANCE_YOUR_CALM",
    "INADEQUATE_SECURITY",
    "HTTP_1_1_REQUIRED",
)
REFUSED_STREAM = 7
#: A GOAWAY with this last stream id announces a shutdown without naming a stream (RFC 9113 §6.8).
MAX_STREAM_ID = 2**31 - 1


def h2_error(code: int) -> str:
    """``NO_ERROR``, ..., or ``0x...`` for a code RFC 9113 does not name."""
    return H2_ERRORS[code] if 0 <= code < len(H2_ERRORS) else f"0x{code:x}"


@dataclass(frozen=True, slots=True)
class Goaway:
    """One GOAWAY frame as received (RFC 9113 §6.8)."""

    error_code: int
    last_stream_id: int
    #: the frame's debug data, decoded as UTF-8 (undecodable bytes replaced), at most 200 characters
    debug_data: str

    @property
    def text(self) -> str:
        last = "2^31-1" if self.last_stream_id == MAX_STREAM_ID else str(self.last_stream_id)
        debug = f" {self.debug_data!r}" if self.debug_data else ""
        return f"GOAWAY {h2_error(self.error_code)} last stream {last}{debug}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "error_code": self.error_code,
            "error": h2_error(self.error_code),
            "last_stream_id": self.last_stream_id,
            "debug_data": self.debug_data,
        }


def goaways_text(goaways: list[Goaway]) -> str:
    """``GOAWAY ... then GOAWAY ...``; a frame repeated back to back is shown once, with a count."""
    groups: list[tuple[Goaway, int]] = []
    for g in goaways:
        if groups and groups[-1][0] == g:
            groups[-1] = (g, groups[-1][1] + 1)
        else:
            groups.append((g, 1))
    return " then ".join(g.text + (f" ({n} times)" if n > 1 else "") for g, n in groups)


@dataclass
class StreamCounts:
    """The HTTP/2 streams of one case: sent, and how each ended."""

    concurrency: int
    sent: int = 0
    completed: int = 0
    #: not processed, safe to retry: above a GOAWAY's last stream id, or reset with REFUSED_STREAM
    refused: int = 0
    #: reset by the server with another error code
    reset: int = 0
    #: the connection ended before their response did
    cut: int = 0
    #: still open when the case gave up waiting (``timeout`` without a frame); lost when a GOAWAY
    #: had come (the server announced it would finish them), else the server is just slow
    unanswered: int = 0
    #: responses completed before the first GOAWAY arrived; None without a GOAWAY
    before_goaway: int | None = None

    @property
    def lost(self) -> int:
        stalled = self.unanswered if self.before_goaway is not None else 0
        return self.reset + self.cut + stalled

    @property
    def text(self) -> str:
        parts = [f"{self.completed} of {self.sent} streams completed"]
        parts += [
            f"{n} {what}"
            for n, what in ((self.reset, "reset"), (self.cut, "cut"), (self.unanswered, "unanswered"))
            if n
        ]
        if self.refused:
            parts.append(f"{self.refused} refused (not processed, safe to retry)")
        if self.before_goaway is not None:
            parts.append(f"first GOAWAY after {self.before_goaway} responses")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "sent": self.sent,
            "completed": self.completed,
            "refused": self.refused,
            "reset": self.reset,
            "cut": self.cut,
            "unanswered": self.unanswered,
            "lost": self.lost,
            "all_completed": self.completed + self.refused == self.sent,
            "before_goaway": self.before_goaway,
        }


@dataclass
class CaseResult:
    spec: CaseSpec
    status: int | None = None
    response_version: str | None = None
    headers: dict[str, list[str]] = field(default_factory=lambda: {n: [] for n in WATCHED})
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
    #: HTTP/2: every GOAWAY received, in order
    goaways: list[Goaway] = field(default_factory=list)
    #: HTTP/2 cases with several streams: how they ended
    streams: StreamCounts | None = None

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
            "headers": {n: list(self.headers.get(n, [])) for n in WATCHED},
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
            "goaways": [g.as_dict() for g in self.goaways],
            "streams": None if self.streams is None else self.streams.as_dict(),
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
