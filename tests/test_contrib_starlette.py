"""Starlette and FastAPI: the endpoint decorator, the dependency, request_close from
any depth, and route-level / mounted connmw instances."""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

import connmw
from connmw import ConnectionMiddleware, Decision, RequestFacts, Rule
from connmw.contrib.starlette import CloseConnection, close_connection, install, installed

from . import servers, wire
from .apps import install_hint_logs

if TYPE_CHECKING:
    from connmw.asgi import ASGIApp

Seen = list[tuple[RequestFacts, Decision]]


def wrap(app: Any, seen: Seen, **options: Any) -> ConnectionMiddleware:
    return ConnectionMiddleware(app, on_decision=lambda f, d: seen.append((f, d)), **options)


def get(app: ASGIApp, *requests: tuple[str, str]) -> list[httpx.Response]:
    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return [await client.request(method, path) for method, path in requests]

    return asyncio.run(main())


# -- the decorator on Starlette endpoints ---------------------------------------------


@close_connection
async def bare_async(request: Request) -> Response:
    return PlainTextResponse("a")


@close_connection(reason="sync export")
def reasoned_sync(request: Request) -> Response:
    return PlainTextResponse("s")


async def plain(request: Request) -> Response:
    return PlainTextResponse("p")


def test_decorator_on_starlette_endpoints() -> None:
    seen: Seen = []
    app = wrap(
        Starlette(routes=[Route("/a", bare_async), Route("/s", reasoned_sync), Route("/p", plain)]), seen
    )
    a, s, p = get(app, ("GET", "/a"), ("GET", "/s"), ("GET", "/p"))
    assert (a.text, s.text, p.text) == ("a", "s", "p")
    assert a.headers["connection"] == "close" and s.headers["connection"] == "close"
    assert "connection" not in p.headers
    assert [(f.handler_reason, d.reason) for f, d in seen] == [
        ("endpoint bare_async", "handler"),
        ("sync export", "handler"),
        (None, None),
    ]


def test_decorator_keeps_name_and_docs() -> None:
    @close_connection
    async def documented(request: Request) -> Response:
        """Docs."""
        return PlainTextResponse("")

    assert documented.__name__ == "documented"
    assert documented.__doc__ == "Docs."
    assert asyncio.iscoroutinefunction(documented)


def test_decorated_endpoint_without_a_request_says_so() -> None:
    @close_connection
    def no_request(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="got no Request"):
        no_request(1)


def test_endpoint_without_connmw_answers_and_logs_the_install_hint_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Starlette(routes=[Route("/a", bare_async), Route("/s", reasoned_sync), Route("/out", logout)])
    install_hint_logs(caplog)
    with caplog.at_level(logging.WARNING, logger="connmw"):
        responses = get(app, ("GET", "/a"), ("GET", "/s"), ("GET", "/out"))
    assert [(r.status_code, r.text) for r in responses] == [(200, "a"), (200, "s"), (200, "bye")]
    assert len(install_hint_logs(caplog)) == 1


# -- FastAPI --------------------------------------------------------------------------


def fastapi_app(seen: Seen) -> FastAPI:
    api = FastAPI()
    router = APIRouter(prefix="/v1")

    @api.get("/items/{item_id}")
    @close_connection(reason="item")
    async def item(item_id: int, q: str = "") -> dict[str, Any]:
        return {"id": item_id, "q": q}

    @api.get("/sync/{name}")
    @close_connection
    def sync_item(name: str, request: Request) -> dict[str, str]:
        return {"name": name, "path": request.url.path}

    @api.get("/ping")
    @close_connection
    def ping() -> dict[str, bool]:
        return {"pong": True}

    @api.get("/dep", dependencies=[Depends(CloseConnection("report"))])
    async def dep() -> dict[str, bool]:
        return {"ok": True}

    @api.get("/dep-bare", dependencies=[Depends(CloseConnection())])
    def dep_bare() -> dict[str, bool]:
        return {"ok": True}

    @router.post("/logout")
    async def logout(request: Request) -> dict[str, bool]:
        return {"closing": connmw.request_close(request, "logout")}

    @api.get("/kept")
    async def kept() -> dict[str, bool]:
        return {"ok": True}

    api.include_router(router)
    api.add_middleware(ConnectionMiddleware, on_decision=lambda f, d: seen.append((f, d)))
    return api


