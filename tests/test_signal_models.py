"""drain_on_signal under the process models people deploy: gunicorn ``--preload``
with several workers, uvicorn ``--workers``, gunicorn's ``UvicornWorker``. SIGTERM
goes to the parent; on the wire, every keep-alive client hears ``Connection: close``
during the grace period and a new connection is still accepted and answered."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterable
from typing import Any

import pytest

from connmw import ConnectionMiddleware, WSGIConnectionMiddleware, drain_on_signal
from tests import wire
from tests.servers import free_port
from tests.test_load_signals import GRACE, started

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


def wait_for_workers(port: int, timeout: float = 30.0) -> set[bytes]:
    """Open connections until every worker has answered one (each is then serving,
    its signal handlers in place)."""
    pids: set[bytes] = set()
    deadline = time.monotonic() + timeout
    while len(pids) < WORKERS and time.monotonic() < deadline:
        resp, _, reader = wire.exchange(port, "GET", "/pid", check_close=False)
        reader.sock.close()
        pids.add(resp.body)
    assert len(pids) == WORKERS, pids
    return pids


def _gunicorn(port: int, *extra: str) -> list[str]:
    import gunicorn

    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(WORKERS),
        "--keep-alive",
        "10",
        "--graceful-timeout",
        "20",
        "--log-level",
        "info",
        *extra,
    ]
    if gunicorn.version_info >= (25, 1):
        argv.append("--no-control-socket")  # one control socket per $HOME otherwise
    return argv


def _argv(model: str, port: int) -> list[str]:
    wsgi = "tests.test_signal_models:wsgi_factory()"
    asgi = "tests.test_signal_models:asgi_factory()"
    if model == "gunicorn-preload-gthread":
        return _gunicorn(port, "--preload", "--worker-class", "gthread", "--threads", "4", wsgi)
    if model == "gunicorn-preload-sync":
        return _gunicorn(port, "--preload", "--worker-class", "sync", wsgi)
    if model.startswith("gunicorn-uvicorn-worker"):
        preload = ["--preload"] if model.endswith("preload") else []
        return _gunicorn(port, *preload, "--worker-class", "uvicorn.workers.UvicornWorker", asgi)
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
    ],
)
def test_sigterm_to_the_parent_drains_every_worker(model: str) -> None:
    port = free_port()
    keep_alive = model != "gunicorn-preload-sync"  # the sync worker closes every connection
    with started(_argv(model, port), port) as proc:
        wait_for_workers(port)
        readers: list[wire.Reader] = []
        try:
            for _ in range(CLIENTS if keep_alive else 0):
                reader = wire.Reader(wire.connect(port))
                reader.sock.sendall(wire.build_request("GET", "/pid"))
                resp = reader.read_response()
                assert resp.status == 200
                assert "close" not in ",".join(resp.lines("connection")).lower()
                readers.append(reader)
            sent_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            for reader in readers:
                reader.sock.sendall(wire.build_request("GET", "/"))
                resp = reader.read_response()
                assert (resp.status, resp.body) == (200, b"hello")
                assert resp.lines("connection") == ["close"]
                assert reader.closed(2.0)
                # As a client does on the server's FIN (gunicorn 27 lingers until then).
                reader.sock.close()
            # A client arriving during the grace period is still served, and told to close.
            resp, closed, late = wire.exchange(port, "GET", "/")
            late.sock.close()
            assert (resp.status, resp.lines("connection"), closed) == (200, ["close"], True)
            assert time.monotonic() - sent_at < GRACE
            assert proc.poll() is None  # still serving in the grace period
            code = proc.wait(GRACE + 25)
        finally:
            for reader in readers:
                reader.sock.close()
        out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    assert time.monotonic() - sent_at >= GRACE * 0.9, out
    # Each worker drained (the log line comes from each worker process).
    assert out.count("draining for 2 s") >= WORKERS, out
    assert code in (0, -signal.SIGTERM), out
