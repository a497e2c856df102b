"""Load features on the pure engine, with an injected clock and randomness.

Counts, ages, jitter bounds, probability ramps, drain windows, Keep-Alive values,
connection identity and the memory bound of the connection table.
"""

from __future__ import annotations

import gc
import logging
import random
import threading
import weakref
from collections.abc import Hashable
from typing import Any

import pytest

from connmw import ConnectionMiddleware, Options, WSGIConnectionMiddleware
from connmw._engine import Engine, RequestFacts
from connmw._state import ConnectionTable, Load, asgi_connection_key, wsgi_connection_key


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Draws:
    """Returns the given values in turn, then repeats the last one."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.values.pop(0) if len(self.values) > 1 else self.values[0]


def engine(clock: Clock | None = None, draw: Any = None, **options: Any) -> Engine:
    return Engine(Options(clock=clock or Clock(), random=draw or Draws(0.5), **options))


def request(eng: Engine, key: Hashable | None = "c1", version: int = 11) -> RequestFacts:
    facts = RequestFacts(version, "GET", "/")
    eng.begin(facts, None, key)
    return facts


def one(
    eng: Engine, key: Hashable | None = "c1", version: int = 11, status: int = 200
) -> tuple[bool, str | None]:
    facts = request(eng, key, version)
    decision = eng.respond(facts, status)
    eng.end(facts)
    return decision.close, decision.reason


# -- max_requests_per_connection ----------------------------------------------------------


def test_the_nth_response_closes_and_the_next_connection_starts_over() -> None:
    eng = engine(max_requests_per_connection=3)
    assert [one(eng) for _ in range(3)] == [(False, None), (False, None), (True, "max-requests")]
    assert eng.table is not None
    assert "c1" not in eng.table  # removed when connmw closes it
    # A new connection that reuses the key counts from 1 again.
    assert [one(eng) for _ in range(3)] == [(False, None), (False, None), (True, "max-requests")]


def test_counts_are_per_connection() -> None:
    eng = engine(max_requests_per_connection=2)
    assert one(eng, "a") == (False, None)
    assert one(eng, "b") == (False, None)
    assert one(eng, "a") == (True, "max-requests")
    assert one(eng, "b") == (True, "max-requests")


def test_one_request_per_connection() -> None:
    eng = engine(max_requests_per_connection=1)
    assert one(eng) == (True, "max-requests")


def test_no_key_means_no_count() -> None:
    eng = engine(max_requests_per_connection=1)
    facts = request(eng, key=None)
    assert facts.request_count is None
    assert eng.respond(facts, 200).close is False


@pytest.mark.parametrize("version", [20, 30])
def test_http2_and_3_are_not_counted_nor_closed(version: int) -> None:
    eng = engine(max_requests_per_connection=1, max_connection_age=1)
    for _ in range(3):
        facts = request(eng, version=version)
        assert facts.conn is None
        assert eng.respond(facts, 200).close is False
    assert eng.table is not None
    assert len(eng.table) == 0


def test_a_stronger_reason_wins_and_still_forgets_the_connection() -> None:
    eng = engine(max_requests_per_connection=5)
    assert one(eng) == (False, None)
    assert one(eng, status=503) == (True, "status")
    assert eng.table is not None
    assert "c1" not in eng.table


def test_max_requests_jitter_bounds() -> None:
    # The lowest draw gives the base cap, the highest base + jitter.
    eng = engine(draw=Draws(0.0), max_requests_per_connection=10, max_requests_jitter=5)
    assert request(eng, "low").conn.max_requests == 10  # type: ignore[union-attr]
    eng = engine(draw=Draws(0.999999), max_requests_per_connection=10, max_requests_jitter=5)
    assert request(eng, "high").conn.max_requests == 15  # type: ignore[union-attr]
    # Seeded draws: every cap in [10, 15], every value reached, none beyond.
    rng = random.Random(1234)
    eng = engine(draw=rng.random, max_requests_per_connection=10, max_requests_jitter=5)
    caps = [request(eng, i).conn.max_requests for i in range(2000)]  # type: ignore[union-attr]
    assert set(caps) == set(range(10, 16))
    # Roughly uniform: each value at least half its expected share.
    for value in range(10, 16):
        assert caps.count(value) > 2000 / 6 / 2


def test_jitter_is_drawn_once_per_connection() -> None:
    draws = Draws(0.0, 0.999999)
    eng = engine(draw=draws, max_requests_per_connection=2, max_requests_jitter=3)
    results = [one(eng) for _ in range(2)]
    assert results == [(False, None), (True, "max-requests")]  # cap 2 from the first draw
    assert draws.calls == 1  # later requests on the same connection draw nothing


# -- Keep-Alive ------------------------------------------------------------------------


def test_keep_alive_counts_down_and_is_absent_on_the_closing_response() -> None:
    eng = engine(max_requests_per_connection=3, keep_alive_timeout=5)
    values = []
    for _ in range(3):
        facts = request(eng)
        decision = eng.respond(facts, 200)
        values.append(None if decision.close else eng.keep_alive_value(facts))
    assert values == [b"timeout=5, max=2", b"timeout=5, max=1", None]


def test_keep_alive_without_a_cap_and_whole_seconds() -> None:
    eng = engine(keep_alive_timeout=7.9)
    assert eng.keep_alive_value(request(eng)) == b"timeout=7"
    assert engine().keep_alive_value(request(engine())) is None


def test_keep_alive_max_follows_the_jittered_cap() -> None:
    eng = engine(
        draw=Draws(0.999999), max_requests_per_connection=2, max_requests_jitter=2, keep_alive_timeout=3
    )
    assert eng.keep_alive_value(request(eng)) == b"timeout=3, max=3"


# -- max_connection_age --------------------------------------------------------------------


def test_the_first_response_after_the_age_closes() -> None:
    clock = Clock(1000.0)
    eng = engine(clock, max_connection_age=10)
    assert one(eng) == (False, None)
    clock.now = 1009.99
    assert one(eng) == (False, None)
    clock.now = 1010.0
    assert one(eng) == (True, "max-age")
    # The next connection on that key is young again.
    clock.now = 1011.0
    assert one(eng) == (False, None)


def test_age_is_measured_at_response_time() -> None:
    """A long request that crosses the age closes its own connection."""
    clock = Clock(0.0)
    eng = engine(clock, max_connection_age=5)
    facts = request(eng)
    clock.now = 6.0
    assert eng.respond(facts, 200).reason == "max-age"


def test_age_jitter_bounds() -> None:
    for draw, limit in ((0.0, 10.0), (0.5, 12.0), (0.999999, 14.0)):
        clock = Clock(0.0)
        eng = engine(clock, Draws(draw), max_connection_age=10, max_connection_age_jitter=4)
        facts = request(eng)
        assert facts.conn is not None
        assert facts.conn.expires == pytest.approx(limit, abs=1e-4)
        clock.now = limit - 0.01
        assert one(eng) == (False, None)
        clock.now = limit
        assert one(eng) == (True, "max-age")


def test_age_and_count_with_a_shared_draw() -> None:
    draws = Draws(0.0, 0.999999)
    eng = engine(
        Clock(0.0),
        draws,
        max_requests_per_connection=5,
        max_requests_jitter=5,
        max_connection_age=10,
        max_connection_age_jitter=10,
    )
    facts = request(eng)
    assert facts.conn is not None
    assert facts.conn.max_requests == 5
    assert facts.conn.expires == pytest.approx(20.0, abs=1e-4)


def test_a_connection_idle_past_the_idle_timeout_is_a_new_connection() -> None:
    clock = Clock(0.0)
    eng = engine(clock, max_requests_per_connection=3, connection_idle_timeout=60, max_connection_age=100)
    assert one(eng) == (False, None)
    assert one(eng) == (False, None)
    clock.now = 61.0
    facts = request(eng)
    assert facts.request_count == 1
    assert facts.conn is not None
    assert facts.conn.expires == 161.0  # its age counts from now


# -- overload ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("in_flight", "expected"),
    [(0, 0.0), (10, 0.0), (11, 0.1), (15, 0.5), (19, 0.9), (20, 1.0), (50, 1.0)],
)
def test_overload_ramp_is_linear_between_soft_and_hard(in_flight: int, expected: float) -> None:
    eng = engine(overload_soft_limit=10, overload_hard_limit=20)
    for _ in range(in_flight):
        eng.load.enter()
    assert eng._overload() == pytest.approx(expected)


def test_overload_decisions_follow_the_draw() -> None:
    # In flight counts the request being answered: 16 with soft 10, hard 20 -> p = 0.6.
    draws = Draws(0.59, 0.6, 0.0)
    eng = engine(draw=draws, overload_soft_limit=10, overload_hard_limit=20)
    for _ in range(15):
        eng.load.enter()
    assert one(eng) == (True, "overload")
    assert one(eng) == (False, None)
    assert eng.load.in_flight == 15  # end() released each request


def test_at_the_hard_limit_every_response_closes_without_a_draw() -> None:
    draws = Draws(0.999)
    eng = engine(draw=draws, overload_soft_limit=0, overload_hard_limit=1)
    assert one(eng) == (True, "overload")
    assert draws.calls == 0


def test_in_flight_is_tracked_only_when_needed() -> None:
    eng = engine()
    facts = request(eng)
    assert eng.load.in_flight == 0
    eng.end(facts)
    assert eng.load.in_flight == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.3, 0.3), (0.0, 0.0), (1.5, 1.0), (-1.0, 0.0), (float("nan"), 0.0), (True, 1.0)],
)
def test_pressure_callable(value: float, expected: float) -> None:
    eng = engine(pressure=lambda: value)
    assert eng._overload() == pytest.approx(expected)


def test_pressure_and_in_flight_combine_by_max() -> None:
    eng = engine(pressure=lambda: 0.25, overload_soft_limit=0, overload_hard_limit=4)
    eng.load.enter()
    assert eng._overload() == pytest.approx(0.25)
    eng.load.enter()
    eng.load.enter()
    assert eng._overload() == pytest.approx(0.75)


def test_a_failing_pressure_callable_counts_as_zero_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> float:
        raise RuntimeError("sensor down")

    eng = engine(pressure=broken)
    with caplog.at_level(logging.WARNING, logger="connmw"):
        assert one(eng) == (False, None)
        assert one(eng) == (False, None)
    assert caplog.text.count("pressure callable raised") == 1


def test_pressure_closes_with_reason_overload() -> None:
    eng = engine(draw=Draws(0.1, 0.3), pressure=lambda: 0.2)
    assert one(eng) == (True, "overload")
    assert one(eng) == (False, None)


# -- drain -------------------------------------------------------------------------------


def test_drain_without_a_window_closes_the_next_response() -> None:
    clock = Clock(0.0)
    eng = engine(clock, draw=Draws(0.999999))
    assert one(eng) == (False, None)
    eng.drain()
    assert one(eng) == (True, "drain")
    assert one(eng, "other") == (True, "drain")
    eng.load.stop_draining()
    assert one(eng) == (False, None)


@pytest.mark.parametrize(
    ("elapsed", "expected"), [(0.0, 0.0), (2.5, 0.25), (5.0, 0.5), (9.0, 0.9), (10.0, 1.0), (60.0, 1.0)]
)
def test_drain_window_ramps_linearly(elapsed: float, expected: float) -> None:
    clock = Clock(100.0)
    eng = engine(clock)
    eng.drain(10.0)
    clock.now = 100.0 + elapsed
    assert eng.load.drain_probability(clock.now) == pytest.approx(expected)


def test_drain_window_decisions() -> None:
    clock = Clock(0.0)
    draws = Draws(0.29, 0.31)
    eng = engine(clock, draw=draws)
    eng.drain(10.0)
    clock.now = 3.0  # p = 0.3
    assert one(eng) == (True, "drain")
    assert one(eng) == (False, None)
    clock.now = 10.0
    assert one(eng) == (True, "drain")


def test_drain_again_keeps_the_start_and_can_shorten_the_window() -> None:
    clock = Clock(0.0)
    eng = engine(clock)
    eng.drain(100.0)
    clock.now = 10.0
    eng.drain(100.0)
    assert eng.load.drain_since == 0.0
    assert eng.load.drain_probability(10.0) == pytest.approx(0.1)
    eng.drain(0.0)  # finish now
    assert eng.load.drain_probability(10.0) == 1.0


def test_drain_probability_before_start_and_clock_going_back() -> None:
    load = Load()
    assert load.drain_probability(5.0) == 0.0
    load.drain(10.0, 4.0)
    assert load.drain_probability(9.0) == 0.0


@pytest.mark.parametrize("cls", [ConnectionMiddleware, WSGIConnectionMiddleware])
def test_middleware_drain_api(cls: Any) -> None:
    mw = cls(lambda *a: None)
    assert not mw.draining
    mw.drain(2)
    assert mw.draining
    assert mw.engine.load.drain_window == 2.0
    mw.stop_draining()
    assert not mw.draining
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"drain window must be a finite number of seconds >= 0, got"):
            mw.drain(bad)
    for wrong in (True, "1"):
        with pytest.raises(TypeError, match="drain window must be a number of seconds, not"):
            mw.drain(wrong)
    assert not mw.draining


def test_drain_from_many_threads_at_once() -> None:
    eng = engine(draw=Draws(0.999999))
    barrier = threading.Barrier(8)

    def go() -> None:
        barrier.wait()
        eng.drain()

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert one(eng) == (True, "drain")


# -- the table: memory bound, idle expiry, thread safety ------------------------------------


def table(cap: int = 1000, idle: float = 300.0, **kw: Any) -> ConnectionTable:
    args: dict[str, Any] = {
        "max_requests": None,
        "max_requests_jitter": 0,
        "max_age": None,
        "max_age_jitter": 0.0,
        "idle_timeout": idle,
        "cap": cap,
        "random": lambda: 0.5,
    }
    args.update(kw)
    return ConnectionTable(**args)


def test_a_million_distinct_connections_never_grow_the_table_past_its_cap() -> None:
    t = table(cap=1000)
    begin = t.begin
    for i in range(1_000_000):
        begin(i, 0.0)
    assert len(t) == 1000
    assert t.peak == 1000
    # The most recent connections are the ones kept.
    assert 999_999 in t
    assert 0 not in t


def test_idle_entries_expire_oldest_first() -> None:
    t = table(cap=100, idle=10.0)
    for i in range(50):
        t.begin(i, float(i))
    assert len(t) == 11  # seen at 39..49: the others went as the clock moved on
    t.begin("late", 55.0)  # entries last seen before 45 are gone
    assert len(t) == 6
    assert 44 not in t
    assert 45 in t


def test_a_reused_connection_moves_to_the_back() -> None:
    t = table(cap=3)
    for key in ("a", "b", "c"):
        t.begin(key, 0.0)
    t.begin("a", 0.0)
    t.begin("d", 0.0)  # evicts the least recently used: b
    assert "b" not in t
    assert "a" in t
    t.forget("a")
    t.forget("missing")
    assert "a" not in t
    t.clear()
    assert len(t) == 0


def test_counts_are_exact_under_threads() -> None:
    t = table(cap=10_000)
    barrier = threading.Barrier(8)

    def work(n: int) -> None:
        barrier.wait()
        for i in range(2000):
            t.begin("shared", 0.0)
            t.begin((n, i % 50), 0.0)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert t.begin("shared", 0.0).count == 8 * 2000 + 1
    assert t.begin((3, 7), 0.0).count == 2000 // 50 + 1
    assert len(t) == 8 * 50 + 1


class Conn:
    """Stands for a server's per-connection object."""


