"""Experiment 1, scale-out: do new backends get traffic from clients already connected?

HAProxy (``mode tcp`` by default: an L4 balancer, a client connection is pinned to one
backend) in front of four uvicorn backends (``--mode h2``: ``mode http`` talking HTTP/2
to four hypercorn backends); b1 and b2 run, b3 and b4 are down. wrk
opens 32 keep-alive connections; a few seconds later b3 and b4 start. The script
measures the share of requests b3 and b4 serve after HAProxy marks them UP, once per
variant (plain keep-alive, connmw's request cap, connmw's connection age).

Then clean A/B runs (all four backends up from the start, variants interleaved) give
the throughput cost of the extra reconnects.

    python examples/loadbalancer/scale_out.py            # about 3 minutes
    python examples/loadbalancer/scale_out.py --quick    # shorter, fewer rounds
    python examples/loadbalancer/scale_out.py --mode h2 --after 12 --rounds 2   # HTTP/2 backends

Writes ``results/scale_out.png`` and ``results/scale_out.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from dataclasses import dataclass

import lb

OLD = ("b1", "b2")
NEW = ("b3", "b4")
FAIR = len(NEW) / (len(OLD) + len(NEW))

CONNMW_ONLY = lb.Variant("connmw_defaults", "connmw, no load options", {})
CAP_1000 = lb.Variant(
    "max_requests_1000",
    "connmw max_requests_per_connection=1000, jitter 500",
    {"max_requests_per_connection": 1000, "max_requests_jitter": 500},
)
VARIANTS = (
    lb.BARE,
    lb.Variant(
        "max_requests",
        "connmw max_requests_per_connection=100, jitter 50",
        {"max_requests_per_connection": 100, "max_requests_jitter": 50},
    ),
    lb.Variant(
        "max_age",
        "connmw max_connection_age=2 s, jitter 1 s",
        {"max_connection_age": 2, "max_connection_age_jitter": 1},
    ),
)

AB_VARIANTS = (*VARIANTS, CAP_1000, CONNMW_ONLY)


@dataclass
class ScaleRun:
    variant: lb.Variant
    samples: lb.Samples
    started: float  # when b3 and b4 were spawned (seconds since the load started)
    up: float  # when HAProxy marked both UP
    wrk: lb.WrkResult

    def share(self, start: float, end: float) -> float | None:
        return lb.window_share(self.samples, NEW, self.up + start, self.up + end)

    def time_to(self, target: float) -> float | None:
        return lb.time_to_share(self.samples, NEW, self.up, target, window=1.0)

    def time_to_hold(self, target: float) -> float | None:
        return lb.time_to_hold(self.samples, NEW, self.up, target, hold=3.0)


def run_scale_out(
    variant: lb.Variant, *, mode: str, late: float, after: float, conns: int, delay: float
) -> ScaleRun:
    with lb.Cluster(OLD + NEW, mode=mode) as cluster:
        for name in OLD:
            cluster.start_backend(name, variant, delay=delay)
        cluster.start_haproxy()
        # Servers with checks start UP in HAProxy: wait until it has seen b3, b4 are not there.
        cluster.wait_status(NEW, "DOWN")
        cluster.wait_status(OLD, "UP")
        duration = late + 2.5 + after
        with lb.Sampler(cluster) as sampler:
            wrk = cluster.start_wrk(duration, connections=conns)
            time.sleep(late)
            started = sampler.now()
            for name in NEW:
                cluster.start_backend(name, variant, delay=delay)
            cluster.wait_status(NEW, "UP")
            up = sampler.now()
            result = lb.finish_wrk(wrk, duration)
        return ScaleRun(variant, sampler.samples, started, up, result)


def run_ab(
    rounds: int, seconds: float, *, mode: str, conns: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Requests/s and server CPU µs per request, variants interleaved.

    One cluster per variant (two backends, all up from the start) stays up for the
    whole A/B; each round runs wrk against every cluster in turn (order reversed every
    other round), so the variants share the machine's background noise.
    """
    variants = AB_VARIANTS
    rps: dict[str, list[float]] = {v.name: [] for v in variants}
    cpu: dict[str, list[float]] = {v.name: [] for v in variants}
    with contextlib.ExitStack() as stack:
        clusters = {}
        for variant in variants:
            cluster = stack.enter_context(lb.Cluster(OLD, mode=mode))
            for name in OLD:
                cluster.start_backend(name, variant)
            cluster.start_haproxy()
            cluster.wait_status(OLD, "UP")
            cluster.run_wrk(1, connections=conns)  # warm-up
            clusters[variant.name] = cluster
        for i in range(rounds):
            order = variants if i % 2 == 0 else tuple(reversed(variants))
            line = []
            for variant in order:
                cluster = clusters[variant.name]
                cpu0 = cluster.server_cpu()
                result = cluster.run_wrk(seconds, connections=conns)
                cpu[variant.name].append((cluster.server_cpu() - cpu0) / max(1, result.requests) * 1e6)
                rps[variant.name].append(result.rps)
                if result.failed:
                    print(f"  note: {variant.name}: {result.failed} failed requests in the A/B run")
                line.append(f"{variant.name} {result.rps:.0f}")
            print(f"  A/B round {i + 1}: " + ", ".join(line) + " req/s")
    return rps, cpu


def paired_ratio(values: list[float], base: list[float]) -> float:
    """Median over rounds of the ratio to the baseline measured in the same round."""
    return lb.median([v / b for v, b in zip(values, base, strict=True) if b])


