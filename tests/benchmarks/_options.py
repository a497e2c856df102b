"""The option sets both in-process benchmarks measure: every policy at once, and
each option alone (its cost over connmw's defaults is what a user pays for it)."""

from __future__ import annotations

from typing import Any

from connmw import Rule

RULES = [
    Rule("/downloads/*"),
    Rule("/health", close=False),
    Rule("/api/**/export", methods={"GET"}),
]


def single_options() -> dict[str, dict[str, Any]]:
    """One entry per option a user turns on, with a value that never closes the
    benchmark's connection (so every request measures the keep path)."""
    return {
        "rules (3, none matching)": {"rules": RULES},
        "max_requests_per_connection": {"max_requests_per_connection": 1_000_000},
        "max_requests + jitter": {"max_requests_per_connection": 1_000_000, "max_requests_jitter": 10},
        "max_connection_age": {"max_connection_age": 3600.0},
        "max_connection_age + jitter": {"max_connection_age": 3600.0, "max_connection_age_jitter": 60.0},
        "overload limits": {"overload_soft_limit": 1000, "overload_hard_limit": 2000},
        "pressure": {"pressure": lambda: 0.0},
        "keep_alive_timeout": {"keep_alive_timeout": 5},
        "decision_header": {"decision_header": "x-connmw"},
        "on_decision": {"on_decision": lambda facts, decision: None},
        "strip_nominated_request_headers": {"strip_nominated_request_headers": True},
    }


def full_options() -> dict[str, Any]:
    """Every policy on: rules, a request cap and an age (with jitter), overload
    limits and ``Keep-Alive``."""
    return {
        "rules": RULES,
        "max_requests_per_connection": 1_000_000,
        "max_requests_jitter": 10,
        "max_connection_age": 3600.0,
        "max_connection_age_jitter": 60.0,
        "overload_soft_limit": 1000,
        "overload_hard_limit": 2000,
        "keep_alive_timeout": 5,
    }