def test_identity_keys_share_state_and_vanish_with_the_connection() -> None:
    t = table()
    conn = Conn()
    assert t.begin(weakref.ref(conn), 0.0).count == 1
    assert t.begin(weakref.ref(conn), 0.0).count == 2
    other = Conn()
    assert t.begin(weakref.ref(other), 0.0).count == 1
    assert len(t) == 2
    del conn
    gc.collect()
    t.begin("x", 0.0)  # dead entries are dropped on the next request
    assert len(t) == 2
    assert weakref.ref(other) in t
    t.forget(weakref.ref(other))
    assert weakref.ref(other) not in t


# -- connection identity from the server's objects -------------------------------------------


def _kind(module: str, **attrs: Any) -> Any:
    cls = type("Obj", (), {"__module__": module})
    obj = cls()
    for name, value in attrs.items():
        setattr(obj, name, value)
    return obj


class Transport:
    pass


def test_asgi_key_uvicorn_transport() -> None:
    transport = Transport()
    cycle = _kind("uvicorn.protocols.http.h11_impl", transport=transport)
    cycle.send = lambda m: None

    class Cycle:
        def __init__(self) -> None:
            self.transport = transport

        async def send(self, message: Any) -> None:
            pass

    key = asgi_connection_key({"client": ("1.2.3.4", 5)}, Cycle().send)
    assert key == weakref.ref(transport)
    assert asgi_connection_key({}, Cycle().send) is key  # the same cached reference


