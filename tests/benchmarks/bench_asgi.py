"""In-process ASGI benchmark: connmw against the physical limits, side by side.

Run: ``python -m tests.benchmarks.bench_asgi [--quick]``

Every variant runs the same requests in the same process, best of several rounds;
the table gives microseconds per request and the overhead each layer adds over the
bare application, as a multiple of an empty send-wrapping layer's overhead (the
least any middleware that sees responses costs) and as a share of a minimal
Starlette app's per-request time. A last table gives each option's cost alone.
Mixes: ``h2`` sends four headers HTTP/2 forbids (connmw strips them), ``h2-clean``
none.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from connmw import ConnectionMiddleware
from tests.benchmarks._options import full_options, single_options
from tests.benchmarks._report import build_line, option_cost_table, overhead_table
from tests.benchmarks.server_apps import Empty

Scope = MutableMapping[str, Any]
App = Callable[..., Any]

BODY = b"hello, world"
H2_JUNK = [
    (b"connection", b"keep-alive"),
    (b"keep-alive", b"timeout=5"),
    (b"transfer-encoding", b"chunked"),
    (b"te", b"gzip"),
]


def make_bare(extra_headers: list[tuple[bytes, bytes]]) -> App:
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(BODY)), *extra_headers]
    start = {"type": "http.response.start", "status": 200, "headers": headers}
    body = {"type": "http.response.body", "body": BODY}

    async def bare(scope: Scope, receive: Any, send: Any) -> None:
        await send(start)
        await send(body)

    return bare


class HeaderLogicBase(BaseHTTPMiddleware):
    """The same header work done the common way, as a BaseHTTPMiddleware."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        tokens = {t.strip().lower() for t in request.headers.get("connection", "").split(",")}
        response = await call_next(request)
        if "close" in tokens or response.status_code in (400, 500, 503):
            response.headers["connection"] = "close"
        return response


def starlette_app() -> Starlette:
    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello, world")

    return Starlette(routes=[Route("/", home)])


def scope_for(mix: str) -> Scope:
    headers = [(b"host", b"example.com"), (b"user-agent", b"bench"), (b"accept", b"*/*")]
    version = "1.1"
    if mix == "close":
        headers.append((b"connection", b"close"))
    elif mix in ("h2", "h2-clean"):
        version = "2"
    elif mix == "20-headers":
        headers += [(b"x-header-%d" % i, b"value-%d" % i) for i in range(17)]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": version,
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


MIXES = ["keep-alive", "close", "h2", "h2-clean", "20-headers"]


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: MutableMapping[str, Any]) -> None:
    return None


class _Transport:
    """The connection's transport (one connection here)."""


class _Stream:
    """A server's per-request object: uvicorn, hypercorn and granian hand the
    application a method of one as ``send`` (a server connmw does not know, here).
    Like uvicorn's, it holds the connection's transport, which connmw keys
    per-connection state on (a weak reference, hashed once)."""

    transport = _Transport()

    async def send(self, message: MutableMapping[str, Any]) -> None:
        return None


#: ``--send``: a plain function (as wrapped by a middleware outside connmw: the server
#: behind it is searched for on the paths that need it), or a server object's method.
SENDS: dict[str, Any] = {"function": _send, "method": _Stream().send}


def _one_request(app: App) -> App:
    """Give ``app`` what a server gives: the request once, then nothing until the client
    goes away. Starlette 0.37's BaseHTTPMiddleware listens on ``receive`` while the
    response streams and rejects a second ``http.request``; the other variants read it
    at most once."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        done = False

        async def once() -> Any:
            nonlocal done
            if done:  # a server answers when the client goes away, which it does not here
                await asyncio.Event().wait()
            done = True
            return await receive()

        await app(scope, once, send)

    return wrapped


async def measure(app: App, scope: Scope, n: int, send: Any = _send) -> float:
    """Seconds per request over ``n`` requests (a fresh scope copy each, as a server makes)."""
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            await app(dict(scope), _receive, send)
        return (time.perf_counter() - t0) / n
    finally:
        gc.enable()


def variants(mix: str) -> dict[str, App]:
    extra = H2_JUNK if mix == "h2" else []
    bare = make_bare(extra)
    star = starlette_app()
    return {
        "bare app": bare,
        "empty layer": Empty(bare),
        "connmw defaults": ConnectionMiddleware(bare),
        "connmw all policies": ConnectionMiddleware(bare, **full_options()),
        "minimal Starlette": star,
        "Starlette + connmw": ConnectionMiddleware(star),
        "BaseHTTPMiddleware": _one_request(HeaderLogicBase(bare)),
    }


def option_variants() -> dict[str, App]:
    """The bare app, an empty layer, connmw's defaults, and each option alone."""
    bare = make_bare([])
    apps: dict[str, App] = {
        "bare app": bare,
        "empty layer": Empty(bare),
        "connmw defaults": ConnectionMiddleware(bare),
    }
    for name, options in single_options().items():
        apps[name] = ConnectionMiddleware(bare, **options)
    apps["every policy"] = ConnectionMiddleware(bare, **full_options())
    return apps


def run(
    mix: str, n: int, rounds: int, apps: dict[str, App] | None = None, send: Any = _send
) -> dict[str, float]:
    if apps is None:
        apps = variants(mix)
    scope = scope_for(mix)
    best = {name: float("inf") for name in apps}

    async def go() -> None:
        for app in apps.values():  # warm up
            await measure(app, scope, max(n // 10, 10), send)
        for _ in range(rounds):
            for name, app in apps.items():  # interleaved, so drift hits all alike
                count = n // 20 if name == "BaseHTTPMiddleware" else n
                best[name] = min(best[name], await measure(app, scope, count, send))

    asyncio.run(go())
    return best


def report(mix: str, best: dict[str, float]) -> list[str]:
    lines = overhead_table(mix, best, "minimal Starlette")
    bare = best["bare app"]
    connmw = best["connmw defaults"] - bare
    base = best["BaseHTTPMiddleware"] - bare
    lines.append("")
    lines.append(f"BaseHTTPMiddleware overhead / connmw overhead: {base / max(connmw, 1e-9):.0f}x")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument("--mix", action="append", choices=MIXES)
    parser.add_argument(
        "--options", action="store_true", help="only the per-option cost table (HTTP/1.1 keep-alive)"
    )
    parser.add_argument(
        "--send",
        choices=sorted(SENDS),
        default="function",
        help="what the server hands the application as send (default: a plain function)",
    )
    args = parser.parse_args(argv)
    send = SENDS[args.send]
    print(f"send: {args.send}")
    n, rounds = (2000, 2) if args.quick else (20000, 7)
    print(build_line())
    print()
    if not args.options:
        for mix in args.mix or MIXES:
            print("\n".join(report(mix, run(mix, n, rounds, send=send))))
            print()
    title = "each option alone, HTTP/1.1 keep-alive"
    print("\n".join(option_cost_table(title, run("keep-alive", n, rounds, option_variants(), send))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
