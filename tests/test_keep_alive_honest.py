"""Keep-Alive is never longer than the server's idle timeout: ``keep_alive_timeout="auto"``
advertises the server's own value, a longer explicit value is lowered with one warning.

Checked on the wire: the advertised ``timeout=N`` equals the server's setting, a
request sent after N - 0.4 s of idleness is still answered, and ``connmw probe``
finds no violation.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from connmw import ConnectionMiddleware, WSGIConnectionMiddleware
from connmw._engine import Engine, RequestFacts
from connmw._policy import Options
from connmw.cli import main
from connmw.servers import asgi_server_profile, wsgi_server
from tests import wire
from tests.apps import raw_asgi, raw_wsgi
from tests.servers import (
    daphne_argv,
    free_port,
    granian_argv,
    gunicorn_argv,
    hypercorn_thread,
    subprocess_server,
    uvicorn_thread,
    uwsgi_argv,
    uwsgi_available,
    waitress_thread,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

IDLE = 2  # the servers' idle timeout in these tests (gunicorn's default)


# -- the engine, with a stand-in server --------------------------------------------------


class Reader:
    """A server profile whose idle timeout is given; counts the reads."""

    idle_setting = "test --idle"

    def __init__(self, idle: float | None) -> None:
        self.idle = idle
        self.reads = 0

    def idle_timeout(self, handle: Any) -> float | None:
        self.reads += 1
        return self.idle


def value(options: dict[str, Any], idle: float | None, key: Any = None) -> bytes | None:
    engine = Engine(Options(**options))
    facts = RequestFacts(11, "GET", "/")
    engine.begin(facts, None, key)
    return engine.keep_alive_value(facts, Reader(idle), None)


@pytest.mark.parametrize(
    ("options", "idle", "expected"),
    [
        pytest.param({"keep_alive_timeout": "auto"}, 5.0, b"timeout=5", id="auto-reads-the-server"),
        pytest.param({"keep_alive_timeout": "auto"}, 2.5, b"timeout=2", id="auto-rounds-down"),
        pytest.param({"keep_alive_timeout": "auto"}, None, None, id="auto-unknown-says-nothing"),
        pytest.param({"keep_alive_timeout": "auto"}, 0.0, None, id="auto-keep-alive-off"),
        pytest.param({"keep_alive_timeout": "auto"}, 0.5, None, id="auto-below-one-second"),
        pytest.param({"keep_alive_timeout": 3}, 5.0, b"timeout=3", id="explicit-below-kept"),
        pytest.param({"keep_alive_timeout": 5}, 5.0, b"timeout=5", id="explicit-equal-kept"),
        pytest.param({"keep_alive_timeout": 5}, None, b"timeout=5", id="explicit-unknown-server-kept"),
        pytest.param({"keep_alive_timeout": 5}, 2.0, b"timeout=2", id="explicit-above-lowered"),
        pytest.param(
            {"keep_alive_timeout": "auto", "max_requests_per_connection": 3},
            120.0,
            b"timeout=120, max=2",
            id="auto-with-a-cap",
        ),
        pytest.param({}, 5.0, None, id="off"),
    ],
)
def test_the_advertised_timeout(options: dict[str, Any], idle: float | None, expected: bytes | None) -> None:
    key = ("127.0.0.1", 1) if "max_requests_per_connection" in options else None
    assert value(options, idle, key) == expected


def test_a_lowered_value_warns_once_naming_both_numbers(caplog: pytest.LogCaptureFixture) -> None:
    engine = Engine(Options(keep_alive_timeout=5))
    reader = Reader(2.0)
    with caplog.at_level(logging.WARNING, logger="connmw"):
        for _ in range(3):
            facts = RequestFacts(11, "GET", "/")
            assert engine.keep_alive_value(facts, reader, None) == b"timeout=2"
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "connmw: keep_alive_timeout=5 is longer than the server's idle timeout (test --idle = 2 s); "
        'advertising Keep-Alive: timeout=2 instead. Set keep_alive_timeout to at most 2, or to "auto".'
    ]


@pytest.mark.parametrize(
    ("reader", "named"),
    [(None, "not one connmw knows"), (Reader(None), "test")],
    ids=["no-server", "unreadable"],
)
def test_auto_says_once_when_it_cannot_read_the_server(
    caplog: pytest.LogCaptureFixture, reader: Reader | None, named: str
) -> None:
    if reader is not None:
        reader.name = "test"  # type: ignore[attr-defined]
    engine = Engine(Options(keep_alive_timeout="auto"))
    with caplog.at_level(logging.WARNING, logger="connmw"):
        for _ in range(3):
            assert engine.keep_alive_value(RequestFacts(11, "GET", "/"), reader, None) is None
    assert [r.getMessage() for r in caplog.records] == [
        f'connmw: keep_alive_timeout="auto" cannot read the idle timeout of this server ({named}); no '
        "Keep-Alive is advertised. To advertise one, set keep_alive_timeout to a number of seconds no "
        "longer than the server's idle timeout."
    ]


def test_the_server_is_read_once_per_tracked_connection() -> None:
    engine = Engine(Options(keep_alive_timeout="auto", max_requests_per_connection=100))
    reader = Reader(5.0)
    seen = []
    for key in ("a", "a", "a", "b"):
        facts = RequestFacts(11, "GET", "/")
        engine.begin(facts, None, key)
        seen.append(engine.keep_alive_value(facts, reader, None))
    assert seen == [b"timeout=5, max=99", b"timeout=5, max=98", b"timeout=5, max=97", b"timeout=5, max=99"]
    assert reader.reads == 2


@pytest.mark.parametrize(
    ("given", "expected"),
    [("auto", "auto"), (" AUTO ", "auto"), ("7", 7.0), ("none", None)],
)
def test_keep_alive_timeout_from_settings(given: str, expected: object) -> None:
    assert Options.from_mapping({"keep_alive_timeout": given}).keep_alive_timeout == expected


@pytest.mark.parametrize("bad", ["Auto", "5s", ""])
def test_keep_alive_timeout_rejects_other_words(bad: str) -> None:
    with pytest.raises(
        ValueError, match=r"keep_alive_timeout must be a number of seconds \(>= 1\) or 'auto'"
    ):
        Options(keep_alive_timeout=bad)  # type: ignore[arg-type]


# -- real servers ------------------------------------------------------------------------


def make_asgi() -> Any:
    """``/auto/...`` under ``keep_alive_timeout="auto"``, ``/five/...`` under ``5``."""
    apps = {
        "auto": ConnectionMiddleware(raw_asgi, keep_alive_timeout="auto"),
        "five": ConnectionMiddleware(raw_asgi, keep_alive_timeout=5),
    }

    async def dispatch(scope: Any, receive: Any, send: Any) -> None:
        head, _, tail = scope["path"][1:].partition("/")
        await apps[head]({**scope, "path": "/" + tail}, receive, send)

    return dispatch


def make_wsgi() -> Any:
    """``gunicorn 'tests.test_keep_alive_honest:make_wsgi()'``: as :func:`make_asgi`."""
    apps = {
        "auto": WSGIConnectionMiddleware(raw_wsgi, keep_alive_timeout="auto"),
        "five": WSGIConnectionMiddleware(raw_wsgi, keep_alive_timeout=5),
    }

    def dispatch(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        head, _, tail = environ.get("PATH_INFO", "/")[1:].partition("/")
        environ["PATH_INFO"] = "/" + tail
        return apps[head](environ, start_response)

    return dispatch


@contextlib.contextmanager
def gunicorn_default_keep_alive(output: list[str] | None = None) -> Iterator[int]:
    """gunicorn gthread with its default ``--keep-alive 2``; its output goes to ``output``."""
    port = free_port()
    argv = gunicorn_argv("tests.test_keep_alive_honest:make_wsgi()", port, keep_alive=IDLE)
    with subprocess_server(argv, port) as proc:
        yield port
        if output is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
            assert proc.stdout is not None
            output.append(proc.stdout.read().decode(errors="replace"))


SERVERS: dict[str, Callable[[], contextlib.AbstractContextManager[int]]] = {
    "uvicorn-h11": lambda: uvicorn_thread(make_asgi(), timeout_keep_alive=IDLE),
    "uvicorn-httptools": lambda: uvicorn_thread(make_asgi(), http="httptools", timeout_keep_alive=IDLE),
    "hypercorn": lambda: hypercorn_thread(make_asgi(), keep_alive=IDLE),
    "hypercorn-wsgi": lambda: hypercorn_thread(make_wsgi(), keep_alive=IDLE, mode="wsgi"),
    "waitress": lambda: waitress_thread(make_wsgi(), channel_timeout=IDLE, cleanup_interval=1),
    "gunicorn-gthread": gunicorn_default_keep_alive,
}


@pytest.fixture(scope="module")
def ports() -> Iterator[dict[str, int]]:
    """Every server of :data:`SERVERS`, each started once for the module."""
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(start()) for name, start in SERVERS.items()}


#: Per server: (prefix, first response, its still open connection) for each prefix, and
#: when the last of those responses was read (the connections are idle from then on).
Idle = dict[str, tuple[list[tuple[str, wire.Response, wire.Reader]], float]]


@pytest.fixture(scope="module")
def idle(ports: dict[str, int]) -> Iterator[Idle]:
    """One connection per prefix on every server, opened together and left idle, so the
    servers' idle periods run at the same time rather than one after another."""
    opened: Idle = {}
    try:
        for name, port in ports.items():
            conns = []
            for prefix in ("auto", "five"):
                resp, _, reader = wire.exchange(port, path=f"/{prefix}/", check_close=False)
                conns.append((prefix, resp, reader))
            opened[name] = (conns, time.monotonic())
        yield opened
    finally:
        for conns, _ in opened.values():
            for _, _, reader in conns:
                reader.sock.close()


