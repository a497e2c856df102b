"""The load-balancer experiments (``examples/loadbalancer/``) cannot rot: their pure parts
(HAProxy config, wrk and HAProxy output parsing, share arithmetic, reports) are checked
here, the backend app in-process, and one short end-to-end run when haproxy and wrk
are installed. The experiments themselves take minutes and run on demand."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

LB_DIR = Path(__file__).resolve().parent.parent / "examples" / "loadbalancer"


def _load(name: str, env: dict[str, str] | None = None) -> ModuleType:
    """Import ``examples/loadbalancer/<name>.py`` (the scripts ``import lb`` as a sibling)."""
    if str(LB_DIR) not in sys.path:
        sys.path.insert(0, str(LB_DIR))
    module_name = name if name == "lb" else f"connmw_lb_{name}"
    if env is None and module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, LB_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lb() -> ModuleType:
    return _load("lb")


WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:8080/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   791.84us  612.09us  20.59ms   92.51%
    Req/Sec    22.41k     2.10k   27.01k    70.50%
  Latency Distribution
     50%  675.00us
     75%  880.00us
     90%    1.13ms
     99%    4.07ms
  445910 requests in 10.00s, 61.24MB read
  Socket errors: connect 0, read 12, write 3, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:  44569.27
Transfer/sec:      6.12MB
"""

SHOW_STAT = (
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status\n"
    "fe,FRONTEND,,,3,5,4096,10,0,0,0,0,0,,,,,OPEN\n"
    "be,b1,0,0,2,3,,5,0,0,,0,,0,0,0,0,UP\n"
    "be,b2,0,0,1,2,,5,0,0,,0,,0,0,0,0,DOWN 1/2\n"
    "be,b3,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT\n"
    "be,BACKEND,0,0,3,5,410,10,0,0,0,0,,1,2,3,4,UP\n"
    "\n"
)


# -- HAProxy configuration ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["tcp", "http", "h2"])
def test_haproxy_config(lb: ModuleType, mode: str) -> None:
    cfg = lb.haproxy_config(
        mode=mode, port=8000, servers=[("b1", 8001), ("b2", 8002)], stats_socket="/tmp/x.sock"
    )
    proto = " proto h2 check-proto h1" if mode == "h2" else ""
    assert f"    mode {'tcp' if mode == 'tcp' else 'http'}\n" in cfg
    assert "    bind 127.0.0.1:8000\n" in cfg
    assert f"    server b1 127.0.0.1:8001 check{proto}\n" in cfg
    assert f"    server b2 127.0.0.1:8002 check{proto}\n" in cfg
    assert "stats socket /tmp/x.sock" in cfg
    assert "option httpchk GET /health" in cfg
    assert ("http-reuse" in cfg) == (mode != "tcp")
    assert ("http-no-delay" in cfg) == (mode == "h2")
    assert "0.0.0.0" not in cfg


def test_backend_argv(lb: ModuleType) -> None:
    assert lb.backend_argv("uvicorn", 8001)[1:] == [str(lb.APP), "8001"]
    hypercorn = lb.backend_argv("hypercorn", 8001)
    assert hypercorn[1:3] == ["-m", "hypercorn"]
    assert "127.0.0.1:8001" in hypercorn
    assert hypercorn[-1] == "app:app"
    with pytest.raises(ValueError, match="server"):
        lb.backend_argv("granian", 8001)


def test_haproxy_config_rejects_unknown_mode(lb: ModuleType) -> None:
    with pytest.raises(ValueError, match="mode"):
        lb.haproxy_config(mode="udp", port=1, servers=[], stats_socket="/tmp/x.sock")


@pytest.mark.tools("haproxy")
@pytest.mark.parametrize("mode", ["tcp", "http", "h2"])
def test_haproxy_accepts_config(lb: ModuleType, mode: str, tmp_path: Path) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(
        lb.haproxy_config(mode=mode, port=8000, servers=[("b1", 8001)], stats_socket=str(tmp_path / "s.sock"))
    )
    done = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


# -- parsing ---------------------------------------------------------------------------


def test_parse_wrk(lb: ModuleType) -> None:
    r = lb.parse_wrk(WRK_OUTPUT)
    assert r.requests == 445910
    assert r.seconds == pytest.approx(10.0)
    assert r.rps == pytest.approx(44569.27)
    assert (r.connect_errors, r.read_errors, r.write_errors, r.timeouts) == (0, 12, 3, 1)
    assert r.non_2xx == 7
    assert r.failed == 23
    assert r.latency_ms["mean"] == pytest.approx(0.79184)
    assert r.latency_ms["max"] == pytest.approx(20.59)
    assert r.latency_ms["p50"] == pytest.approx(0.675)
    assert r.latency_ms["p99"] == pytest.approx(4.07)


