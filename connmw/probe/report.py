"""The human-readable report: a table of the cases, then every finding."""

from __future__ import annotations

from collections.abc import Sequence

from .findings import ms
from .results import CaseResult, Report, goaways_text

_COLORS = {"red": "31", "green": "32", "yellow": "33", "dim": "2", "bold": "1"}


class Style:
    """ANSI colour when ``enabled``; plain text otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, color: str) -> str:
        if not self.enabled or not text:
            return text
        return f"\x1b[{_COLORS[color]}m{text}\x1b[0m"


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
        seen = [goaways_text(r.goaways)] if r.goaways else []
        seen += [r.streams.text] if r.streams is not None else []
        if seen:
            notes.append(f"  {style('HTTP/2', 'dim')}     {r.spec.title}: {'; '.join(seen)}")
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