@pytest.mark.server
@pytest.mark.parametrize("name", list(SERVERS))
def test_advertises_the_servers_idle_timeout_and_keeps_it(idle: Idle, name: str) -> None:
    conns, since = idle[name]
    for prefix, resp, _ in conns:
        assert resp.status == 200
        assert resp.lines("keep-alive") == [f"timeout={IDLE}"], prefix
    # Idle for nearly the advertised time: the server still answers. (The first server's
    # test sleeps; by then the others' connections have been idle as long, or nearly.)
    time.sleep(max(0.0, since + IDLE - 0.4 - time.monotonic()))
    for prefix, _, reader in conns:
        assert wire.still_open(reader, f"/{prefix}/"), prefix


@pytest.mark.server
@pytest.mark.parametrize("prefix", ["auto", "five"])
@pytest.mark.parametrize("name", list(SERVERS))
def test_probe_finds_no_violation(
    ports: dict[str, int], name: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{ports[name]}/{prefix}/"
    code = main(["probe", url, "--json", "--concurrency", "6", "--close-wait", "0.5"])
    report = json.loads(capsys.readouterr().out)
    findings = [f["code"] for case in report["cases"] for f in case["findings"]]
    assert report["summary"]["violations"] == 0, findings
    assert code == 0
    ka = {case["id"]: case["headers"]["keep-alive"] for case in report["cases"]}
    assert ka["http11"] == [f"timeout={IDLE}"]


@pytest.mark.server
def test_gunicorn_warns_once_about_the_lowered_value(capsys: pytest.CaptureFixture[str]) -> None:
    output: list[str] = []
    with gunicorn_default_keep_alive(output) as port:
        for _ in range(3):
            resp, _, reader = wire.exchange(port, path="/five/", check_close=False)
            reader.sock.close()
            assert resp.lines("keep-alive") == [f"timeout={IDLE}"]
        # The probe waits past the idle timeout: gunicorn closes no earlier than advertised.
        url = f"http://127.0.0.1:{port}/five/"
        code = main(["probe", url, "--json", "--concurrency", "6", "--close-wait", str(IDLE + 0.6)])
        report = json.loads(capsys.readouterr().out)
        http11 = next(case for case in report["cases"] if case["id"] == "http11")
        assert http11["closed"] is True, http11
        assert http11["closed_after_ms"] >= IDLE * 1000 - 100
        assert report["summary"]["violations"] == 0, report
        assert code == 0
    expected = (
        "connmw: keep_alive_timeout=5 is longer than the server's idle timeout "
        f"(gunicorn --keep-alive = {IDLE} s); advertising Keep-Alive: timeout={IDLE} instead."
    )
    assert output[0].count(expected) == 1, output[0]


# -- what connmw reads on the other servers ----------------------------------------------


async def report_idle_asgi(scope: Any, receive: Any, send: Any) -> None:
    """Answers with the idle timeout connmw reads from the server behind ``send``."""
    if scope["type"] != "http":
        return
    profile = asgi_server_profile(send)
    body = f"{profile.name} {profile.idle_timeout(send)}".encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


def report_idle_wsgi(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    server, handle = wsgi_server(start_response, write)
    return [f"{server.name} {server.idle_timeout(handle)}".encode()]


def body_of(port: int) -> str:
    resp, _, reader = wire.exchange(port, check_close=False)
    reader.sock.close()
    return resp.body.decode()


@pytest.mark.server
def test_cheroot_timeout_is_read() -> None:
    from cheroot import wsgi as cheroot_wsgi

    server = cheroot_wsgi.Server(("127.0.0.1", 0), report_idle_wsgi, numthreads=2, timeout=7)
    server.prepare()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        assert body_of(server.bind_addr[1]) == "cheroot 7.0"
    finally:
        server.stop()
        thread.join(10)


@pytest.mark.server
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(daphne_argv, "daphne 60.0", id="daphne"),
        pytest.param(granian_argv, "granian None", id="granian-unreadable"),
    ],
)
def test_asgi_subprocess_servers(argv: Callable[[str, int], list[str]], expected: str) -> None:
    port = free_port()
    with subprocess_server(argv("tests.test_keep_alive_honest:report_idle_asgi", port), port):
        assert body_of(port) == expected


