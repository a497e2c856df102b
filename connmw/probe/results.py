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
