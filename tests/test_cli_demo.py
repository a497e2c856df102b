"""``connmw demo``: runs in process (so coverage counts), quickly, and leaves nothing behind."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from connmw import _demo
from connmw.cli import main
from connmw.probe import CaseResult, ProbeConfig, Report, Style, parse_url

pytestmark = pytest.mark.server


def _row(out: str, title: str) -> list[str]:
    """The lines of the table row that starts with ``title`` (a row may span several lines)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith(" ") or not line.strip():
            break
        rows.append(line)
    return rows


def test_demo_shows_what_connmw_changed(capsys: pytest.CaptureFixture[str]) -> None:
    before = {t.ident for t in threading.enumerate()}
    start = time.monotonic()
    code = main(["demo"])
    elapsed = time.monotonic() - start
    out = capsys.readouterr().out
    assert code == 0, out
    assert elapsed < 20  # about 2 s on an idle machine
    assert "\x1b[" not in out
    assert 'rules=[Rule("/downloads/*")], max_requests_per_connection=3' in out
    header = next(line for line in out.splitlines() if line.startswith("request"))
    for column in ("uvicorn alone", "uvicorn + connmw", "x-connmw: why"):
        assert column in header
    # Each policy closes with its reason, and the bare server kept the same connection.
    for title, reason in [
        ("GET / (3rd on a connection)", "close; reason=max-requests"),
        ("GET /downloads/report.csv", "close; reason=rule"),
        ("GET /flaky (answers 503)", "close; reason=status"),
        ("GET /, Connection: TE, close", "close; reason=client"),
        ("HTTP/1.0 GET /stream", "close; reason=http-1.0"),
    ]:
        row = "\n".join(_row(out, title))
        assert reason in row, row
        assert "Connection: close" in row
    for title in ("GET / (3rd on a connection)", "GET /downloads/report.csv", "GET /flaky (answers 503)"):
        first = _row(out, title)[0]
        assert "kept (reused)" in first  # uvicorn alone
        assert first.count("closed") == 1  # uvicorn + connmw
    first_get = "\n".join(_row(out, "GET /"))
    assert "Keep-Alive: timeout=5, max=2" in first_get
    assert "RFC violations: uvicorn alone" in out
    assert "uvicorn + connmw 0." in out
    # Both servers are stopped: no thread of the demo is left.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
        if not left:
            break
        time.sleep(0.05)
    assert [t.name for t in left] == []


def test_demo_colour() -> None:
    target = parse_url("http://127.0.0.1:9/")
    bare = [CaseResult(spec, status=200, closed=False, next_request="answered") for spec in _demo.CASES]
    wrapped = [CaseResult(spec, status=200, closed=True, closed_after=0.001) for spec in _demo.CASES]
    for r in wrapped:
        r.headers["connection"] = ["close"]
    text = _demo.format_demo(
        Report(target, ProbeConfig(), bare), Report(target, ProbeConfig(), wrapped), "h11", Style(True), 1.0
    )
    assert text.startswith("\x1b[1mconnmw ")
    assert "\x1b[32m200, closed\x1b[0m" in text  # connmw's changed answers are highlighted
    assert "connmw changed 7 of 7 answers" in text
    assert "Done in 1.0 s." in text


def test_demo_without_uvicorn(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(["demo"]) == 2
    assert capsys.readouterr().err == 'connmw: error: connmw demo needs uvicorn: pip install "connmw[demo]"\n'


def _fake(case_id: str, **kw: object) -> CaseResult:
    spec = next(c for c in _demo.CASES if c.id == case_id)
    r = CaseResult(spec)
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def test_demo_cells_for_unusual_answers() -> None:
    err = _fake("get", error="no complete response within 5 s")
    assert _demo._cell(err) == "error: no complete response within 5 s"
    dropped = _fake("get", status=200, closed=False, next_request="not-answered")
    assert _demo._cell(dropped) == "200, kept (next request unanswered)"
    assert _demo._explain(dropped.spec, dropped) == "-"
    plain_keep = _fake("get", status=200, captured={"x-connmw": ["keep"]})
    assert _demo._explain(plain_keep.spec, plain_keep) == "keep"
    odd = _fake("get", status=200, captured={"x-connmw": ["close; reason=drain"]})
    assert _demo._explain(odd.spec, odd) == "close; reason=drain\ndrain"


def test_demo_fails_when_connmw_misbehaves(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo is also a check: a violation on connmw's side makes it exit 1."""
    target = parse_url("http://127.0.0.1:9/")
    config = ProbeConfig()

    def results(closed: bool) -> list[CaseResult]:
        out = []
        for spec in _demo.CASES:
            r = CaseResult(spec, status=200, closed=closed, next_request=None if closed else "answered")
            r.headers["connection"] = ["close"]
            out.append(r)
        return out

    broken = results(closed=False)
    from connmw.probe import evaluate

    for r in broken:
        r.findings = evaluate(r.spec, r, 0.5)

    def fake_probe_both(config: ProbeConfig | None = None) -> tuple[Report, Report, str]:
        return (
            Report(target, config or ProbeConfig(), results(True)),
            Report(target, ProbeConfig(), broken),
            "h11",
        )

    monkeypatch.setattr(_demo, "probe_both", fake_probe_both)
    assert main(["demo"]) == 1
    out = capsys.readouterr().out
    assert "[!] uvicorn + connmw" in out
    text = _demo.format_demo(
        Report(target, config, results(True)), Report(target, config, results(True)), "h11", Style(False)
    )
    assert "connmw changed 0 of 7 answers" in text
    assert "Done in" not in text


def test_demo_probe_errors_propagate(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> Report:
        raise RuntimeError("probe broke")

    monkeypatch.setattr(_demo, "run_probe", boom)
    with pytest.raises(RuntimeError, match="probe broke"):
        _demo.probe_both()


def test_demo_server_that_does_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    def exits_at_once(self: uvicorn.Server, sockets: object = None) -> None:
        return None

    monkeypatch.setattr(uvicorn.Server, "run", exits_at_once)
    with pytest.raises(RuntimeError, match="uvicorn did not start"), _demo.serve(_demo.app):
        pass  # pragma: no cover - never reached


def test_demo_names_the_http_implementation() -> None:
    from types import SimpleNamespace

    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    assert _demo._impl_name(SimpleNamespace(http_protocol_class=H11Protocol)) == "h11"
    assert _demo._impl_name(SimpleNamespace(http_protocol_class=HttpToolsProtocol)) == "httptools"
    assert _demo._impl_name(SimpleNamespace(http="custom")) == "custom"