def test_unknown_servers_and_odd_settings_read_as_unknown() -> None:
    from connmw.servers import UNKNOWN_ASGI, UNKNOWN_WSGI
    from connmw.servers.base import number
    from connmw.servers.daphne import DAPHNE

    async def send(message: Any) -> None:
        return None

    assert UNKNOWN_ASGI.idle_timeout(send) is None
    assert UNKNOWN_WSGI.idle_timeout(object()) is None
    assert DAPHNE.idle_timeout(send) is None
    assert [number(v) for v in (5, 2.5, True, float("nan"), "5", None)] == [5.0, 2.5, None, None, None, None]


#: What uWSGI imports (``--callable`` names an attribute, not a call).
uwsgi_app = make_wsgi()


@pytest.mark.server
@pytest.mark.skipif(uwsgi_available() is not None, reason=str(uwsgi_available()))
def test_uwsgi_socket_timeout_is_the_idle_timeout() -> None:
    port = free_port()
    argv = [*uwsgi_argv("tests.test_keep_alive_honest:uwsgi_app", port), "--socket-timeout", str(IDLE)]
    # Two threads in the one worker: a thread serves one connection at a time, so both
    # connections are idle at once and one wait covers both.
    argv += ["--threads", "2"]
    with subprocess_server(argv, port) as proc:
        readers = []
        try:
            for prefix in ("auto", "five"):
                resp, _, reader = wire.exchange(port, path=f"/{prefix}/", check_close=False)
                readers.append((prefix, reader))
                assert resp.lines("keep-alive") == [f"timeout={IDLE}"], prefix
            time.sleep(IDLE - 0.4)
            for prefix, reader in readers:
                assert wire.still_open(reader, f"/{prefix}/"), prefix
        finally:
            for _, reader in readers:
                reader.sock.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        assert proc.stdout is not None
        output = proc.stdout.read().decode(errors="replace")
    assert (
        output.count(f"(uwsgi --socket-timeout = {IDLE} s); advertising Keep-Alive: timeout={IDLE}") == 1
    ), output


