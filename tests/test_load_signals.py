"""Drain on a signal: the handler chain in-process, then real servers stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, MutableMapping
from types import FrameType
from typing import Any

import pytest

import connmw
from connmw import ConnectionMiddleware, WSGIConnectionMiddleware, drain_on_signal
from tests import wire
from tests.apps import raw_asgi, raw_wsgi
from tests.servers import ROOT, free_port, gunicorn_argv, stop_process, wait_for_port

SIG = signal.SIGUSR1


class Target:
    """Anything with drain(window)."""

    def __init__(self) -> None:
        self.windows: list[float] = []

    def drain(self, window: float = 0.0) -> None:
        self.windows.append(window)


class Broken:
    def drain(self, window: float = 0.0) -> None:
        raise RuntimeError("boom")


@pytest.fixture
def previous() -> Iterator[list[int]]:
    """A Python handler for SIG that records calls; the original is restored after."""
    calls: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        calls.append(signum)

    old = signal.signal(SIG, handler)
    try:
        yield calls
    finally:
        signal.signal(SIG, old)


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)  # the main thread runs Python code: pending handlers run
    return bool(predicate())


# -- in-process -----------------------------------------------------------------------


def test_grace_zero_drains_then_hands_over_at_once(previous: list[int]) -> None:
    target = Target()
    hook = drain_on_signal(target, grace=0, window=2.5, signals=[SIG])
    assert signal.getsignal(SIG) == hook._on_signal
    signal.raise_signal(SIG)
    assert target.windows == [2.5]
    assert previous == [SIG]
    assert hook.fired
    assert hook.handed_over
    # A later signal goes straight through; drain() is not called again.
    signal.raise_signal(SIG)
    assert previous == [SIG, SIG]
    assert target.windows == [2.5]


def test_grace_keeps_serving_then_hands_over_in_the_main_thread(previous: list[int]) -> None:
    a, b = Target(), Target()
    seen_threads: list[str] = []
    hook = drain_on_signal([a, b], grace=0.3, signals=[SIG])
    # Record in which thread the previous handler runs.
    real = hook._previous[SIG]
    assert callable(real)

    def spy(signum: int, frame: FrameType | None) -> None:
        seen_threads.append(threading.current_thread().name)
        real(signum, frame)

    hook._previous[SIG] = spy
    started = time.monotonic()
    signal.raise_signal(SIG)
    assert a.windows == [0.0]
    assert b.windows == [0.0]
    assert previous == []  # still in the grace period
    assert not hook.handed_over
    assert wait_until(lambda: previous == [SIG])
    assert time.monotonic() - started >= 0.25
    assert hook.handed_over
    assert seen_threads == [threading.main_thread().name]


def test_second_signal_during_grace_hands_over_at_once(previous: list[int]) -> None:
    target = Target()
    hook = drain_on_signal(target, grace=30, signals=[SIG])
    signal.raise_signal(SIG)
    assert previous == []
    assert hook._timer is not None
    signal.raise_signal(SIG)
    assert previous == [SIG]
    assert hook._timer is None
    assert target.windows == [0.0]


def test_previous_ignore_and_default(previous: list[int]) -> None:
    signal.signal(SIG, signal.SIG_IGN)
    hook = drain_on_signal(Target(), grace=0, signals=[SIG])
    signal.raise_signal(SIG)  # handed to SIG_IGN: nothing happens
    assert hook.handed_over
    assert signal.getsignal(SIG) == hook._on_signal
    # SIGWINCH's default action is to ignore it: the SIG_DFL branch runs safely.
    old = signal.signal(signal.SIGWINCH, signal.SIG_DFL)
    try:
        hook2 = drain_on_signal(Target(), grace=0, signals=[signal.SIGWINCH])
        signal.raise_signal(signal.SIGWINCH)
        assert hook2.handed_over
        assert signal.getsignal(signal.SIGWINCH) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGWINCH, old)


def test_install_is_idempotent_and_rechains_over_a_later_handler(previous: list[int]) -> None:
    target = Target()
    hook = drain_on_signal(target, grace=0, signals=[SIG])
    assert hook.install()
    later: list[int] = []
    signal.signal(SIG, lambda s, f: later.append(s))  # a server installs its own
    assert hook.install()
    signal.raise_signal(SIG)
    assert later == [SIG]
    assert previous == []
    hook.uninstall()
    assert signal.getsignal(SIG) != hook._on_signal
    # uninstall() leaves alone a handler installed over connmw's.
    hook.install()
    mine = signal.signal(SIG, signal.SIG_IGN)
    assert mine == hook._on_signal
    hook.uninstall()
    assert signal.getsignal(SIG) == signal.SIG_IGN


def test_a_failing_drain_is_logged_and_the_signal_still_goes_on(
    previous: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    target = Target()
    drain_on_signal([Broken(), target], grace=0, signals=[SIG])
    with caplog.at_level(logging.ERROR, logger="connmw"):
        signal.raise_signal(SIG)
    assert target.windows == [0.0]
    assert previous == [SIG]
    assert "drain() of" in caplog.text


def test_install_outside_the_main_thread_does_nothing(previous: list[int]) -> None:
    hook = drain_on_signal(Target(), grace=0, signals=[SIG])
    hook.uninstall()
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(hook.install()))
    thread.start()
    thread.join(5)
    assert results == [False]
    assert signal.getsignal(SIG) != hook._on_signal


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        pytest.param((object(),), {}, TypeError, id="no-drain"),
        pytest.param(([],), {}, ValueError, id="empty"),
        pytest.param((Target(),), {"grace": -1}, ValueError, id="grace-negative"),
        pytest.param((Target(),), {"grace": True}, ValueError, id="grace-bool"),
        pytest.param((Target(),), {"window": float("inf")}, ValueError, id="window-inf"),
        pytest.param((Target(),), {"signals": []}, ValueError, id="no-signals"),
    ],
)
def test_bad_arguments(args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        drain_on_signal(*args, **kwargs)


def test_asyncio_loop_handlers_are_chained_on_the_loop() -> None:
    """hypercorn (--workers 0) and granian install theirs with loop.add_signal_handler."""
    target = Target()
    stopped: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def server_handler() -> None:
            stopped.append("server")
            done.set()

        loop.add_signal_handler(SIG, server_handler)
        try:
            hook = drain_on_signal(target, grace=0.2, signals=[SIG])
            assert hook.install()
            assert hook.install()  # already chained
            signal.raise_signal(SIG)
            await asyncio.sleep(0.05)
            assert target.windows == [0.0]
            assert stopped == []
            await asyncio.wait_for(done.wait(), 5)
            assert hook.handed_over
            # A second signal (after hand-over) goes straight through.
            done.clear()
            signal.raise_signal(SIG)
            await asyncio.wait_for(done.wait(), 5)
            assert stopped == ["server", "server"]
            hook.uninstall()
            # The server's own handler is back on the loop.
            done.clear()
            signal.raise_signal(SIG)
            await asyncio.wait_for(done.wait(), 5)
            assert target.windows == [0.0]
        finally:
            loop.remove_signal_handler(SIG)

    asyncio.run(main())


def test_loop_grace_zero_and_second_signal() -> None:
    target = Target()
    stopped: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(SIG, stopped.append, 1)
        try:
            hook = drain_on_signal(target, grace=0, signals=[SIG])
            signal.raise_signal(SIG)
            for _ in range(100):
                if stopped:
                    break
                await asyncio.sleep(0.01)
            assert stopped == [1]
            hook2 = drain_on_signal(Target(), grace=30, signals=[SIG])
            signal.raise_signal(SIG)
            await asyncio.sleep(0.05)
            assert hook2.fired
            assert stopped == [1]
            signal.raise_signal(SIG)  # a second signal does not wait for the grace
            for _ in range(100):
                if len(stopped) == 2:
                    break
                await asyncio.sleep(0.01)
            assert stopped == [1, 1]
            assert hook.handed_over
        finally:
            loop.remove_signal_handler(SIG)

    asyncio.run(main())


def test_a_loop_handler_that_cannot_be_chained_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()
    try:
        loop.add_signal_handler(SIG, lambda: None)
        hook = connmw.SignalDrain((Target(),), grace=1, window=0, signals=(SIG,))
        # No loop running here: only the loop's placeholder handler is visible.
        with caplog.at_level(logging.WARNING, logger="connmw"):
            assert not hook.install()
            assert not hook.install()
        assert caplog.text.count("cannot be chained") == 1
        loop.remove_signal_handler(SIG)
    finally:
        loop.close()


def test_asgi_middleware_reinstalls_at_lifespan_startup_and_first_request(previous: list[int]) -> None:
    mw = ConnectionMiddleware(raw_asgi)
    inner = mw.app
    hook = drain_on_signal(mw, grace=0, signals=[SIG])
    assert mw.app is not inner

    later: list[int] = []

    async def main() -> None:
        signal.signal(SIG, lambda s, f: later.append(s))  # the server installs its handler
        messages: list[MutableMapping[str, Any]] = [
            {"type": "lifespan.startup"},
            {"type": "lifespan.shutdown"},
        ]
        sent: list[MutableMapping[str, Any]] = []

        async def receive() -> MutableMapping[str, Any]:
            return messages.pop(0)

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        await mw({"type": "lifespan"}, receive, send)
        assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
        assert signal.getsignal(SIG) == hook._on_signal
        # The first request re-checks and unwraps.
        signal.signal(SIG, lambda s, f: later.append(-s))
        http: list[MutableMapping[str, Any]] = []
        body = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive_http() -> MutableMapping[str, Any]:
            return body.pop(0) if body else {"type": "http.disconnect"}

        async def send_http(message: MutableMapping[str, Any]) -> None:
            http.append(message)

        scope = {"type": "http", "http_version": "1.1", "method": "GET", "path": "/", "headers": []}
        await mw(scope, receive_http, send_http)
        assert http[0]["status"] == 200
        assert signal.getsignal(SIG) == hook._on_signal
        assert mw.app is inner
        # An installer someone kept a reference to just passes requests on.
        installer = connmw._signals._Installer(mw, inner, hook)
        mw.app = outer = connmw._signals._Installer(mw, installer, hook)
        outer.done = True
        body.append({"type": "http.request", "body": b"", "more_body": False})
        await mw(dict(scope), receive_http, send_http)
        assert installer.done
        assert mw.app is outer  # not ours to unwrap
        assert http[-2]["status"] == 200

    asyncio.run(main())
    signal.raise_signal(SIG)
    assert later == [-SIG]
    assert previous == []


# -- real servers -----------------------------------------------------------------------


def asgi_factory() -> ConnectionMiddleware:
    """``uvicorn --factory tests.test_load_signals:asgi_factory``"""
    app = ConnectionMiddleware(raw_asgi)
    drain_on_signal(app, grace=float(os.environ["CONNMW_TEST_GRACE"]))
    return app


def fastapi_factory() -> Any:
    """``uvicorn --factory tests.test_load_signals:fastapi_factory``: the README's recipe."""
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    from connmw.contrib.starlette import install

    app = FastAPI()

    @app.get("/count")
    def count() -> PlainTextResponse:
        return PlainTextResponse("-")

    @app.get("/")
    def index() -> PlainTextResponse:
        return PlainTextResponse("hello")

    install(app)
    drain_on_signal(app, grace=float(os.environ["CONNMW_TEST_GRACE"]))
    return app


