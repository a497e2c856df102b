"""In-process ASGI: hand-built scopes with a capturing send, httpx, Starlette, FastAPI."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import MutableMapping
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import connmw
from connmw import ConnectionMiddleware, Rule
from tests.apps import install_hint_logs
from tests.asgi_util import body_of, call, header_lines, make_scope, responder

CL = (b"content-length", b"5")


async def _no_receive() -> MutableMapping[str, Any]:
    raise AssertionError("receive was not expected")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_http11_plain_passes_the_message_unchanged() -> None:
    seen: list[Any] = []
    inner = responder(headers=[CL])

    async def spy_send(message: MutableMapping[str, Any]) -> None:
        seen.append(message)

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        async def capture(message: MutableMapping[str, Any]) -> None:
            seen.append(("app", message))
            await send(message)

        await inner(scope, receive, capture)

    mw = ConnectionMiddleware(app)

    async def go() -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request"}

        await mw(make_scope(), receive, spy_send)

    run(go())
    # The very same message objects reach the server: no copy on the common path.
    assert seen[0][1] is seen[1]
    assert header_lines([seen[1]], b"connection") == []


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([(b"connection", b"close")], id="close"),
        pytest.param([(b"connection", b"TE, close")], id="token-list"),
        pytest.param([(b"connection", b"Close")], id="capitalised"),
        pytest.param([(b"connection", b"te"), (b"connection", b"close")], id="two-fields"),
        pytest.param([(b"connection", b" ,  CLOSE ,")], id="empty-elements"),
    ],
)
def test_client_close_gives_exactly_one_close_line(headers: list[tuple[bytes, bytes]]) -> None:
    app = ConnectionMiddleware(responder(headers=[CL, (b"connection", b"keep-alive")]))
    sent = run(call(app, make_scope(headers=headers)))
    assert header_lines(sent, b"connection") == [b"close"]
    assert body_of(sent) == b"hello"


def test_http10_closes_unless_server_keeps() -> None:
    app = ConnectionMiddleware(responder(headers=[CL]))
    for version in ("1.0", "1"):
        sent = run(call(app, make_scope(http_version=version)))
        assert header_lines(sent, b"connection") == [b"close"]
        sent = run(call(app, make_scope(http_version=version, headers=[(b"connection", b"keep-alive")])))
        # The capturing send belongs to no known server: connmw promises nothing.
        assert header_lines(sent, b"connection") == [b"close"]


class _GranianLikeSend:
    """A send whose owner's type says it comes from granian (which keeps 1.0 alive)."""

    def __init__(self) -> None:
        self.sent: list[MutableMapping[str, Any]] = []

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(message)


_GranianLikeSend.__module__ = "granian._futures"


def test_http10_keep_alive_said_when_server_keeps_it() -> None:
    app = ConnectionMiddleware(responder(headers=[CL]))
    owner = _GranianLikeSend()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    run(app(make_scope(http_version="1", headers=[(b"connection", b"keep-alive")]), receive, owner.send))
    assert header_lines(owner.sent, b"connection") == [b"keep-alive"]
    # Unknown length: a 1.0 keep-alive cannot be honoured.
    owner2 = _GranianLikeSend()
    run(
        ConnectionMiddleware(responder(body=[b"a", b"b"]))(
            make_scope(http_version="1.0", headers=[(b"connection", b"keep-alive")]), receive, owner2.send
        )
    )
    assert header_lines(owner2.sent, b"connection") == [b"close"]
    assert body_of(owner2.sent) == b"ab"


@pytest.mark.parametrize(("method", "status"), [("HEAD", 200), ("GET", 204), ("GET", 304)])
def test_http10_bodiless_responses_have_known_length(method: str, status: int) -> None:
    owner = _GranianLikeSend()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    app = ConnectionMiddleware(responder(status=status, body=b""), close_on_status=())
    run(
        app(
            make_scope(method=method, http_version="1.0", headers=[(b"connection", b"keep-alive")]),
            receive,
            owner.send,
        )
    )
    assert header_lines(owner.sent, b"connection") == [b"keep-alive"]


