"""connmw's WSGI middleware inside a WSGI application mounted in an ASGI one
(a2wsgi's and Starlette's ``WSGIMiddleware``), under uvicorn, on the wire.

With an ASGI ``ConnectionMiddleware`` around the whole application, a close the
mounted WSGI middleware decides (a rule, ``request_close``) is announced once and
real. Without one, the mounted middleware cannot know whether the ASGI server
would honour its line: it announces nothing, the connection stays open, and it
warns once with the fix.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from connmw import ConnectionMiddleware, Rule, WSGIConnectionMiddleware
from tests import servers, wire
from tests.apps import raw_wsgi

pytestmark = [pytest.mark.server, pytest.mark.timeout(60)]


def _bridge(kind: str, app: Any) -> Any:
    if kind == "a2wsgi":
        from a2wsgi import WSGIMiddleware as A2WSGI

        return A2WSGI(app)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated: Starlette points to a2wsgi
        from starlette.middleware.wsgi import WSGIMiddleware

        return WSGIMiddleware(app)


def _site(kind: str, outer: bool) -> Any:
    legacy = WSGIConnectionMiddleware(raw_wsgi, rules=[Rule("/legacy/rule/*")])
    site = Starlette(routes=[Mount("/legacy", app=_bridge(kind, legacy))])
    return ConnectionMiddleware(site) if outer else site


def _connection(resp: wire.Response) -> list[str]:
    return [v.lower() for v in resp.lines("connection")]


@pytest.mark.parametrize("kind", ["a2wsgi", "starlette"])
def test_closes_of_a_mounted_wsgi_app_are_real_with_connmw_outside(kind: str) -> None:
    with servers.uvicorn_thread(_site(kind, outer=True)) as port:
        for path in ("/legacy/rule/x", "/legacy/handler"):
            resp, closed, reader = wire.exchange(port, path=path)
            reader.sock.close()
            assert resp.body == b"hello", path
            assert _connection(resp) == ["close"], (path, resp.raw_head)
            assert closed, path
        resp, _, reader = wire.exchange(port, path="/legacy/", check_close=False)
        try:
            assert resp.body == b"hello" and _connection(resp) == []
            assert wire.still_open(reader, "/legacy/")
        finally:
            reader.sock.close()


@pytest.mark.parametrize("kind", ["a2wsgi", "starlette"])
def test_a_mounted_wsgi_app_announces_nothing_without_connmw_outside(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "connmw"), servers.uvicorn_thread(_site(kind, outer=False)) as port:
        resp, _, reader = wire.exchange(port, path="/legacy/rule/x", check_close=False)
        try:
            assert resp.body == b"hello" and _connection(resp) == [], resp.raw_head
            assert wire.still_open(reader, "/legacy/")
        finally:
            reader.sock.close()
    assert any("ConnectionMiddleware" in r.getMessage() for r in caplog.records), caplog.text
