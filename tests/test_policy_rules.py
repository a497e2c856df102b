"""Rules, close_on_status, configuration from plain data, and how a close is explained
(on_decision, the ``connmw`` logger, the opt-in decision header)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import connmw
from connmw import (
    DEFAULT_CLOSE_ON_STATUS,
    ConnectionMiddleware,
    Decision,
    Options,
    RequestFacts,
    Rule,
    WSGIConnectionMiddleware,
)
from connmw._policy import RuleMatcher, match_rules

# -- helpers ------------------------------------------------------------------------


def scope_for(
    path: str = "/",
    method: str = "GET",
    *,
    version: str = "1.1",
    root_path: str = "",
    headers: Iterable[tuple[bytes, bytes]] = (),
    client: tuple[str, int] = ("127.0.0.1", 40000),
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": version,
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": client,
        "server": ("127.0.0.1", 8000),
    }


def status_app(status: int = 200, *, close: str | None = None) -> Any:
    """An ASGI app answering ``status``; ``close`` calls request_close with that reason."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if close is not None:
            connmw.request_close(scope, close)
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def run(app: Any, scope: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    """One request through ``app``; returns the response headers."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return list(start["headers"])


def connection(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    return [v for k, v in headers if k == b"connection"]


def decide_with(app_status: int = 200, path: str = "/", method: str = "GET", **options: Any) -> Decision:
    seen: list[Decision] = []
    mw = ConnectionMiddleware(status_app(app_status), on_decision=lambda f, d: seen.append(d), **options)
    run(mw, scope_for(path, method))
    return seen[0]


# -- globs --------------------------------------------------------------------------

GLOBS = [
    pytest.param("/downloads/*", "/downloads/a.zip", True, id="star-one-segment"),
    pytest.param("/downloads/*", "/downloads/a/b.zip", False, id="star-not-across"),
    pytest.param("/downloads/*", "/downloads", False, id="star-needs-the-slash"),
    pytest.param("/api/**/export", "/api/export", True, id="dstar-zero-segments"),
    pytest.param("/api/**/export", "/api/v1/export", True, id="dstar-one-segment"),
    pytest.param("/api/**/export", "/api/v1/users/export", True, id="dstar-many-segments"),
    pytest.param("/api/**/export", "/api/v1/exports", False, id="dstar-anchored-end"),
    pytest.param("/api/**/export", "/x/api/v1/export", False, id="anchored-start"),
    pytest.param("/static/**", "/static/css/site.css", True, id="dstar-tail"),
    pytest.param("/files/*.csv", "/files/report.csv", True, id="star-suffix"),
    pytest.param("/files/*.csv", "/files/report.csvx", False, id="star-suffix-anchored"),
    pytest.param("/v?/ping", "/v2/ping", True, id="question-one-char"),
    pytest.param("/v?/ping", "/v//ping", False, id="question-not-a-slash"),
    pytest.param("/v?/ping", "/v12/ping", False, id="question-exactly-one"),
    pytest.param("/a.b", "/aXb", False, id="dot-is-literal"),
    pytest.param("/a+b(c)", "/a+b(c)", True, id="regex-chars-literal"),
    pytest.param("/healthz", "/healthz", True, id="exact"),
    pytest.param("/healthz", "/healthz/", False, id="exact-no-trailing-slash"),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), GLOBS)
def test_path_globs(pattern: str, path: str, expected: bool) -> None:
    assert Rule(pattern).matches_request("GET", path) is expected


def test_rules_are_compiled_once_at_construction() -> None:
    rule = Rule("/api/**/export")
    assert isinstance(rule._regex, re.Pattern)
    assert Rule("/exact")._regex is None  # exact paths compare as strings
    assert Rule()._regex is None and Rule().matches_request("PATCH", "/anything")


def test_methods_are_case_insensitive_sets() -> None:
    assert Rule(methods="post").methods == frozenset({"POST"})
    rule = Rule("/x", methods={"GET", "delete"})
    assert rule.matches_request("get", "/x")
    assert rule.matches_request("DELETE", "/x")
    assert not rule.matches_request("POST", "/x")


@pytest.mark.parametrize(
    ("status", "inside", "outside"),
    [
        pytest.param(503, [503], [500, 504], id="int"),
        pytest.param(range(500, 600), [500, 599], [499, 600], id="range"),
        pytest.param({404, 410}, [404, 410], [400], id="set"),
    ],
)
def test_status_forms(status: Any, inside: list[int], outside: list[int]) -> None:
    rule = Rule(status=status)
    assert rule.status is not None
    assert all(s in rule.status for s in inside)
    assert not any(s in rule.status for s in outside)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        pytest.param({"path": 5}, TypeError, "Rule path must be a str glob", id="path-type"),
        pytest.param({"path": "downloads/*"}, ValueError, "must start with '/'", id="path-slash"),
        pytest.param({"methods": []}, ValueError, "must not be empty", id="methods-empty"),
        pytest.param({"methods": ["GE T"]}, ValueError, "HTTP method names, got 'GE T'", id="methods-bad"),
        pytest.param({"methods": 5}, TypeError, "Rule methods must be a str or a set", id="methods-type"),
        pytest.param({"status": True}, TypeError, "Rule status must be an int", id="status-bool"),
        pytest.param({"status": "500"}, TypeError, "Rule status must be an int", id="status-str"),
        pytest.param({"status": [500, "x"]}, TypeError, "only ints", id="status-item"),
        pytest.param({"status": 1000}, ValueError, "HTTP statuses", id="status-range"),
        pytest.param({"close": "yes"}, TypeError, "Rule close must be True or False", id="close-type"),
    ],
)
def test_rule_validation(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    path = kwargs.pop("path", None)
    with pytest.raises(error, match=re.escape(message)):
        Rule(path, **kwargs)


# -- evaluation order ---------------------------------------------------------------


def test_first_match_wins() -> None:
    keep_first = [Rule("/a/*", close=False), Rule("/a/b")]
    assert decide_with(path="/a/b", rules=keep_first) == Decision(False, None)
    close_first = [Rule("/a/b"), Rule("/a/*", close=False)]
    assert decide_with(path="/a/b", rules=close_first) == Decision(True, "rule")


def test_a_rule_whose_status_does_not_match_falls_through() -> None:
    rules = [Rule("/a", status=500, close=False), Rule("/a")]
    assert decide_with(200, "/a", rules=rules) == Decision(True, "rule")
    assert decide_with(500, "/a", rules=rules) == Decision(False, None)


def test_a_rule_without_status_stops_the_search() -> None:
    rules = (Rule("/a", status=500), Rule("/a"), Rule(close=False))
    assert match_rules(rules, "GET", "/a") == rules[:2]
    assert match_rules(rules, "GET", "/b") == rules[2:]


def test_methods_select_the_rule() -> None:
    rules = [Rule("/items/*", methods={"DELETE", "PUT"})]
    assert decide_with(path="/items/1", method="DELETE", rules=rules).reason == "rule"
    assert decide_with(path="/items/1", method="GET", rules=rules).close is False


# -- close=False exemptions ----------------------------------------------------------


def test_close_false_exempts_from_status_requests_and_drain() -> None:
    exempt = [Rule("/events", close=False)]
    assert decide_with(503, "/events", rules=exempt).close is False
    assert decide_with(503, "/other", rules=exempt).reason == "status"
    mw = ConnectionMiddleware(status_app(), rules=exempt, max_requests_per_connection=1)
    assert connection(run(mw, scope_for("/events"))) == []
    assert connection(run(mw, scope_for("/other"))) == [b"close"]
    mw.drain()
    assert connection(run(mw, scope_for("/events"))) == []
    assert connection(run(mw, scope_for("/other"))) == [b"close"]


def test_close_false_does_not_override_client_http10_or_handler() -> None:
    exempt = [Rule(close=False)]
    mw = ConnectionMiddleware(status_app(), rules=exempt)
    assert connection(run(mw, scope_for(headers=[(b"connection", b"TE, Close")]))) == [b"close"]
    assert connection(run(mw, scope_for(version="1.0"))) == [b"close"]
    handler = ConnectionMiddleware(status_app(close="logout"), rules=exempt)
    assert connection(run(handler, scope_for())) == [b"close"]


# -- close_on_status ---------------------------------------------------------------


def test_default_close_on_status_follows_nginx_and_apache() -> None:
    assert frozenset({400, 408, 413, 414, 431, 500, 501, 503}) == DEFAULT_CLOSE_ON_STATUS
    assert Options().close_on_status == DEFAULT_CLOSE_ON_STATUS


@pytest.mark.parametrize("status", sorted(DEFAULT_CLOSE_ON_STATUS))
def test_default_statuses_close(status: int) -> None:
    assert decide_with(status) == Decision(True, "status")


@pytest.mark.parametrize("status", [200, 301, 404, 422, 429, 502, 504])
def test_other_statuses_keep(status: int) -> None:
    assert decide_with(status) == Decision(False, None)


@pytest.mark.parametrize("off", [(), None, False, frozenset()])
def test_close_on_status_can_be_turned_off(off: Any) -> None:
    assert decide_with(500, close_on_status=off) == Decision(False, None)


def test_close_on_status_can_be_replaced() -> None:
    assert decide_with(429, close_on_status={429}) == Decision(True, "status")
    assert decide_with(500, close_on_status=range(429, 430)).close is False


# -- root_path / SCRIPT_NAME -----------------------------------------------------------


@pytest.mark.parametrize(
    ("root_path", "path"),
    [
        pytest.param("/api", "/api/downloads/a", id="path-carries-root"),  # ASGI servers today
        pytest.param("/api", "/downloads/a", id="path-without-root"),  # older servers
    ],
)
def test_rules_match_the_full_path_under_a_root_path(root_path: str, path: str) -> None:
    seen: list[RequestFacts] = []
    mw = ConnectionMiddleware(
        status_app(), rules=[Rule("/api/downloads/*")], on_decision=lambda f, d: seen.append(f)
    )
    assert connection(run(mw, scope_for(path, root_path=root_path))) == [b"close"]
    assert seen[0].path == "/api/downloads/a"


def test_root_path_equal_to_path() -> None:
    seen: list[RequestFacts] = []
    mw = ConnectionMiddleware(status_app(), on_decision=lambda f, d: seen.append(f))
    run(mw, scope_for("/api", root_path="/api"))
    assert seen[0].path == "/api"


def test_wsgi_rules_match_script_name_plus_path_info() -> None:
    from werkzeug.test import Client

    def app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    seen: list[tuple[RequestFacts, Decision]] = []
    mw = WSGIConnectionMiddleware(
        app, rules=[Rule("/api/downloads/*")], on_decision=lambda f, d: seen.append((f, d))
    )
    Client(mw).get("/downloads/a", environ_overrides={"SCRIPT_NAME": "/api"}).close()
    facts, decision = seen[0]
    assert facts.path == "/api/downloads/a"
    assert decision == Decision(True, "rule")


# -- from plain data: TOML, YAML-like, environment ------------------------------------


def test_from_mapping_reads_a_toml_table() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11 on")

    text = """
    max-requests-per-connection = 1000
    keep_alive_timeout = 5
    close_on_status = "500-504, 400"
    decision_header = "x-connmw"

    [[rules]]
    path = "/exports/**"
    methods = "GET, HEAD"

    [[rules]]
    path = "/api/**"
    status = { from = 500, to = 599 }
    close = false
    """
    options = Options.from_mapping(tomllib.loads(text))
    assert options.max_requests_per_connection == 1000
    assert options.keep_alive_timeout == 5
    assert options.close_on_status == frozenset({400, 500, 501, 502, 503, 504})
    assert options.decision_header == "x-connmw"
    assert options.rules == (
        Rule("/exports/**", methods={"GET", "HEAD"}),
        Rule("/api/**", status=range(500, 600), close=False),
    )


def test_from_mapping_reads_strings_as_yaml_or_env_give_them() -> None:
    options = Options.from_mapping(
        {
            "MAX_CONNECTION_AGE": "300",
            "max_requests_per_connection": "100",
            "max_requests_jitter": "10",
            "strip_nominated_request_headers": "yes",
            "protected_request_headers": "x-a, X-B",
            "close_on_status": "none",
            "decision_header": "off",
            "on_decision": "logging:debug",
            "clock": "time.monotonic",
            "rules": '[{"path": "/healthz", "close": "false"}]',
        }
    )
    assert options.max_connection_age == 300.0
    assert options.max_requests_jitter == 10
    assert options.strip_nominated_request_headers is True
    assert options.protected_request_headers == frozenset({"x-a", "x-b"})
    assert options.close_on_status == frozenset()
    assert options.decision_header is None
    assert options.on_decision is logging.debug
    assert options.clock is time.monotonic
    assert options.rules == (Rule("/healthz", close=False),)


def test_from_mapping_empty_numbers_mean_unset() -> None:
    options = Options.from_mapping({"max_requests_per_connection": "", "keep_alive_timeout": "none"})
    assert options.max_requests_per_connection is None
    assert options.keep_alive_timeout is None


def test_from_env() -> None:
    env = {
        "CONNMW_MAX_REQUESTS_PER_CONNECTION": "500",
        "CONNMW_RULES": '[{"path": "/export/*", "methods": "POST"}]',
        "CONNMW_CLOSE_ON_STATUS": "none",
        "OTHER": "ignored",
    }
    options = Options.from_env(environ=env)
    assert options.max_requests_per_connection == 500
    assert options.rules == (Rule("/export/*", methods="POST"),)
    assert options.close_on_status == frozenset()


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNMWTEST_KEEP_ALIVE_TIMEOUT", "7")
    assert Options.from_env("CONNMWTEST_").keep_alive_timeout == 7.0


@pytest.mark.parametrize(
    ("name", "keyword", "text"),
    [
        ("max_requests_per_connection", 0, "0"),
        ("keep_alive_timeout", 0.5, "0.5"),
        ("max_connection_age", -1.0, "-1"),
        ("close_on_status", {99}, "99"),
        ("overload_soft_limit", 5, "5"),
    ],
)
def test_strings_fail_with_the_keyword_message(name: str, keyword: Any, text: str) -> None:
    with pytest.raises((TypeError, ValueError)) as by_keyword:
        Options(**{name: keyword})
    with pytest.raises(type(by_keyword.value)) as by_mapping:
        Options.from_mapping({name: text})
    assert str(by_mapping.value) == str(by_keyword.value)


@pytest.mark.parametrize(
    ("mapping", "error", "message"),
    [
        pytest.param([], TypeError, "Options must be a mapping of option names", id="not-mapping"),
        pytest.param({1: 2}, TypeError, "option names must be str", id="key-type"),
        pytest.param(
            {"max_request_per_connection": 1},
            TypeError,
            "unknown option 'max_request_per_connection' (did you mean 'max_requests_per_connection'?)",
            id="typo-hint",
        ),
        pytest.param({"zzz": 1}, TypeError, "unknown option 'zzz'", id="unknown"),
        pytest.param({"max_requests_per_connection": "ten"}, ValueError, "whole number", id="int-text"),
        pytest.param({"keep_alive_timeout": "5s"}, ValueError, "number of seconds", id="float-text"),
        pytest.param({"strip_nominated_request_headers": "maybe"}, ValueError, "boolean", id="bool-text"),
        pytest.param({"close_on_status": "5xx"}, ValueError, "like '500,503'", id="status-text"),
        pytest.param({"close_on_status": "504-500"}, ValueError, "like '500,503'", id="status-reversed"),
        pytest.param({"close_on_status": {"from": 500}}, ValueError, "'from' and 'to'", id="table-keys"),
        pytest.param(
            {"close_on_status": {"from": "500", "to": 599}}, TypeError, "must be ints", id="table-type"
        ),
        pytest.param(
            {"close_on_status": {"from": 599, "to": 500}}, ValueError, "must not exceed", id="table-order"
        ),
        pytest.param({"rules": "[not json"}, ValueError, "JSON list of rule tables", id="rules-json"),
        pytest.param({"rules": [{"path": "/x", "colse": True}]}, TypeError, "unknown keys", id="rule-key"),
        pytest.param({"rules": ["/x"]}, TypeError, "rules must contain Rule objects", id="rule-str"),
        pytest.param({"rules": [{"close": "nope"}]}, ValueError, "Rule close must be a boolean", id="close"),
        pytest.param({"on_decision": "nomodule"}, ValueError, "import path", id="import-shape"),
        pytest.param({"on_decision": "connmw:nope"}, ValueError, "cannot import", id="import-attr"),
        pytest.param(
            {"on_decision": "connmw_no_such_module:f"}, ValueError, "cannot import", id="import-module"
        ),
        pytest.param({"max_connection_tokens": "12x"}, ValueError, "whole number", id="tokens"),
        pytest.param({"max_connection_age_jitter": "lots"}, ValueError, "number of seconds", id="jitter"),
    ],
)
def test_from_mapping_errors(mapping: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        Options.from_mapping(mapping)


def test_rule_from_mapping_checks_its_input() -> None:
    with pytest.raises(TypeError, match="rules items must be Rule objects or mappings"):
        Rule.from_mapping(["/x"])  # type: ignore[arg-type]
    assert Rule.from_mapping({"path": "/x", "status": [500, 503]}).status == frozenset({500, 503})


def test_keyword_rules_accept_mappings() -> None:
    mw = ConnectionMiddleware(status_app(), rules=[{"path": "/x/*", "methods": ["post"]}])
    assert mw.options.rules == (Rule("/x/*", methods="POST"),)


def test_as_kwargs_round_trips() -> None:
    options = Options.from_mapping({"rules": [{"path": "/a"}], "close_on_status": "none"})
    assert options.as_kwargs() == {"rules": (Rule("/a"),), "close_on_status": frozenset()}
    assert Options(**options.as_kwargs()) == options
    assert Options().as_kwargs() == {}


# -- every close has a reason ---------------------------------------------------------


def test_on_decision_gets_the_facts_and_the_decision() -> None:
    seen: list[tuple[RequestFacts, Decision]] = []
    mw = ConnectionMiddleware(status_app(close="export done"), on_decision=lambda f, d: seen.append((f, d)))
    run(mw, scope_for("/export", "POST"))
    facts, decision = seen[0]
    assert decision == Decision(True, "handler")
    assert (facts.method, facts.path, facts.handler_reason) == ("POST", "/export", "export done")
    assert facts.decision is decision


def test_a_failing_on_decision_is_logged_and_the_response_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    def boom(facts: RequestFacts, decision: Decision) -> None:
        raise RuntimeError("boom")

    mw = ConnectionMiddleware(status_app(500), on_decision=boom)
    with caplog.at_level(logging.ERROR, logger="connmw"):
        assert connection(run(mw, scope_for())) == [b"close"]
    assert "on_decision callback raised" in caplog.text


def test_closes_are_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    mw = ConnectionMiddleware(status_app(), rules=[Rule("/downloads/*")])
    with caplog.at_level(logging.DEBUG, logger="connmw"):
        run(mw, scope_for("/downloads/a"))
        run(mw, scope_for("/kept"))
    messages = [r.getMessage() for r in caplog.records if r.name == "connmw"]
    assert messages == ["close GET /downloads/a: rule"]
    assert caplog.records[0].levelno == logging.DEBUG


def test_decision_header_is_off_by_default() -> None:
    headers = run(ConnectionMiddleware(status_app(500)), scope_for())
    assert [k for k, _ in headers] == [b"content-length", b"connection"]


def test_decision_header_names_the_reason() -> None:
    mw = ConnectionMiddleware(status_app(500), decision_header="X-Connmw")
    assert dict(run(mw, scope_for()))[b"x-connmw"] == b"close; reason=status"
    ok = ConnectionMiddleware(status_app(), decision_header="x-why")
    assert dict(run(ok, scope_for()))[b"x-why"] == b"keep"
    assert dict(run(ok, scope_for(version="2")))[b"x-why"] == b"keep"


@pytest.mark.parametrize("name", ["x connmw", "", "Connection", "content-length", 5])
def test_decision_header_must_be_a_plain_header_name(name: Any) -> None:
    with pytest.raises(ValueError, match="decision_header"):
        Options(decision_header=name)


# -- keyword validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        pytest.param({"max_requests_per_connection": True}, TypeError, "must be an int", id="bool-int"),
        pytest.param({"max_requests_jitter": None}, TypeError, "must not be None", id="none"),
        pytest.param({"max_connection_age": float("inf")}, ValueError, "must be finite", id="inf"),
        pytest.param({"rules": Rule("/x")}, TypeError, "rules must be a list of Rule objects", id="one-rule"),
        pytest.param({"overload_soft_limit": 5}, ValueError, "go together", id="soft-alone"),
        pytest.param(
            {"overload_soft_limit": 5, "overload_hard_limit": 5}, ValueError, "must be below", id="soft-hard"
        ),
        pytest.param({"pressure": "high"}, TypeError, "pressure must be callable", id="pressure"),
        pytest.param({"clock": None}, TypeError, "clock and random must be callables", id="clock"),
        pytest.param(
            {"strip_nominated_request_headers": "yes"}, TypeError, "must be True or False", id="strip"
        ),
        pytest.param({"protected_request_headers": "x-a"}, TypeError, "set of header names", id="prh-str"),
        pytest.param({"protected_request_headers": [5]}, TypeError, "header names (str)", id="prh-item"),
    ],
)
def test_keyword_validation(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        Options(**kwargs)


def test_status_text_skips_empty_parts_and_false_turns_it_off() -> None:
    assert Options.from_mapping({"close_on_status": ",500,,"}).close_on_status == frozenset({500})
    assert Options.from_mapping({"close_on_status": False}).close_on_status == frozenset()
    with pytest.raises(TypeError, match="rules must be a list of Rule objects, not int"):
        Options.from_mapping({"rules": 5})


def test_an_option_without_a_text_form_says_so() -> None:
    from connmw._coerce import _coerce

    with pytest.raises(TypeError, match="future_option cannot be given as a string"):
        _coerce("future_option", "x")


# -- request_close targets and nested instances ------------------------------------------


def test_request_close_rejects_what_is_not_a_request() -> None:
    with pytest.raises(RuntimeError, match="got a object, not an ASGI scope"):
        connmw.request_close(object())
    with pytest.raises(TypeError, match="reason must be a str"):
        connmw.request_close(scope_for(), 5)  # type: ignore[arg-type]


def test_request_close_on_objects_carrying_a_scope_or_environ() -> None:
    class Carrier:
        def __init__(self, **attrs: Any) -> None:
            self.__dict__.update(attrs)

    seen: list[Decision] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert connmw.request_close(Carrier(META={}, scope=scope), "carried")
        await status_app()(scope, receive, send)

    run(ConnectionMiddleware(app, on_decision=lambda f, d: seen.append(d)), scope_for())
    assert seen == [Decision(True, "handler")]
    assert connmw.request_close(Carrier(environ={})) is False


def test_a_foreign_connmw_key_is_left_alone() -> None:
    seen: list[Decision] = []
    inner = ConnectionMiddleware(status_app(), rules=[Rule()], on_decision=lambda f, d: seen.append(d))
    scope = scope_for()
    scope["connmw"] = "something else"
    assert connection(run(inner, scope)) == []
    assert seen == []


def test_a_nested_instance_after_the_decision_changes_nothing() -> None:
    async def silent(scope: Any, receive: Any, send: Any) -> None:
        pass

    inner = ConnectionMiddleware(silent, rules=[Rule()])
    seen: list[RequestFacts] = []

    async def late(scope: Any, receive: Any, send: Any) -> None:
        await status_app()(scope, receive, send)
        await inner(scope, receive, send)  # e.g. an app that re-dispatches after answering
        seen.append(scope["connmw"])

    mw = ConnectionMiddleware(late)
    assert connection(run(mw, scope_for())) == []
    assert seen[0].rules == ()
    assert seen[0].decision == Decision(False, None)


_SEGMENTS = st.sampled_from(["a", "b", "api", "x.y", "*", "**", "?", "v1", "export", ""])
_GLOBS = st.lists(_SEGMENTS, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts))
_PATHS = st.lists(st.sampled_from(["a", "b", "api", "x.y", "v1", "export", "ab", ""]), max_size=5).map(
    lambda parts: "/" + "/".join(parts)
)


@settings(max_examples=300, deadline=None)
@given(
    globs=st.lists(st.one_of(st.none(), _GLOBS), min_size=1, max_size=4),
    methods=st.sampled_from([None, "GET", "POST"]),
    method=st.sampled_from(["GET", "HEAD", "POST"]),
    paths=st.lists(_PATHS, min_size=1, max_size=5),
)
def test_rule_matcher_agrees_with_trying_each_rule(
    globs: list[str | None], methods: str | None, method: str, paths: list[str]
) -> None:
    """The combined prefilter never changes which rules may decide."""
    rules = tuple(Rule(g, methods=methods) for g in globs)
    matcher = RuleMatcher(rules)
    for path in paths + paths:  # the second time, paths ruled out come from the remembered set
        assert matcher(method, path) == match_rules(rules, method, path), (rules, path)


def test_rule_matcher_remembers_a_bounded_number_of_paths() -> None:
    matcher = RuleMatcher((Rule("/a"),))
    for i in range(RuleMatcher.MISSES * 3):
        assert matcher("GET", f"/n{i}") == ()
        assert len(matcher._misses) <= RuleMatcher.MISSES
    assert matcher("GET", "/a") == (matcher.rules[0],)
    assert "/a" not in matcher._misses


def test_rule_matcher_prefilter_only_without_catch_all_rules() -> None:
    with_all = RuleMatcher((Rule("/a"), Rule(None, methods="POST")))
    assert with_all("POST", "/zzz") == (with_all.rules[1],)
    only_paths = RuleMatcher((Rule("/a.b"), Rule("/d/*")))
    assert only_paths("GET", "/aXb") == ()  # the dot is literal
    assert only_paths("GET", "/a.b") == (only_paths.rules[0],)
    assert only_paths("GET", "/d/e") == (only_paths.rules[1],)
    assert only_paths("GET", "/d/e/f") == ()
