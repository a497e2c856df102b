"""``decision_header`` on the wire, on every WSGI server connmw knows.

Each server runs the test app wrapped with ``decision_header="x-connmw"`` (in this
process where the server can run in a thread, through ``CONNMW_TEST_OPTIONS`` in
the server's process otherwise). Three requests, each on a fresh connection: a
plain HTTP/1.1 request (kept, or closed by a server that closes every
connection), a route a rule closes, and an HTTP/1.0 request. Every response must
carry exactly one ``x-connmw`` line, saying what connmw decided.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest

from tests import servers
from tests.apps import raw_wsgi
from tests.wire import Reader, build_request, connect

pytestmark = [pytest.mark.server, pytest.mark.timeout(60)]

OPTIONS = {"decision_header": "x-connmw"}


def _app() -> object:
    from connmw import Rule, WSGIConnectionMiddleware

    return WSGIConnectionMiddleware(raw_wsgi, rules=[Rule("/rule/*")], decision_header="x-connmw")


@contextlib.contextmanager
def _process(argv: Callable[[int], list[str]]) -> Iterator[int]:
    port = servers.free_port()
    env = {"CONNMW_TEST_OPTIONS": json.dumps(OPTIONS)}
    with servers.subprocess_server(argv(port), port, env=env):
        yield port


def _gunicorn(worker: str) -> Callable[[], AbstractContextManager[int]]:
    return lambda: _process(lambda port: servers.gunicorn_argv("tests.apps:wsgi_app", port, worker=worker))


def _uwsgi(kind: str) -> Callable[[], AbstractContextManager[int]]:
    return lambda: _process(lambda port: servers.uwsgi_argv("tests.apps:wsgi_app", port, kind))


#: server -> (how to start it, what connmw decides for a plain HTTP/1.1 request there)
SERVERS: dict[str, tuple[Callable[[], AbstractContextManager[int]], str]] = {
    "waitress": (lambda: servers.waitress_thread(_app()), "keep"),
    "wsgiref": (lambda: servers.wsgiref_thread(_app()), "keep"),
    "werkzeug": (lambda: servers.werkzeug_thread(_app()), "keep"),
    "cheroot": (lambda: servers.cheroot_thread(_app()), "keep"),
    "hypercorn-wsgi": (lambda: servers.hypercorn_thread(_app(), mode="wsgi"), "keep"),
    "gunicorn-gthread": (_gunicorn("gthread"), "keep"),
    "gunicorn-sync": (_gunicorn("sync"), "keep"),
    "granian-wsgi": (
        lambda: _process(lambda port: servers.granian_argv("tests.apps:wsgi_app", port, interface="wsgi")),
        "keep",
    ),
    "gevent-pywsgi": (
        lambda: _process(lambda port: servers.gevent_argv("tests.apps:wsgi_app", port)),
        "keep",
    ),
    "uwsgi-http": (_uwsgi("http-socket"), "close; reason=server"),
    "uwsgi-http11": (_uwsgi("http11-socket"), "keep"),
}


def _decision(port: int, path: str, version: str) -> list[str]:
    sock = connect(port)
    try:
        sock.sendall(build_request("GET", path, version=version))
        resp = Reader(sock).read_response()
    finally:
        sock.close()
    assert resp.status == 200, resp.raw_head
    return resp.lines("x-connmw")


@pytest.mark.parametrize("name", list(SERVERS))
def test_the_decision_header_is_sent_on_every_known_wsgi_server(name: str) -> None:
    start, plain = SERVERS[name]
    if name.startswith("uwsgi") and servers.uwsgi_available() is not None:
        pytest.skip(str(servers.uwsgi_available()))
    with start() as port:
        assert _decision(port, "/", "HTTP/1.1") == [plain]
        assert _decision(port, "/rule/x", "HTTP/1.1") == ["close; reason=rule"]
        assert _decision(port, "/", "HTTP/1.0") == ["close; reason=http-1.0"]
