"""Running the cases: one fresh connection each, a bounded number at once."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Sequence

from .cases import CASES, H2_CASES, CaseSpec, ProbeConfig, ProbeError, Target
from .http2 import import_h2, run_h2_case
from .results import CaseResult, Report
from .wire import run_h1_case


def run_case(target: Target, config: ProbeConfig, spec: CaseSpec) -> CaseResult:
    """Run one case on a fresh connection. Connection failures raise :class:`ProbeError`."""
    if spec.protocol == "HTTP/2":
        return run_h2_case(target, config, spec)
    return run_h1_case(target, config, spec)


def run_probe(
    target: Target,
    config: ProbeConfig,
    cases: Sequence[CaseSpec] | None = None,
    runner: Callable[[Target, ProbeConfig, CaseSpec], CaseResult] = run_case,
) -> Report:
    """Run the cases (the first alone, so an unreachable target fails fast).

    :raises ProbeError: the first case could not connect; nothing else was tried.
    """
    if cases is None:
        cases = CASES + (H2_CASES if config.http2 else ())
    if not cases:
        return Report(target, config, [])
    if any(c.protocol == "HTTP/2" for c in cases):
        import_h2()
    results: list[CaseResult] = [runner(target, config, cases[0])]
    rest = list(cases[1:])

    def one(spec: CaseSpec) -> CaseResult:
        try:
            return runner(target, config, spec)
        except ProbeError as exc:
            return CaseResult(spec, error=str(exc))

    workers = max(1, min(config.concurrency, len(rest) or 1))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        results.extend(pool.map(one, rest))
    return Report(target, config, results)
