"""HTTP/3 on hypercorn (``quic_bind``, aioquic): connmw's forbidden-header stripping on the wire.

RFC 9114 §4.2: an HTTP/3 message carrying a connection-specific field (``connection``,
``keep-alive``, ``proxy-connection``, ``transfer-encoding``, ``upgrade``), or ``te``
with any value but ``trailers``, is malformed. hypercorn passes the application's
headers to aioquic as they are, and aioquic's client rejects such a response, so the
request never completes. Both sides are shown: the bare application fails, the same
application wrapped in connmw is answered.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from connmw.asgi import Receive, Scope, Send
from tests.apps import asgi_app, raw_asgi
from tests.h3client import H3Response, fetch, free_udp_port, write_tls
from tests.servers import hypercorn_thread

pytestmark = pytest.mark.server

FORBIDDEN = {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return write_tls(tmp_path_factory.mktemp("h3tls"))


async def version_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = scope["http_version"].encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"te", b"gzip")]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def h3_ports(tls: dict[str, str]) -> Iterator[dict[str, int]]:
    """hypercorn with HTTP/3 on UDP ports: the bare app, the app in connmw, the version app."""
    from connmw import ConnectionMiddleware

    apps = {"bare": raw_asgi, "connmw": asgi_app, "version": ConnectionMiddleware(version_app)}
    ports = {name: free_udp_port() for name in apps}
    with contextlib.ExitStack() as stack:
        for name, app in apps.items():
            quic = [f"127.0.0.1:{ports[name]}"]
            stack.enter_context(
                hypercorn_thread(app, certfile=tls["cert"], keyfile=tls["key"], quic_bind=quic)
            )
        yield ports


def get(port: int, path: str, tls: dict[str, str]) -> H3Response | str:
    responses, _ = fetch(port, [path], cafile=tls["ca"], timeout=3.0)
    return responses[0]


def test_scope_says_http_version_3(h3_ports: dict[str, int], tls: dict[str, str]) -> None:
    resp = get(h3_ports["version"], "/", tls)
    assert isinstance(resp, H3Response), resp
    assert resp.body == b"3"
    assert b"te" not in dict(resp.headers)


@pytest.mark.parametrize(
    ("path", "header"),
    [
        pytest.param("/te", "te", id="te-gzip"),
        pytest.param("/app-close", "connection", id="connection-close"),
        pytest.param("/hop", "connection", id="every-hop-by-hop"),
    ],
)
def test_forbidden_headers_break_the_response_without_connmw_and_not_with_it(
    h3_ports: dict[str, int], tls: dict[str, str], path: str, header: str
) -> None:
    failed = get(h3_ports["bare"], path, tls)
    # aioquic's client treats the response as malformed and closes the connection.
    assert failed == f"connection closed: Header b'{header}' is connection-specific", failed
    resp = get(h3_ports["connmw"], path, tls)
    assert isinstance(resp, H3Response), resp
    assert resp.status == 200
    assert resp.body == b"hello"
    names = {k for k, _ in resp.headers}
    assert not names & (FORBIDDEN | {b"te"}), resp.headers
