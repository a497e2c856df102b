"""A proxy that closes every upstream connection is named, once, with the settings
that fix it: in-process tables, then a real nginx in front of a real server."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from connmw import ConnectionMiddleware, WSGIConnectionMiddleware
from connmw._diagnose import WATCH
from connmw.cli import main
from connmw.probe import CaseResult, CaseSpec, evaluate
from tests import wire
from tests.apps import raw_asgi, raw_wsgi
from tests.asgi_util import call, make_scope, responder
from tests.servers import free_port, uvicorn_thread
from tests.test_deploy import NGINX_KEEPALIVE_LINES, haproxy, nginx, snippet, with_ports

CLOSE = [(b"connection", b"close")]


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def run(app: Any, scopes: list[dict[str, Any]]) -> None:
    async def go() -> None:
        for scope in scopes:
            await call(app, scope)

    asyncio.run(go())


def app() -> ConnectionMiddleware:
    return ConnectionMiddleware(responder(headers=[(b"content-length", b"5")]))


@pytest.mark.parametrize(
    ("scopes", "what"),
    [
        pytest.param(
            [make_scope(http_version="1.0", headers=CLOSE) for _ in range(WATCH)],
            "as HTTP/1.0 without keep-alive",
            id="nginx-default",
        ),
        pytest.param(
            [make_scope(http_version="1.0") for _ in range(WATCH)],
            "as HTTP/1.0 without keep-alive",
            id="http10",
        ),
        pytest.param([make_scope(headers=CLOSE) for _ in range(WATCH)], "with Connection: close", id="close"),
        pytest.param(
            [make_scope(headers=CLOSE, client=("10.0.0.7", 40000 + i)) for i in range(WATCH + 5)],
            "with Connection: close",
            id="many-ports-one-peer",
        ),
    ],
)
def test_a_proxy_that_closes_everything_is_named_once(
    caplog: pytest.LogCaptureFixture, scopes: list[dict[str, Any]], what: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="connmw"):
        run(app(), scopes + scopes)
    peer = scopes[0]["client"][0]
    assert warnings_of(caplog) == [
        f"connmw: the first {WATCH} requests all came from {peer} {what}, each on a new connection: "
        "a proxy in front closes every upstream connection (nginx's default proxy_pass does), so "
        "connmw's own closes (request caps, age, rules, drain) and Keep-Alive never act. To let "
        "connections persist: nginx: `keepalive 16;` in the upstream block, and `proxy_http_version 1.1;` "
        'plus `proxy_set_header Connection "";` in the location; HAProxy: keep `http-reuse` on '
        "(the default) and remove `option httpclose` and `option http-server-close`."
    ]


@pytest.mark.parametrize(
    "scopes",
    [
        pytest.param([make_scope(headers=CLOSE) for _ in range(WATCH - 1)], id="too-few"),
        pytest.param(
            [make_scope(headers=CLOSE) for _ in range(WATCH - 1)]
            + [make_scope()]
            + [make_scope(headers=CLOSE) for _ in range(WATCH)],
            id="one-kept",
        ),
        pytest.param([make_scope()] + [make_scope(headers=CLOSE) for _ in range(WATCH)], id="kept-first"),
        pytest.param(
            [make_scope(headers=CLOSE, client=(f"10.0.0.{i % 2}", 1)) for i in range(WATCH * 2)],
            id="two-peers",
        ),
        pytest.param(
            [make_scope(http_version="1.0", headers=[(b"connection", b"keep-alive")]) for _ in range(WATCH)],
            id="http10-keep-alive",
        ),
        pytest.param([make_scope(http_version="2") for _ in range(WATCH)], id="http2"),
        pytest.param([make_scope(headers=CLOSE, client=None) for _ in range(WATCH)], id="no-peer"),
    ],
)
def test_no_diagnosis_when_connections_persist(
    caplog: pytest.LogCaptureFixture, scopes: list[dict[str, Any]]
) -> None:
    middleware = app()
    with caplog.at_level(logging.WARNING, logger="connmw"):
        run(middleware, scopes)
    assert warnings_of(caplog) == []
    if len(scopes) >= WATCH:
        assert middleware.engine.watching is False  # the watch ended: later requests pay nothing


def test_wsgi_names_the_proxy_too(caplog: pytest.LogCaptureFixture) -> None:
    client = Client(WSGIConnectionMiddleware(raw_wsgi))
    with caplog.at_level(logging.WARNING, logger="connmw"):
        for _ in range(WATCH):
            client.get("/", headers={"Connection": "close"}, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    (message,) = [m for m in warnings_of(caplog) if "a proxy in front" in m]
    assert message.startswith(
        f"connmw: the first {WATCH} requests all came from 10.1.2.3 with Connection: close"
    )


# -- behind a real nginx and HAProxy --------------------------------------------------------


PROBE_ARGS = ["--json", "--concurrency", "6", "--close-wait", "0.3"]


def through_proxy(
    proxy: Any, config: str, tmp: Path, caplog: pytest.LogCaptureFixture, probe: bool = False
) -> tuple[list[str], Any]:
    """``WATCH + 2`` requests on one client connection through the proxy to uvicorn with
    connmw (deciding with ``x-connmw``); the diagnosis warnings logged, and the
    middleware. With ``probe``, ``connmw probe`` then runs through the proxy too."""
    middleware = ConnectionMiddleware(raw_asgi, decision_header="x-connmw")
    with caplog.at_level(logging.WARNING, logger="connmw"), uvicorn_thread(middleware) as back:
        front = free_port()
        with proxy(with_ports(config, front, back), tmp):
            reader = wire.Reader(wire.connect(front))
            try:
                for _ in range(WATCH + 2):
                    reader.sock.sendall(wire.build_request("GET", "/"))
                    assert reader.read_response().status == 200
            finally:
                reader.sock.close()
            if probe:
                assert main(["probe", f"http://127.0.0.1:{front}/", *PROBE_ARGS]) in (0, 1)
    found = [m for m in warnings_of(caplog) if "a proxy in front closes every upstream connection" in m]
    return found, middleware


def probe_findings(out: str) -> dict[str, list[str]]:
    report = json.loads(out)
    return {case["id"]: [f["code"] for f in case["findings"]] for case in report["cases"]}


@pytest.mark.server
@pytest.mark.tools("nginx")
def test_nginx_default_proxy_pass_is_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    config = "\n".join(
        line for line in snippet("nginx").splitlines() if not any(k in line for k in NGINX_KEEPALIVE_LINES)
    )
    found, middleware = through_proxy(nginx, config, tmp_path, caplog, probe=True)
    assert len(found) == 1
    assert found[0].startswith(f"connmw: the first {WATCH} requests all came from 127.0.0.1 as HTTP/1.0")
    stats = middleware.stats()["responses"]
    # nginx says HTTP/1.0 and close: every decision is the client's (the probe's too).
    assert stats["kept"] == 0
    assert stats["closed"]["client"] >= WATCH + 2
    findings = probe_findings(capsys.readouterr().out)
    # The probe's HTTP/1.1 request without close reached connmw as a close.
    assert "proxy-closes-upstream" in findings["http11"]
    assert "proxy-closes-upstream" not in findings["http11-close"]


@pytest.mark.server
@pytest.mark.tools("nginx")
def test_nginx_with_upstream_keepalive_is_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    found, middleware = through_proxy(nginx, snippet("nginx"), tmp_path, caplog, probe=True)
    assert found == []
    assert middleware.stats()["responses"]["kept"] >= WATCH  # connmw has connections to manage
    findings = probe_findings(capsys.readouterr().out)
    assert not any("proxy-closes-upstream" in codes for codes in findings.values())


@pytest.mark.server
@pytest.mark.tools("haproxy")
def test_haproxy_http_server_close_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = snippet("haproxy").replace("    mode http\n", "    mode http\n    option http-server-close\n")
    found, _ = through_proxy(haproxy, config, tmp_path, caplog)
    assert len(found) == 1
    assert found[0].startswith(
        f"connmw: the first {WATCH} requests all came from 127.0.0.1 with Connection: close"
    )


# -- the probe's finding, as a pure function ----------------------------------------------


@pytest.mark.parametrize(
    ("spec", "decision", "found"),
    [
        pytest.param(CaseSpec("http11", "HTTP/1.1"), "close; reason=client", True, id="proxy-added-close"),
        pytest.param(CaseSpec("http11", "HTTP/1.1"), "Close; Reason=http-1.0", True, id="proxy-downgraded"),
        pytest.param(CaseSpec("http11", "HTTP/1.1"), "keep", False, id="kept"),
        pytest.param(CaseSpec("http11", "HTTP/1.1"), "close; reason=rule", False, id="connmw-own-close"),
        pytest.param(
            CaseSpec("http11-close", "HTTP/1.1 close", connection="close"),
            "close; reason=client",
            False,
            id="the-probe-asked",
        ),
        pytest.param(
            CaseSpec(
                "http10-keep-alive", "HTTP/1.0 keep-alive", protocol="HTTP/1.0", connection="keep-alive"
            ),
            "close; reason=http-1.0",
            False,
            id="http10-server-does-not-keep",
        ),
    ],
)
def test_probe_finding(spec: CaseSpec, decision: str, found: bool) -> None:
    result = CaseResult(spec, status=200, response_version="HTTP/1.1", framing="content-length")
    result.captured = {"x-connmw": [decision]}
    result.closed = True
    codes = [f.code for f in evaluate(spec, result, 1.0)]
    assert ("proxy-closes-upstream" in codes) is found


def test_the_watch_says_nothing_once_it_has_ended() -> None:
    from connmw._diagnose import ProxyWatch

    watch = ProxyWatch()
    assert watch.see(11, False, False, "10.0.0.1") is None  # a kept request ends the watch
    assert watch.active is False
    assert watch.see(10, True, False, "10.0.0.1") is None