def test_the_asgi_reader_is_found_cheaply() -> None:
    from connmw.servers import UNKNOWN_ASGI, asgi_idle_reader

    async def send(message: Any) -> None:
        return None

    assert asgi_idle_reader(send) is None  # a plain function: no server object to read
    assert asgi_idle_reader(functools.partial(send)) is UNKNOWN_ASGI  # searched, as daphne's partial is


class UwsgiModule:
    """What ``uwsgi.opt`` holds, as the wire test above saw it (bytes values; a
    repeated option is a list)."""

    def __init__(self, opt: object) -> None:
        self.opt = opt


@pytest.mark.parametrize(
    ("opt", "expected"),
    [
        pytest.param({b"http11-socket": b"127.0.0.1:8000"}, 4.0, id="default"),
        pytest.param({"socket-timeout": b"2"}, 2.0, id="given"),
        pytest.param({b"socket-timeout": [b"3", b"7"]}, 7.0, id="repeated-last-wins"),
        pytest.param({"socket-timeout": []}, None, id="empty-list"),
        pytest.param({"socket-timeout": b"soon"}, None, id="not-a-number"),
        pytest.param(None, None, id="no-options"),
    ],
)
def test_uwsgi_socket_timeout_parsing(opt: object, expected: float | None) -> None:
    from connmw.servers.uwsgi import UWSGI_HTTP11

    assert UWSGI_HTTP11.idle_timeout(UwsgiModule(opt)) == expected