HOP = [
    (b"connection", b"keep-alive, X-Hop"),
    (b"x-hop", b"1"),
    (b"keep-alive", b"timeout=99"),
    (b"proxy-connection", b"keep-alive"),
    (b"transfer-encoding", b"chunked"),
    (b"upgrade", b"h2c"),
    (b"te", b"gzip"),
    (b"te", b"trailers"),
    CL,
]


@pytest.mark.parametrize("version", ["2", "2.0", "3"])
def test_http2_strips_forbidden_and_nominated_headers(version: str) -> None:
    app = ConnectionMiddleware(responder(headers=HOP))
    sent = run(call(app, make_scope(http_version=version, headers=[(b"connection", b"close")])))
    names = [k for k, _ in sent[0]["headers"]]
    assert names == [b"te", b"content-length"]
    assert header_lines(sent, b"te") == [b"trailers"]
    assert body_of(sent) == b"hello"


def test_http2_clean_response_is_untouched() -> None:
    app = ConnectionMiddleware(responder(headers=[CL, (b"te", b"trailers")]))
    sent = run(call(app, make_scope(http_version="2")))
    assert sent[0]["headers"] == [CL, (b"te", b"trailers")]


def test_http11_app_hop_by_hop_headers_are_merged() -> None:
    app = ConnectionMiddleware(responder(headers=HOP))
    sent = run(call(app, make_scope()))
    # Upgrade goes out with "upgrade" in the Connection line (RFC 9110 §7.8).
    assert header_lines(sent, b"connection") == [b"x-hop, upgrade"]
    assert header_lines(sent, b"transfer-encoding") == []
    assert header_lines(sent, b"proxy-connection") == []
    assert header_lines(sent, b"keep-alive") == [b"timeout=99"]
    assert header_lines(sent, b"x-hop") == [b"1"]
    sent = run(call(app, make_scope(headers=[(b"connection", b"close")])))
    assert header_lines(sent, b"connection") == [b"x-hop, upgrade, close"]
    assert header_lines(sent, b"keep-alive") == []


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"timeout=5\r\nSet-Cookie: evil=1", id="crlf"),
        pytest.param(b"timeout=5\nSet-Cookie: evil=1", id="lf"),
        pytest.param(b"timeout=5\rx", id="cr"),
        pytest.param(b"timeout=5\x00", id="nul"),
    ],
)
def test_apps_keep_alive_with_line_breaks_is_never_copied(value: bytes) -> None:
    """A kept response copies the application's own ``Keep-Alive`` value only when it
    cannot split the header block (header injection)."""
    app = ConnectionMiddleware(responder(headers=[CL, (b"keep-alive", value)]))
    sent = run(call(app, make_scope()))
    assert header_lines(sent, b"keep-alive") == []
    for name, line in sent[0]["headers"]:
        assert not any(c in name + line for c in b"\r\n\x00"), (name, line)
    # The same response with a clean value keeps it: the check is on the value, not the header.
    app = ConnectionMiddleware(responder(headers=[CL, (b"keep-alive", b"timeout=5")]))
    sent = run(call(app, make_scope()))
    assert header_lines(sent, b"keep-alive") == [b"timeout=5"]


def test_app_connection_close_is_honoured() -> None:
    decisions: list[Any] = []
    app = ConnectionMiddleware(
        responder(headers=[(b"Connection", b"Close"), CL]), on_decision=lambda f, d: decisions.append(d)
    )
    sent = run(call(app, make_scope()))
    assert header_lines(sent, b"connection") == [b"close"]
    assert decisions[0].reason == "app"


def test_keep_alive_advertised_with_remaining_count() -> None:
    app = ConnectionMiddleware(responder(headers=[CL]), keep_alive_timeout=5, max_requests_per_connection=3)
    got = []
    for _ in range(4):
        sent = run(call(app, make_scope()))
        got.append((header_lines(sent, b"connection"), header_lines(sent, b"keep-alive")))
    assert got == [
        ([], [b"timeout=5, max=2"]),
        ([], [b"timeout=5, max=1"]),
        ([b"close"], []),
        ([], [b"timeout=5, max=2"]),  # a new connection on the same address after the close
    ]
    sent = run(call(app, make_scope(http_version="2")))
    assert header_lines(sent, b"keep-alive") == []