def test_asgi_key_hypercorn_protocol() -> None:
    protocol_cls = type(
        "H11Protocol", (), {"__module__": "hypercorn.protocol.h11", "stream_send": lambda self: None}
    )
    protocol = protocol_cls()

    class Stream:
        def __init__(self) -> None:
            self.send = protocol.stream_send

        async def app_send(self, message: Any) -> None:
            pass

    assert asgi_connection_key({"client": ("h", 1)}, Stream().app_send) == weakref.ref(protocol)


def test_asgi_key_falls_back_to_addresses() -> None:
    async def send(message: Any) -> None:
        pass

    assert asgi_connection_key({"client": ("a", 1), "server": ("b", 2)}, send) == (("a", 1), ("b", 2))
    # daphne gives lists; a key must be hashable.
    assert asgi_connection_key({"client": ["a", 1], "server": ["b", 2]}, send) == (("a", 1), ("b", 2))
    assert asgi_connection_key({"client": ("a", 1), "server": None}, send) == (("a", 1), None)
    assert asgi_connection_key({}, send) is None
    assert asgi_connection_key({"client": 5}, send) is None

    class Other:
        transport = None
        send = None

        async def send_(self, message: Any) -> None:
            pass

    assert asgi_connection_key({"client": ("a", 1)}, Other().send_) == (("a", 1), None)


