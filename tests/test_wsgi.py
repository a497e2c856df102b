"""In-process WSGI: a capturing start_response, werkzeug's test Client, a Flask app."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import flask
import pytest
from werkzeug.test import Client, create_environ

import connmw
from connmw import Rule, WSGIConnectionMiddleware
from connmw.servers import wsgi_server

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

HOP = [
    ("Connection", "close, X-Hop"),
    ("Keep-Alive", "timeout=5"),
    ("Transfer-Encoding", "chunked"),
    ("TE", "gzip"),
    ("Upgrade", "h2c"),
    ("Proxy-Connection", "close"),
    ("Trailer", "x"),
]


def responder(
    status: str = "200 OK", headers: list[tuple[str, str]] | None = None, body: Iterable[bytes] = (b"hi",)
) -> Any:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response(status, list(headers or [("Content-Length", "2")]))
        return body

    return app


class Capture:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, str]], Any]] = []

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.calls.append((status, headers, exc_info))
        return lambda data: None


def call(app: Any, **environ_kw: Any) -> tuple[Capture, list[bytes]]:
    environ = create_environ(**environ_kw)
    capture = Capture()
    result = app(environ, capture)
    try:
        body = list(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return capture, body


def test_hop_by_hop_headers_never_reach_start_response(caplog: pytest.LogCaptureFixture) -> None:
    decisions: list[Any] = []
    mw = WSGIConnectionMiddleware(
        responder(headers=[*HOP, ("X-Hop", "1"), ("Content-Length", "2")]),
        on_decision=lambda f, d: decisions.append(d),
    )
    with caplog.at_level(logging.WARNING, logger="connmw"):
        capture, body = call(mw)
        call(mw)
    _status, headers, _ = capture.calls[0]
    assert headers == [("X-Hop", "1"), ("Content-Length", "2")]
    assert body == [b"hi"]
    assert decisions[0].reason == "app"
    # The capturing start_response is no known server: one warning, naming it.
    warnings = [r for r in caplog.records if "cannot make the close real" in r.getMessage()]
    assert len(warnings) == 1
    assert "tests.test_wsgi.Capture" in warnings[0].getMessage()


def test_clean_headers_are_passed_as_the_same_list() -> None:
    given: list[list[tuple[str, str]]] = []

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        headers = [("Content-Type", "text/plain"), ("Content-Length", "2")]
        given.append(headers)
        start_response("200 OK", headers)
        return [b"hi"]

    option_sets: list[dict[str, Any]] = [{}, {"rules": [Rule("/other")]}]
    for options in option_sets:
        capture, _ = call(WSGIConnectionMiddleware(app, **options))
        # Nothing to remove: the server gets the application's own list, not a copy.
        assert capture.calls[0][1] is given[-1]
    # A header to remove: a new list, the application's left as it was.
    capture, _ = call(WSGIConnectionMiddleware(responder(headers=[("Content-Length", "2"), ("TE", "x")])))
    assert capture.calls[0][1] == [("Content-Length", "2")]


@pytest.mark.parametrize("value", ["close", "TE, close", "Close", "te,  , CLOSE"])
def test_client_close_is_a_close_decision(value: str) -> None:
    decisions: list[Any] = []
    mw = WSGIConnectionMiddleware(responder(), on_decision=lambda f, d: decisions.append(d))
    call(mw, headers={"Connection": value})
    assert decisions[-1].reason == "client"


def test_http10_and_protocols() -> None:
    decisions: list[Any] = []
    mw = WSGIConnectionMiddleware(responder(), on_decision=lambda f, d: decisions.append(d))
    call(mw, environ_overrides={"SERVER_PROTOCOL": "HTTP/1.0"})
    call(mw, environ_overrides={"SERVER_PROTOCOL": "HTTP/1.0"}, headers={"Connection": "keep-alive"})
    call(mw, environ_overrides={"SERVER_PROTOCOL": "HTTP/2"}, headers={"Connection": "close"})
    call(mw, environ_overrides={"SERVER_PROTOCOL": "garbage"})
    assert [d.reason for d in decisions] == ["http-1.0", "http-1.0", None, None]


def test_exc_info_recall_reapplies_the_decision() -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", "2")])
        try:
            raise KeyError("x")
        except KeyError:
            start_response(
                "500 Internal Server Error",
                [("Connection", "close"), ("Content-Length", "3")],
                sys.exc_info(),
            )
        return [b"err"]

    decisions: list[Any] = []
    capture, body = call(WSGIConnectionMiddleware(app, on_decision=lambda f, d: decisions.append(d)))
    assert [c[0] for c in capture.calls] == ["200 OK", "500 Internal Server Error"]
    assert capture.calls[1][1] == [("Content-Length", "3")]
    assert capture.calls[1][2] is not None
    assert [d.reason for d in decisions] == [None, "app"]
    assert body == [b"err"]


def test_iterable_close_and_exceptions_pass_through() -> None:
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"a"
            yield b"b"

        def close(self) -> None:
            closed.append(True)
            raise OSError("close failed")

    mw = WSGIConnectionMiddleware(responder(body=Body()), overload_soft_limit=1, overload_hard_limit=3)
    with pytest.raises(OSError, match="close failed"):
        call(mw)
    assert closed == [True]
    assert mw.engine.load.in_flight == 0

    boom = ValueError("boom")

    def raising(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        raise boom

    mw = WSGIConnectionMiddleware(raising, overload_soft_limit=1, overload_hard_limit=3)
    with pytest.raises(ValueError) as info:
        call(mw)
    assert info.value is boom
    assert mw.engine.load.in_flight == 0
    # No close() on a plain list: still counted out.
    mw = WSGIConnectionMiddleware(responder(body=[b"x"]), overload_soft_limit=1, overload_hard_limit=3)
    assert call(mw)[1] == [b"x"]
    assert mw.engine.load.in_flight == 0


def test_malformed_status_is_passed_through() -> None:
    mw = WSGIConnectionMiddleware(responder(status="OK", headers=[("Connection", "close")]))
    capture, _ = call(mw)
    assert capture.calls[0][:2] == ("OK", [("Connection", "close")])


def seen_by(seen: list[bool]) -> Any:
    return lambda facts, decision: seen.append(decision.close)


def test_status_lines_are_read_the_same_however_many_there_are() -> None:
    """Status codes are remembered per status line, a bounded number of them."""
    from connmw import wsgi

    for i in range(300):
        status = f"{500 + i % 2} Reason {i}"
        seen: list[bool] = []
        mw = WSGIConnectionMiddleware(
            responder(status=status), close_on_status={501}, on_decision=seen_by(seen)
        )
        for _ in range(2):  # the second time, the code comes from what was remembered
            capture, _ = call(mw)
            assert capture.calls[0][0] == status
        assert seen == [i % 2 == 1] * 2, status
        assert len(wsgi._CODES) <= 256


def test_upgrade_and_nested_pass_through() -> None:
    inner_calls: list[Any] = []

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        inner_calls.append(start_response)
        start_response("101 Switching Protocols", [("Connection", "Upgrade"), ("Upgrade", "websocket")])
        return []

    capture = Capture()
    env = create_environ(headers={"Connection": "Upgrade", "Upgrade": "websocket"})
    WSGIConnectionMiddleware(app)(env, capture)
    assert len(inner_calls) == 1
    # The 101 and its own Connection/Upgrade headers reach the server untouched.
    assert capture.calls == [
        ("101 Switching Protocols", [("Connection", "Upgrade"), ("Upgrade", "websocket")], None)
    ]
    # An upgrade request answered normally is no bypass: hop-by-hop headers still go.
    mw = WSGIConnectionMiddleware(
        responder(headers=[("Transfer-Encoding", "chunked"), ("Content-Length", "2")])
    )
    capture3, _ = call(mw, headers={"Connection": "Upgrade", "Upgrade": "websocket"})
    assert capture3.calls[0][1] == [("Content-Length", "2")]
    # Nested: the inner instance leaves the work to the outer one.
    mw = WSGIConnectionMiddleware(WSGIConnectionMiddleware(responder(headers=[("Connection", "close")])))
    capture2, _ = call(mw)
    assert capture2.calls[0][1] == []


def test_request_close_and_rules_with_script_name() -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/bye":
            assert connmw.request_close(environ) is True
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    decisions: list[Any] = []
    mw = WSGIConnectionMiddleware(
        app, rules=[Rule("/app/export")], on_decision=lambda f, d: decisions.append(d)
    )
    call(mw, path="/bye")
    call(mw, path="/export", base_url="http://localhost/app")
    call(mw, path="/export")
    assert [d.reason for d in decisions] == ["handler", "rule", None]


def test_flask_end_to_end() -> None:
    app = flask.Flask(__name__)

    @app.get("/")
    def home() -> str:
        return "home"

    @app.get("/bye")
    def bye() -> str:
        connmw.request_close()
        return "bye"

    decisions: list[Any] = []
    app.wsgi_app = WSGIConnectionMiddleware(app.wsgi_app, on_decision=lambda f, d: decisions.append(d))  # type: ignore[method-assign]
    client = Client(app)
    r = client.get("/")
    assert r.status_code == 200 and r.get_data() == b"home"
    r = client.get("/bye")
    assert r.get_data() == b"bye"
    r = client.get("/missing")
    assert r.status_code == 404
    r = client.get("/", headers={"Connection": "TE, close"})
    assert "Connection" not in r.headers
    assert [d.reason for d in decisions] == [None, "handler", None, "client"]
    # No connmw on the path: nothing to close, the request goes on.
    with app.test_request_context("/"):
        assert connmw.request_close() is False
    assert connmw.request_close() is False


def test_wsgi_server_detection_follows_wrapped_chains() -> None:
    class Response:
        def force_close(self) -> None:
            pass

        def start_response(self, *a: Any) -> None:
            pass

    Response.__module__ = "gunicorn.http.wsgi"
    resp = Response()

    def outer(*a: Any) -> None:
        pass

    outer.__wrapped__ = resp.start_response  # type: ignore[attr-defined]
    server, handle = wsgi_server(outer, None)
    assert server.name == "gunicorn" and handle is resp
    server, handle = wsgi_server(lambda *a: None, lambda b: None)
    assert server.name == "unknown" and handle is None


def test_counted_result_keeps_its_length() -> None:
    mw = WSGIConnectionMiddleware(responder(body=[b"one"]), overload_soft_limit=1, overload_hard_limit=3)
    result = mw(create_environ(), Capture())
    assert len(result) == 1  # type: ignore[arg-type]
    result.close()  # type: ignore[attr-defined]
    mw = WSGIConnectionMiddleware(responder(body=iter([b"x"])), overload_soft_limit=1, overload_hard_limit=3)
    result = mw(create_environ(), Capture())
    assert not hasattr(result, "__len__")
    result.close()  # type: ignore[attr-defined]
    assert mw.engine.load.in_flight == 0


def test_protected_names_must_be_header_names() -> None:
    with pytest.raises(ValueError, match="protected_request_headers"):
        WSGIConnectionMiddleware(responder(), protected_request_headers={"x-€"})


def test_file_wrapper_results_stay_the_servers_own() -> None:
    """With in-flight counting on, a wsgi.file_wrapper result is not wrapped (servers
    recognise it by type for sendfile); its close still counts the request out."""
    import io
    from wsgiref.util import FileWrapper

    closed: list[bool] = []

    class File(io.BytesIO):
        def close(self) -> None:
            closed.append(True)
            super().close()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", "4")])
        wrapper: Any = environ["wsgi.file_wrapper"]
        result: Iterable[bytes] = wrapper(File(b"data"))
        return result

    class Slotted:
        __slots__ = ("filelike",)

        def __init__(self, filelike: Any) -> None:
            self.filelike = filelike

        def __iter__(self) -> Iterator[bytes]:
            return iter([self.filelike.read()])

    for wrapper_type in (FileWrapper, Slotted):
        mw = WSGIConnectionMiddleware(app, overload_soft_limit=1, overload_hard_limit=3)
        environ = create_environ()
        environ["wsgi.file_wrapper"] = wrapper_type
        result = mw(environ, Capture())
        assert mw.engine.load.in_flight == 1
        assert (type(result) is FileWrapper) == (wrapper_type is FileWrapper)
        assert b"".join(result) == b"data"
        result.close()  # type: ignore[attr-defined]
        assert mw.engine.load.in_flight == 0
    assert closed == [True]
