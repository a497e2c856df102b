"""Collects the conformance results for ``gen_table.py`` (when it asks for them)."""

from __future__ import annotations

import json
import os
from collections.abc import Generator
from typing import Any

import pytest

RESULTS_ENV = "CONNMW_CONFORMANCE_RESULTS"
_results: list[dict[str, Any]] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    callspec = getattr(item, "callspec", None)
    if callspec is None or "case" not in callspec.params or "server" not in callspec.params:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        entry: dict[str, Any] = {
            "server": callspec.params["server"],
            "case": callspec.params["case"],
            "outcome": report.outcome,
            "observed": dict(item.user_properties).get("observed"),
        }
        if hasattr(report, "wasxfail"):
            entry["outcome"] = "xfailed" if report.skipped else "xpassed"
            entry["reason"] = report.wasxfail
        elif report.skipped and isinstance(report.longrepr, tuple):
            entry["reason"] = str(report.longrepr[2]).removeprefix("Skipped: ")
        elif report.failed:
            entry["reason"] = str(report.longrepr)[-400:]
        _results.append(entry)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the (server, case) pairs whose case has no form on that server's protocol
    (an HTTP/1 header case on an HTTP/2 row, pinned None): no test, so nothing skips."""
    from tests.conformance.targets import BY_ID, expected

    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        spec = BY_ID.get(params.get("server", ""))
        if spec is not None and "case" in params and expected(spec)[params["case"]] is None:
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get(RESULTS_ENV)
    if path and _results:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(_results, fh, indent=1)
