"""Memory: bytes per tracked connection, and RSS over a long run of connection churn.

Run: ``python -m tests.benchmarks.bench_memory [--quick]``

1. 100k distinct connections through the ASGI middleware (request cap on, so each
   connection is tracked): tracemalloc's growth divided by the entries held.
2. Churn: many more distinct connections than the table's cap, in rounds; RSS is
   sampled after each round and must stay flat once the table is full.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import tracemalloc
from collections.abc import MutableMapping
from typing import Any

from connmw import ConnectionMiddleware


async def _app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def _receive() -> dict[str, Any]:
    return {"type": "http.request"}


async def _send(message: MutableMapping[str, Any]) -> None:
    return None


def _scope(i: int) -> dict[str, Any]:
    # As a server builds it: a fresh client tuple per connection.
    return {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "path": "/",
        "root_path": "",
        "headers": [(b"host", b"x")],
        "client": (f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", 1024 + i % 60000),
        "server": ("127.0.0.1", 8000),
    }


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def per_entry(n: int) -> tuple[float, int]:
    mw = ConnectionMiddleware(_app, max_requests_per_connection=100, max_tracked_connections=n * 2)
    table = mw.engine.table
    assert table is not None
    scopes = [_scope(i) for i in range(n)]
    clients = [s["client"] for s in scopes]  # kept alive by the server while open
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for s in scopes:
        await mw(s, _receive, _send)
    for s in scopes:
        s.pop("connmw", None)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del clients
    return (after - before) / len(table), len(table)


async def churn(rounds: int, per_round: int, cap: int) -> list[tuple[int, int, int]]:
    mw = ConnectionMiddleware(_app, max_requests_per_connection=100, max_tracked_connections=cap)
    table = mw.engine.table
    assert table is not None
    samples = []
    i = 0
    for r in range(rounds):
        for _ in range(per_round):
            # Each "connection" sends three requests, then goes away.
            s = _scope(i)
            for _ in range(3):
                await mw(dict(s), _receive, _send)
            i += 1
        gc.collect()
        samples.append((r, len(table), rss_kib()))
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="connmw memory benchmark")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    n = 10_000 if args.quick else 100_000
    bytes_per, held = asyncio.run(per_entry(n))
    print(f"per-connection state: {bytes_per:.0f} bytes per tracked connection ({held} held)")
    rounds, per_round, cap = (5, 20_000, 10_000) if args.quick else (20, 50_000, 100_000)
    samples = asyncio.run(churn(rounds, per_round, cap))
    print("| round | connections so far | table size | RSS (KiB) |")
    print("|---:|---:|---:|---:|")
    for r, size, rss in samples:
        print(f"| {r} | {(r + 1) * per_round} | {size} | {rss} |")
    full = [rss for r, size, rss in samples if size >= cap]
    if len(full) >= 2:
        print(
            f"RSS once the table is full: first {full[0]} KiB, last {full[-1]} KiB, growth {full[-1] - full[0]} KiB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