def test_keep_alive_without_cap_and_replacing_the_apps() -> None:
    app = ConnectionMiddleware(
        responder(headers=[CL, (b"keep-alive", b"timeout=99")]), keep_alive_timeout=7.9
    )
    sent = run(call(app, make_scope()))
    assert header_lines(sent, b"keep-alive") == [b"timeout=7"]


def test_rules_status_and_decision_header() -> None:
    app = ConnectionMiddleware(
        responder(headers=[CL], status=500),
        rules=[Rule("/health", close=False), Rule("/dl/**", methods={"get"}), Rule(status=range(500, 600))],
        decision_header="X-Connmw",
    )
    sent = run(call(app, make_scope("/health")))
    assert header_lines(sent, b"connection") == []
    assert header_lines(sent, b"x-connmw") == [b"keep"]
    sent = run(call(app, make_scope("/dl/a/b.zip")))
    assert header_lines(sent, b"x-connmw") == [b"close; reason=rule"]
    sent = run(call(app, make_scope("/other", method="POST")))
    assert header_lines(sent, b"x-connmw") == [b"close; reason=rule"]
    sent = run(call(app, make_scope("/x", http_version="2")))
    assert header_lines(sent, b"x-connmw") == [b"keep"]


def test_root_path_is_part_of_the_matched_path() -> None:
    app = ConnectionMiddleware(responder(headers=[CL]), rules=[Rule("/api/export")])
    sent = run(call(app, make_scope("/export", root_path="/api")))
    assert header_lines(sent, b"connection") == [b"close"]


def test_request_close_from_handler() -> None:
    async def handler(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        assert connmw.request_close(scope, "bye") is True
        await responder(headers=[CL])(scope, receive, send)
        assert connmw.request_close(scope) is False  # too late now

    facts: list[Any] = []
    app = ConnectionMiddleware(handler, on_decision=lambda f, d: facts.append((f, d)))
    sent = run(call(app, make_scope()))
    assert header_lines(sent, b"connection") == [b"close"]
    assert facts[0][1].reason == "handler"
    assert facts[0][0].handler_reason == "bye"


def test_request_close_without_middleware_returns_false_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_hint_logs(caplog)
    with caplog.at_level(logging.WARNING, logger="connmw"):
        assert connmw.request_close(make_scope()) is False
        assert connmw.request_close(make_scope(), "again") is False
    hints = install_hint_logs(caplog)
    assert len(hints) == 1
    assert "connmw.ConnectionMiddleware(app)" in hints[0]
    assert "connmw.contrib.starlette.install(app)" in hints[0]
    # Not a request at all: a programming error, said at once.
    with pytest.raises(RuntimeError, match="WSGIConnectionMiddleware"):
        connmw.request_close(object())
    with pytest.raises(TypeError, match="reason"):
        connmw.request_close(make_scope(), 42)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["websocket", "lifespan"])
def test_other_scopes_pass_through(kind: str) -> None:
    seen: list[Any] = []

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        seen.append((scope, send))

    mw = ConnectionMiddleware(app)
    scope: dict[str, Any] = {"type": kind}

    async def send(message: MutableMapping[str, Any]) -> None:
        pass

    run(mw(scope, _no_receive, send))
    assert seen[0][0] is scope and "connmw" not in scope
    assert seen[0][1] is send


def test_upgrade_request_cannot_switch_connmw_off() -> None:
    """A client's Connection: upgrade is no bypass: the response is still cleaned."""
    app = ConnectionMiddleware(responder(headers=[CL, (b"transfer-encoding", b"chunked")]), rules=[Rule("/")])
    scope = make_scope(headers=[(b"connection", b"Upgrade, close"), (b"upgrade", b"h2c")])
    sent = run(call(app, scope))
    assert header_lines(sent, b"transfer-encoding") == []
    assert header_lines(sent, b"connection") == [b"close"]
    assert "connmw" in scope


