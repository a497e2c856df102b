"""Concurrency: hundreds of keep-alive clients on real servers, drain toggled mid-run.

Each client sends its requests one after another on a keep-alive connection and
reconnects when a response announces ``Connection: close``. Every request carries a
unique id that the application echoes with its number on the connection, so the
client can check that no response is lost, duplicated or misrouted, that the
per-connection count is exact (1, 2, 3... restarting on each new connection, never
past ``max_requests_per_connection``), that every announced close really happens,
and that no connection closes without saying so. The whole run is bounded in time:
a deadlock fails the test instead of hanging it.

Sizes: ``CONNMW_STRESS_CLIENTS`` (default 200) and ``CONNMW_STRESS_REQUESTS``
(default 20 per client).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from connmw import ConnectionMiddleware, WSGIConnectionMiddleware
from tests.servers import uvicorn_thread, waitress_thread

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

pytestmark = [pytest.mark.server, pytest.mark.timeout(180)]

CLIENTS = int(os.environ.get("CONNMW_STRESS_CLIENTS", "200"))
REQUESTS = int(os.environ.get("CONNMW_STRESS_REQUESTS", "20"))
MAX_REQUESTS = 5
OPTIONS: dict[str, Any] = {
    "max_requests_per_connection": MAX_REQUESTS,
    # High limits: never reached here, but they switch the in-flight counter on.
    "overload_soft_limit": 10_000,
    "overload_hard_limit": 20_000,
    "close_on_status": set(),
    "decision_header": "x-connmw",
}


def _body(request_id: str, facts: Any) -> bytes:
    count = getattr(facts, "request_count", None)
    return f"{request_id}:{count}".encode()


class Served:
    """Counts the requests the application really handled, by id."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids: list[str] = []

    def add(self, request_id: str) -> None:
        with self.lock:
            self.ids.append(request_id)


def make_asgi(served: Served) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request_id = scope["query_string"].decode()
        served.add(request_id)
        body = _body(request_id, scope.get("connmw"))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


def make_wsgi(served: Served) -> Any:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request_id = environ["QUERY_STRING"]
        served.add(request_id)
        body = _body(request_id, environ.get("connmw"))
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    return app


@dataclass
class Report:
    responses: dict[str, int] = field(default_factory=dict)  # id -> its count on the connection
    errors: list[str] = field(default_factory=list)
    connections: int = 0
    announced_closes: int = 0
    ended_on_close: int = 0
    max_count: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


async def _read_response(reader: asyncio.StreamReader) -> tuple[dict[bytes, list[bytes]], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    if not lines[0].startswith(b"HTTP/1.1 200"):
        raise AssertionError(f"unexpected status line {lines[0]!r}")
    headers: dict[bytes, list[bytes]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    length = int(headers[b"content-length"][0])
    return headers, await reader.readexactly(length)


async def client(port: int, number: int, report: Report) -> None:
    sent = 0
    while sent < REQUESTS:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        report.connections += 1
        expected = 1
        try:
            while sent < REQUESTS:
                request_id = f"c{number}r{sent}"
                writer.write(f"GET /count?{request_id} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                await writer.drain()
                try:
                    headers, body = await _read_response(reader)
                except (asyncio.IncompleteReadError, ConnectionError) as exc:
                    report.errors.append(
                        f"{request_id}: connection closed without a Connection: close ({exc!r})"
                    )
                    return
                sent += 1
                got_id, _, count = body.decode().partition(":")
                if got_id != request_id:
                    report.errors.append(f"{request_id}: got the response for {got_id}")
                if request_id in report.responses:
                    report.errors.append(f"{request_id}: answered twice")
                report.responses[request_id] = int(count)
                if int(count) != expected:
                    report.errors.append(
                        f"{request_id}: count {count} on the connection, expected {expected}"
                    )
                report.max_count = max(report.max_count, int(count))
                expected += 1
                reason = b";".join(headers.get(b"x-connmw", [])).decode()
                report.reasons[reason] = report.reasons.get(reason, 0) + 1
                connection = headers.get(b"connection", [])
                if len(connection) > 1:
                    report.errors.append(f"{request_id}: {len(connection)} Connection lines")
                if b"close" in [v.lower() for v in connection]:
                    report.announced_closes += 1
                    try:
                        rest = await asyncio.wait_for(reader.read(1), 10)
                    except asyncio.TimeoutError:
                        rest = b"(still open)"
                    if rest:
                        report.errors.append(f"{request_id}: close announced, then {rest!r}")
                    if sent == REQUESTS:
                        report.ended_on_close += 1
                    break
                if int(count) >= MAX_REQUESTS:
                    report.errors.append(f"{request_id}: the connection reached its cap without a close")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


async def run_clients(port: int, report: Report) -> None:
    sem = asyncio.Semaphore(CLIENTS)

    async def one(n: int) -> None:
        async with sem:
            await client(port, n, report)

    await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(CLIENTS))), timeout=120)


