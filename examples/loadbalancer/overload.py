"""Experiment 3, overload: does keep-alive shedding move clients off a slow backend?

HAProxy ``mode tcp`` (an L4 balancer: a client connection is pinned to one backend)
in front of three uvicorn backends; b1 is slow (every request waits ``--slow`` seconds,
like an instance with a sick dependency), b2 and b3 are fast. wrk opens 30 keep-alive
connections; round-robin pins a third of them to b1 for as long as they live.

With connmw's ``overload_soft_limit`` / ``overload_hard_limit``, a backend whose
in-flight requests pile up closes keep-alive connections (with a probability rising
from 0 at the soft limit to 1 at the hard limit); the clients reconnect and
round-robin spreads them again, so fewer stay on the slow one. Fast backends rarely
have more than a request or two in flight, so they keep theirs.

    python examples/loadbalancer/overload.py      # about 2 minutes

Writes ``results/overload.png`` and ``results/overload.md``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import lb

NAMES = ("b1", "b2", "b3")
SLOW = "b1"


def variants(soft: int, hard: int) -> tuple[lb.Variant, ...]:
    return (
        lb.BARE,
        lb.Variant(
            "overload",
            f"connmw overload_soft_limit={soft}, overload_hard_limit={hard}",
            {"overload_soft_limit": soft, "overload_hard_limit": hard},
        ),
    )


@dataclass
class OverloadRun:
    variant: lb.Variant
    samples: lb.Samples
    sessions: list[tuple[float, dict[str, int]]]
    wrk: lb.WrkResult

    def slow_share(self) -> float | None:
        end = self.samples[-1][0] if self.samples else 0.0
        return lb.window_share(self.samples, (SLOW,), 0.0, end)

    def slow_connections(self, skip: float = 2.0) -> float:
        """Mean client connections HAProxy holds to the slow backend (after ``skip`` s)."""
        values = [s.get(SLOW, 0) for t, s in self.sessions if t >= skip]
        return sum(values) / len(values) if values else float("nan")


def run_overload(variant: lb.Variant, *, seconds: float, slow: float, conns: int) -> OverloadRun:
    with lb.Cluster(NAMES, mode="tcp") as cluster:
        for name in NAMES:
            cluster.start_backend(name, variant, delay=slow if name == SLOW else 0.0)
        cluster.start_haproxy()
        cluster.wait_status(NAMES, "UP")
        with lb.Sampler(cluster) as sampler:
            result = cluster.run_wrk(seconds, connections=conns)
        return OverloadRun(variant, sampler.samples, sampler.sessions, result)


def report(runs: list[OverloadRun], *, slow: float, conns: int, seconds: float) -> str:
    header = [
        "variant",
        "round",
        "req/s",
        "b1 (slow) share",
        "conns on b1",
        "mean",
        "p50",
        "p75",
        "p90",
        "p99",
        "max",
        "failed",
    ]
    rows = []
    rounds: dict[str, int] = {}
    for run in runs:
        rounds[run.variant.name] = rounds.get(run.variant.name, 0) + 1
        lat = run.wrk.latency_ms
        rows.append(
            [
                run.variant.label,
                rounds[run.variant.name],
                f"{run.wrk.rps:.0f}",
                lb.pct(run.slow_share()),
                f"{run.slow_connections():.1f}",
                *(f"{lat.get(k, float('nan')):.1f} ms" for k in ("mean", "p50", "p75", "p90", "p99", "max")),
                run.wrk.failed,
            ]
        )
    by: dict[str, list[OverloadRun]] = {}
    for run in runs:
        by.setdefault(run.variant.name, []).append(run)
    names = list(by)
    base, other = by[names[0]], by[names[1]]

    def med(rs: list[OverloadRun], key: str) -> float:
        return lb.median([r.wrk.latency_ms.get(key, float("nan")) for r in rs])

    ratios = ", ".join(
        f"{k} {med(other, k) / med(base, k):.2f}x" for k in ("mean", "p75", "p90", "p99") if med(base, k)
    )
    rps_ratio = lb.median([r.wrk.rps for r in other]) / lb.median([r.wrk.rps for r in base])
    return (
        "# Overload: one slow backend behind HAProxy `mode tcp`\n\n"
        f"Three backends, round-robin; b1 waits {slow * 1000:g} ms per request, b2 and b3 answer at "
        f"once. wrk, {conns} keep-alive connections, {seconds:g} s per run, variants interleaved. "
        "Latency from wrk (per request); `conns on b1`: mean client connections HAProxy holds to "
        "b1 (its `scur`), sampled every 0.25 s after the first 2 s.\n\n"
        + lb.markdown_table(header, rows)
        + f"\nWith connmw vs without (medians over rounds): latency {ratios}; throughput "
        f"{rps_ratio:.2f}x.\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each run")
    parser.add_argument("--slow", type=float, default=0.02, help="seconds each request waits on b1")
    parser.add_argument("--soft", type=int, default=2, help="overload_soft_limit")
    parser.add_argument("--hard", type=int, default=6, help="overload_hard_limit")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    lb.require_tools()
    lb.install_sigterm()

    runs = []
    vs = variants(args.soft, args.hard)
    for i in range(args.rounds):
        for variant in vs if i % 2 == 0 else tuple(reversed(vs)):
            print(f"overload, round {i + 1}, {variant.label} ...")
            run = run_overload(variant, seconds=args.seconds, slow=args.slow, conns=args.connections)
            print(
                f"  {run.wrk.rps:.0f} req/s, b1 share {lb.pct(run.slow_share())}, "
                f"{run.slow_connections():.1f} conns on b1, latency {run.wrk.latency_ms}"
            )
            runs.append(run)

    text = report(runs, slow=args.slow, conns=args.connections, seconds=args.seconds)
    lb.RESULTS.mkdir(exist_ok=True)
    (lb.RESULTS / "overload.md").write_text(text)
    first = {}
    for run in runs:
        first.setdefault(run.variant.name, run)
    lb.plot_panels(
        [
            (
                f"{run.variant.label}: b1 holds {run.slow_connections():.1f} of {args.connections} "
                f"connections, p99 {run.wrk.latency_ms.get('p99', float('nan')):.1f} ms",
                run.samples,
                [],
            )
            for run in first.values()
        ],
        lb.RESULTS / "overload.png",
        suptitle=f"One slow backend (b1, +{args.slow * 1000:g} ms) behind HAProxy mode tcp: requests/s per backend",
        log=True,
    )
    print(text)


if __name__ == "__main__":
    main()
