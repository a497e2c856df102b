"""``Engine.respond`` answers the common case without calling :func:`connmw.decide`
(its sixteen keywords cost more than the rest of the method): the decision must be
the one ``decide`` gives for the same facts, on every input."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connmw import Options, Rule, decide
from connmw._engine import Engine, RequestFacts


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


_RULES = [
    [],
    [Rule("/a")],
    [Rule("/a", close=False)],
    [Rule("/a", status={500})],
    [Rule("/b"), Rule("/a", close=False, status={200, 404})],
]


def _mostly(value: Any, *others: Any) -> st.SearchStrategy[Any]:
    """``value`` three times in four: the inputs that keep must meet often enough for
    each single reason to close to be tried on its own."""
    return st.one_of(st.just(value), st.just(value), st.just(value), st.sampled_from(others))


@settings(max_examples=600, deadline=None)
@given(
    rules=st.sampled_from(_RULES),
    path=st.sampled_from(["/a", "/b", "/c"]),
    close_on_status=st.sampled_from([(), (500,), (200, 503)]),
    cap=st.sampled_from([None, 1, 2, 5]),
    age=st.sampled_from([None, 1.0, 10.0]),
    soft=_mostly(None, 0, 5),
    pressure=_mostly(None, 0.0, 0.4, 1.0),
    draining=_mostly(None, 0.0, 4.0),
    version=_mostly(11, 10),
    client=_mostly((), (b"close",), (b"keep-alive",)),
    handler=_mostly(None, "handler", "custom"),
    requests=st.integers(1, 4),
    later=st.sampled_from([0.0, 2.0, 20.0]),
    status=st.sampled_from([200, 404, 500, 503]),
    app_close=_mostly(False, True),
    server_close=_mostly(False, True),
    known_length=st.booleans(),
    http10_keep_alive=st.booleans(),
    draw=st.sampled_from([0.0, 0.5, 0.99]),
)
def test_respond_agrees_with_decide(
    rules: list[Rule],
    path: str,
    close_on_status: tuple[int, ...],
    cap: int | None,
    age: float | None,
    soft: int | None,
    pressure: float | None,
    draining: float | None,
    version: int,
    client: tuple[bytes, ...],
    handler: str | None,
    requests: int,
    later: float,
    status: int,
    app_close: bool,
    server_close: bool,
    known_length: bool,
    http10_keep_alive: bool,
    draw: float,
) -> None:
    clock = _Clock()
    options: dict[str, Any] = {
        "rules": rules,
        "close_on_status": close_on_status,
        "max_requests_per_connection": cap,
        "max_connection_age": age,
        "clock": clock,
        "random": lambda: draw,
    }
    if soft is not None:
        options.update(overload_soft_limit=soft, overload_hard_limit=soft + 2)
    if pressure is not None:
        options["pressure"] = lambda: pressure
    eng = Engine(Options(**options), threaded=False)
    if draining is not None:
        eng.drain(draining)
    facts = RequestFacts(version, "GET", path)
    for _ in range(requests):
        facts = RequestFacts(version, "GET", path)
        eng.begin(facts, list(client) or None, "conn")
    facts.handler_reason = handler
    clock.now = later
    conn = facts.conn
    rule = next((r for r in facts.rules if r.status is None or status in r.status), None)
    expected = decide(
        version=version,
        status=status,
        client_close=b"close" in client,
        client_keep_alive=b"keep-alive" in client,
        known_length=known_length,
        http10_keep_alive=http10_keep_alive,
        app_close=app_close,
        handler_close=handler is not None,
        rule=rule,
        close_on_status=frozenset(close_on_status),
        requests_exhausted=conn is not None and 0 < conn.max_requests <= conn.count,
        age_exhausted=conn is not None and age is not None and later >= age,
        server_close=server_close,
        drain=0.0 if draining is None else eng.load.drain_probability(later),
        overload=eng._overload() if soft is not None or pressure is not None else 0.0,
        draw=lambda: draw,
    )
    got = eng.respond(facts, status, app_close, known_length, http10_keep_alive, server_close)
    assert got == expected
    assert facts.decision == expected


def test_the_asgi_fast_loop_compares_the_watched_lengths() -> None:
    """The kept-response loop in ``connmw.asgi`` spells ``_WATCH_LEN`` out as int compares."""
    from connmw import asgi
    from connmw._headers import H1_APP_HOP_BY_HOP

    assert frozenset((7, 10, 16, 17)) == asgi._WATCH_LEN
    assert {len(name) for name in H1_APP_HOP_BY_HOP} <= asgi._WATCH_LEN
