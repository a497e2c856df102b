"""Load features on the wire: uvicorn, hypercorn, waitress (in this process) and
gunicorn gthread (a subprocess), with a raw-socket client.

One server per kind serves every scenario; the path prefix picks a middleware
configured for it:

- ``/n/...``      ``max_requests_per_connection=3``, ``keep_alive_timeout=5``
- ``/age/...``    ``max_connection_age=0.5``
- ``/drain/...``  drained by ``/control/drain``, undone by ``/control/undrain``
- ``/stress/...`` a high request cap, so counts are tracked and nothing closes

``/…/count`` answers the request's number on its connection.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from connmw import ConnectionMiddleware, WSGIConnectionMiddleware
from tests import wire
from tests.apps import raw_asgi, raw_wsgi
from tests.servers import (
    free_port,
    gunicorn_argv,
    hypercorn_thread,
    subprocess_server,
    uvicorn_thread,
    waitress_thread,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

pytestmark = pytest.mark.server

AGE = 0.5
CAP = 3
KEEP_ALIVE = 5

_OPTIONS: dict[str, dict[str, Any]] = {
    "n": {"max_requests_per_connection": CAP, "keep_alive_timeout": KEEP_ALIVE},
    "age": {"max_connection_age": AGE, "keep_alive_timeout": KEEP_ALIVE},
    "drain": {"keep_alive_timeout": KEEP_ALIVE, "max_requests_per_connection": 1_000_000},
    "stress": {"max_requests_per_connection": 1_000_000},
}


def make_asgi() -> Any:
    apps = {name: ConnectionMiddleware(raw_asgi, **opts) for name, opts in _OPTIONS.items()}

    async def dispatch(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await raw_asgi(scope, receive, send)
            return
        head, _, tail = scope["path"][1:].partition("/")
        if head == "control":
            if tail == "drain":
                apps["drain"].drain()
            else:
                apps["drain"].stop_draining()
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        inner = dict(scope)
        inner["path"] = "/" + tail
        await apps[head](inner, receive, send)

    return dispatch


def make_wsgi() -> Any:
    """``gunicorn 'tests.test_load_wire:make_wsgi()'``"""
    apps = {name: WSGIConnectionMiddleware(raw_wsgi, **opts) for name, opts in _OPTIONS.items()}

    def dispatch(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        head, _, tail = environ.get("PATH_INFO", "/")[1:].partition("/")
        if head == "control":
            if tail == "drain":
                apps["drain"].drain()
            else:
                apps["drain"].stop_draining()
            start_response("204 No Content", [])
            return [b""]
        environ["PATH_INFO"] = "/" + tail
        return apps[head](environ, start_response)

    return dispatch


@contextlib.contextmanager
def gunicorn_server() -> Iterator[int]:
    port = free_port()
    argv = gunicorn_argv("tests.test_load_wire:make_wsgi()", port, threads=4)
    with subprocess_server(argv, port):
        yield port


SERVERS: dict[str, Callable[[], contextlib.AbstractContextManager[int]]] = {
    "uvicorn": lambda: uvicorn_thread(make_asgi()),
    "uvicorn-httptools": lambda: uvicorn_thread(make_asgi(), http="httptools"),
    "hypercorn": lambda: hypercorn_thread(make_asgi()),
    "waitress": lambda: waitress_thread(make_wsgi()),
    "gunicorn-gthread": gunicorn_server,
}


@pytest.fixture(scope="module")
def ports() -> Iterator[dict[str, int]]:
    """Every server of :data:`SERVERS`, each started once for the module."""
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(start()) for name, start in SERVERS.items()}


@pytest.fixture(params=list(SERVERS))
def server(request: pytest.FixtureRequest, ports: dict[str, int]) -> tuple[str, int]:
    return request.param, ports[request.param]


class Client:
    """One keep-alive connection."""

    def __init__(self, port: int) -> None:
        self.reader = wire.Reader(wire.connect(port))

    def get(self, path: str) -> wire.Response:
        self.reader.sock.sendall(wire.build_request("GET", path))
        return self.reader.read_response()

    def closed(self) -> bool:
        closed = self.reader.closed(3.0)
        self.close()
        return closed

    def close(self) -> None:
        # Close our end at once: gunicorn's gthread lingers on its main thread
        # until the client closes (util.close_graceful).
        self.reader.sock.close()


def connection(resp: wire.Response) -> str:
    return ",".join(resp.lines("connection")).lower()


def test_the_nth_response_closes_and_keep_alive_counts_down(server: tuple[str, int]) -> None:
    name, port = server
    for _ in range(2):  # a second connection starts over
        client = Client(port)
        seen = []
        for _ in range(CAP):
            resp = client.get("/n/count")
            assert resp.status == 200
            seen.append((resp.body, connection(resp), resp.lines("keep-alive")))
        assert seen == [
            (b"1", _keep(name), [f"timeout={KEEP_ALIVE}, max=2"]),
            (b"2", _keep(name), [f"timeout={KEEP_ALIVE}, max=1"]),
            (b"3", "close", []),
        ]
        assert client.closed()


def _keep(name: str) -> str:
    # gunicorn announces keep-alive on HTTP/1.1 itself; the others say nothing.
    return "keep-alive" if name == "gunicorn-gthread" else ""


@pytest.fixture(scope="module")
def aging(ports: dict[str, int]) -> Iterator[dict[str, tuple[Client, wire.Response, float]]]:
    """Per server: a connection, its first ``/age/`` response and when it was read. Opened on
    every server together, so the connections grow old at the same time, not in turn."""
    opened: dict[str, tuple[Client, wire.Response, float]] = {}
    try:
        for name, port in ports.items():
            client = Client(port)
            opened[name] = (client, client.get("/age/count"), time.monotonic())
        yield opened
    finally:
        for client, _, _ in opened.values():
            client.close()


def test_an_old_connection_closes_on_its_next_response(
    server: tuple[str, int], aging: dict[str, tuple[Client, wire.Response, float]]
) -> None:
    name, port = server
    client, first, since = aging[name]
    assert first.body == b"1"
    assert "close" not in connection(first)
    assert first.lines("keep-alive") == [f"timeout={KEEP_ALIVE}"]
    # The first server's test waits; the others' connections are as old by then, or nearly.
    time.sleep(max(0.0, since + AGE + 0.2 - time.monotonic()))
    second = client.get("/age/count")
    assert second.body == b"2"
    assert connection(second) == "close"
    assert second.lines("keep-alive") == []
    assert client.closed()
    # A fresh connection is young.
    fresh = Client(port)
    resp = fresh.get("/age/count")
    assert resp.body == b"1"
    assert "close" not in connection(resp)
    fresh.close()


def test_drain_closes_the_next_response_on_every_open_connection(server: tuple[str, int]) -> None:
    _, port = server
    clients = [Client(port) for _ in range(5)]
    try:
        for client in clients:
            resp = client.get("/drain/count")
            assert resp.body == b"1"
            assert "close" not in connection(resp)
        control = Client(port)
        assert control.get("/control/drain").status == 204
        control.close()
        for client in clients:
            resp = client.get("/drain/count")
            assert resp.status == 200
            assert resp.body == b"2"
            assert connection(resp) == "close"
            assert resp.lines("keep-alive") == []
            assert client.closed()
        # New connections are told to close too.
        newcomer = Client(port)
        assert connection(newcomer.get("/drain/count")) == "close"
        assert newcomer.closed()
    finally:
        for client in clients:
            client.close()
        undo = Client(port)
        undo.get("/control/undrain")
        undo.close()
    after = Client(port)
    assert "close" not in connection(after.get("/drain/count"))
    after.close()


STRESS_CLIENTS = 24
STRESS_REQUESTS = 30


@pytest.mark.parametrize("kind", ["waitress", "gunicorn-gthread"])
def test_counts_are_exact_under_many_concurrent_keep_alive_clients(kind: str) -> None:
    """Threaded servers: each client sees 1, 2, 3, ... on its own connection."""
    with SERVERS[kind]() as port:
        barrier = threading.Barrier(STRESS_CLIENTS)
        results: dict[int, list[bytes]] = {}
        errors: list[BaseException] = []

        def run(n: int) -> None:
            try:
                client = Client(port)
                barrier.wait(10)
                bodies = []
                for _ in range(STRESS_REQUESTS):
                    resp = client.get("/stress/count")
                    assert "close" not in connection(resp)
                    bodies.append(resp.body)
                client.close()
                results[n] = bodies
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(n,)) for n in range(STRESS_CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(t.is_alive() for t in threads), "a client thread is still running"
        assert not errors, errors[:3]
        expected = [str(i).encode() for i in range(1, STRESS_REQUESTS + 1)]
        assert len(results) == STRESS_CLIENTS
        for bodies in results.values():
            assert bodies == expected