def test_parse_wrk_clean_run(lb: ModuleType) -> None:
    clean = "\n".join(
        line for line in WRK_OUTPUT.splitlines() if "errors" not in line and "Non-2xx" not in line
    )
    r = lb.parse_wrk(clean)
    assert r.failed == 0
    assert r.requests == 445910


def test_parse_show_stat(lb: ModuleType) -> None:
    assert lb.parse_show_stat(SHOW_STAT) == {"b1": "UP", "b2": "DOWN", "b3": "MAINT"}
    rows = lb.parse_show_stat_rows(SHOW_STAT)
    assert rows["b1"]["scur"] == "2"
    summary = lb.parse_show_stat_rows(SHOW_STAT, kinds=("BACKEND",))
    assert list(summary) == ["BACKEND"]
    assert summary["BACKEND"]["wredis"] == "4"


# -- share arithmetic -------------------------------------------------------------------


def test_rates_and_shares(lb: ModuleType) -> None:
    samples = [
        (0.0, {"b1": 0, "b2": 0}),
        (1.0, {"b1": 100, "b2": 100, "b3": 0}),
        (2.0, {"b1": 150, "b2": 150, "b3": 100}),
        (3.0, {"b1": 10, "b2": 200, "b3": 200}),  # b1 restarted: its counter starts over
        (4.0, {"b2": 250, "b3": 300}),  # b1 down
    ]
    times, per = lb.rates(samples)
    assert times == [0.5, 1.5, 2.5, 3.5]
    assert per["b1"] == [100, 50, 10, 0]
    assert per["b3"] == [0, 100, 100, 100]
    # b2's reading is missed once: it comes back counted from its last value, not from 0.
    later = [*samples, (5.0, {"b1": 5, "b3": 400}), (6.0, {"b1": 10, "b2": 350, "b3": 500})]
    assert lb.rates(later)[1]["b2"] == [100, 50, 50, 50, 0, 100]
    assert lb.rates(later)[1]["b1"] == [100, 50, 10, 0, 5, 5]
    assert lb.window_share(samples, ["b3"], 0.0, 1.0) == 0
    assert lb.window_share(samples, ["b3"], 1.0, 2.0) == pytest.approx(0.5)
    assert lb.window_share(samples, ["b3"], 1.5, 2.5) == pytest.approx((50 + 50) / (100 + 80))
    assert lb.window_share(samples, ["b3"], 10, 11) is None
    assert lb.time_to_share(samples, ["b3"], 1.0, 0.5, window=1.0) == pytest.approx(1.0)
    assert lb.time_to_share(samples, ["b3"], 0.0, 0.99, window=1.0) is None
    assert lb.time_to_hold(samples, ["b3"], 0.0, 0.45, hold=2.0) == pytest.approx(1.0)


