"""Drive connmw in-process with arbitrary requests and responses, and check the
invariants every hostile input must keep.

Shared by the property tests (``tests/test_properties.py``) and the fuzz harness
(``tests/fuzz/fuzz_headers.py``), so both check exactly the same things:

- connmw never raises (an exception from the application passes through as is);
- at most one ``Connection`` line goes out, and only for HTTP/1.x;
- every header line connmw added is free of CR, LF and NUL, whatever the request
  or the application sent;
- on HTTP/2 and HTTP/3 no connection-specific header survives;
- on HTTP/1.x no ``Transfer-Encoding`` from the application survives (the server
  frames the body; an app-supplied one next to ``Content-Length`` is smuggling bait);
- applying connmw to its own output changes nothing, and nesting two instances
  gives what one gives;
- the body goes out byte-identical.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from connmw import ConnectionMiddleware, WSGIConnectionMiddleware
from connmw._headers import H2_FORBIDDEN, WSGI_HOP_BY_HOP

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

Message = MutableMapping[str, Any]
Headers = list[tuple[bytes, bytes]]

FORBIDDEN_BYTES = (b"\r", b"\n", b"\x00")

#: Option sets the harness picks from: no state, per-connection state with a
#: Keep-Alive header, a rule, stripping of nominated request headers.
OPTION_SETS: tuple[dict[str, Any], ...] = (
    {},
    {"max_requests_per_connection": 3, "keep_alive_timeout": 5},
    {"rules": [{"path": "/close/*"}], "close_on_status": frozenset()},
    {"strip_nominated_request_headers": True, "protected_request_headers": {"x-keep"}},
    {"max_connection_age": 60.0, "overload_soft_limit": 10, "overload_hard_limit": 20},
)


def run_sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never really waits (capturing send, canned receive)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise AssertionError("the coroutine suspended: the harness expects none of its awaits to wait")


def bad(value: object) -> bool:
    return isinstance(value, (bytes, str)) and any(
        (c in value) if isinstance(value, bytes) else (c.decode() in value) for c in FORBIDDEN_BYTES
    )


# --------------------------------------------------------------------------- ASGI


def asgi_scope(headers: Headers, http_version: str = "1.1", method: str = "GET", path: str = "/") -> Message:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": http_version,
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "root_path": "",
        "query_string": b"",
        "headers": list(headers),
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


def asgi_responder(
    status: object,
    headers: Headers,
    body: list[bytes],
    *,
    as_generator: bool = False,
    seen: list[Any] | None = None,
) -> Callable[..., Coroutine[Any, Any, None]]:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        if seen is not None:
            seen.append(list(scope["headers"]))
        hs: Iterable[tuple[bytes, bytes]] = (h for h in headers) if as_generator else list(headers)
        await send({"type": "http.response.start", "status": status, "headers": hs})
        for i, part in enumerate(body):
            await send({"type": "http.response.body", "body": part, "more_body": i < len(body) - 1})

    return app


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def asgi_run(app: Any, scope: Message) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    run_sync(app(scope, _receive, send))
    return sent


def is_bypass_asgi(status: object) -> bool:
    """Responses connmw hands to the server untouched: a protocol switch (101).

    A request that only asks to upgrade is no bypass: the client cannot switch
    connmw off."""
    return status == 101


def check_asgi(
    request_headers: Headers,
    http_version: str,
    method: str,
    path: str,
    status: object,
    app_headers: Headers,
    body: list[bytes],
    options: dict[str, Any],
    *,
    as_generator: bool = False,
) -> list[Message]:
    """Run one exchange through connmw and assert every invariant; return the output."""
    scope = asgi_scope(request_headers, http_version, method, path)
    mw = ConnectionMiddleware(asgi_responder(status, app_headers, body, as_generator=as_generator), **options)
    out = asgi_run(mw, scope)
    assert len(out) == 1 + len(body)
    start = out[0]
    assert start["type"] == "http.response.start"
    assert start["status"] == status
    headers = list(start["headers"])
    # The body is byte-identical, message by message.
    assert [m["body"] for m in out[1:]] == body
    # Nothing connmw added carries CR, LF or NUL.
    added = Counter(headers) - Counter(app_headers)
    for name, value in added:
        assert not bad(name) and not bad(value), (name, value)
    # connmw adds only its own lines: connection, keep-alive (or the debug header).
    assert {n for n, _ in added} <= {b"connection", b"keep-alive", b"x-connmw"}, added
    if is_bypass_asgi(status):
        assert headers == list(app_headers)
        return out
    version_is_h2 = http_version in ("2", "2.0", "3", "3.0")
    conn_lines = [v for n, v in headers if n.lower() == b"connection"]
    if not isinstance(status, int):
        assert headers == list(app_headers)
        return out
    assert len(conn_lines) <= 1, conn_lines
    if version_is_h2:
        for name, value in headers:
            lname = name.lower()
            assert lname not in H2_FORBIDDEN, name
            assert lname != b"te" or value.lower() == b"trailers", (name, value)
    else:
        assert not any(n.lower() == b"transfer-encoding" for n, _ in headers)
        assert not any(n.lower() == b"proxy-connection" for n, _ in headers)
        assert len([1 for n, _ in headers if n.lower() == b"keep-alive"]) <= 1
    # Idempotent: connmw over its own output, and two nested instances.
    again = asgi_run(
        ConnectionMiddleware(asgi_responder(status, headers, body), **options),
        asgi_scope(request_headers, http_version, method, path),
    )
    assert list(again[0]["headers"]) == headers
    nested = asgi_run(
        ConnectionMiddleware(
            ConnectionMiddleware(
                asgi_responder(status, app_headers, body, as_generator=as_generator), **options
            ),
            **options,
        ),
        asgi_scope(request_headers, http_version, method, path),
    )
    assert list(nested[0]["headers"]) == headers
    return out


def check_asgi_request_side(
    request_headers: Headers, http_version: str, options: dict[str, Any]
) -> tuple[Headers, Headers]:
    """What the application sees of the request headers: (sent, seen)."""
    seen: list[Any] = []
    mw = ConnectionMiddleware(asgi_responder(200, [(b"content-length", b"0")], [b""], seen=seen), **options)
    asgi_run(mw, asgi_scope(request_headers, http_version))
    assert len(seen) == 1
    return list(request_headers), seen[0]


# --------------------------------------------------------------------------- WSGI


class CaptureStartResponse:
    """A start_response that records its calls (as an unknown server would)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, str]], Any]] = []
        self.written: list[bytes] = []

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], Any]:
        self.calls.append((status, list(headers), exc_info))
        return self.written.append


