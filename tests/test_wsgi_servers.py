"""The newer WSGI server profiles, in this process, through the servers' own objects
where they can run here (granian's ``Response``, hypercorn's ``WSGIWrapper``, a2wsgi's
and Starlette's bridges are real); uWSGI's module exists only inside uWSGI, so its
profile is driven with a stand-in module over a real socket pair (the wire tests
run the real server)."""

from __future__ import annotations

import logging
import socket
import sys
import types
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from werkzeug.test import create_environ

from connmw import Rule, WSGIConnectionMiddleware
from connmw.servers import uwsgi as uwsgi_profile
from connmw.servers import wsgi_server
from tests.apps import raw_wsgi

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def _mw(**options: Any) -> WSGIConnectionMiddleware:
    return WSGIConnectionMiddleware(raw_wsgi, rules=[Rule("/rule/*")], **options)


def _drain(result: Iterable[bytes]) -> bytes:
    try:
        return b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()


# -- granian ---------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "close"), [("/", False), ("/rule/x", True)])
def test_granian_gets_the_close_line_and_the_decision_header(path: str, close: bool) -> None:
    from granian.wsgi import Response

    resp = Response()  # type: ignore[no-untyped-call]
    assert _drain(_mw(decision_header="x-connmw")(create_environ(path), resp)) == b"hello"
    assert (("Connection", "close") in resp.headers) is close
    assert [v for k, v in resp.headers if k == "x-connmw"] == (["close; reason=rule"] if close else ["keep"])
    assert wsgi_server(resp, None)[0].name == "granian"


def test_no_connection_identity_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    from granian.wsgi import Response

    mw = _mw(max_requests_per_connection=2)
    environ = create_environ("/")
    environ.pop("REMOTE_PORT", None)
    with caplog.at_level(logging.WARNING, "connmw"):
        for _ in range(3):
            _drain(mw(dict(environ), Response()))  # type: ignore[no-untyped-call]
    said = [r for r in caplog.records if "connection identity" in r.getMessage()]
    assert len(said) == 1, caplog.text
    assert "max_requests_per_connection" in said[0].getMessage()


# -- hypercorn -------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "close"), [("/", False), ("/rule/x", True), ("/handler", True)])
def test_hypercorn_hands_the_close_line_to_h11(path: str, close: bool) -> None:
    from hypercorn.app_wrappers import WSGIWrapper

    sent: list[dict[str, Any]] = []
    WSGIWrapper(_mw(), 1 << 20).run_app(create_environ(path), sent.append)
    start = sent[0]
    assert start["type"] == "http.response.start"
    assert ((b"connection", b"close") in start["headers"]) is close
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"hello"


# -- gevent ----------------------------------------------------------------------------


def _gevent_handler(version: str = "HTTP/1.1") -> Any:
    """gevent's real ``WSGIHandler`` in the state its ``start_response`` needs (no socket:
    the response is not written here)."""
    from gevent.pywsgi import WSGIHandler

    handler = WSGIHandler.__new__(WSGIHandler)
    handler.request_version = version
    handler.close_connection = False
    handler.headers_sent = False
    return handler


@pytest.mark.parametrize(("path", "close"), [("/", False), ("/rule/x", True), ("/handler", True)])
def test_gevent_closes_through_its_handler(path: str, close: bool) -> None:
    handler = _gevent_handler()
    assert _drain(_mw(keep_alive_timeout=5)(create_environ(path), handler.start_response)) == b"hello"
    assert handler.close_connection is close
    assert ((b"Connection", b"close") in handler.response_headers) is close
    assert any(name == b"Keep-Alive" for name, _ in handler.response_headers) is not close
    assert wsgi_server(handler.start_response, None)[0].name == "gevent"


# -- uWSGI -----------------------------------------------------------------------------


@pytest.fixture
def uwsgi_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[types.SimpleNamespace, socket.socket]]:
    """A stand-in ``uwsgi`` module whose connection is one end of a real socket pair
    (and connmw told it runs inside uWSGI, as it finds out at import there)."""
    import connmw.wsgi

    monkeypatch.setattr(connmw.wsgi, "_UWSGI", True)
    server, client = socket.socketpair()
    module = types.SimpleNamespace(opt={b"http11-socket": b"127.0.0.1:0"}, connection_fd=server.fileno)
    sys.modules["uwsgi"] = module  # type: ignore[assignment]
    uwsgi_profile._kind.clear()
    try:
        yield module, client
    finally:
        del sys.modules["uwsgi"]
        uwsgi_profile._kind.clear()
        server.close()
        client.close()