@contextlib.contextmanager
def drain_toggler(
    mw: ConnectionMiddleware | WSGIConnectionMiddleware, served: Served, every: int = 1000
) -> Iterator[list[int]]:
    """From another thread, switch drain on or off each time ``every`` more requests were served."""
    stop = threading.Event()
    toggles = [0]

    def run() -> None:
        mark = every
        while not stop.wait(0.002):
            if len(served.ids) >= mark:
                mark += every
                if mw.draining:
                    mw.stop_draining()
                else:
                    mw.drain()
                toggles[0] += 1

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield toggles
    finally:
        stop.set()
        thread.join(5)
        mw.stop_draining()


def check(
    report: Report, served: Served, mw: ConnectionMiddleware | WSGIConnectionMiddleware, toggles: int
) -> None:
    assert not report.errors, report.errors[:10]
    total = CLIENTS * REQUESTS
    assert len(report.responses) == total
    # The application saw each request exactly once.
    assert len(served.ids) == total and len(set(served.ids)) == total
    assert report.max_count <= MAX_REQUESTS
    # Both the per-connection cap and the drain closed connections; nothing else did.
    assert set(report.reasons) == {"keep", "close; reason=max-requests", "close; reason=drain"}, (
        report.reasons
    )
    assert sum(n for r, n in report.reasons.items() if r != "keep") == report.announced_closes
    # Every connection but the last of each client ended on an announced close.
    assert report.connections == report.announced_closes + CLIENTS - report.ended_on_close
    assert toggles >= 3
    assert mw.engine.load.in_flight == 0
    table = mw.engine.table
    assert table is not None and table.peak <= mw.options.max_tracked_connections


def _run(port: int, mw: ConnectionMiddleware | WSGIConnectionMiddleware, served: Served) -> Report:
    report = Report()
    started = time.monotonic()
    with drain_toggler(mw, served) as toggles:
        asyncio.run(run_clients(port, report))
    elapsed = time.monotonic() - started
    print(
        f"{CLIENTS} clients x {REQUESTS} requests: {len(report.responses)} responses, "
        f"{report.connections} connections, {report.announced_closes} announced closes, "
        f"{toggles[0]} drain toggles, {elapsed:.1f} s, decisions {report.reasons}"
    )
    check(report, served, mw, toggles[0])
    return report


def test_stress_uvicorn_keep_alive_with_drain_toggled() -> None:
    served = Served()
    mw = ConnectionMiddleware(make_asgi(served), **OPTIONS)
    with uvicorn_thread(mw, http="httptools", backlog=1024) as port:
        _run(port, mw, served)


def test_stress_waitress_keep_alive_with_drain_toggled() -> None:
    served = Served()
    mw = WSGIConnectionMiddleware(make_wsgi(served), **OPTIONS)
    with waitress_thread(mw, connection_limit=CLIENTS + 50, backlog=1024) as port:
        _run(port, mw, served)