def wsgi_environ(
    request_headers: list[tuple[str, str]], protocol: str = "HTTP/1.1", method: str = "GET", path: str = "/"
) -> dict[str, Any]:
    import io

    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": protocol,
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "50000",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in request_headers:
        key = "HTTP_" + name.upper().replace("-", "_")
        if key in ("HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE"):
            key = key[5:]
        # Repeated fields reach a WSGI application joined with commas.
        environ[key] = environ[key] + "," + value if key in environ else value
    return environ


def wsgi_responder(
    status: str, headers: list[tuple[str, str]], body: list[bytes], seen: list[Any] | None = None
) -> Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if seen is not None:
            seen.append({k: v for k, v in environ.items() if k.startswith("HTTP_")})
        start_response(status, list(headers))
        return list(body)

    return app


def wsgi_run(app: Any, environ: dict[str, Any]) -> tuple[CaptureStartResponse, bytes]:
    capture = CaptureStartResponse()
    result = app(environ, capture)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return capture, body


def is_bypass_wsgi(status: str) -> bool:
    """A protocol switch (101) goes to the server untouched, its headers included."""
    return status[:3] == "101"


def check_wsgi(
    request_headers: list[tuple[str, str]],
    protocol: str,
    method: str,
    status: str,
    app_headers: list[tuple[str, str]],
    body: list[bytes],
    options: dict[str, Any],
) -> list[tuple[str, str]]:
    environ = wsgi_environ(request_headers, protocol, method)
    bypass = is_bypass_wsgi(status)
    mw = WSGIConnectionMiddleware(wsgi_responder(status, app_headers, body), **options)
    capture, out_body = wsgi_run(mw, environ)
    assert out_body == b"".join(body)
    assert len(capture.calls) == 1
    out_status, headers, _ = capture.calls[0]
    assert out_status == status
    # connmw never adds a line through an unknown server's start_response.
    assert not Counter(headers) - Counter(app_headers)
    if bypass:
        assert headers == app_headers
        return headers
    if status[:3].isdigit():
        # PEP 3333: no hop-by-hop header reaches the server.
        assert not [n for n, _ in headers if isinstance(n, str) and n.lower() in WSGI_HOP_BY_HOP]
    else:
        # A malformed status is for the server to reject: passed on as is, or cleaned.
        assert headers in (app_headers, [h for h in app_headers if h[0].lower() not in WSGI_HOP_BY_HOP])
    again_env = wsgi_environ(request_headers, protocol, method)
    again, _ = wsgi_run(WSGIConnectionMiddleware(wsgi_responder(status, headers, body), **options), again_env)
    assert again.calls[0][1] == headers
    nested_env = wsgi_environ(request_headers, protocol, method)
    nested, _ = wsgi_run(
        WSGIConnectionMiddleware(
            WSGIConnectionMiddleware(wsgi_responder(status, app_headers, body), **options), **options
        ),
        nested_env,
    )
    assert nested.calls[0][1] == headers
    return headers