def test_switching_protocols_response_passes_untouched() -> None:
    headers = [(b"connection", b"Upgrade"), (b"upgrade", b"h2c")]
    app = ConnectionMiddleware(responder(status=101, headers=headers, body=b""), rules=[Rule("/")])
    sent = run(call(app, make_scope(headers=[(b"connection", b"Upgrade"), (b"upgrade", b"h2c")])))
    assert sent[0]["headers"] == headers


def test_streaming_body_is_byte_identical() -> None:
    parts = [b"\x00\xff", b"", b"x" * 70000, b"end"]
    app = ConnectionMiddleware(responder(body=parts), rules=[Rule("/")])
    sent = run(call(app, make_scope()))
    assert [m.get("body") for m in sent[1:]] == parts
    assert header_lines(sent, b"connection") == [b"close"]


def test_application_exceptions_pass_through_unchanged() -> None:
    boom = ValueError("boom")

    async def before(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        raise boom

    async def after(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise boom

    for inner in (before, after):
        mw = ConnectionMiddleware(inner, overload_soft_limit=1, overload_hard_limit=2)
        with pytest.raises(ValueError) as info:
            run(call(mw, make_scope()))
        assert info.value is boom
        assert mw.engine.load.in_flight == 0


def test_nested_instances_act_once() -> None:
    app = ConnectionMiddleware(ConnectionMiddleware(responder(headers=[CL])))
    sent = run(call(app, make_scope(headers=[(b"connection", b"close")])))
    assert header_lines(sent, b"connection") == [b"close"]


def test_on_decision_and_pressure_errors_do_not_break_responses(caplog: pytest.LogCaptureFixture) -> None:
    def bad_hook(facts: Any, decision: Any) -> None:
        raise RuntimeError("hook")

    def bad_pressure() -> float:
        raise RuntimeError("pressure")

    app = ConnectionMiddleware(responder(headers=[CL]), on_decision=bad_hook, pressure=bad_pressure)
    with caplog.at_level(logging.WARNING, logger="connmw"):
        for _ in range(2):
            sent = run(call(app, make_scope()))
            assert body_of(sent) == b"hello"
    assert sum("pressure callable raised" in r.getMessage() for r in caplog.records) == 1
    assert sum("on_decision" in r.getMessage() for r in caplog.records) == 2


def test_debug_log_names_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    app = ConnectionMiddleware(responder(headers=[CL]), rules=[Rule("/x")])
    with caplog.at_level(logging.DEBUG, logger="connmw"):
        run(call(app, make_scope("/x")))
    assert any("rule" in r.getMessage() and "/x" in r.getMessage() for r in caplog.records)


def test_drain_closes_every_http1_response() -> None:
    app = ConnectionMiddleware(responder(headers=[CL]))
    assert not app.draining
    app.drain()
    assert app.draining
    sent = run(call(app, make_scope()))
    assert header_lines(sent, b"connection") == [b"close"]
    sent = run(call(app, make_scope(http_version="2")))
    assert header_lines(sent, b"connection") == []
    app.stop_draining()
    sent = run(call(app, make_scope()))
    assert header_lines(sent, b"connection") == []
    with pytest.raises(ValueError, match="drain window"):
        app.drain(-1)


def test_odd_status_and_missing_headers_are_passed_to_the_server() -> None:
    async def odd(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": "200"})
        await send({"type": "http.response.body", "body": b"x"})

    sent = run(call(ConnectionMiddleware(odd), make_scope(headers=[(b"connection", b"close")])))
    assert sent[0] == {"type": "http.response.start", "status": "200"}


def test_starlette_and_fastapi_end_to_end() -> None:
    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("home")

    async def bye(request: Request) -> PlainTextResponse:
        connmw.request_close(request)
        return PlainTextResponse("bye")

    star = Starlette(routes=[Route("/", home), Route("/bye", bye)])
    star.add_middleware(ConnectionMiddleware, rules=[Rule("/rule")])

    fast = FastAPI()

    @fast.get("/")
    async def fhome() -> dict[str, str]:
        return {"ok": "yes"}

    @fast.get("/bye")
    async def fbye(request: Request) -> dict[str, str]:
        connmw.request_close(request)
        return {"ok": "bye"}

    fast.add_middleware(ConnectionMiddleware)

    async def go(app: Any) -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.get("/")
            assert r.status_code == 200 and "connection" not in r.headers
            r = await client.get("/bye")
            assert r.status_code == 200
            assert r.headers["connection"] == "close"
            r = await client.get("/", headers={"Connection": "TE, close"})
            assert r.headers.get_list("connection") == ["close"]
            r = await client.get("/missing")
            assert r.status_code == 404 and "connection" not in r.headers

    run(go(star))
    run(go(fast))


def test_debug_log_carries_the_handler_reason(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        connmw.request_close(scope, "logout")
        await responder(headers=[CL])(scope, receive, send)

    with caplog.at_level(logging.DEBUG, logger="connmw"):
        run(call(ConnectionMiddleware(handler), make_scope("/bye")))
    assert any(r.getMessage() == "close GET /bye: handler (logout)" for r in caplog.records)


def test_decision_header_is_connmws_own_line() -> None:
    app = ConnectionMiddleware(responder(headers=[CL, (b"X-Connmw", b"forged")]), decision_header="x-connmw")
    for version in ("1.1", "2"):
        sent = run(call(app, make_scope(http_version=version)))
        assert header_lines(sent, b"x-connmw") == [b"keep"]
    twice = ConnectionMiddleware(app, decision_header="x-connmw")
    sent = run(call(twice, make_scope(headers=[(b"connection", b"close")])))
    assert header_lines(sent, b"x-connmw") == [b"close; reason=client"]


def test_requests_are_freed_without_the_cycle_collector() -> None:
    """Servers' send objects hold the scope; connmw must not close a reference cycle
    through its facts, or every request waits for the cycle collector."""
    import gc

    class Cycle:
        def __init__(self, scope: MutableMapping[str, Any]) -> None:
            self.scope = scope

        async def send(self, message: MutableMapping[str, Any]) -> None:
            pass

    async def go(app: Any) -> None:
        for _ in range(50):
            scope = make_scope(headers=[(b"connection", b"close")])
            await app(scope, _no_receive_ok, Cycle(scope).send)

    option_sets: list[dict[str, Any]] = [
        {},
        {"max_requests_per_connection": 5, "overload_soft_limit": 1, "overload_hard_limit": 9},
    ]
    for options in option_sets:
        app = ConnectionMiddleware(responder(headers=[CL]), **options)
        gc.collect()
        gc.disable()
        try:
            run(go(app))
            assert gc.collect() == 0
        finally:
            gc.enable()


async def _no_receive_ok() -> MutableMapping[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def test_send_after_the_application_returned_is_refused() -> None:
    kept: list[Any] = []

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        kept.append(send)
        await responder(headers=[CL])(scope, receive, send)

    run(call(ConnectionMiddleware(app), make_scope()))
    with pytest.raises(RuntimeError, match="after it returned"):
        run(kept[0]({"type": "http.response.body", "body": b"late"}))


def _wsgi_hello(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Length", "2")])
    return [b"hi"]


def test_the_app_may_be_passed_by_keyword() -> None:
    """Starlette before 0.41 builds its middleware as ``cls(app=app, **options)``."""
    from connmw import WSGIConnectionMiddleware

    app = ConnectionMiddleware(app=responder(headers=[CL]), rules=[Rule("/")])  # type: ignore[call-arg]
    sent = run(call(app, make_scope()))
    assert header_lines(sent, b"connection") == [b"close"]
    assert WSGIConnectionMiddleware(app=_wsgi_hello).app is _wsgi_hello  # type: ignore[call-arg]
    for cls in (ConnectionMiddleware, WSGIConnectionMiddleware):
        with pytest.raises(TypeError):
            cls(rules=[])  # type: ignore[call-arg]
