"""Tables over the pure decision core."""

from __future__ import annotations

from typing import Any

import pytest

from connmw import Rule, decide
from connmw._decide import CLOSE, KEEP, version_code

ERRORS = frozenset((400, 500, 503))


@pytest.mark.parametrize(
    ("kwargs", "close", "reason"),
    [
        pytest.param({"version": 11, "status": 200}, False, None, id="1.1-plain-keeps"),
        pytest.param(
            {"version": 11, "status": 200, "client_close": True}, True, "client", id="1.1-client-close"
        ),
        pytest.param({"version": 10, "status": 200}, True, "http-1.0", id="1.0-plain-closes"),
        pytest.param(
            {"version": 10, "status": 200, "client_keep_alive": True, "http10_keep_alive": True},
            False,
            None,
            id="1.0-keep-alive-kept-by-server",
        ),
        pytest.param(
            {"version": 10, "status": 200, "client_keep_alive": True, "http10_keep_alive": False},
            True,
            "http-1.0",
            id="1.0-keep-alive-server-would-not-keep",
        ),
        pytest.param(
            {
                "version": 10,
                "status": 200,
                "client_keep_alive": True,
                "http10_keep_alive": True,
                "known_length": False,
            },
            True,
            "http-1.0",
            id="1.0-keep-alive-unknown-length",
        ),
        pytest.param(
            {
                "version": 10,
                "status": 200,
                "client_close": True,
                "client_keep_alive": True,
                "http10_keep_alive": True,
            },
            True,
            "client",
            id="1.0-close-wins-over-keep-alive",
        ),
        pytest.param({"version": 20, "status": 200, "client_close": True}, False, None, id="h2-never-closes"),
        pytest.param({"version": 30, "status": 500, "app_close": True}, False, None, id="h3-never-closes"),
        pytest.param({"version": 11, "status": 200, "app_close": True}, True, "app", id="app-close"),
        pytest.param({"version": 11, "status": 200, "handler_close": True}, True, "handler", id="handler"),
        pytest.param({"version": 11, "status": 200, "rule": Rule("/x")}, True, "rule", id="rule-close"),
        pytest.param(
            {"version": 11, "status": 500, "rule": Rule("/x", close=False), "close_on_status": ERRORS},
            False,
            None,
            id="rule-exempts-status",
        ),
        pytest.param(
            {
                "version": 11,
                "status": 200,
                "rule": Rule("/x", close=False),
                "requests_exhausted": True,
                "drain": 1.0,
            },
            False,
            None,
            id="rule-exempts-load-and-drain",
        ),
        pytest.param(
            {"version": 11, "status": 200, "rule": Rule("/x", close=False), "client_close": True},
            True,
            "client",
            id="rule-does-not-exempt-client",
        ),
        pytest.param(
            {"version": 11, "status": 200, "rule": Rule("/x", close=False), "handler_close": True},
            True,
            "handler",
            id="rule-does-not-exempt-handler",
        ),
        pytest.param(
            {"version": 10, "status": 200, "rule": Rule("/x", close=False)},
            True,
            "http-1.0",
            id="rule-does-not-exempt-http10",
        ),
        pytest.param(
            {"version": 11, "status": 500, "close_on_status": ERRORS}, True, "status", id="status-500"
        ),
        pytest.param(
            {"version": 11, "status": 404, "close_on_status": ERRORS}, False, None, id="status-404-keeps"
        ),
        pytest.param(
            {"version": 11, "status": 200, "requests_exhausted": True},
            True,
            "max-requests",
            id="max-requests",
        ),
        pytest.param({"version": 11, "status": 200, "age_exhausted": True}, True, "max-age", id="max-age"),
        pytest.param({"version": 11, "status": 200, "drain": 1.0}, True, "drain", id="drain-full"),
        pytest.param({"version": 11, "status": 200, "overload": 1.0}, True, "overload", id="overload-full"),
        pytest.param(
            {"version": 11, "status": 200, "drain": 0.5, "draw": lambda: 0.4},
            True,
            "drain",
            id="drain-draw-below",
        ),
        pytest.param(
            {"version": 11, "status": 200, "drain": 0.5, "draw": lambda: 0.6},
            False,
            None,
            id="drain-draw-above",
        ),
        pytest.param(
            {"version": 11, "status": 200, "overload": 0.5}, False, None, id="overload-no-draw-keeps"
        ),
        pytest.param(
            {"version": 11, "status": 200, "overload": 0.25, "draw": lambda: 0.2},
            True,
            "overload",
            id="overload-draw",
        ),
        pytest.param(
            {
                "version": 11,
                "status": 500,
                "client_close": True,
                "close_on_status": ERRORS,
                "app_close": True,
            },
            True,
            "client",
            id="client-reason-first",
        ),
    ],
)
def test_decide(kwargs: dict[str, Any], close: bool, reason: str | None) -> None:
    decision = decide(**kwargs)
    assert decision.close is close
    assert decision.reason == reason


def test_decisions_are_shared_constants() -> None:
    assert decide(version=11, status=200) is KEEP
    assert decide(version=11, status=200, client_close=True) is CLOSE["client"]


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("1.1", 11),
        ("1.0", 10),
        ("1", 10),
        ("2", 20),
        ("2.0", 20),
        ("3", 30),
        ("HTTP/1.1", 11),
        ("HTTP/1.0", 10),
        ("HTTP/2.0", 20),
        ("HTTP/9.9", 11),
        ("", 11),
        (None, 11),
        (11, 11),
    ],
)
def test_version_code(value: object, code: int) -> None:
    assert version_code(value) == code


def test_rule_get_includes_head_only() -> None:
    rule = Rule("/dl/*", methods="get")
    assert rule.methods == frozenset({"GET", "HEAD"})
    assert rule.matches_request("HEAD", "/dl/a")
    assert not rule.matches_request("POST", "/dl/a")
    assert Rule(methods={"POST"}).methods == frozenset({"POST"})
