"""The benchmarks run on demand; this only checks that they still run (no timing asserted)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from tests.benchmarks import bench_asgi, bench_memory, bench_server, bench_wsgi
from tests.benchmarks._report import option_cost_table


@pytest.fixture(autouse=True)
def _frozen_heap() -> Iterator[None]:
    """The benchmarks call ``gc.collect()`` before each measurement; in the whole suite's
    process that walks every object the earlier tests left (about 0.1 s a call, 10 s in
    all). Freezing them first leaves the benchmarks' own code and objects as they are."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@pytest.mark.parametrize("mix", ["keep-alive", "close", "h2", "20-headers"])
def test_asgi_benchmark_runs(mix: str) -> None:
    best = bench_asgi.run(mix, n=40, rounds=1)
    assert set(best) == set(bench_asgi.variants(mix))
    assert all(t > 0 for t in best.values())
    lines = bench_asgi.report(mix, best)
    assert lines[0] == f"### mix: {mix}"


def test_asgi_benchmark_variants_answer_alike() -> None:
    """Every variant sends the same body, so the comparison is fair."""
    scope = bench_asgi.scope_for("keep-alive")
    for name, app in bench_asgi.variants("keep-alive").items():
        sent: list[dict[str, object]] = []

        async def send(message: dict[str, object], sent: list[dict[str, object]] = sent) -> None:
            sent.append(message)

        asyncio.run(app(dict(scope), bench_asgi._receive, send))
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")  # type: ignore[misc]
        assert body == bench_asgi.BODY, name


def test_wsgi_benchmark_runs() -> None:
    best = bench_wsgi.run("keep-alive", n=40, rounds=1)
    assert best["connmw defaults"] > 0
    assert bench_wsgi.report("keep-alive", best)[0] == "### mix: keep-alive"


def test_memory_benchmark_runs() -> None:
    per, held = asyncio.run(bench_memory.per_entry(500))
    assert held == 500
    assert 0 < per < 10_000
    samples = asyncio.run(bench_memory.churn(rounds=2, per_round=300, cap=200))
    assert all(size <= 200 for _, size, _ in samples)


def test_wrk_output_parsing() -> None:
    out = """Running 2s test @ http://127.0.0.1:1/
  Latency Distribution
     50%  410.00us
     99%    1.25ms
  1000 requests in 2.00s, 100.00KB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  50123.45
"""
    rps, p99, errors = bench_server.parse_wrk(out)
    assert rps == 50123.45
    assert p99 == 1.25
    assert errors == 7


def test_server_benchmark_argv() -> None:
    argv = bench_server.SERVERS["uvicorn-httptools"]("connmw", 1234)
    assert argv[-1] == "tests.benchmarks.server_apps:asgi_connmw"


def test_every_server_benchmark_variant_answers() -> None:
    """Each variant the real-server benchmark starts exists and serves the same bytes."""
    import asyncio

    from werkzeug.test import Client

    from tests.benchmarks import server_apps

    for variant in bench_server.VARIANTS:
        asgi = getattr(server_apps, f"asgi_{variant}")
        sent: list[dict[str, object]] = []

        async def send(message: dict[str, object], sent: list[dict[str, object]] = sent) -> None:
            sent.append(message)

        scope = {"type": "http", "http_version": "1.1", "method": "GET", "path": "/", "headers": []}
        asyncio.run(asgi(scope, None, send))
        assert sent[0]["status"] == 200 and sent[1]["body"] == server_apps.BODY, variant
        response = Client(getattr(server_apps, f"wsgi_{variant}")).get("/")
        assert response.status_code == 200 and response.data == server_apps.BODY, variant


def test_option_cost_table_runs() -> None:
    apps = bench_asgi.option_variants()
    assert {"bare app", "empty layer", "connmw defaults", "every policy"} <= set(apps)
    best = bench_asgi.run("keep-alive", n=40, rounds=1, apps=apps)
    lines = option_cost_table("t", best)
    assert lines[0] == "### t"
    # one row per measured variant but the two references
    assert len(lines) == 4 + len(apps) - 2


def test_option_variants_keep_the_connection() -> None:
    """Each option alone must measure the keep path: no variant may close."""
    scope = bench_asgi.scope_for("keep-alive")
    for name, app in bench_asgi.option_variants().items():
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any], sent: list[dict[str, Any]] = sent) -> None:
            sent.append(message)

        asyncio.run(app(dict(scope), bench_asgi._receive, send))
        headers = dict(sent[0]["headers"])
        assert headers.get(b"connection") != b"close", name


def test_server_benchmark_stops_when_the_spread_is_known() -> None:
    tight = {"connmw": [0.95, 0.96, 0.95, 0.96, 0.95]}
    loose = {"connmw": [0.80, 1.10, 0.85, 1.05, 0.95]}
    assert bench_server.spread_known(tight, rounds=5, min_rounds=5, spread=0.03)
    assert not bench_server.spread_known(tight, rounds=4, min_rounds=5, spread=0.03)
    assert not bench_server.spread_known(loose, rounds=5, min_rounds=5, spread=0.03)
    assert bench_server.quartiles([1.0]) == (1.0, 1.0, 1.0)
    assert bench_server.quartiles([1.0, 2.0, 3.0])[1] == 2.0
