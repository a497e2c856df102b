"""EventLoopLag: the pressure source for asyncio event-loop lag."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from connmw import ConnectionMiddleware, EventLoopLag
from tests.asgi_util import call, make_scope, responder


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_outside_a_running_loop_the_pressure_is_zero() -> None:
    assert EventLoopLag()() == 0.0


def test_ramp_from_low_to_high_with_an_injected_clock() -> None:
    clock = Clock()
    lag = EventLoopLag(low=0.1, high=0.5, interval=1.0, clock=clock)

    async def main() -> list[float]:
        out = [lag()]  # the first call starts the probe on this loop
        assert lag._due == pytest.approx(101.0)
        for late in (0.0, 0.1, 0.2, 0.3, 0.5, 2.0):
            clock.now = lag._due + late
            lag._tick()  # the probe fires `late` seconds late
            assert lag.lag == pytest.approx(late)
            out.append(lag())
        clock.now = lag._due - 5.0  # a probe that fired early counts as no lag
        lag._tick()
        out.append(lag())
        lag.stop()
        return out

    values = asyncio.run(main())
    assert values == pytest.approx([0.0, 0.0, 0.0, 0.25, 0.5, 1.0, 1.0, 0.0])


def test_an_overdue_probe_counts_before_it_fires() -> None:
    clock = Clock()
    lag = EventLoopLag(low=0.0, high=1.0, interval=0.5, clock=clock)

    async def main() -> float:
        lag()
        clock.now = lag._due + 0.75  # the loop is busy: the probe has not run yet
        value = lag()
        lag.stop()
        return value

    assert asyncio.run(main()) == pytest.approx(0.75)


def test_a_blocked_loop_raises_the_pressure() -> None:
    lag = EventLoopLag(low=0.05, high=10.0, interval=0.02)

    async def main() -> tuple[float, float, float]:
        before = lag()
        await asyncio.sleep(0.1)
        idle = lag.lag
        time.sleep(0.3)  # block the loop
        during = lag()
        lag.stop()
        return before, idle, during

    before, idle, during = asyncio.run(main())
    assert before == 0.0
    assert idle < 0.3
    assert during > 0.0


def test_a_new_loop_restarts_the_probe() -> None:
    lag = EventLoopLag(interval=0.01)

    async def main() -> asyncio.AbstractEventLoop | None:
        lag()
        await asyncio.sleep(0.05)
        return lag._loop

    first = asyncio.run(main())
    second = asyncio.run(main())
    assert first is not None
    assert second is not None
    assert first is not second
    # The first loop is closed: a pending probe on it stops by itself.
    lag._loop = first
    lag._schedule()
    assert lag._loop is None
    lag.stop()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"low": -1}, ValueError),
        ({"low": 1, "high": 1}, ValueError),
        ({"interval": 0}, ValueError),
        ({"high": float("inf")}, TypeError),
        ({"low": True}, TypeError),
        ({"interval": "1"}, TypeError),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        EventLoopLag(**kwargs)


def test_as_the_pressure_option_it_closes_responses_while_the_loop_lags() -> None:
    clock = Clock()
    lag = EventLoopLag(low=0.1, high=0.2, interval=1.0, clock=clock)

    mw = ConnectionMiddleware(responder(headers=[(b"content-length", b"5")]), pressure=lag)

    async def main() -> list[bytes]:
        out = []
        for late in (None, 0.0, 5.0):
            if late is not None:
                clock.now = lag._due + late
                lag._tick()
            messages = await call(mw, make_scope())
            out.append(dict(messages[0]["headers"]).get(b"connection", b""))
        lag.stop()
        return out

    assert asyncio.run(main()) == [b"", b"", b"close"]
