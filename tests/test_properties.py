"""Property-based tests: hostile request headers and arbitrary application
responses through the header core and both middlewares.

The invariants themselves live in ``tests/fuzz/harness.py`` (shared with the fuzz
harness). Profiles: ``ci`` (default, a moderate number of examples) and ``long``
(``CONNMW_HYPOTHESIS_PROFILE=long pytest tests/test_properties.py``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connmw import ConnectionMiddleware, WSGIConnectionMiddleware
from connmw._headers import (
    H1_APP_HOP_BY_HOP,
    MAX_TOKENS,
    connection_tokens,
    has_forbidden_chars,
    is_token,
)
from tests import wire
from tests.fuzz import strategies as hs
from tests.fuzz.harness import (
    OPTION_SETS,
    check_asgi,
    check_asgi_request_side,
    check_wsgi,
    wsgi_environ,
    wsgi_responder,
    wsgi_run,
)
from tests.servers import hypercorn_thread, stopped, uvicorn_thread

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
settings.register_profile("ci", max_examples=100, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("long", max_examples=5000, **_COMMON)  # type: ignore[arg-type]
settings.load_profile(os.environ.get("CONNMW_HYPOTHESIS_PROFILE", "ci"))

option_set = st.sampled_from(OPTION_SETS)


# --------------------------------------------------------------------------- header core


def _reference_tokens(values: list[bytes]) -> list[bytes]:
    out = []
    for value in values:
        for raw in value.split(b","):
            tok = raw.strip(b" \t").lower()
            if tok:
                out.append(tok)
    return out


@given(values=st.lists(hs.connection_value | hs.long_connection_value() | st.binary(max_size=64), max_size=6))
def test_connection_tokens_never_raise_and_keep_close(values: list[bytes]) -> None:
    tokens = connection_tokens(values)
    full = _reference_tokens(values)
    assert len(tokens) <= MAX_TOKENS + 1
    assert tokens[:MAX_TOKENS] == full[:MAX_TOKENS]
    for tok in tokens:
        assert tok and tok == tok.lower() and b"," not in tok
        assert tok == tok.strip(b" \t")
    # A client's close is honoured wherever it stands in the list.
    assert (b"close" in tokens) == (b"close" in full)


@given(value=st.binary(max_size=40))
def test_is_token_and_forbidden_chars(value: bytes) -> None:
    tchar = set(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    assert is_token(value) == (bool(value) and all(c in tchar for c in value))
    assert has_forbidden_chars(value) == any(c in value for c in b"\r\n\x00")
    if is_token(value):
        assert not has_forbidden_chars(value)


# --------------------------------------------------------------------------- ASGI


@given(
    request_headers=hs.request_headers,
    http_version=hs.http_version,
    method=hs.method,
    path=hs.path,
    status=hs.status,
    app_headers=hs.response_headers,
    body=hs.body,
    options=option_set,
    as_generator=st.booleans(),
)
def test_asgi_invariants(
    request_headers: list[tuple[bytes, bytes]],
    http_version: str,
    method: str,
    path: str,
    status: int,
    app_headers: list[tuple[bytes, bytes]],
    body: list[bytes],
    options: dict[str, Any],
    as_generator: bool,
) -> None:
    check_asgi(
        request_headers,
        http_version,
        method,
        path,
        status,
        app_headers,
        body,
        options,
        as_generator=as_generator,
    )


@given(request_headers=hs.request_headers, http_version=hs.http_version)
def test_asgi_never_strips_request_headers_by_default(
    request_headers: list[tuple[bytes, bytes]], http_version: str
) -> None:
    sent, seen = check_asgi_request_side(request_headers, http_version, {"max_requests_per_connection": 5})
    assert seen == sent


ASGI_PROTECTED = {b"host", b"authorization", b"cookie", b"content-length", b"content-type", b"forwarded"}


@given(request_headers=hs.request_headers, http_version=hs.http_version, cap=st.integers(1, 40))
def test_asgi_opt_in_strip_is_bounded_and_spares_protected(
    request_headers: list[tuple[bytes, bytes]], http_version: str, cap: int
) -> None:
    options = {
        "strip_nominated_request_headers": True,
        "protected_request_headers": {"X-Keep"},
        "max_connection_tokens": cap,
    }
    sent, seen = check_asgi_request_side(request_headers, http_version, options)
    values = [v for k, v in sent if k == b"connection"]
    honoured = set(connection_tokens(values, cap)[:cap])
    removed = [h for h in sent if h not in seen]
    # Order is kept and nothing is added.
    assert [h for h in sent if h in seen] == seen
    for name, _ in removed:
        assert name in honoured, name
        assert name not in ASGI_PROTECTED and name != b"x-keep" and name != b"connection"
        assert not name.startswith(b"x-forwarded-")
    for name, _ in sent:
        if name in ASGI_PROTECTED or name.startswith(b"x-forwarded-") or name == b"x-keep":
            assert any(k == name for k, _ in seen)


def test_asgi_hop_by_hop_abuse_examples() -> None:
    request = [
        (b"host", b"example"),
        (b"connection", b"close, Authorization, X-Forwarded-For, Cookie, X-Debug, x-keep"),
        (b"authorization", b"Bearer t"),
        (b"x-forwarded-for", b"10.0.0.1"),
        (b"cookie", b"a=1"),
        (b"x-debug", b"1"),
        (b"x-keep", b"1"),
    ]
    _, seen_default = check_asgi_request_side(request, "1.1", {})
    assert seen_default == request
    _, seen = check_asgi_request_side(
        request, "1.1", {"strip_nominated_request_headers": True, "protected_request_headers": {"X-Keep"}}
    )
    assert [k for k, _ in seen] == [
        b"host",
        b"connection",
        b"authorization",
        b"x-forwarded-for",
        b"cookie",
        b"x-keep",
    ]
    # The cap: only the first N tokens are honoured (close is honoured anywhere).
    many = [(b"connection", b", ".join([b"x-%d" % i for i in range(40)] + [b"close"]))] + [
        (b"x-%d" % i, b"v") for i in range(40)
    ]
    _, seen = check_asgi_request_side(many, "1.1", {"strip_nominated_request_headers": True})
    kept = {k for k, _ in seen}
    assert all(b"x-%d" % i not in kept for i in range(32))
    assert all(b"x-%d" % i in kept for i in range(32, 40))


def test_protected_name_outside_latin1_is_refused_at_construction() -> None:
    # Refused once, with the option named, instead of failing on every request.
    with pytest.raises(ValueError, match="protected_request_headers"):
        check_asgi_request_side(
            [(b"connection", b"x-a"), (b"x-a", b"1")],
            "1.1",
            {"strip_nominated_request_headers": True, "protected_request_headers": {"x-\u20ac"}},
        )


def test_asgi_generator_headers_are_not_lost() -> None:
    # ASGI allows any iterable: connmw must read it once and hand on what it read.
    for version, request in (("1.1", []), ("1.1", [(b"connection", b"close")]), ("2", [])):
        out = check_asgi(
            request, version, "GET", "/", 200, [(b"content-length", b"5"), (b"x-a", b"1")], [b"hello"], {},
            as_generator=True,
        )  # fmt: skip
        assert (b"x-a", b"1") in list(out[0]["headers"])


@pytest.mark.parametrize(
    "app_value",
    [b"x-a\r\nset-cookie: evil=1", b"x-a\nx-b: 1", b"x-a\x00", b"x a", b"\xff"],
)
def test_asgi_never_copies_unvalidated_app_tokens(app_value: bytes) -> None:
    app_headers = [(b"content-length", b"5"), (b"connection", app_value), (b"keep-alive", b"t\r\nx: 1")]
    out = check_asgi([(b"connection", b"close")], "1.1", "GET", "/", 200, app_headers, [b"hello"], {})
    assert [v for k, v in out[0]["headers"] if k == b"connection"] == [b"close"]
    out = check_asgi([], "1.0", "GET", "/", 200, app_headers, [b"hello"], {})
    for name, value in out[0]["headers"]:
        assert not has_forbidden_chars(name + value)


def test_asgi_h2_te_must_be_exactly_trailers() -> None:
    for value, kept in ((b"trailers", True), (b"Trailers", True), (b" trailers", False), (b"gzip", False)):
        out = check_asgi([], "2", "GET", "/", 200, [(b"te", value)], [b""], {})
        assert ((b"te", value) in out[0]["headers"]) is kept


# --------------------------------------------------------------------------- WSGI


@given(
    request_headers=hs.wsgi_request_headers,
    protocol=hs.wsgi_protocol,
    method=hs.method,
    status=hs.wsgi_status,
    app_headers=hs.wsgi_response_headers,
    body=hs.body,
    options=option_set,
)
def test_wsgi_invariants(
    request_headers: list[tuple[str, str]],
    protocol: str,
    method: str,
    status: str,
    app_headers: list[tuple[str, str]],
    body: list[bytes],
    options: dict[str, Any],
) -> None:
    check_wsgi(request_headers, protocol, method, status, app_headers, body, options)


def _wsgi_seen(
    request_headers: list[tuple[str, str]], options: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    environ = wsgi_environ(request_headers)
    before = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
    seen: list[dict[str, Any]] = []
    wsgi_run(WSGIConnectionMiddleware(wsgi_responder("200 OK", [], [b""], seen=seen), **options), environ)
    return before, seen[0]


@given(request_headers=hs.wsgi_request_headers)
def test_wsgi_never_strips_request_headers_by_default(request_headers: list[tuple[str, str]]) -> None:
    before, seen = _wsgi_seen(request_headers, {"max_requests_per_connection": 5})
    assert seen == before


WSGI_PROTECTED = {
    "HTTP_HOST",
    "HTTP_AUTHORIZATION",
    "HTTP_COOKIE",
    "HTTP_FORWARDED",
    "HTTP_CONNECTION",
    "HTTP_X_KEEP",
}


@given(request_headers=hs.wsgi_request_headers, cap=st.integers(1, 40))
def test_wsgi_opt_in_strip_is_bounded_and_spares_protected(
    request_headers: list[tuple[str, str]], cap: int
) -> None:
    options = {
        "strip_nominated_request_headers": True,
        "protected_request_headers": {"x-keep"},
        "max_connection_tokens": cap,
    }
    before, seen = _wsgi_seen(request_headers, options)
    raw = before.get("HTTP_CONNECTION")
    honoured = set()
    if raw:
        for tok in connection_tokens([raw.encode("latin-1", "replace")], cap)[:cap]:
            honoured.add("HTTP_" + tok.decode("latin-1").upper().replace("-", "_"))
    assert set(seen) <= set(before)
    for key in set(before) - set(seen):
        assert key in honoured, key
        assert key not in WSGI_PROTECTED and not key.startswith("HTTP_X_FORWARDED_")
    for key in before:
        if key in WSGI_PROTECTED or key.startswith("HTTP_X_FORWARDED_"):
            assert seen[key] == before[key]


def test_wsgi_hop_by_hop_abuse_examples() -> None:
    request = [
        ("Connection", "close, Authorization, X-Forwarded-For, Cookie, X-Debug, Content-Type"),
        ("Authorization", "Bearer t"),
        ("X-Forwarded-For", "10.0.0.1"),
        ("Cookie", "a=1"),
        ("X-Debug", "1"),
        ("Content-Type", "text/plain"),
    ]
    before, seen = _wsgi_seen(request, {})
    assert seen == before
    before, seen = _wsgi_seen(request, {"strip_nominated_request_headers": True})
    assert set(before) - set(seen) == {"HTTP_X_DEBUG"}


def test_werkzeug_client_end_to_end() -> None:
    from werkzeug.test import Client

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response(
            "200 OK",
            [
                ("Content-Length", "5"),
                ("Transfer-Encoding", "chunked"),
                ("Connection", "close, x-hop"),
                ("Keep-Alive", "timeout=1"),
                ("X-Hop", "1"),
            ],
        )
        return [b"hello"]

    client = Client(WSGIConnectionMiddleware(app, max_requests_per_connection=2))
    resp = client.get("/", headers={"Connection": "close, Authorization", "Authorization": "t"})
    assert resp.get_data() == b"hello"
    names = [k.lower() for k, _ in resp.headers]
    assert "transfer-encoding" not in names and "connection" not in names and "keep-alive" not in names
    assert names.count("content-length") == 1


@given(
    request_headers=st.lists(
        st.tuples(
            st.sampled_from(["Connection", "X-Hop", "Authorization", "Keep-Alive"]),
            st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=30),
        ),
        max_size=6,
    ),
    app_headers=hs.wsgi_response_headers.map(
        lambda hs_: [(k, "".join(c for c in v if c not in "\r\n\x00")) for k, v in hs_]
    ),
    body=hs.body,
    options=option_set,
)
def test_werkzeug_client_invariants(
    request_headers: list[tuple[str, str]],
    app_headers: list[tuple[str, str]],
    body: list[bytes],
    options: dict[str, Any],
) -> None:
    from werkzeug.test import Client

    app_headers = [(k, v) for k, v in app_headers if k.lower() != "content-length"]
    client = Client(WSGIConnectionMiddleware(wsgi_responder("200 OK", app_headers, body), **options))
    resp = client.get("/", headers=[(k, v) for k, v in request_headers if k != "Connection" or v.strip()])
    assert resp.get_data() == b"".join(body)
    names = [k.lower() for k, _ in resp.headers]
    assert names.count("connection") == 0
    assert not {"transfer-encoding", "keep-alive", "te", "upgrade", "proxy-connection"} & set(names)


# --------------------------------------------------------------------------- smuggling on the wire


def test_app_transfer_encoding_is_removed_in_process() -> None:
    te_cl = [(b"content-length", b"5"), (b"transfer-encoding", b"chunked")]
    for version in ("1.1", "1.0", "2", "3"):
        out = check_asgi([], version, "GET", "/", 200, te_cl, [b"hello"], {})
        assert list(out[0]["headers"]) == [(b"content-length", b"5")] + (
            [(b"connection", b"close")] if version == "1.0" else []
        )
    headers = check_wsgi(
        [],
        "HTTP/1.1",
        "GET",
        "200 OK",
        [("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
        [b"hello"],
        {},
    )
    assert headers == [("Content-Length", "5")]
    assert b"transfer-encoding" in H1_APP_HOP_BY_HOP


async def _te_asgi(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-length", b"5"),
                (b"transfer-encoding", b"chunked"),
                (b"connection", b"keep-alive, x-secret"),
                (b"x-secret", b"1"),
                (b"te", b"gzip"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.mark.server
@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_app_transfer_encoding_never_reaches_http1_client_on_uvicorn(http: str) -> None:
    with uvicorn_thread(ConnectionMiddleware(_te_asgi), http=http) as port:
        sock = wire.connect(port)
        try:
            reader = wire.Reader(sock)
            for _ in range(3):
                sock.sendall(wire.build_request("GET", "/"))
                resp = reader.read_response()
                # Chunk framing left behind by the previous response would come first.
                assert resp.raw_head.startswith(b"HTTP/1.1 200 "), resp.raw_head
                assert resp.lines("transfer-encoding") == []
                assert resp.lines("content-length") == ["5"]
                assert resp.body == b"hello"
                assert len(resp.lines("connection")) <= 1
        finally:
            sock.close()


@pytest.mark.server
def test_app_transfer_encoding_never_reaches_http1_client_on_werkzeug() -> None:
    from werkzeug.serving import make_server

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", "5"), ("Transfer-Encoding", "chunked"), ("TE", "gzip")])
        return [b"hello"]

    server = make_server("127.0.0.1", 0, WSGIConnectionMiddleware(app), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        resp, _, reader = wire.exchange(server.server_port, "GET", "/", check_close=False)
        reader.sock.close()
        assert resp.lines("transfer-encoding") == []
        assert resp.lines("te") == []
        assert resp.lines("content-length") == ["5"]
        assert resp.body == b"hello"
    finally:
        server.shutdown()
        server.server_close()
        stopped(thread, "werkzeug")


@pytest.mark.server
def test_app_hop_by_hop_never_reaches_http2_client_on_hypercorn() -> None:
    from tests.h2client import H2Client

    with hypercorn_thread(ConnectionMiddleware(_te_asgi)) as port:
        client = H2Client(port)
        try:
            for _ in range(2):  # the second stream proves the connection survived
                resp = client.request("/")
                assert resp.ended and resp.status == 200, resp
                names = {k for k, _ in resp.headers}
                assert not names & {b"transfer-encoding", b"connection", b"te", b"keep-alive", b"x-secret"}
                assert resp.body == b"hello"
            assert not client.terminated and not client.protocol_error
        finally:
            client.close()