def test_fastapi_decorator_dependency_and_request_close() -> None:
    seen: Seen = []
    responses = get(
        fastapi_app(seen),
        ("GET", "/items/7?q=x"),
        ("GET", "/sync/ann"),
        ("GET", "/ping"),
        ("GET", "/dep"),
        ("GET", "/dep-bare"),
        ("POST", "/v1/logout"),
        ("GET", "/kept"),
    )
    assert [r.status_code for r in responses] == [200] * 7
    assert responses[0].json() == {"id": 7, "q": "x"}
    assert responses[1].json() == {"name": "ann", "path": "/sync/ann"}
    assert responses[5].json() == {"closing": True}
    assert [r.headers.get("connection") for r in responses] == ["close"] * 6 + [None]
    assert [f.handler_reason for f, _ in seen] == [
        "item",
        "endpoint fastapi_app.<locals>.sync_item",
        "endpoint fastapi_app.<locals>.ping",
        "report",
        "dependency",
        "logout",
        None,
    ]


def test_fastapi_schema_does_not_show_the_injected_request() -> None:
    schema = get(fastapi_app([]), ("GET", "/openapi.json"))[0].json()
    params = schema["paths"]["/items/{item_id}"]["get"]["parameters"]
    assert sorted(p["name"] for p in params) == ["item_id", "q"]


def test_injected_parameter_goes_before_var_keyword() -> None:
    import inspect

    def endpoint(a: int, *, b: str = "", **rest: Any) -> None:
        pass

    names = list(inspect.signature(close_connection(endpoint)).parameters)
    assert names == ["a", "b", "connmw_request", "rest"]


def test_dependency_repr() -> None:
    assert repr(CloseConnection("x")) == "CloseConnection('x')"


def test_decorator_leaves_a_signature_it_cannot_read() -> None:
    def endpoint(request: Unknown) -> None:  # type: ignore[name-defined]  # noqa: F821
        connmw.request_close(request)

    wrapped = close_connection(endpoint)
    assert "__signature__" not in vars(wrapped)


def test_decorator_uses_a_connmw_request_parameter_of_the_endpoint() -> None:
    async def endpoint(connmw_request: Request) -> Response:
        return PlainTextResponse(connmw_request.url.path)

    wrapped = close_connection(endpoint)
    # The endpoint's own signature, annotations evaluated (older FastAPI resolves strings
    # in the wrapper's module); nothing injected beside the endpoint's own request.
    assert inspect.signature(wrapped) == inspect.signature(endpoint, eval_str=True)
    seen: Seen = []
    api = FastAPI()
    api.get("/own")(wrapped)
    (response,) = get(wrap(api, seen), ("GET", "/own"))
    assert response.text == "/own" and response.headers["connection"] == "close"


# -- request_close from any depth, and too late ---------------------------------------


async def logout(request: Request) -> Response:
    connmw.request_close(request, "logout")
    return PlainTextResponse("bye")


def test_request_close_inside_nested_mounts() -> None:
    seen: Seen = []
    inner = Starlette(routes=[Mount("/deep", routes=[Route("/logout", logout)])])
    app = wrap(Starlette(routes=[Mount("/account", app=inner)]), seen)
    (response,) = get(app, ("GET", "/account/deep/logout"))
    assert response.headers["connection"] == "close"
    assert seen[0][0].handler_reason == "logout"


