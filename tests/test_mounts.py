"""A WSGI application mounted in an ASGI one (FastAPI's documented way to serve a
Flask app), the whole wrapped in ConnectionMiddleware: request_close() and the
view decorator in the mounted app close the connection, through a2wsgi and
Starlette's WSGIMiddleware."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import httpx
import pytest
from a2wsgi import WSGIMiddleware as A2WSGI
from fastapi import FastAPI
from flask import Flask

import connmw
from connmw import ConnectionMiddleware, Decision, RequestFacts
from connmw.contrib.flask import close_connection

from . import servers, wire

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # deprecated in favour of a2wsgi, still in use
    from starlette.middleware.wsgi import WSGIMiddleware as StarletteWSGI

Seen = list[tuple[RequestFacts, Decision]]


def legacy() -> Flask:
    app = Flask(__name__)

    @app.get("/")
    def index() -> str:
        return "legacy"

    @app.post("/logout")
    def logout() -> str:
        return "closing" if connmw.request_close(reason="legacy logout") else "not closing"

    @app.get("/export")
    @close_connection(reason="legacy export")
    def export() -> str:
        return "a,b"

    return app


def mounted(seen: Seen) -> ConnectionMiddleware:
    api = FastAPI()

    @api.get("/")
    async def index() -> dict[str, bool]:
        return {"ok": True}

    flask_app = legacy()
    api.mount("/a2wsgi", A2WSGI(flask_app))  # type: ignore[arg-type]
    api.mount("/starlette", StarletteWSGI(flask_app))
    return ConnectionMiddleware(api, on_decision=lambda f, d: seen.append((f, d)))


BRIDGES = ["/a2wsgi", "/starlette"]
# (method, path, body, handler reason or None when the connection is kept)
CASES = [
    ("GET", "/", b"legacy", None),
    ("POST", "/logout", b"closing", "legacy logout"),
    ("GET", "/export", b"a,b", "legacy export"),
]


@pytest.mark.parametrize("bridge", BRIDGES)
def test_request_close_in_a_mounted_wsgi_app_in_process(bridge: str) -> None:
    seen: Seen = []
    app = mounted(seen)

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return [await client.request(method, bridge + path) for method, path, _, _ in CASES]

    responses = asyncio.run(main())
    assert [r.content for r in responses] == [body for _, _, body, _ in CASES]
    assert [r.headers.get("connection") for r in responses] == ["close" if why else None for *_, why in CASES]
    assert [(f.path, f.handler_reason) for f, _ in seen] == [(bridge + p, why) for _, p, _, why in CASES]


@pytest.mark.server
@pytest.mark.parametrize("bridge", BRIDGES)
def test_request_close_in_a_mounted_wsgi_app_on_uvicorn(bridge: str) -> None:
    with servers.uvicorn_thread(mounted([])) as port:
        for method, path, body, why in CASES:
            assert wire.expect(port, method, bridge + path, close=why is not None).body == body


def test_a_bridge_frame_for_another_environ_is_not_taken() -> None:
    """The frame that called the WSGI app must hold this very environ."""
    scope: dict[str, Any] = {"connmw": RequestFacts(11, "GET", "/")}
    environ: dict[str, Any] = {"wsgi.version": (1, 0)}
    other: dict[str, Any] = {"wsgi.version": (1, 0)}

    def bridge(environ: dict[str, Any]) -> bool:
        assert scope
        return connmw.request_close(other)

    assert bridge(environ) is False
    assert bridge(other) is True