def test_markdown_helpers(lb: ModuleType) -> None:
    table = lb.markdown_table(["a", "b"], [[1, 0.5], [None, "x"]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | 0.50 |", "| — | x |"]
    assert lb.pct(0.456) == "46%"
    assert lb.pct(None) == "—"
    assert lb.secs(None) == "never"
    assert lb.secs(1.25) == "1.2 s"


def test_variant_env(lb: ModuleType) -> None:
    assert lb.BARE.env() == {"LB_CONNMW": ""}
    v = lb.Variant("cap", "cap", {"max_requests_per_connection": 100})
    assert v.env() == {"LB_CONNMW": '{"max_requests_per_connection": 100}'}


def test_install_hint_names_the_packages(lb: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert lb.missing_tools() == ["haproxy", "wrk"]
    with pytest.raises(SystemExit, match="apt-get install -y haproxy wrk"):
        lb.require_tools()


# -- reports -----------------------------------------------------------------------------


def _samples(new_share: float) -> list[tuple[float, dict[str, int]]]:
    out = []
    for i in range(0, 81):
        t = i * 0.5
        new = int(1000 * new_share * max(0.0, t - 4)) if t > 4 else 0
        out.append((t, {"b1": 1000 * i, "b2": 1000 * i, "b3": new, "b4": new}))
    return out


def test_scale_out_report(lb: ModuleType) -> None:
    scale_out = _load("scale_out")
    wrk = lb.parse_wrk(WRK_OUTPUT)
    runs = [
        scale_out.ScaleRun(v, _samples(s), 3.5, 4.0, wrk)
        for v, s in zip(scale_out.VARIANTS, (0.0, 2.0, 2.0), strict=True)
    ]
    rps = {"bare": [100.0, 110.0], "max_requests": [95.0, 99.0], "connmw_defaults": [98.0, 100.0]}
    cpu = {k: [20.0, 20.0] for k in rps}
    text = scale_out.report(runs, rps, cpu, mode="tcp", conns=32, delay=0.005)
    assert "| plain keep-alive (no connmw) | 0.5 s | 0% | 0% | 0% | never | never | never | 23 |" in text
    assert "| 0.925 |" in text  # median(95 / 100, 99 / 110)
    assert runs[1].share(0, 10) == pytest.approx(0.5)
    assert runs[1].time_to(0.45) is not None


def test_overload_report(lb: ModuleType) -> None:
    overload = _load("overload")
    wrk = lb.parse_wrk(WRK_OUTPUT)
    samples = [(float(i), {"b1": 10 * i, "b2": 45 * i, "b3": 45 * i}) for i in range(10)]
    sessions = [(float(i), {"b1": 4, "b2": 13, "b3": 13}) for i in range(10)]
    runs = [overload.OverloadRun(v, samples, sessions, wrk) for v in overload.variants(2, 6)]
    assert runs[0].slow_share() == pytest.approx(0.1)
    assert runs[0].slow_connections() == pytest.approx(4.0)
    text = overload.report(runs, slow=0.02, conns=30, seconds=10)
    assert "overload_soft_limit=2, overload_hard_limit=6" in text
    assert "throughput 1.00x" in text


def test_rolling_restart_report(lb: ModuleType) -> None:
    rolling = _load("rolling_restart")
    wrk = lb.parse_wrk(WRK_OUTPUT)
    run = rolling.RestartRun("http", rolling.variants(2)[1], [], [], [], wrk, [2.1, 2.2, 2.0], {"wretr": 3})
    text = rolling.report([run], grace=2, conns=32)
    assert "| `http` | connmw drain_on_signal(grace=2) | 445910 | **23** | 12 | 3 | 0 | 1 | 7 |" in text


# -- the backend app, in-process -------------------------------------------------------------


def _get(app: Any, path: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://lb") as client:
            return await client.get(path)

    return asyncio.run(go())


@pytest.fixture
def backend_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LB_NAME", "b9")
    monkeypatch.setenv("LB_CONNMW", '{"max_requests_per_connection": 2}')
    monkeypatch.setenv("LB_DELAY", "0")
    monkeypatch.setenv("LB_DRAIN_GRACE", "0")


def test_backend_app(backend_env: None) -> None:
    app = _load("app", env=dict(os.environ))
    assert _get(app.app, "/").text == "hello from b9\n"
    assert _get(app.app, "/health").status_code == 200
    stats = _get(app.app, "/stats").json()
    assert stats["name"] == "b9"
    assert stats["requests"] == 1
    app.middleware.drain()
    assert _get(app.app, "/health").status_code == 503
    response = _get(app.app, "/")
    assert response.headers["connection"] == "close"
    assert _get(app.app, "/stats").json()["closed"] >= 1


def test_bare_backend_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LB_CONNMW", "")
    app = _load("app", env=dict(os.environ))
    assert app.middleware is None
    assert _get(app.app, "/health").status_code == 200
    assert "connection" not in _get(app.app, "/").headers


# -- end to end (needs haproxy and wrk) -------------------------------------------------------


@pytest.mark.tools("haproxy", "wrk")
@pytest.mark.server
@pytest.mark.parametrize("mode", ["tcp", "http", "h2"])
def test_cluster_smoke(lb: ModuleType, mode: str) -> None:
    variant = lb.Variant("cap", "cap", {"max_requests_per_connection": 20})
    with lb.Cluster(("b1", "b2"), mode=mode) as cluster:
        for name in cluster.names:
            cluster.start_backend(name, variant)
        cluster.start_haproxy()
        cluster.wait_status(cluster.names, "UP")
        result = cluster.run_wrk(1, connections=4, threads=1)
        served = {n: lb.fetch_stats(p) for n, p in cluster.ports.items()}
        procs = [*cluster.backends.values(), cluster.haproxy]
    assert all(p is not None and p.poll() is not None for p in procs)  # all stopped
    assert result.requests > 0
    assert result.failed == 0
    counts = {n: s["requests"] for n, s in served.items() if s is not None}
    assert set(counts) == {"b1", "b2"}
    assert all(c > 0 for c in counts.values())  # the request cap spreads the 4 connections
    assert sum(counts.values()) >= result.requests
    # In h2 mode HAProxy reached hypercorn over HTTP/2; HTTP/1.1 otherwise.
    http2 = {n: s["http2"] for n, s in served.items() if s is not None}
    assert all((c == counts[n]) if mode == "h2" else (c == 0) for n, c in http2.items()), http2
    # On HTTP/2 the cap retires HAProxy's connections with GOAWAY; on HTTP/1.1 with close.
    goaways = sum(s["goaways"] for s in served.values() if s is not None)
    assert (goaways > 0) == (mode == "h2"), goaways