def test_request_close_after_the_response_started_is_too_late(caplog: pytest.LogCaptureFixture) -> None:
    results: list[bool] = []

    async def stream(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            yield b"first"
            results.append(connmw.request_close(request))
            yield b"second"

        return StreamingResponse(body())

    app = wrap(Starlette(routes=[Route("/stream", stream)]), [])
    with caplog.at_level(logging.WARNING, logger="connmw"):
        (response,) = get(app, ("GET", "/stream"))
    assert response.text == "firstsecond"
    assert "connection" not in response.headers
    assert results == [False]
    assert "too late" in caplog.text


# -- route-level and mounted instances ------------------------------------------------


def routed(seen: Seen) -> ConnectionMiddleware:
    close_here = [Middleware(ConnectionMiddleware, rules=[Rule()])]
    keep_here = [Middleware(ConnectionMiddleware, rules=[Rule(close=False)])]
    return wrap(
        Starlette(
            routes=[
                Route("/upload", plain, methods=["POST"], middleware=close_here),
                Route("/admin/stats", plain, middleware=keep_here),
                Route("/admin/users", plain),
                Route("/plain", plain),
            ]
        ),
        seen,
        rules=[Rule("/admin/**")],
    )


def test_route_level_middleware_contributes_its_rules() -> None:
    seen: Seen = []
    responses = get(
        routed(seen),
        ("POST", "/upload"),
        ("GET", "/admin/stats"),
        ("GET", "/admin/users"),
        ("GET", "/plain"),
    )
    assert [r.headers.get("connection") for r in responses] == ["close", None, "close", None]
    assert [d.reason for _, d in seen] == ["rule", None, "rule", None]


def test_route_level_middleware_alone_is_a_full_middleware() -> None:
    app = Starlette(
        routes=[
            Route("/x", plain, middleware=[Middleware(ConnectionMiddleware, rules=[Rule()])]),
            Route("/y", plain),
        ]
    )
    x, y = get(app, ("GET", "/x"), ("GET", "/y"))
    assert x.headers["connection"] == "close"
    assert "connection" not in y.headers


def test_mounted_sub_app_with_its_own_instance_matches_full_paths() -> None:
    seen: Seen = []
    sub = ConnectionMiddleware(
        Starlette(routes=[Route("/export", plain), Route("/view", plain)]),
        rules=[Rule("/reports/export")],
    )
    app = wrap(Starlette(routes=[Mount("/reports", app=sub)]), seen)
    export, view = get(app, ("GET", "/reports/export"), ("GET", "/reports/view"))
    assert export.headers["connection"] == "close"
    assert "connection" not in view.headers
    assert [d.reason for _, d in seen] == ["rule", None]


def test_nested_instance_warns_once_about_options_it_cannot_apply(caplog: pytest.LogCaptureFixture) -> None:
    inner = [Middleware(ConnectionMiddleware, max_requests_per_connection=5, keep_alive_timeout=3)]
    app = wrap(Starlette(routes=[Route("/x", plain, middleware=inner)]), [])
    with caplog.at_level(logging.WARNING, logger="connmw"):
        get(app, ("GET", "/x"), ("GET", "/x"))
    warnings = [r.getMessage() for r in caplog.records if "nested" in r.getMessage()]
    assert len(warnings) == 1
    assert "keep_alive_timeout, max_requests_per_connection" in warnings[0]


def test_nested_instance_with_only_rules_does_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="connmw"):
        get(routed([]), ("POST", "/upload"), ("POST", "/upload"))
    assert caplog.records == []


# -- on the wire -----------------------------------------------------------------------


@pytest.mark.server
def test_route_level_and_decorator_on_hypercorn() -> None:
    app = routed([])
    with servers.hypercorn_thread(app) as port:
        for method, path, close in [
            ("POST", "/upload", True),
            ("GET", "/admin/stats", False),
            ("GET", "/admin/users", True),
            ("GET", "/plain", False),
        ]:
            resp, _, reader = wire.exchange(port, method, path, check_close=False)
            try:
                assert resp.status == 200
                if close:
                    assert resp.lines("connection") == ["close"], path
                    assert reader.closed(5.0), path
                else:
                    assert resp.lines("connection") == [], path
                    assert wire.still_open(reader), path
            finally:
                reader.sock.close()


# -- install(): connmw outermost -------------------------------------------------------


def installed_api(seen: Seen, *, add_middleware: bool = False) -> FastAPI:
    api = FastAPI()

    @api.get("/")
    async def index() -> dict[str, bool]:
        return {"ok": True}

    @api.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    def deny() -> None:
        raise HTTPException(status_code=403)

    @api.get("/items/{item_id}")
    @close_connection(reason="item")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @api.get("/guarded", dependencies=[Depends(deny)])
    @close_connection
    def guarded() -> dict[str, bool]:
        return {"ok": True}

    options: dict[str, Any] = {"on_decision": lambda f, d: seen.append((f, d))}
    if add_middleware:
        api.add_middleware(ConnectionMiddleware, **options)
    else:
        install(api, **options)
    return api


