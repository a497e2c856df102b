"""``keep_alive_timeout`` on the WSGI servers connmw reaches through the headers it
passes to ``start_response`` (granian, hypercorn, uWSGI's HTTP/1.1 socket, gevent),
on the wire: one ``Keep-Alive`` line on a kept response, with the remaining request
count where the server gives a connection identity, none on a closing one."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest

from connmw import Rule, WSGIConnectionMiddleware
from tests import servers, wire
from tests.apps import raw_wsgi

pytestmark = [pytest.mark.server, pytest.mark.timeout(60)]

OPTIONS = {"keep_alive_timeout": 3, "max_requests_per_connection": 3}


@contextlib.contextmanager
def _process(argv: Callable[[int], list[str]]) -> Iterator[int]:
    port = servers.free_port()
    with servers.subprocess_server(argv(port), port, env={"CONNMW_TEST_OPTIONS": json.dumps(OPTIONS)}):
        yield port


def _hypercorn() -> AbstractContextManager[int]:
    app = WSGIConnectionMiddleware(
        raw_wsgi, rules=[Rule("/rule/*")], keep_alive_timeout=3, max_requests_per_connection=3
    )
    return servers.hypercorn_thread(app, mode="wsgi")


#: server -> (how to start it, the first response's Keep-Alive value)
SERVERS: dict[str, tuple[Callable[[], AbstractContextManager[int]], str]] = {
    "granian-wsgi": (
        lambda: _process(lambda port: servers.granian_argv("tests.apps:wsgi_app", port, interface="wsgi")),
        "timeout=3",  # no connection identity: no count
    ),
    "hypercorn-wsgi": (_hypercorn, "timeout=3, max=2"),
    "uwsgi-http11": (
        lambda: _process(lambda port: servers.uwsgi_argv("tests.apps:wsgi_app", port, "http11-socket")),
        "timeout=3",  # no REMOTE_PORT: no count
    ),
    "gevent-pywsgi": (
        lambda: _process(lambda port: servers.gevent_argv("tests.apps:wsgi_app", port)),
        "timeout=3, max=2",
    ),
}


@pytest.mark.parametrize("name", list(SERVERS))
def test_keep_alive_goes_out_once_on_kept_responses(name: str) -> None:
    start, first = SERVERS[name]
    with start() as port:
        reader = wire.Reader(wire.connect(port))
        try:
            reader.sock.sendall(wire.build_request("GET", "/"))
            resp = reader.read_response()
            assert resp.lines("keep-alive") == [first], resp.raw_head
            assert resp.lines("connection") == [] or [v.lower() for v in resp.lines("connection")] == [
                "keep-alive"
            ], resp.raw_head
            reader.sock.sendall(wire.build_request("GET", "/rule/x"))
            resp = reader.read_response()
            assert resp.lines("keep-alive") == [], resp.raw_head
            assert [v.lower() for v in resp.lines("connection")] == ["close"], resp.raw_head
            assert reader.closed(3.0)
        finally:
            reader.sock.close()
