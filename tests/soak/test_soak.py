"""The short version of the memory soak (the full one: ``python -m tests.soak.soak``)."""

from __future__ import annotations

import pytest

from tests.soak.soak import main, soak


@pytest.mark.parametrize("flavour", ["asgi", "wsgi"])
def test_soak_short_table_bounded_and_nothing_in_flight(flavour: str) -> None:
    # More distinct connections than the cap: the table must evict and stay bounded.
    figures = soak(requests=30_000, connections=3_000, cap=1_000, flavour=flavour)
    assert figures["peak_table"] == 1_000
    assert figures["final_table"] <= 1_000
    assert figures["in_flight"] == 0
    # Fewer connections than the cap: each closes at its 8th request and is forgotten.
    figures = soak(requests=16_000, connections=500, cap=1_000, flavour=flavour, max_requests=8)
    assert figures["closes"] == 16_000 // 8
    assert figures["final_table"] == 0
    assert figures["peak_table"] <= 500


def test_soak_script_reports_success() -> None:
    assert main(["--requests", "10000", "--connections", "2000", "--cap", "500", "--flavour", "both"]) == 0