def wsgi_factory() -> WSGIConnectionMiddleware:
    """``gunicorn 'tests.test_load_signals:wsgi_factory()'``"""
    app = WSGIConnectionMiddleware(raw_wsgi)
    drain_on_signal(app, grace=float(os.environ["CONNMW_TEST_GRACE"]))
    return app


GRACE = 2.0


@contextlib.contextmanager
def started(argv: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["CONNMW_TEST_GRACE"] = str(GRACE)
    proc = subprocess.Popen(
        argv, cwd=str(ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        wait_for_port(port, 30, proc)
        yield proc
    finally:
        stop_process(proc)


def _argv(server: str, port: int) -> list[str]:
    if server.startswith("uvicorn"):
        factory = "fastapi_factory" if server == "uvicorn-fastapi" else "asgi_factory"
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            f"tests.test_load_signals:{factory}",
            "--port",
            str(port),
            "--log-level",
            "info",
        ]
    return gunicorn_argv(
        "tests.test_load_signals:wsgi_factory()", port, graceful_timeout=20, log_level="info"
    )


def sigterm_during_keep_alive(
    proc: subprocess.Popen[bytes],
    port: int,
    clients: int,
    first: str,
    new_connection: bool = False,
    settle: float = 0.3,
) -> tuple[int, str, float]:
    """Open ``clients`` keep-alive connections (``GET first`` on each), send SIGTERM,
    then check on the wire that, during the grace period, each keep-alive client's
    next request is answered with ``Connection: close`` and the connection really
    closes (and, with ``new_connection``, that a new client is still served and told
    to close). ``settle``: seconds for the signal to reach the process that serves.
    Returns the exit code, the server's output and the seconds from the signal to
    the exit."""
    readers: list[wire.Reader] = []
    try:
        for _ in range(clients):
            reader = wire.Reader(wire.connect(port))
            reader.sock.sendall(wire.build_request("GET", first))
            resp = reader.read_response()
            assert resp.status == 200
            assert "close" not in ",".join(resp.lines("connection")).lower()
            readers.append(reader)
        sent_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(settle)
        for reader in readers:
            reader.sock.sendall(wire.build_request("GET", "/"))
            resp = reader.read_response()
            assert (resp.status, resp.body) == (200, b"hello")
            assert resp.lines("connection") == ["close"]
            assert reader.closed(2.0)
            reader.sock.close()  # as a client does on the server's FIN (gunicorn lingers until then)
        if new_connection:
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
    return code, out, time.monotonic() - sent_at


@pytest.mark.server
@pytest.mark.parametrize("server", ["uvicorn", "uvicorn-fastapi", "gunicorn-gthread"])
def test_sigterm_drains_keep_alive_clients_then_the_server_stops_gracefully(server: str) -> None:
    port = free_port()
    with started(_argv(server, port), port) as proc:
        code, out, waited = sigterm_during_keep_alive(proc, port, 4, "/count")
    assert waited >= GRACE * 0.9, out
    assert "draining for 2 s" in out
    if server.startswith("uvicorn"):
        # uvicorn re-raises a captured SIGTERM once its shutdown is done, with the
        # default action restored: it exits by that signal, with or without connmw.
        assert code in (0, -signal.SIGTERM), out
        # uvicorn's own graceful shutdown ran after the grace period.
        assert "Application shutdown complete" in out, out
        assert "Finished server process" in out, out
    else:
        assert code == 0, out
        assert "Worker exiting" in out, out
        assert "Shutting down: Master" in out, out


def test_uninstall_stops_the_asgi_middleware_from_installing_again(previous: list[int]) -> None:
    mw = ConnectionMiddleware(raw_asgi)
    hook = drain_on_signal(mw, grace=0, signals=[SIG])
    hook.uninstall()
    scope = {"type": "http", "http_version": "1.1", "method": "GET", "path": "/", "headers": []}
    body = [{"type": "http.request", "body": b"", "more_body": False}]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return body.pop(0) if body else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(mw(scope, receive, send))
    assert sent[0]["status"] == 200
    assert signal.getsignal(SIG) != hook._on_signal
    assert hook.install()  # asked for explicitly, it installs again
    assert signal.getsignal(SIG) == hook._on_signal
    hook.uninstall()


def test_a_forked_gunicorn_worker_installs_again_after_its_own_handlers(
    previous: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """gunicorn --preload: the worker's init_signals replaces connmw's handler; connmw,
    told of the fork, installs again right after it."""
    import gunicorn.workers.base as base

    from connmw.servers.gunicorn import after_worker_signals

    worker_handled: list[int] = []

    def init_signals(self: object) -> None:  # what a worker does: its own handler
        signal.signal(SIG, lambda s, f: worker_handled.append(s))

    monkeypatch.setattr(base.Worker, "init_signals", init_signals)
    target = Target()
    hook = drain_on_signal(target, grace=0, signals=[SIG])
    gone = drain_on_signal(Target(), grace=0, signals=[SIG])
    gone.uninstall()
    connmw._signals._after_fork_in_child()  # what os.fork() runs in the child
    assert base.Worker.init_signals is not init_signals
    base.Worker.init_signals(object())
    assert signal.getsignal(SIG) == hook._on_signal
    signal.raise_signal(SIG)
    assert target.windows == [0.0]
    assert worker_handled == [SIG]  # then handed over to the worker's handler
    hook.uninstall()
    monkeypatch.delitem(sys.modules, "gunicorn.workers.base")
    assert after_worker_signals(lambda: None) is False


def test_in_a_hypercorn_worker_process_drain_on_signal_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import multiprocessing

    import hypercorn.asyncio.run  # noqa: F401  # what a hypercorn worker runs from

    monkeypatch.setattr(multiprocessing, "parent_process", lambda: object())
    with pytest.raises(RuntimeError, match=r"Run hypercorn --workers 0"):
        drain_on_signal(Target(), grace=0, signals=[SIG])
    monkeypatch.setattr(multiprocessing, "parent_process", lambda: None)
    drain_on_signal(Target(), grace=0, signals=[SIG]).uninstall()
