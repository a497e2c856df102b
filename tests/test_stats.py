"""``middleware.stats()`` against a known sequence of requests on real servers, and the
Prometheus collector's output read back with ``prometheus_client``'s own parser."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, get_args

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import Client

from connmw import ConnectionMiddleware, Rule, WSGIConnectionMiddleware
from connmw._policy import Reason
from connmw._stats import Histogram, value
from connmw.contrib.prometheus import ConnmwCollector, register
from tests import wire
from tests.apps import raw_asgi, raw_wsgi
from tests.asgi_util import call, make_scope, responder
from tests.servers import uvicorn_thread, waitress_thread

OPTIONS: dict[str, Any] = {
    "rules": [Rule("/rule/*")],
    "max_requests_per_connection": 3,
    "overload_soft_limit": 1000,
    "overload_hard_limit": 2000,
}


# -- pieces ----------------------------------------------------------------------------


def test_a_counter_reads_back_what_it_counted() -> None:
    counter = itertools.count()
    assert value(counter) == 0
    for _ in range(12345):
        next(counter)
    assert value(counter) == 12345


def test_no_count_is_lost_across_threads() -> None:
    counter = itertools.count()

    def work() -> None:
        for _ in range(20_000):
            next(counter)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert value(counter) == 80_000


def test_histogram_buckets_are_cumulative() -> None:
    h = Histogram()
    for n in (1, 1, 2, 3, 10, 11, 1000, 50_000):
        h.observe(n)
    snap = h.snapshot()
    assert snap["count"] == 8
    assert snap["sum"] == 1 + 1 + 2 + 3 + 10 + 11 + 1000 + 50_000
    assert snap["buckets"] == {
        "1": 2,
        "2": 3,
        "5": 4,
        "10": 5,
        "20": 6,
        "50": 6,
        "100": 6,
        "200": 6,
        "500": 6,
        "1000": 7,
        "10000": 7,
        "+Inf": 8,
    }


def test_defaults_report_no_connection_figures() -> None:
    stats = WSGIConnectionMiddleware(raw_wsgi).stats()
    assert stats["requests_per_connection"] is None
    assert stats["connections"] == {"tracked": None, "peak": None}
    assert stats["in_flight"] is None
    assert stats["goaways"] == 0


@pytest.mark.parametrize(
    ("scope", "kind"),
    [
        pytest.param(make_scope(), "kept", id="http11-kept"),
        pytest.param(make_scope(http_version="2"), "http2", id="http2"),
        pytest.param(make_scope(headers=[(b"connection", b"close")]), "client", id="client-close"),
    ],
)
def test_defaults_count_every_response(scope: dict[str, Any], kind: str) -> None:
    app = ConnectionMiddleware(responder(headers=[(b"content-length", b"5")]))
    for _ in range(3):
        asyncio.run(call(app, dict(scope)))
    responses = app.stats()["responses"]
    counted = {"kept": responses["kept"], "http2": responses["http2"], **responses["closed"]}
    assert counted[kind] == 3
    assert sum(counted.values()) == 3


def test_wsgi_defaults_count_every_response() -> None:
    app = WSGIConnectionMiddleware(raw_wsgi)
    client = Client(app)
    for _ in range(2):
        assert client.get("/").status_code == 200
    assert client.get("/status/500").status_code == 500
    responses = app.stats()["responses"]
    assert responses["kept"] == 2
    assert responses["closed"]["status"] == 1


def test_the_collector_wants_a_middleware() -> None:
    with pytest.raises(TypeError, match="ConnmwCollector needs a ConnectionMiddleware"):
        ConnmwCollector(raw_wsgi)  # type: ignore[arg-type]


# -- a known sequence on real servers ---------------------------------------------------


def one_per_connection(port: int, path: str, *, version: str = "HTTP/1.1", close: bool = False) -> None:
    headers = [("Connection", "close")] if close else None
    _, closed, reader = wire.exchange(port, path=path, version=version, headers=headers)
    reader.sock.close()
    assert closed, path


def run_sequence(port: int) -> wire.Reader:
    """Seven connections closed by connmw for seven reasons, one left open."""
    reader = wire.Reader(wire.connect(port))
    for _ in range(3):  # kept, kept, closed by the cap: 3 requests
        reader.sock.sendall(wire.build_request("GET", "/"))
        reader.read_response()
    assert reader.closed(3.0)
    reader.sock.close()
    reader = wire.Reader(wire.connect(port))
    for path in ("/", "/rule/x"):  # kept, closed by rule: 2 requests
        reader.sock.sendall(wire.build_request("GET", path))
        reader.read_response()
    assert reader.closed(3.0)
    reader.sock.close()
    one_per_connection(port, "/", close=True)  # client
    one_per_connection(port, "/", version="HTTP/1.0")  # http-1.0
    one_per_connection(port, "/status/503")  # status
    one_per_connection(port, "/handler")  # handler
    one_per_connection(port, "/app-close")  # app
    open_one = wire.Reader(wire.connect(port))
    open_one.sock.sendall(wire.build_request("GET", "/"))
    assert open_one.read_response().status == 200
    return open_one


#: One close per reason the sequence provokes; every other reason stays 0.
EXPECTED_CLOSED = {
    **dict.fromkeys(get_args(Reason), 0),
    **dict.fromkeys(("client", "http-1.0", "app", "handler", "rule", "status", "max-requests"), 1),
}


@contextlib.contextmanager
def uvicorn_server() -> Iterator[tuple[Any, int]]:
    app = ConnectionMiddleware(raw_asgi, **OPTIONS)
    with uvicorn_thread(app) as port:
        yield app, port


@contextlib.contextmanager
def waitress_server() -> Iterator[tuple[Any, int]]:
    app = WSGIConnectionMiddleware(raw_wsgi, **OPTIONS)
    with waitress_thread(app) as port:
        yield app, port


SERVERS: dict[str, Callable[[], contextlib.AbstractContextManager[tuple[Any, int]]]] = {
    "uvicorn": uvicorn_server,
    "waitress": waitress_server,
}


@pytest.mark.server
@pytest.mark.parametrize("name", list(SERVERS))
def test_stats_count_a_known_sequence(name: str) -> None:
    with SERVERS[name]() as (app, port):
        assert app.stats()["responses"]["kept"] == 0
        open_one = run_sequence(port)
        try:
            # A WSGI server closes the response's iterable (counting the request out)
            # after the last byte went out: wait for it, boundedly.
            deadline = time.monotonic() + 5
            while app.stats()["in_flight"] and time.monotonic() < deadline:
                time.sleep(0.01)
            stats = app.stats()
            assert stats["responses"] == {"kept": 4, "closed": EXPECTED_CLOSED, "http2": 0}
            dist = stats["requests_per_connection"]
            assert dist is not None
            assert (dist["count"], dist["sum"]) == (7, 3 + 2 + 5)
            assert dist["buckets"]["1"] == 5
            assert dist["buckets"]["2"] == 6
            assert dist["buckets"]["5"] == 7
            assert dist["buckets"]["+Inf"] == 7
            assert stats["connections"]["tracked"] == 1
            assert stats["connections"]["peak"] is not None and stats["connections"]["peak"] >= 1
            assert stats["in_flight"] == 0
            assert stats["draining"] is False
            assert stats["goaways"] == 0
            app.drain()
            assert app.stats()["draining"] is True
            check_prometheus(app)
        finally:
            open_one.sock.close()


def check_prometheus(app: Any) -> None:
    registry = CollectorRegistry()
    register(app, registry, labels={"app": "test"})
    text = generate_latest(registry).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    app_label = ("app", "test")
    assert samples[("connmw_responses_kept_total", (app_label,))] == 4
    for reason, count in EXPECTED_CLOSED.items():
        assert samples[("connmw_responses_closed_total", (app_label, ("reason", reason)))] == count
    assert samples[("connmw_http2_responses_total", (app_label,))] == 0
    assert samples[("connmw_requests_per_connection_bucket", (app_label, ("le", "1.0")))] == 5
    assert samples[("connmw_requests_per_connection_bucket", (app_label, ("le", "+Inf")))] == 7
    assert samples[("connmw_requests_per_connection_count", (app_label,))] == 7
    assert samples[("connmw_requests_per_connection_sum", (app_label,))] == 10
    assert samples[("connmw_connections_tracked", (app_label,))] == 1
    assert samples[("connmw_requests_in_flight", (app_label,))] == 0
    assert samples[("connmw_draining", (app_label,))] == 1
    assert samples[("connmw_goaways_total", (app_label,))] == 0


def test_the_collector_leaves_out_what_is_not_counted() -> None:
    registry = CollectorRegistry()
    register(WSGIConnectionMiddleware(raw_wsgi), registry)
    names = {family.name for family in text_string_to_metric_families(generate_latest(registry).decode())}
    assert names == {
        "connmw_responses_kept",
        "connmw_responses_closed",
        "connmw_http2_responses",
        "connmw_draining",
        "connmw_goaways",
    }
