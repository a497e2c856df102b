"""Real servers under wrk: bare vs connmw, interleaved A/B runs.

Run: ``python -m tests.benchmarks.bench_server [--seconds 5] [--rounds 3]``
Needs ``wrk`` (Debian: ``apt-get install wrk``).

uvicorn (httptools) and gunicorn (gthread) each serve a hello-world app, bare and
wrapped in ``ConnectionMiddleware()`` / ``WSGIConnectionMiddleware()``, on loopback.
wrk drives each with keep-alive connections; variants alternate A, B, A, B... and
the table gives the median requests/s and p99 latency of each, and their ratios.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="bare vs connmw on real servers, under wrk")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--server", action="append", choices=sorted(SERVERS))
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    print("| server | bare req/s | connmw req/s | ratio | bare p99 ms | connmw p99 ms | p99 ratio | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.server or sorted(SERVERS):
        results: dict[str, list[tuple[float, float, int]]] = {"bare": [], "connmw": []}
        for _ in range(args.rounds):
            for app in ("bare", "connmw"):
                port = free_port()
                with subprocess_server(SERVERS[name](app, port), port):
                    wrk(port, 1, args.connections)  # warm-up
                    results[app].append(wrk(port, args.seconds, args.connections))
                time.sleep(0.5)
        b_rps = statistics.median(r[0] for r in results["bare"])
        c_rps = statistics.median(r[0] for r in results["connmw"])
        b_p99 = statistics.median(r[1] for r in results["bare"])
        c_p99 = statistics.median(r[1] for r in results["connmw"])
        errors = sum(r[2] for rs in results.values() for r in rs)
        print(
            f"| {name} | {b_rps:.0f} | {c_rps:.0f} | {c_rps / b_rps:.3f} | {b_p99:.2f} | {c_p99:.2f} | "
            f"{c_p99 / b_p99:.3f} | {errors} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
