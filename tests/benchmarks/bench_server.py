"""Real servers under wrk: bare vs connmw, interleaved A/B runs.

Run: ``python -m tests.benchmarks.bench_server [--seconds 5] [--rounds 5] [--max-rounds 12]``
Needs ``wrk`` (Debian: ``apt-get install wrk``).

uvicorn (httptools) and gunicorn (gthread) each serve a hello-world app bare,
under an empty layer that wraps ``send`` / ``start_response`` (the floor: what any
middleware that sees responses costs), wrapped in ``ConnectionMiddleware()`` /
``WSGIConnectionMiddleware()`` (defaults),
and with ``max_requests_per_connection=1000`` (wrk's connections reach it, so the
reconnects are measured too), on loopback. wrk drives each with keep-alive
connections. A round runs every variant once, in an order that reverses from one
round to the next; each round gives a ratio per variant (its requests/s and p99
over the bare app's in the same round). Rounds go on until the ratios' spread is
known (at least ``--rounds``; more while the interquartile range of any ratio is
wider than ``--spread``, up to ``--max-rounds``). The table gives the median ratio
with its range (min-max) over the rounds.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import time

from tests.servers import free_port, subprocess_server

SERVERS = {
    "uvicorn-httptools": lambda app, port: [
        sys.executable,
        "-m",
        "uvicorn",
        "--http",
        "httptools",
        "--loop",
        "uvloop",
        "--no-access-log",
        "--log-level",
        "warning",
        "--port",
        str(port),
        f"tests.benchmarks.server_apps:asgi_{app}",
    ],
    "gunicorn-gthread": lambda app, port: [
        sys.executable,
        "-m",
        "gunicorn",
        "--worker-class",
        "gthread",
        "--threads",
        "8",
        "--workers",
        "1",
        "--keep-alive",
        "30",
        "--log-level",
        "warning",
        "--bind",
        f"127.0.0.1:{port}",
        f"tests.benchmarks.server_apps:wsgi_{app}",
    ],
}

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def parse_wrk(out: str) -> tuple[float, float, int]:
    """Requests/s, p99 latency in ms, and socket errors + non-2xx from wrk's output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"\s99%\s+([\d.]+)(us|ms|s)\b", out)
    p99 = float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")
    errors = 0
    e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if e:
        errors += sum(int(x) for x in e.groups())
    n = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if n:
        errors += int(n.group(1))
    return rps, p99, errors


def wrk(port: int, seconds: int, connections: int) -> tuple[float, float, int]:
    out = subprocess.run(
        [
            "wrk",
            "-t",
            "1",
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--latency",
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    return parse_wrk(out)


VARIANTS = ("bare", "empty", "connmw", "cap1000")


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """Lower quartile, median and upper quartile (inclusive method)."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def spread_known(ratios: dict[str, list[float]], rounds: int, min_rounds: int, spread: float) -> bool:
    """Enough rounds, and every ratio's interquartile range within ``spread``."""
    if rounds < min_rounds:
        return False
    return all(q3 - q1 <= spread for q1, _, q3 in (quartiles(r) for r in ratios.values()))


def summary(name: str, variant: str, rps: list[float], ratios: list[float], p99s: list[float]) -> str:
    lo, hi = min(ratios), max(ratios)
    _, med, _ = quartiles(ratios)
    _, p99_med, _ = quartiles(p99s)
    return (
        f"| {name} | {variant} | {len(ratios)} | {statistics.median(rps):,.0f} | {med:.3f} "
        f"| {lo:.3f}-{hi:.3f} | {p99_med:.3f} | {min(p99s):.3f}-{max(p99s):.3f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="bare vs connmw on real servers, under wrk")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5, help="at least this many rounds")
    parser.add_argument("--max-rounds", type=int, default=12)
    parser.add_argument("--spread", type=float, default=0.03, help="interquartile range to reach")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--server", action="append", choices=sorted(SERVERS))
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    print("| server | variant | rounds | median req/s | throughput ratio | range | p99 ratio | p99 range |")
    print("|---|---|---:|---:|---:|---|---:|---|")
    for name in args.server or sorted(SERVERS):
        rps: dict[str, list[float]] = {v: [] for v in VARIANTS}
        ratios: dict[str, list[float]] = {v: [] for v in VARIANTS[1:]}
        p99s: dict[str, list[float]] = {v: [] for v in VARIANTS[1:]}
        errors = 0
        rounds = 0
        while rounds < args.max_rounds and not spread_known(ratios, rounds, args.rounds, args.spread):
            order = VARIANTS if rounds % 2 == 0 else VARIANTS[::-1]
            got: dict[str, tuple[float, float, int]] = {}
            for app in order:
                port = free_port()
                with subprocess_server(SERVERS[name](app, port), port):
                    wrk(port, 1, args.connections)  # warm-up
                    got[app] = wrk(port, args.seconds, args.connections)
                time.sleep(0.5)
            rounds += 1
            for app, (r, p99, e) in got.items():
                rps[app].append(r)
                errors += e
                if app != "bare":
                    ratios[app].append(r / got["bare"][0])
                    p99s[app].append(p99 / got["bare"][1])
        print(f"| {name} | bare | {rounds} | {statistics.median(rps['bare']):,.0f} | 1 | - | 1 | - |")
        for app in VARIANTS[1:]:
            print(summary(name, app, rps[app], ratios[app], p99s[app]))
        if errors:
            print(f"| {name} | errors (socket + non-2xx, all variants) | {errors} | | | | | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
