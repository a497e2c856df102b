"""The conformance routes written with real frameworks, wrapped with connmw.

Each app serves the routes of :mod:`tests.apps` that the conformance cases use
(``/``, ``/stream``, ``/rule/...``, ``/handler``, ``/hop``), with the same
bodies, so one table of cases runs against every server whatever the app.
Frameworks are imported lazily: a server process imports only the one it runs.
"""

# No "from __future__ import annotations": FastAPI reads the handlers' annotations
# at definition time, and ``Request`` is imported locally.
from collections.abc import Iterator
from typing import Any

import connmw
from connmw import ConnectionMiddleware, WSGIConnectionMiddleware
from tests.apps import HOP_HEADERS_ASGI, STREAM_PARTS, app_options

#: The hop-by-hop headers the framework apps set (as str, for the frameworks' APIs).
HOP_HEADERS = [(k.decode(), v.decode()) for k, v in HOP_HEADERS_ASGI if k != b"connection"]
HOP_CONNECTION = "keep-alive, x-hop"


def _stream() -> Iterator[bytes]:
    yield from STREAM_PARTS


def starlette_app() -> ConnectionMiddleware:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Route

    async def index(request: Request) -> Response:
        return PlainTextResponse("hello")

    async def stream(request: Request) -> Response:
        return StreamingResponse(_stream(), media_type="text/plain")

    async def handler(request: Request) -> Response:
        connmw.request_close(request, "test handler")
        return PlainTextResponse("hello")

    async def hop(request: Request) -> Response:
        response = PlainTextResponse("hello")
        response.headers.append("connection", HOP_CONNECTION)
        for name, value in HOP_HEADERS:
            response.headers.append(name, value)
        return response

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/stream", stream),
            Route("/rule/{rest:path}", index),
            Route("/handler", handler),
            Route("/hop", hop),
        ]
    )
    return ConnectionMiddleware(app, **app_options())


def fastapi_app() -> Any:
    from fastapi import FastAPI, Request
    from fastapi.responses import PlainTextResponse, StreamingResponse

    app = FastAPI()

    @app.get("/", response_class=PlainTextResponse)
    async def index() -> str:
        return "hello"

    @app.get("/rule/{rest:path}", response_class=PlainTextResponse)
    async def rule(rest: str) -> str:
        return "hello"

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        return StreamingResponse(_stream(), media_type="text/plain")

    @app.get("/handler", response_class=PlainTextResponse)
    async def handler(request: Request) -> str:
        connmw.request_close(request, "test handler")
        return "hello"

    @app.get("/hop")
    async def hop() -> PlainTextResponse:
        response = PlainTextResponse("hello")
        response.headers.append("connection", HOP_CONNECTION)
        for name, value in HOP_HEADERS:
            response.headers.append(name, value)
        return response

    app.add_middleware(ConnectionMiddleware, **app_options())
    return app


def flask_app() -> Any:
    from flask import Flask, Response

    app = Flask("connmw_conformance")

    @app.get("/")
    @app.get("/rule/<path:rest>")
    def index(rest: str = "") -> Response:
        return Response(b"hello", content_type="text/plain")

    @app.get("/stream")
    def stream() -> Response:
        return Response(_stream(), content_type="text/plain")

    @app.get("/handler")
    def handler() -> Response:
        connmw.request_close(reason="test handler")
        return Response(b"hello", content_type="text/plain")

    @app.get("/hop")
    def hop() -> Response:
        response = Response(b"hello", content_type="text/plain")
        response.headers.add("Connection", HOP_CONNECTION)
        for name, value in HOP_HEADERS:
            response.headers.add(name, value)
        return response

    app.wsgi_app = WSGIConnectionMiddleware(app.wsgi_app, **app_options())  # type: ignore[method-assign]
    return app
