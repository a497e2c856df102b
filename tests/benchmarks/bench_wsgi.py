"""In-process WSGI benchmark: connmw against the physical limits, side by side.

Run: ``python -m tests.benchmarks.bench_wsgi [--quick]``
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import flask
from werkzeug.test import create_environ

from connmw import WSGIConnectionMiddleware
from tests.benchmarks._options import full_options
from tests.benchmarks._report import build_line, overhead_table
from tests.benchmarks.server_apps import EmptyWSGI

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

BODY = b"hello, world"


def bare(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "12")])
    return [BODY]


def flask_app() -> flask.Flask:
    app = flask.Flask("bench")

    @app.get("/")
    def home() -> str:
        return "hello, world"

    return app


def _start_response(
    status: str, headers: list[tuple[str, str]], exc_info: Any = None
) -> Callable[[bytes], None]:
    return _write


def _write(data: bytes) -> None:
    return None


def measure(app: WSGIApplication, environ: WSGIEnvironment, n: int) -> float:
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            result = app(dict(environ), _start_response)
            for _chunk in result:
                pass
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return (time.perf_counter() - t0) / n
    finally:
        gc.enable()


def run(mix: str, n: int, rounds: int) -> dict[str, float]:
    headers = {"User-Agent": "bench", "Accept": "*/*"}
    if mix == "close":
        headers["Connection"] = "close"
    environ = create_environ("/", headers=headers)
    environ["REMOTE_PORT"] = "40000"
    fl = flask_app()
    apps: dict[str, WSGIApplication] = {
        "bare app": bare,
        "empty layer": EmptyWSGI(bare),
        "connmw defaults": WSGIConnectionMiddleware(bare),
        "connmw all policies": WSGIConnectionMiddleware(bare, **full_options()),
        "minimal Flask": fl,
        "Flask + connmw": WSGIConnectionMiddleware(fl),
    }
    best = {name: float("inf") for name in apps}
    for app in apps.values():
        measure(app, environ, max(n // 10, 10))
    for _ in range(rounds):
        for name, app in apps.items():
            best[name] = min(best[name], measure(app, environ, n))
    return best


def report(mix: str, best: dict[str, float]) -> list[str]:
    return overhead_table(mix, best, "minimal Flask")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="In-process WSGI benchmark")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    n, rounds = (2000, 2) if args.quick else (20000, 7)
    print(build_line())
    print()
    for mix in ("keep-alive", "close"):
        print("\n".join(report(mix, run(mix, n, rounds))))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