class Spit:
    """Records what reaches uWSGI's ``start_response``; named as uWSGI's own."""

    __name__ = "uwsgi_spit"

    def __init__(self) -> None:
        self.headers: list[tuple[str, str]] = []

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.headers = headers
        return None


def _uwsgi_environ(path: str) -> dict[str, Any]:
    environ = create_environ(path)
    environ["uwsgi.version"] = b"2.0.30"
    return environ


def test_uwsgi_http11_close_is_made_after_the_body(uwsgi_module: Any) -> None:
    _, client = uwsgi_module
    spit = Spit()
    assert _drain(_mw()(_uwsgi_environ("/rule/x"), spit)) == b"hello"
    assert ("Connection", "close") in spit.headers
    client.settimeout(2)
    assert client.recv(10) == b"", "the connection was not shut down after the body"


def test_uwsgi_http11_kept_response_leaves_the_connection(uwsgi_module: Any) -> None:
    _, client = uwsgi_module
    spit = Spit()
    assert _drain(_mw()(_uwsgi_environ("/"), spit)) == b"hello"
    assert not any(k.lower() == "connection" for k, _ in spit.headers)
    client.setblocking(False)
    with pytest.raises(BlockingIOError):
        client.recv(10)


def test_uwsgi_http11_body_without_length_closes(uwsgi_module: Any) -> None:
    _, client = uwsgi_module
    spit = Spit()
    seen: list[Any] = []
    mw = _mw(on_decision=lambda facts, decision: seen.append(decision.reason))
    assert _drain(mw(_uwsgi_environ("/stream"), spit)) == b"part-1;part-2;part-3."
    assert ("Connection", "close") in spit.headers and seen == ["server"]
    client.settimeout(2)
    assert client.recv(100) == b""
    assert uwsgi_profile.UWSGI_HTTP.must_close(known_length=True)


def test_uwsgi_lazy_start_response_still_closes(uwsgi_module: Any) -> None:
    _, client = uwsgi_module
    spit = Spit()

    def lazy(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Length", "2")])
        yield b"ok"

    mw = WSGIConnectionMiddleware(lazy, rules=[Rule("/rule/*")])
    assert _drain(mw(_uwsgi_environ("/rule/x"), spit)) == b"ok"
    client.settimeout(2)
    assert client.recv(10) == b""


def test_uwsgi_shutdown_of_a_gone_connection_is_quiet() -> None:
    server, client = socket.socketpair()
    fd = server.fileno()
    server.close()
    client.close()
    uwsgi_profile._Shutdown(fd)()  # the descriptor is gone: nothing raised


@pytest.mark.parametrize(
    ("opt", "name"),
    [
        ({b"http-socket": b":0"}, "uwsgi --http-socket"),
        ({b"https-socket": b":0", b"http-socket": b":1"}, "uwsgi --http-socket"),
        ({"http11-socket": ":0", "master": True}, "uwsgi --http11-socket"),
        ({b"http11-socket": b":0", b"http-socket": b":1"}, None),
        ({b"http": b":0"}, None),
        ({b"socket": b"/tmp/s"}, None),
        ({}, None),
        (5, None),
    ],
)
def test_uwsgi_socket_kinds(opt: Any, name: str | None) -> None:
    kind = uwsgi_profile._socket_kind(opt)
    assert (kind.name if kind is not None else None) == name


def test_uwsgi_is_not_met_outside_uwsgi() -> None:
    assert "uwsgi" not in sys.modules
    assert uwsgi_profile.uwsgi_server(Spit()) == (None, None)
    assert uwsgi_profile.uwsgi_server(print) == (None, None)


def test_hypercorn_connection_is_looked_for_within_bounds(caplog: pytest.LogCaptureFixture) -> None:
    import threading

    from hypercorn.app_wrappers import WSGIWrapper

    from connmw.servers.hypercorn_wsgi import hypercorn_connection

    # run_app found, but its send leads to no protocol object: no identity, said once.
    sent: list[dict[str, Any]] = []
    with caplog.at_level(logging.WARNING, "connmw"):
        WSGIWrapper(_mw(max_requests_per_connection=2), 1 << 20).run_app(create_environ("/"), sent.append)
    assert sent[0]["status"] == 200
    assert "connection identity" in caplog.text

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        pass

    start_response.__module__ = "hypercorn.app_wrappers"
    # Not called from run_app: the walk ends at its bound, or where the stack ends.
    assert hypercorn_connection(start_response) is None
    found: list[Any] = [object()]
    thread = threading.Thread(target=lambda: found.__setitem__(0, hypercorn_connection(start_response)))
    thread.start()
    thread.join(5)
    assert found == [None]
    assert hypercorn_connection(print) is None
