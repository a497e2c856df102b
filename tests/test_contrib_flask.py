"""Flask: install() with app.config, the view decorator, request_close() with and
without an argument, and mounted sub-applications."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, Response, request, stream_with_context
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client

import connmw
from connmw import Decision, RequestFacts, Rule, WSGIConnectionMiddleware
from connmw.contrib.flask import close_connection, install

from . import servers, wire
from .apps import install_hint_logs

Seen = list[tuple[RequestFacts, Decision]]


def make_app() -> Flask:
    app = Flask(__name__)

    @app.get("/")
    def index() -> str:
        return "hello"

    @app.get("/export")
    @close_connection
    def export() -> str:
        return "a,b"

    @app.get("/report")
    @close_connection(reason="report")
    async def report() -> str:
        return "done"

    @app.post("/logout")
    def logout() -> str:
        return "closing" if connmw.request_close(reason="logout") else "late"

    @app.get("/explicit")
    def explicit() -> str:
        connmw.request_close(request, "explicit")
        return "x"

    @app.get("/stream")
    @close_connection(reason="stream")
    def stream() -> Response:
        def body() -> Iterator[str]:
            yield "a"
            yield "b"

        return Response(stream_with_context(body()))

    @app.get("/fails")
    def fails() -> str:
        raise RuntimeError("boom")

    return app


def seen_app(**options: Any) -> tuple[Flask, Seen]:
    seen: Seen = []
    app = make_app()
    install(app, on_decision=lambda f, d: seen.append((f, d)), **options)
    return app, seen


def test_decorator_request_close_and_rules() -> None:
    app, seen = seen_app(rules=[Rule("/")])
    client = app.test_client()
    for method, path in [
        ("GET", "/"),
        ("GET", "/export"),
        ("GET", "/report"),
        ("POST", "/logout"),
        ("GET", "/explicit"),
        ("GET", "/stream"),
    ]:
        response = client.open(path, method=method)
        assert response.status_code == 200, path
        assert "Connection" not in response.headers  # PEP 3333: the server says it
        response.close()
    assert [(d.reason, f.handler_reason) for f, d in seen] == [
        ("rule", None),
        ("handler", "view make_app.<locals>.export"),
        ("handler", "report"),
        ("handler", "logout"),
        ("handler", "explicit"),
        ("handler", "stream"),
    ]


def test_a_failing_view_closes_by_status() -> None:
    app, seen = seen_app()
    app.testing = False
    response = app.test_client().get("/fails")
    assert response.status_code == 500
    assert seen[0][1] == Decision(True, "status")


def test_install_reads_app_config_and_keywords_win() -> None:
    app = make_app()
    app.config["CONNMW"] = {
        "rules": [{"path": "/export", "close": "false"}],
        "max-requests-per-connection": "50",
        "keep_alive_timeout": 5,
    }
    middleware = install(app, keep_alive_timeout=9)
    assert app.wsgi_app is middleware and app.extensions["connmw"] is middleware
    assert middleware.options.rules == (Rule("/export", close=False),)
    assert middleware.options.max_requests_per_connection == 50
    assert middleware.options.keep_alive_timeout == 9


def test_install_rejects_bad_config_at_start_up() -> None:
    app = make_app()
    app.config["CONNMW"] = {"max_requests_per_connection": "lots"}
    with pytest.raises(ValueError, match="max_requests_per_connection must be a whole number, got 'lots'"):
        install(app)
    app.config["CONNMW"] = {"keep_alive": 5}
    with pytest.raises(TypeError, match=r"app.config\['CONNMW'\] got an unknown option 'keep_alive'"):
        install(app)


def test_without_connmw_the_views_answer_and_the_install_hint_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app()
    app.testing = True
    client = app.test_client()
    install_hint_logs(caplog)
    with caplog.at_level(logging.WARNING, logger="connmw"):
        assert client.get("/export").get_data() == b"a,b"
        assert client.get("/report").get_data() == b"done"
        assert client.post("/logout").get_data() == b"late"
        # A decorated view called directly, outside any request.
        assert app.view_functions["export"]() == "a,b"
    hints = install_hint_logs(caplog)
    assert len(hints) == 1
    assert "connmw.contrib.flask.install(app)" in hints[0]


def test_request_close_without_argument_outside_a_request(caplog: pytest.LogCaptureFixture) -> None:
    install_hint_logs(caplog)
    with caplog.at_level(logging.WARNING, logger="connmw"):
        assert connmw.request_close() is False
    (hint,) = install_hint_logs(caplog)
    assert "only inside a Flask request" in hint


@pytest.mark.server
def test_without_connmw_decorated_views_still_answer_on_waitress() -> None:
    with servers.waitress_thread(make_app()) as port:
        for method, path, body in [("GET", "/export", b"a,b"), ("POST", "/logout", b"late")]:
            resp, _, reader = wire.exchange(port, method, path, check_close=False)
            reader.sock.close()
            assert (resp.status, resp.body) == (200, body), path


def test_request_close_after_streaming_started_is_too_late(caplog: pytest.LogCaptureFixture) -> None:
    results: list[bool] = []
    app = Flask(__name__)

    @app.get("/late")
    def late() -> Response:
        def body() -> Iterator[str]:
            yield "a"
            results.append(connmw.request_close())
            yield "b"

        return Response(stream_with_context(body()))

    seen: Seen = []
    install(app, on_decision=lambda f, d: seen.append((f, d)))
    with caplog.at_level(logging.WARNING, logger="connmw"):
        assert app.test_client().get("/late").data == b"ab"
    assert results == [False]
    assert seen[0][1] == Decision(False, None)
    assert "too late" in caplog.text


def mounted(seen: Seen) -> WSGIConnectionMiddleware:
    """A Flask app mounted at /shop by DispatcherMiddleware, with its own connmw instance
    for its rules, under an application-wide one."""
    shop = make_app()
    shop_with_rules = WSGIConnectionMiddleware(shop.wsgi_app, rules=[Rule("/shop/")])
    root = Flask("root")

    @root.get("/")
    def home() -> str:
        return "home"

    return WSGIConnectionMiddleware(
        DispatcherMiddleware(root.wsgi_app, {"/shop": shop_with_rules}),
        on_decision=lambda f, d: seen.append((f, d)),
    )


def test_mounted_flask_app_request_close_and_nested_rules() -> None:
    seen: Seen = []
    client = Client(mounted(seen))
    for path in ["/", "/shop/", "/shop/export", "/shop/explicit"]:
        response = client.get(path)
        assert response.status_code == 200, path
        response.close()
    assert [(f.path, d.reason) for f, d in seen] == [
        ("/", None),
        ("/shop/", "rule"),
        ("/shop/export", "handler"),
        ("/shop/explicit", "handler"),
    ]


@pytest.mark.server
def test_mounted_flask_app_on_waitress() -> None:
    with servers.waitress_thread(mounted([])) as port:
        for path, close in [("/", False), ("/shop/", True), ("/shop/export", True), ("/shop/report", True)]:
            resp, _, reader = wire.exchange(port, "GET", path, check_close=False)
            try:
                assert resp.status == 200, path
                if close:
                    assert resp.lines("connection") == ["close"], path
                    assert reader.closed(5.0), path
                else:
                    assert resp.lines("connection") == [], path
                    assert wire.still_open(reader), path
            finally:
                reader.sock.close()


def test_drain_on_signal_takes_an_installed_flask_app() -> None:
    import signal

    app = make_app()
    middleware = install(app)
    hook = connmw.drain_on_signal(app, grace=0, signals=[signal.SIGUSR2])
    try:
        assert hook.targets == (middleware,)
    finally:
        hook.uninstall()
    with pytest.raises(TypeError, match=r"connmw\.contrib\.flask\.install"):
        connmw.drain_on_signal(make_app())
