"""``connmw probe`` without a network: the command line, the verdict table, the output."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from connmw import probe as _probe
from connmw.cli import main, use_color, write
from connmw.probe import (
    CASES,
    H2_CASE,
    SCHEMA,
    CaseResult,
    CaseSpec,
    Finding,
    ProbeConfig,
    Report,
    Style,
    UsageError,
    evaluate,
    parse_header,
    parse_url,
)

# -- the command line ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host", "port", "path", "authority"),
    [
        pytest.param("http://example.test", "example.test", 80, "/", "example.test", id="bare"),
        pytest.param(
            "https://example.test/a?b=1#f", "example.test", 443, "/a?b=1", "example.test", id="https"
        ),
        pytest.param("http://127.0.0.1:8000/x", "127.0.0.1", 8000, "/x", "127.0.0.1:8000", id="port"),
        pytest.param("http://[::1]:8080/", "::1", 8080, "/", "[::1]:8080", id="ipv6"),
        pytest.param("https://[::1]/", "::1", 443, "/", "[::1]", id="ipv6-default-port"),
    ],
)
def test_parse_url(url: str, host: str, port: int, path: str, authority: str) -> None:
    target = parse_url(url)
    assert (target.host, target.port, target.path, target.authority) == (host, port, path, authority)
    assert target.tls == url.startswith("https")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param("ftp://example.test/", "must start with http:// or https://", id="scheme"),
        pytest.param("example.test:80", "must start with http:// or https://", id="no-scheme"),
        pytest.param("http:///path", "has no host", id="no-host"),
        pytest.param("http://example.test:99999/", "bad URL", id="port-range"),
        pytest.param("http://example.test/a b", "spaces or control characters", id="space"),
    ],
)
def test_parse_url_rejects(url: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_url(url)


def test_parse_header() -> None:
    assert parse_header("X-Token:  abc ") == ("X-Token", "abc")
    assert parse_header("Accept:") == ("Accept", "")
    for bad, message in [
        ("no colon", "must look like"),
        ("Bad Name: 1", "must look like"),
        ("X-A: 1\r\nX-B: 2", "CR, LF or NUL"),
        ("connection: close", "cannot set connection"),
        ("Transfer-Encoding: chunked", "cannot set Transfer-Encoding"),
    ]:
        with pytest.raises(UsageError, match=message):
            parse_header(bad)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["probe"], "the following arguments are required: URL", id="no-url"),
        pytest.param(
            ["probe", "http://x/", "--bogus"], "unrecognized arguments: --bogus", id="unknown-option"
        ),
        pytest.param(["probe", "http://x/", "--timeout", "0"], "must be > 0 and <= 300", id="timeout-zero"),
        pytest.param(
            ["probe", "http://x/", "--timeout", "soon"], "not a number of seconds", id="timeout-text"
        ),
        pytest.param(["probe", "http://x/", "--close-wait", "61"], "<= 60 seconds", id="close-wait"),
        pytest.param(["probe", "http://x/", "--concurrency", "0"], "between 1 and 8", id="concurrency"),
        pytest.param(
            ["probe", "http://x/", "--concurrency", "two"], "not a whole number", id="concurrency-text"
        ),
        pytest.param(["probe", "http://x/", "--color", "pink"], "invalid choice", id="color"),
        pytest.param(["probe", "gopher://x/"], "must start with http://", id="scheme"),
        pytest.param(
            ["probe", "http://x/", "--method", "GE T"], "--method must be an HTTP method", id="method"
        ),
        pytest.param(["probe", "http://x/", "--method", "connect"], "CONNECT opens a tunnel", id="connect"),
        pytest.param(["probe", "http://x/", "-H", "nonsense"], "--header must look like", id="header"),
        pytest.param(["probe", "http://x/", "--insecure"], "only apply to https://", id="insecure-http"),
        pytest.param(["probe", "https://x/", "--cacert", "/nonexistent/ca.pem"], "no such file", id="cacert"),
        pytest.param(["frobnicate"], "invalid choice: 'frobnicate'", id="command"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err
    assert captured.err.count("\n") == 1
    assert "Traceback" not in captured.err


def test_insecure_with_cacert(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert main(["probe", "https://x/", "--insecure", "--cacert", str(ca)]) == 2
    assert "contradict" in capsys.readouterr().err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "probe" in err
    assert "demo" in err


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("connmw ")
    assert main(["probe", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--method", "--header", "--timeout", "--json", "--insecure", "--http2", "--close-wait"):
        assert option in out


def test_interrupt_exits_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(*args: object, **kwargs: object) -> Report:
        raise KeyboardInterrupt

    monkeypatch.setattr(_probe, "run_probe", interrupted)
    assert main(["probe", "http://127.0.0.1:9/"]) == 130
    assert capsys.readouterr().err == "connmw: interrupted\n"


# -- colour and encoding ----------------------------------------------------------------------


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_use_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert use_color("auto", _Tty()) is True
    assert use_color("auto", io.StringIO()) is False
    assert use_color("always", io.StringIO()) is True
    assert use_color("never", _Tty()) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert use_color("auto", _Tty()) is False
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert use_color("auto", _Tty()) is False


def test_write_falls_back_to_ascii() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    write(stream, "RFC 9112 \u00a79.6 \u2014 ok\n")
    assert raw.getvalue() == b"RFC 9112 sec. 9.6 ? ok\n"


# -- the verdict --------------------------------------------------------------------------------

SPEC = {c.id: c for c in (*CASES, H2_CASE)}


def result(
    case_id: str,
    *,
    status: int | None = 200,
    connection: tuple[str, ...] = (),
    keep_alive: tuple[str, ...] = (),
    te: tuple[str, ...] = (),
    cl: tuple[str, ...] = ("2",),
    closed: bool | None = True,
    after: float | None = 0.001,
    framing: str = "content-length",
    next_request: Any = None,
    version: str = "HTTP/1.1",
    extra: dict[str, list[str]] | None = None,
) -> CaseResult:
    r = CaseResult(SPEC[case_id])
    r.status = status
    r.response_version = version
    r.headers = {
        "connection": list(connection),
        "keep-alive": list(keep_alive),
        "transfer-encoding": list(te),
        "content-length": list(cl),
        **(extra or {}),
    }
    r.closed = closed
    r.closed_after = after if closed else None
    r.framing = framing
    r.next_request = next_request
    return r


def found(r: CaseResult) -> list[tuple[str, str]]:
    return [(f.code, f.severity) for f in evaluate(r.spec, r, close_wait=1.0)]


V, W = "violation", "warning"


@pytest.mark.parametrize(
    ("r", "expected"),
    [
        pytest.param(result("http11", closed=False, next_request="answered"), [], id="kept-reused"),
        pytest.param(result("http11-close", connection=("close",)), [], id="close-honoured"),
        pytest.param(result("http11", status=None, closed=None), [], id="error-no-verdict"),
        pytest.param(
            result("http11", connection=("close",), closed=False),
            [("close-announced-kept", V)],
            id="announced-kept",
        ),
        pytest.param(
            result("http11-te-close", closed=False), [("client-close-kept", V)], id="client-close-kept"
        ),
        pytest.param(result("http10", closed=False), [("http10-kept", V)], id="http10-kept"),
        pytest.param(
            result("http10-keep-alive", closed=False, connection=("keep-alive",)),
            [],
            id="http10-keep-alive-honoured",
        ),
        pytest.param(
            result("http10-keep-alive", closed=False),
            [("kept-without-keep-alive", W)],
            id="http10-ka-unannounced",
        ),
        pytest.param(
            result("http11", connection=("keep-alive",), closed=False, next_request="not-answered"),
            [("keep-alive-announced-closed", V)],
            id="ka-next-dropped",
        ),
        pytest.param(
            result("http11", closed=False, next_request="not-answered"),
            [("unannounced-close", W)],
            id="implicit-next-dropped",
        ),
        pytest.param(
            result("http11", keep_alive=("timeout=5",)),
            [("keep-alive-announced-closed", V)],
            id="ka-closed-early",
        ),
        pytest.param(
            result("http11", keep_alive=("timeout=5",), after=6.0), [], id="ka-closed-after-timeout"
        ),
        pytest.param(
            result("http11", keep_alive=("timeout=5",), after=4.95), [], id="ka-closed-at-timeout-seen-late"
        ),
        pytest.param(
            result("http11", keep_alive=("timeout=5",), after=4.85),
            [("keep-alive-announced-closed", V)],
            id="ka-closed-beyond-the-slack",
        ),
        pytest.param(
            result("http11", keep_alive=("max=3",)), [("keep-alive-announced-closed", V)], id="ka-no-timeout"
        ),
        pytest.param(
            result("http11", keep_alive=("timeout=soon",)),
            [("keep-alive-announced-closed", V)],
            id="ka-bad-timeout",
        ),
        pytest.param(result("http11"), [("unannounced-close", W)], id="unannounced"),
        pytest.param(result("http11", after=1.5), [], id="closed-after-the-wait"),
        pytest.param(result("http11", version="HTTP/1.0"), [], id="http10-response-closes"),
        pytest.param(result("http11", framing="close", cl=()), [], id="close-delimited"),
        pytest.param(
            result("http11", connection=("keep-alive", "close")),
            [("duplicate-connection", V)],
            id="dup-conflict",
        ),
        pytest.param(
            result("http11", connection=("close", "Close")), [("duplicate-connection", W)], id="dup-agree"
        ),
        pytest.param(
            result("http10", te=("chunked",), cl=(), framing="chunked"),
            [("chunked-to-http10", V)],
            id="chunked-10",
        ),
        pytest.param(
            result("http11-close", connection=("close",), te=("chunked",), framing="chunked"),
            [("length-and-chunked", V)],
            id="cl-and-te",
        ),
        pytest.param(
            result("h2", closed=False, version="HTTP/2", extra={"te": ["trailers"]}), [], id="h2-te-trailers"
        ),
        pytest.param(
            result("h2", closed=False, version="HTTP/2", connection=("close",), extra={"te": ["gzip"]}),
            [("h2-forbidden-header", V)],
            id="h2-forbidden",
        ),
    ],
)
def test_evaluate(r: CaseResult, expected: list[tuple[str, str]]) -> None:
    assert found(r) == expected


def test_every_finding_cites_an_rfc_section() -> None:
    r = result("http10", connection=("keep-alive", "close"), te=("chunked",), closed=False)
    findings = evaluate(r.spec, r, 1.0)
    assert {f.code for f in findings} == {
        "duplicate-connection",
        "chunked-to-http10",
        "length-and-chunked",
        "close-announced-kept",
    }
    for f in findings:
        assert f.rfc.startswith("RFC 911")
        assert "\u00a7" in f.rfc


# -- the report ---------------------------------------------------------------------------------

CASE_KEYS = {
    "goaways",
    "streams",
    "id",
    "title",
    "protocol",
    "request_connection",
    "requests",
    "status",
    "response_version",
    "headers",
    "lines",
    "framing",
    "body_bytes",
    "closed",
    "close_kind",
    "closed_after_ms",
    "next_request",
    "next_status",
    "findings",
    "error",
    "elapsed_ms",
}


def _report(*results: CaseResult, insecure: bool = False, url: str = "http://127.0.0.1:8000/") -> Report:
    for r in results:
        r.findings = evaluate(r.spec, r, 1.0)
    return Report(parse_url(url), ProbeConfig(insecure=insecure, headers=(("X-A", "1"),)), list(results))


def test_json_schema_is_stable() -> None:
    bad = result("http11-te-close", connection=("close",), closed=False, next_request="answered")
    bad.next_status = 200
    failed = result("http10", status=None, closed=None)
    failed.error = "no complete response within 5 s"
    data = json.loads(
        json.dumps(_report(result("http11-close", connection=("close",)), bad, failed).as_dict())
    )
    assert set(data) == {"schema", "tool", "url", "target", "options", "cases", "summary", "exit_code"}
    assert data["schema"] == SCHEMA == "connmw.probe/1"
    assert set(data["target"]) == {"scheme", "host", "port", "path", "tls", "tls_verified"}
    assert data["options"] == {
        "method": "GET",
        "headers": ["X-A: 1"],
        "timeout": 5.0,
        "close_wait": 1.0,
        "concurrency": 1,
        "http2": False,
    }
    for item in data["cases"]:
        assert set(item) == CASE_KEYS
        assert set(item["headers"]) == {"connection", "keep-alive", "transfer-encoding", "content-length"}
        for f in item["findings"]:
            assert set(f) == {"code", "severity", "rfc", "message"}
    assert data["cases"][0]["closed_after_ms"] == 1.0
    assert data["cases"][1]["findings"][0]["code"] == "close-announced-kept"
    assert data["summary"] == {"violations": 1, "warnings": 0, "errors": 1}
    assert data["exit_code"] == 1  # violations win over errors
    assert _report(failed).exit_code == 2
    assert _report(result("http11-close", connection=("close",))).exit_code == 0


def test_table_rendering() -> None:
    kept = result("http11", closed=False, next_request="answered")
    kept.next_status = 200
    dup = result("http11-close", connection=("keep-alive", "close"), after=0.25)
    reset = result("http11-te-close", connection=("close",))
    reset.close_kind = "reset"
    body_end = result("http10", framing="close", cl=(), after=0.0)
    dropped = result(
        "http10-keep-alive", closed=False, next_request="not-answered", connection=("keep-alive",)
    )
    warn = result("http11-close-case", connection=("close", "close"))
    h2 = result("h2", closed=True, version="HTTP/2")
    h2.close_kind = "goaway"
    err = result("http11", status=None, closed=None)
    err.spec = CaseSpec("broken", "broken case")
    err.error = "boom"
    report = _report(kept, dup, reset, body_end, dropped, warn, h2, err, url="https://127.0.0.1:8443/")
    text = _probe.format_report(report, Style(False))
    assert "\x1b[" not in text
    lines = text.splitlines()
    assert lines[0] == "connmw probe https://127.0.0.1:8443/"
    assert "TLS verified" in lines[1]
    row = {line.split("  ")[0]: line for line in lines if line and not line.startswith(" ")}
    assert "answered 200" in row["HTTP/1.1"]
    assert "keep-alive | close" in row["HTTP/1.1 close"]
    assert "yes, 250 ms" in row["HTTP/1.1 close"]
    assert "yes (reset), 1.0 ms" in row["HTTP/1.1 TE, close"]
    assert "yes (body ends at close)" in row["HTTP/1.0"]
    assert "no answer" in row["HTTP/1.0 keep-alive"]
    assert "1 warning" in row["HTTP/1.1 Close"]
    assert "yes (GOAWAY)" in row["HTTP/2"]
    assert "  error      broken case: boom" in lines
    assert any(
        line.startswith("  VIOLATION  HTTP/1.1 close:")
        and "[duplicate-connection, RFC 9112 \u00a79.6]" in line
        for line in lines
    )
    assert lines[-1] == "2 violations, 1 warning, 1 error (exit 1)"
    coloured = _probe.format_report(report, Style(True))
    assert "\x1b[31mVIOLATION\x1b[0m" in coloured
    assert "\x1b[33mwarning  \x1b[0m" in coloured
    assert "\x1b[31m2 violations" in coloured
    insecure = _probe.format_report(_report(kept, insecure=True, url="https://x/"), Style(True))
    assert "TLS without certificate check" in insecure
    assert "\x1b[32m0 violations, 0 warnings, 0 errors (exit 0)\x1b[0m" in insecure
    only_warn = _probe.format_report(_report(warn), Style(True))
    assert "\x1b[33m0 violations, 1 warning, 0 errors (exit 0)\x1b[0m" in only_warn


def test_verdict_and_durations() -> None:
    two = result("http10", connection=("keep-alive", "close"), closed=False)
    two.findings = evaluate(two.spec, two, 1.0)
    assert _probe.verdict(two) == ("2 violations", "red")
    warned = result("http11", connection=("close", "close"), closed=True)
    warned.findings = [Finding("a", "warning", "RFC 9110 \u00a75.3", "x"), Finding("b", "warning", "r", "y")]
    assert _probe.verdict(warned) == ("2 warnings", "yellow")
    assert _probe.ms(0.00002) == "<0.1 ms"
    assert _probe.ms(0.0004) == "0.4 ms"
    assert _probe.ms(0.25) == "250 ms"
    assert _probe.ms(2.5) == "2.5 s"
    assert _probe.closed_text(result("http11", closed=None)) == "?"
    assert _probe.closed_text(result("http11", closed=False)) == "no"


def test_empty_case_list() -> None:
    report = _probe.run_probe(parse_url("http://127.0.0.1:9/"), ProbeConfig(), cases=[])
    assert report.results == []
    assert report.exit_code == 0


def test_case_spec_tokens() -> None:
    assert CaseSpec("x", "x", connection="TE, , Close").request_tokens == ["te", "close"]
    assert CaseSpec("x", "x").request_tokens == []
    assert [c.id for c in CASES] == [
        "http11",
        "http11-close",
        "http11-te-close",
        "http11-close-case",
        "http10",
        "http10-keep-alive",
    ]