def test_wsgi_key_gunicorn_socket_waitress_channel_and_addresses() -> None:
    sock = Transport()
    response_cls = type(
        "Response", (), {"__module__": "gunicorn.http.wsgi", "start_response": lambda self, *a: None}
    )
    response = response_cls()
    response.sock = sock
    assert wsgi_connection_key(
        {"REMOTE_ADDR": "a", "REMOTE_PORT": "1"}, response.start_response
    ) == weakref.ref(sock)

    channel_cls = type(
        "HTTPChannel", (), {"__module__": "waitress.channel", "check_client_disconnected": lambda self: None}
    )
    channel = channel_cls()
    environ = {"waitress.client_disconnected": channel.check_client_disconnected, "REMOTE_ADDR": "a"}
    assert wsgi_connection_key(environ, lambda *a: None) == weakref.ref(channel)

    environ2 = {"REMOTE_ADDR": "a", "REMOTE_PORT": "1", "SERVER_PORT": "80"}
    assert wsgi_connection_key(environ2, lambda *a: None) == ("a", "1", "80")
    assert wsgi_connection_key({"REMOTE_ADDR": "a"}, lambda *a: None) is None
    # An unknown server's object with a "sock" attribute is not trusted.
    other = _kind("someserver.handler", sock=sock, start=None)
    other_cls = type(other)
    other_cls.start = lambda self, *a: None
    assert wsgi_connection_key(environ2, other.start) == ("a", "1", "80")


def test_objects_without_weak_references_fall_back_to_addresses() -> None:
    class Cycle:
        transport = ("not", "weakrefable")

        async def send(self, message: Any) -> None:
            pass

    assert asgi_connection_key({"client": ("a", 1)}, Cycle().send) == (("a", 1), None)

    response_cls = type(
        "Response", (), {"__module__": "gunicorn.http.wsgi", "start_response": lambda self, *a: None}
    )
    response = response_cls()
    response.sock = 42  # no weak reference to an int
    environ = {"REMOTE_ADDR": "a", "REMOTE_PORT": "1", "waitress.client_disconnected": print}
    # print is a builtin without a channel behind it
    assert wsgi_connection_key(environ, response.start_response) == ("a", "1", None)


def test_a_dead_weak_key_is_kept_as_it_is() -> None:
    t = table()
    conn = Conn()
    ref = weakref.ref(conn)
    hash(ref)
    del conn
    gc.collect()
    assert t.begin(ref, 0.0).count == 1
    assert ref in t
