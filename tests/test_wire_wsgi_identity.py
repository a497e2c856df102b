"""Per-connection options on WSGI servers whose environ has no ``REMOTE_PORT``:
hypercorn serving WSGI (the connection is found through hypercorn's own objects),
on the wire: a request cap closes the third request of each connection, announced
once and real, and a new connection starts counting again."""

from __future__ import annotations

import pytest

from connmw import WSGIConnectionMiddleware
from tests import servers, wire
from tests.apps import raw_wsgi

pytestmark = [pytest.mark.server, pytest.mark.timeout(60)]


def test_hypercorn_wsgi_counts_requests_per_connection() -> None:
    app = WSGIConnectionMiddleware(raw_wsgi, max_requests_per_connection=3)
    with servers.hypercorn_thread(app, mode="wsgi") as port:
        for _ in range(2):
            reader = wire.Reader(wire.connect(port))
            try:
                for n in (1, 2, 3):
                    reader.sock.sendall(wire.build_request("GET", "/count"))
                    resp = reader.read_response()
                    assert resp.body == str(n).encode(), resp.body
                    assert resp.lines("connection") == (["close"] if n == 3 else []), resp.raw_head
                assert reader.closed(3.0), "the third response announced a close that did not happen"
            finally:
                reader.sock.close()
