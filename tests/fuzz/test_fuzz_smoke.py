"""A tiny smoke run of the fuzz harness, so it cannot rot (the real runs are on demand)."""

from __future__ import annotations

from tests.fuzz import fuzz_headers


def test_fuzz_harness_smoke_run() -> None:
    before = fuzz_headers.EXECUTIONS[0]
    fuzz_headers.run_hypothesis(25)
    assert fuzz_headers.EXECUTIONS[0] - before >= 25


def test_fuzz_case_with_thousands_of_tokens() -> None:
    fuzz_headers.run_case(
        version="1.1",
        method="GET",
        request=[(b"host", b"x")],
        status=200,
        response=[
            (b"connection", b"x\r\nevil: 1"),
            (b"transfer-encoding", b"chunked"),
            (b"content-length", b"2"),
        ],
        body=[b"ok"],
        option_index=3,
        connection_values=[b",".join([b"x-hop"] * 5000) + b", close"],
    )
