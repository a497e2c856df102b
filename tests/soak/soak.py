"""Memory soak: many requests over many distinct connections, in-process.

Drives both middlewares with hand-built scopes / environs (no server, no sockets),
with per-connection state switched on, round-robin over ``--connections`` distinct
client addresses, and reports the connection table's peak size against its cap and
the process's RSS: at the start, once the table is full, and at the end. With a
bounded table the last two must be about equal.

Run on demand (the CI runs a short version from ``tests/soak/test_soak.py``)::

    python -m tests.soak.soak                      # 1,000,000 requests, 100,000 connections
    python -m tests.soak.soak --requests 200000 --connections 20000 --cap 5000
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from connmw import ConnectionMiddleware, WSGIConnectionMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def rss_kib() -> int:
    """Resident set size of this process in KiB (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


_START = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
_BODY = {"type": "http.response.body", "body": b"ok"}


async def _asgi_app(scope: Any, receive: Any, send: Any) -> None:
    await send(_START)
    await send(_BODY)


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b""}


def _wsgi_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


def _asgi_driver(mw: ConnectionMiddleware) -> Callable[[int], bool]:
    closes = [False]

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            closes[0] = (b"connection", b"close") in message["headers"]

    def one(conn: int) -> bool:
        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": "GET",
            "path": "/",
            "root_path": "",
            "headers": [(b"host", b"x")],
            "client": (f"10.{conn >> 16 & 255}.{conn >> 8 & 255}.{conn & 255}", 40000 + conn % 20000),
            "server": ("127.0.0.1", 8000),
        }
        coro = mw(scope, _receive, send)
        try:
            coro.send(None)
        except StopIteration:
            pass
        else:  # pragma: no cover - the app above never waits
            coro.close()
            raise RuntimeError("suspended")
        return closes[0]

    return one


def _wsgi_driver(mw: WSGIConnectionMiddleware) -> Callable[[int], bool]:
    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return None

    base = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_PORT": "8000",
        "wsgi.input": io.BytesIO(),
    }

    def one(conn: int) -> bool:
        environ = dict(base)
        environ["REMOTE_ADDR"] = f"10.{conn >> 16 & 255}.{conn >> 8 & 255}.{conn & 255}"
        environ["REMOTE_PORT"] = str(40000 + conn % 20000)
        result = mw(environ, start_response)
        for _ in result:
            pass
        close = getattr(result, "close", None)
        if close is not None:
            close()
        decision = getattr(environ["connmw"], "decision", None)
        return bool(decision is not None and decision.close)

    return one


def soak(
    requests: int = 1_000_000,
    connections: int = 100_000,
    cap: int = 100_000,
    flavour: str = "asgi",
    max_requests: int = 8,
) -> dict[str, Any]:
    """Run the soak and return its figures."""
    options: dict[str, Any] = {
        "max_requests_per_connection": max_requests,
        "max_connection_age": 3600.0,
        "max_tracked_connections": cap,
        "overload_soft_limit": 1000,
        "overload_hard_limit": 2000,
        "keep_alive_timeout": 5,
    }
    mw: ConnectionMiddleware | WSGIConnectionMiddleware
    if flavour == "asgi":
        mw = ConnectionMiddleware(_asgi_app, **options)
        one = _asgi_driver(mw)
    else:
        mw = WSGIConnectionMiddleware(_wsgi_app, **options)
        one = _wsgi_driver(mw)
    table = mw.engine.table
    assert table is not None
    gc.collect()
    rss_start = rss_kib()
    rss_full: int | None = None
    checkpoints: list[int] = []
    step = max(requests // 10, 1)
    max_len = 0
    closes = 0
    started = time.perf_counter()
    for i in range(requests):
        if one(i % connections):
            closes += 1
        n = len(table)
        if n > max_len:
            max_len = n
        if rss_full is None and (n >= cap or i >= requests // 10) and i >= connections:
            gc.collect()
            rss_full = rss_kib()
        if (i + 1) % step == 0:
            checkpoints.append(rss_kib())
    elapsed = time.perf_counter() - started
    gc.collect()
    rss_end = rss_kib()
    return {
        "flavour": flavour,
        "requests": requests,
        "connections": connections,
        "cap": cap,
        "peak_table": max(table.peak, max_len),
        "final_table": len(table),
        "in_flight": mw.engine.load.in_flight,
        "closes": closes,
        "rss_start_kib": rss_start,
        "rss_table_full_kib": rss_full if rss_full is not None else rss_end,
        "rss_end_kib": rss_end,
        "rss_every_tenth_kib": checkpoints,
        "seconds": round(elapsed, 2),
        "requests_per_second": round(requests / elapsed) if elapsed else 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=100_000)
    parser.add_argument("--cap", type=int, default=100_000)
    parser.add_argument("--max-requests", type=int, default=8)
    parser.add_argument("--flavour", choices=["asgi", "wsgi", "both"], default="both")
    args = parser.parse_args(argv)
    ok = True
    for flavour in ("asgi", "wsgi") if args.flavour == "both" else (args.flavour,):
        figures = soak(args.requests, args.connections, args.cap, flavour, args.max_requests)
        print(json.dumps(figures))
        if figures["peak_table"] > args.cap or figures["in_flight"] != 0:
            ok = False
        # Flat: once the table is full, memory does not keep growing. The slack (15% or
        # 8 MiB) covers the allocator and the table's own resizing when a whole
        # generation of entries is dropped and re-added at once.
        full, end = figures["rss_table_full_kib"], figures["rss_end_kib"]
        if end > max(full * 1.15, full + 8192):
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
