"""The backend of the load-balancer experiments: a tiny ASGI app, with or without connmw.

Run one backend (the experiment scripts start several themselves)::

    LB_NAME=b1 LB_CONNMW='{"max_requests_per_connection": 100}' python examples/loadbalancer/app.py 8001

Configuration, from the environment:

- ``LB_NAME``: the backend's name, echoed in responses and ``/stats``.
- ``LB_CONNMW``: connmw options as JSON (``{"max_connection_age": 2}``); empty or
  unset runs the bare app (plain keep-alive).
- ``LB_DELAY``: seconds every ``/`` request waits (``asyncio.sleep``), to make one
  backend slow.
- ``LB_DRAIN_GRACE``: seconds; with connmw, ``connmw.drain_on_signal`` is installed:
  on SIGTERM every response says ``Connection: close`` and ``/health`` answers 503
  (so the load balancer takes the backend out) for this long, then uvicorn's own
  graceful shutdown runs. 0 (default) leaves SIGTERM to uvicorn alone.

Routes: ``/`` (counted), ``/stats`` (JSON counters, read by the scripts) and
``/health`` (for the load balancer's checks). ``/stats`` and ``/health`` bypass connmw.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import connmw

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

NAME = os.environ.get("LB_NAME", "backend")
DELAY = float(os.environ.get("LB_DELAY") or 0)
GRACE = float(os.environ.get("LB_DRAIN_GRACE") or 0)
OPTIONS: dict[str, Any] | None = json.loads(os.environ["LB_CONNMW"]) if os.environ.get("LB_CONNMW") else None

counters = {"requests": 0, "closed": 0, "http2": 0}
BODY = f"hello from {NAME}\n".encode()


async def _reply(send: Send, status: int, body: bytes, ctype: bytes = b"text/plain") -> None:
    headers = [(b"content-type", ctype), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    if DELAY:
        await asyncio.sleep(DELAY)
    counters["requests"] += 1
    if scope.get("http_version") == "2":
        counters["http2"] += 1
    await _reply(send, 200, BODY)


def _count_closes(facts: Any, decision: Any) -> None:
    if decision.close:
        counters["closed"] += 1


middleware: connmw.ConnectionMiddleware | None = None
inner: Callable[[Scope, Receive, Send], Awaitable[None]] = hello
drain: connmw.SignalDrain | None = None
if OPTIONS is not None:
    middleware = connmw.ConnectionMiddleware(hello, on_decision=_count_closes, **OPTIONS)
    inner = middleware
    if GRACE > 0:
        # On SIGTERM: drain for GRACE seconds, then hand the signal to uvicorn.
        drain = connmw.drain_on_signal(middleware, grace=GRACE)
_installed = False


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Route ``/stats`` and ``/health`` around connmw; everything else goes through it."""
    global _installed
    if scope["type"] != "http":
        return
    if drain is not None and not _installed:
        # uvicorn installs its SIGTERM handler after importing this module: put connmw's
        # back in front on the first request (health checks come first, so it is early).
        _installed = True
        drain.install()
    path = scope["path"]
    if path == "/stats":
        stats = {"name": NAME, "pid": os.getpid(), **counters}
        if middleware is not None:
            # HTTP/2 connections connmw retired with a GOAWAY
            stats["goaways"] = middleware.stats()["goaways"]
        await _reply(send, 200, json.dumps(stats).encode(), b"application/json")
    elif path == "/health":
        draining = middleware is not None and middleware.draining
        await _reply(send, 503 if draining else 200, b"draining\n" if draining else b"ok\n")
    else:
        await inner(scope, receive, send)


def main(port: int) -> None:
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off")


if __name__ == "__main__":
    main(int(sys.argv[1]))