# (path, status, close reason or None when kept)
INSTALLED = [
    ("/", 200, None),
    ("/items/7", 200, "handler"),
    ("/items/seven", 422, "handler"),  # the endpoint never runs
    ("/guarded", 403, "handler"),  # nor here: its dependency refuses
    ("/boom", 500, "status"),  # Starlette's own 500, outside every user middleware
]


@pytest.mark.server
def test_install_announces_every_close_on_uvicorn() -> None:
    seen: Seen = []
    with servers.uvicorn_thread(installed_api(seen)) as port:
        for path, status, reason in INSTALLED:
            wire.expect(port, "GET", path, close=reason is not None, status=status)
    # The kept connection answered a second request ("/") too.
    assert [(f.path, d.reason) for f, d in seen] == [("/", None)] + [(p, r) for p, _, r in INSTALLED]
    assert [f.handler_reason for f, _ in seen[2:5]] == [
        "item",
        "item",
        "endpoint installed_api.<locals>.guarded",
    ]


@pytest.mark.server
def test_add_middleware_sits_inside_starlettes_error_middleware() -> None:
    """What the README says of add_middleware: the 500 of an unhandled exception and the
    422 of a decorated route do not pass through it (the server still closes after the 500)."""
    seen: Seen = []
    with servers.uvicorn_thread(installed_api(seen, add_middleware=True)) as port:
        resp, closed, reader = wire.exchange(port, "GET", "/boom")
        reader.sock.close()
        assert (resp.status, resp.lines("connection"), closed) == (500, [], True)
        resp, _, reader = wire.exchange(port, "GET", "/items/seven", check_close=False)
        try:
            assert (resp.status, resp.lines("connection")) == (422, [])
            assert wire.still_open(reader)
        finally:
            reader.sock.close()
    assert [(f.path, d.reason) for f, d in seen] == [("/items/seven", None), ("/", None)]


def test_drain_on_signal_takes_an_installed_app(previous_usr1: list[int]) -> None:
    seen: Seen = []
    api = installed_api(seen)
    hook = connmw.drain_on_signal(api, grace=0, signals=[signal.SIGUSR1])
    assert hook.targets == (installed(api),)
    signal.raise_signal(signal.SIGUSR1)
    assert previous_usr1 == [signal.SIGUSR1]
    (response,) = get(api, ("GET", "/"))
    assert response.headers["connection"] == "close"
    assert [d.reason for _, d in seen] == ["drain"]


def test_drain_on_signal_names_install_for_an_add_middleware_app() -> None:
    with pytest.raises(TypeError, match=r"use connmw\.contrib\.starlette\.install\(app\) instead"):
        connmw.drain_on_signal(installed_api([], add_middleware=True))
    with pytest.raises(TypeError, match="got <object"):
        connmw.drain_on_signal(object())


def test_install_refuses_twice_a_started_app_and_other_objects() -> None:
    api = installed_api([])
    with pytest.raises(RuntimeError, match="already installed"):
        install(api)
    get(api, ("GET", "/"))
    with pytest.raises(RuntimeError, match="not started yet"):
        install(api)
    with pytest.raises(RuntimeError, match="not started yet"):
        install(object())


def test_installed_middleware_called_before_the_app_builds_its_stack() -> None:
    seen: Seen = []
    api = installed_api(seen)
    middleware = installed(api)
    assert middleware is not None and api.state.connmw is middleware
    first, second = get(middleware, ("GET", "/items/1"), ("GET", "/"))
    assert (first.json(), first.headers["connection"]) == ({"id": 1}, "close")
    assert second.json() == {"ok": True} and "connection" not in second.headers
    assert [d.reason for _, d in seen] == ["handler", None]


@pytest.fixture
def previous_usr1() -> Iterator[list[int]]:
    calls: list[int] = []
    old = signal.signal(signal.SIGUSR1, lambda s, f: calls.append(s))
    try:
        yield calls
    finally:
        signal.signal(signal.SIGUSR1, old)
