"""drain_on_signal under the process models people deploy: gunicorn ``--preload``
with several workers, uvicorn ``--workers``, gunicorn's ``UvicornWorker``. SIGTERM
goes to the parent; on the wire, every keep-alive client hears ``Connection: close``
during the grace period and a new connection is still accepted and answered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from typing import Any

import pytest

from connmw import ConnectionMiddleware, WSGIConnectionMiddleware, drain_on_signal
from tests import wire
from tests.servers import ROOT, free_port, gunicorn_argv
from tests.test_load_signals import GRACE, sigterm_during_keep_alive, started

pytestmark = pytest.mark.server

WORKERS = 2
CLIENTS = 6


def pid_wsgi(environ: Any, start_response: Any) -> Iterable[bytes]:
    body = str(os.getpid()).encode() if environ["PATH_INFO"] == "/pid" else b"hello"
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


async def pid_asgi(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = str(os.getpid()).encode() if scope["path"] == "/pid" else b"hello"
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


def wsgi_factory() -> WSGIConnectionMiddleware:
    app = WSGIConnectionMiddleware(pid_wsgi)
    drain_on_signal(app, grace=GRACE)
    return app


def asgi_factory() -> ConnectionMiddleware:
    app = ConnectionMiddleware(pid_asgi)
    drain_on_signal(app, grace=GRACE)
    return app


def wait_for_workers(port: int, workers: int, timeout: float = 30.0) -> set[bytes]:
    """Open connections until every worker has answered one (each is then serving,
    its signal handlers in place)."""
    pids: set[bytes] = set()
    deadline = time.monotonic() + timeout
    while len(pids) < workers and time.monotonic() < deadline:
        resp, _, reader = wire.exchange(port, "GET", "/pid", check_close=False)
        reader.sock.close()
        pids.add(resp.body)
    assert len(pids) == workers, pids
    return pids


def _argv(model: str, port: int) -> list[str]:
    wsgi = "tests.test_signal_models:wsgi_factory()"
    asgi = "tests.test_signal_models:asgi_factory()"
    common: dict[str, Any] = {"workers": WORKERS, "graceful_timeout": 20, "log_level": "info"}
    if model == "gunicorn-preload-gthread":
        return gunicorn_argv(wsgi, port, "gthread", extra=["--preload"], **common)
    if model == "gunicorn-preload-sync":
        return gunicorn_argv(wsgi, port, "sync", extra=["--preload"], **common)
    if model == "hypercorn-w0":
        return [sys.executable, "-m", "hypercorn", "-b", f"127.0.0.1:{port}", "-w", "0", asgi]
    if model.startswith("gunicorn-uvicorn-worker"):
        preload = ["--preload"] if model.endswith("preload") else []
        return gunicorn_argv(asgi, port, "uvicorn.workers.UvicornWorker", extra=preload, **common)
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "tests.test_signal_models:asgi_factory",
        "--port",
        str(port),
        "--workers",
        str(WORKERS),
        "--log-level",
        "info",
    ]


@pytest.mark.parametrize(
    "model",
    [
        "gunicorn-preload-gthread",
        "gunicorn-preload-sync",
        "uvicorn-workers",
        "gunicorn-uvicorn-worker",
        "gunicorn-uvicorn-worker-preload",
        "hypercorn-w0",
    ],
)
def test_sigterm_to_the_parent_drains_every_worker(model: str) -> None:
    port = free_port()
    clients = 0 if model == "gunicorn-preload-sync" else CLIENTS  # sync closes every connection
    workers = 1 if model == "hypercorn-w0" else WORKERS
    with started(_argv(model, port), port) as proc:
        wait_for_workers(port, workers)
        # uvicorn's supervisor looks for a signal every 0.5 s before it passes it on.
        code, out, waited = sigterm_during_keep_alive(
            proc, port, clients, "/pid", new_connection=True, settle=1.0
        )
    assert waited >= GRACE * 0.9, out
    # Each worker drained (the log line comes from each worker process).
    assert out.count("draining for 2 s") >= workers, out
    assert code in (0, -signal.SIGTERM), out


def test_hypercorn_worker_processes_refuse_drain_on_signal_at_start_up() -> None:
    """hypercorn -w 1 (the default) never signals its workers: start-up fails, naming the fix."""
    port = free_port()
    argv = _argv("hypercorn-w0", port)
    argv[argv.index("-w") + 1] = "1"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=60, check=False)
    out = (done.stdout + done.stderr).decode(errors="replace")
    # The worker fails and hypercorn stops (it reports 0: a worker's failure is not its own).
    assert "RuntimeError: connmw.drain_on_signal: hypercorn with worker processes" in out
    assert "Run hypercorn --workers 0" in out
