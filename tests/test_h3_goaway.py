"""HTTP/3 on hypercorn: connmw's load options retire the connection with a two-phase GOAWAY.

Read on the wire by the aioquic client of ``tests/h3client.py``, which records every
GOAWAY on the server's control stream (aioquic's own client ignores them and keeps
sending on the connection, so the requests it sends after the close fail: that is
the client's doing, not the server's).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from connmw import ConnectionMiddleware
from connmw.asgi import Receive, Scope, Send
from connmw.servers.hypercorn_h3 import MAX_H3_ID, h2_to_h3_id, h3_to_h2_id
from tests.h3client import H3Response, fetch, free_udp_port, write_tls
from tests.servers import hypercorn_thread

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return write_tls(tmp_path_factory.mktemp("h3goaway"))


seen: list[str] = []


async def counting_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    seen.append(scope["path"])
    if scope["path"] == "/slow":
        await asyncio.sleep(2.0)  # longer than connmw's wait before the first GOAWAY (1 s)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def capped(tls: dict[str, str]) -> Iterator[int]:
    """hypercorn HTTP/3 (UDP port yielded) serving the counting app under a request cap of 3."""
    udp = free_udp_port()
    app = ConnectionMiddleware(counting_app, max_requests_per_connection=3)
    quic = [f"127.0.0.1:{udp}"]
    with hypercorn_thread(app, certfile=tls["cert"], keyfile=tls["key"], quic_bind=quic):
        yield udp


def statuses(responses: list[H3Response | str]) -> list[int | str]:
    return [r.status if isinstance(r, H3Response) else r for r in responses]


def test_stream_ids_map_both_ways() -> None:
    assert [h3_to_h2_id(q) for q in (0, 4, 8)] == [1, 3, 5]
    assert h2_to_h3_id(5) == 12  # streams 0, 4, 8 processed: 12 is the first that was not
    assert h2_to_h3_id(2**31 - 1) == MAX_H3_ID


def test_cap_sends_two_goaways_and_every_stream_completes(capped: int, tls: dict[str, str]) -> None:
    seen.clear()
    paths = [f"/{i}" for i in range(8)]
    responses, goaways = fetch(capped, paths, cafile=tls["ca"], concurrent=True, linger=1.5)
    assert statuses(responses) == [200] * 8
    assert goaways[0] == MAX_H3_ID
    assert len(goaways) == 2
    assert goaways[1] == 4 * len(seen)  # every stream below it was handed to the app
    assert sorted(seen) == sorted(paths)


def test_sequential_requests_below_the_last_id_are_answered(capped: int, tls: dict[str, str]) -> None:
    seen.clear()
    paths = ["/a", "/b", "/c", "/d", "/e"]
    responses, goaways = fetch(capped, paths, cafile=tls["ca"], timeout=2.0)
    assert goaways[0] == MAX_H3_ID and len(goaways) == 2
    # Request i goes on stream 4 * i: those below the final GOAWAY's id were answered;
    # aioquic's client ignores GOAWAY and sends the rest on the connection connmw closed.
    below = goaways[1] // 4
    # How many requests go out before the final GOAWAY arrives is timing (the PING's round
    # trip against the client's next request): all of them may.
    assert 3 <= below <= len(paths)
    assert statuses(responses)[:below] == [200] * below
    assert all(isinstance(r, str) for r in responses[below:]), responses
    assert seen == paths[:below]


def test_a_stream_above_the_last_id_is_rejected_unprocessed(capped: int, tls: dict[str, str]) -> None:
    seen.clear()
    # The third request reaches the cap; /slow keeps the connection open past the final
    # GOAWAY (sent after 1 s); /late comes after it.
    paths = ["/0", "/1", "/slow", "1.5 /late"]
    responses, goaways = fetch(capped, paths, cafile=tls["ca"], concurrent=True, timeout=3.0)
    assert statuses(responses)[:3] == [200] * 3
    assert goaways == [MAX_H3_ID, 12]
    assert responses[3] == "stream reset: error code 0x10b"  # H3_REQUEST_REJECTED: retry elsewhere
    assert sorted(seen) == ["/0", "/1", "/slow"]