def report(
    runs: list[ScaleRun],
    rps: dict[str, list[float]],
    cpu: dict[str, list[float]],
    *,
    mode: str,
    conns: int,
    delay: float,
    seconds: float = 3.0,
) -> str:
    rows = []
    for run in runs:
        rows.append(
            [
                run.variant.label,
                f"{run.up - run.started:.1f} s",
                lb.pct(run.share(0, 2)),
                lb.pct(run.share(0, 10)),
                lb.pct(run.share(0, 30)),
                lb.secs(run.time_to(0.5)),
                lb.secs(run.time_to(0.9 * FAIR)),
                lb.secs(run.time_to_hold(0.9 * FAIR)),
                run.wrk.failed,
            ]
        )
    header = [
        "variant",
        "spawn→UP",
        "share 0-2 s",
        "share 0-10 s",
        "share 0-30 s",
        "UP→50% share",
        f"UP→90% of fair ({0.9 * FAIR:.0%})",
        "UP→3 s mean ≥ 90% of fair",
        "failed requests",
    ]
    where = "`mode http`, HTTP/2 to hypercorn backends (`proto h2`)" if mode == "h2" else f"`mode {mode}`"
    text = (
        f"# Scale-out behind HAProxy {where}\n\n"
        f"wrk, {conns} keep-alive connections; each request waits {delay * 1000:g} ms in the handler "
        f"(I/O-bound, so CPU contention between backends on one machine does not skew shares); "
        f"b1, b2 up; b3, b4 start under load. Shares are of all requests, served by b3 + b4, in "
        f"windows counted from the moment HAProxy marks them UP (fair share: {FAIR:.0%}). "
        f"UP→x: first moment the share over the trailing 1 s reaches x; 3 s mean: first moment "
        f"from which the share over the next 3 s reaches it.\n\n" + lb.markdown_table(header, rows)
    )
    if rps:
        labels = {v.name: v.label for v in AB_VARIANTS}
        ab_rows = [
            [
                labels[name],
                f"{lb.median(values):.0f}",
                f"{paired_ratio(values, rps['bare']):.3f}",
                f"{paired_ratio(values, rps[CONNMW_ONLY.name]):.3f}",
                f"{lb.median(cpu[name]):.0f}",
                f"{paired_ratio(cpu[name], cpu['bare']):.3f}",
            ]
            for name, values in rps.items()
        ]
        text += (
            "\n## Throughput cost of the reconnects\n\n"
            f"Clean A/B runs: one HAProxy + two backends per variant, all up from the start; "
            f"{len(next(iter(rps.values())))} rounds, each running wrk ({conns} connections, "
            f"{seconds:g} s) against every variant in turn, order reversed every other round. The "
            "handler answers at once (CPU-bound: the worst case for reconnect costs). Ratios are "
            "medians of per-round ratios. CPU per request: user + system time of HAProxy and the "
            "backends over the run, divided by the requests wrk counted. On a shared 2-core "
            "machine absolute numbers are noisy; compare the ratios.\n\n"
            + lb.markdown_table(
                [
                    "variant",
                    "req/s (median)",
                    "req/s vs plain",
                    "req/s vs connmw without load options",
                    "server CPU µs/request",
                    "CPU/request vs plain",
                ],
                ab_rows,
            )
        )
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=lb.MODES, default="tcp")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--late", type=float, default=3.0, help="seconds of load before b3, b4 start")
    parser.add_argument("--after", type=float, default=31.0, help="seconds of load after they start")
    parser.add_argument(
        "--delay",
        type=float,
        default=0.005,
        help="seconds each request waits in the handler (I/O, e.g. a database call) in the scale-out runs",
    )
    parser.add_argument("--rounds", type=int, default=5, help="A/B throughput rounds")
    parser.add_argument("--ab-seconds", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="12 s after start, one A/B round")
    parser.add_argument(
        "--variants",
        default=",".join(v.name for v in VARIANTS),
        help=f"comma-separated scale-out variants (default all: {', '.join(v.name for v in VARIANTS)})",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.after, args.rounds = 12.0, 1
    lb.require_tools()
    lb.install_sigterm()

    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(chosen) - {v.name for v in VARIANTS})
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)}")
    runs = []
    for variant in (v for v in VARIANTS if v.name in chosen):
        print(f"scale-out, {variant.label} ...")
        run = run_scale_out(
            variant,
            mode=args.mode,
            late=args.late,
            after=args.after,
            conns=args.connections,
            delay=args.delay,
        )
        print(
            f"  UP at {run.up:.1f} s; new share 0-10 s {lb.pct(run.share(0, 10))}, "
            f"0-30 s {lb.pct(run.share(0, 30))}, 90% of fair after {lb.secs(run.time_to(0.9 * FAIR))}"
        )
        runs.append(run)
    print("throughput A/B ...")
    rps: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    if args.rounds:
        rps, cpu = run_ab(args.rounds, args.ab_seconds, mode=args.mode, conns=args.connections)

    text = report(
        runs, rps, cpu, mode=args.mode, conns=args.connections, delay=args.delay, seconds=args.ab_seconds
    )
    suffix = "" if args.mode == "tcp" else f"_{args.mode}"
    (lb.RESULTS / f"scale_out{suffix}.md").parent.mkdir(exist_ok=True)
    (lb.RESULTS / f"scale_out{suffix}.md").write_text(text)
    lb.plot_panels(
        [(run.variant.label, run.samples, [(run.up, "b3, b4 UP")]) for run in runs],
        lb.RESULTS / f"scale_out{suffix}.png",
        suptitle=f"Scale-out behind HAProxy mode {args.mode}: requests/s per backend",
    )
    print(text)


if __name__ == "__main__":
    main()
