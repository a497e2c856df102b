"""Experiment 2, drain: a rolling restart under load, with and without connmw's drain.

HAProxy in front of three uvicorn backends, in ``mode tcp`` (L4: each client
connection is pinned to a backend) and in ``mode http`` (HAProxy pools keep-alive
connections to the backends: a silent close by a backend is the classic cause of
502s). wrk keeps 32 connections busy while each backend in turn is restarted as a
deployment does it: SIGTERM, wait for the process to exit, start it again, wait until
HAProxy marks it UP.

Without connmw, uvicorn's graceful shutdown closes idle keep-alive connections
without a word; a request that is on its way at that moment is lost. With
``connmw.drain_on_signal(app, grace=...)``, SIGTERM first drains: every response says
``Connection: close``, ``/health`` answers 503 so HAProxy takes the backend out,
and only after the grace period does uvicorn shut down.

    python examples/loadbalancer/rolling_restart.py      # about 2 minutes

Writes ``results/rolling_restart.png`` and ``results/rolling_restart.md``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

import lb

NAMES = ("b1", "b2", "b3")


def variants(grace: float) -> tuple[lb.Variant, ...]:
    return (
        lb.BARE,
        lb.Variant("drain", f"connmw drain_on_signal(grace={grace:g})", {}),
    )


@dataclass
class RestartRun:
    mode: str
    variant: lb.Variant
    samples: lb.Samples
    events: list[tuple[float, str, str]]
    marks: list[tuple[float, str]]
    wrk: lb.WrkResult
    exit_seconds: list[float] = field(default_factory=list)
    haproxy: dict[str, int] = field(default_factory=dict)


def run_restart(
    mode: str, variant: lb.Variant, *, grace: float, conns: int, before: float, settle: float
) -> RestartRun:
    backend_grace = grace if variant.options is not None else 0.0
    with lb.Cluster(NAMES, mode=mode) as cluster:
        for name in NAMES:
            cluster.start_backend(name, variant, grace=backend_grace)
        cluster.start_haproxy()
        cluster.wait_status(NAMES, "UP")
        # The same load length for every variant: long enough for the slower one.
        duration = before + len(NAMES) * (grace + 2.5 + settle) + 2
        marks: list[tuple[float, str]] = []
        exits: list[float] = []
        with lb.Sampler(cluster) as sampler:
            wrk = cluster.start_wrk(duration, connections=conns)
            time.sleep(before)
            for name in NAMES:
                marks.append((sampler.now(), f"SIGTERM {name}"))
                exits.append(cluster.stop_backend(name))
                cluster.start_backend(name, variant, grace=backend_grace)
                cluster.wait_status([name], "UP")
                marks.append((sampler.now(), f"{name} UP"))
                time.sleep(settle)
            result = lb.finish_wrk(wrk, duration)
        counters = lb.parse_show_stat_rows(cluster.haproxy_command("show stat"), "be", kinds=("BACKEND",))
        row = counters.get("BACKEND", {})
        haproxy = {k: int(row.get(k) or 0) for k in ("econ", "eresp", "wretr", "wredis", "hrsp_5xx")}
        return RestartRun(mode, variant, sampler.samples, sampler.events, marks, result, exits, haproxy)


def report(runs: list[RestartRun], *, grace: float, conns: int) -> str:
    header = [
        "mode",
        "variant",
        "requests",
        "failed",
        "read errors",
        "write errors",
        "connect errors",
        "timeouts",
        "non-2xx",
        "SIGTERM→exit",
        "HAProxy retries / redispatches",
    ]
    rows = [
        [
            f"`{run.mode}`",
            run.variant.label,
            run.wrk.requests,
            f"**{run.wrk.failed}**",
            run.wrk.read_errors,
            run.wrk.write_errors,
            run.wrk.connect_errors,
            run.wrk.timeouts,
            run.wrk.non_2xx,
            " / ".join(f"{s:.1f}" for s in run.exit_seconds) + " s",
            f"{run.haproxy.get('wretr', 0)} / {run.haproxy.get('wredis', 0)}",
        ]
        for run in runs
    ]
    servers = " and ".join(dict.fromkeys(lb.SERVERS[run.mode] for run in runs))
    h2 = (
        " In `h2` mode HAProxy talks HTTP/2 to the backends (`server ... proto h2`)."
        if any(run.mode == "h2" for run in runs)
        else ""
    )
    return (
        "# Rolling restart under load\n\n"
        f"Three {servers} backends behind HAProxy, wrk with {conns} keep-alive connections.{h2} Each "
        "backend in turn: SIGTERM, wait for exit, start again, wait until HAProxy marks it UP. "
        "Failed requests: wrk's socket errors (a connection reset or closed before the "
        "response) plus non-2xx responses (HAProxy's 502/503). With connmw: "
        f"`connmw.drain_on_signal(app, grace={grace:g})` and a `/health` that answers 503 "
        "while draining.\n\n" + lb.markdown_table(header, rows)
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default="tcp,http", help="comma-separated: tcp, http, h2")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--grace", type=float, default=2.0, help="drain grace period (seconds)")
    parser.add_argument("--before", type=float, default=2.0, help="seconds of load before the first restart")
    parser.add_argument("--settle", type=float, default=1.5, help="seconds between restarts")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(lb.MODES))
    if unknown:
        parser.error(f"--modes: unknown {', '.join(unknown)} (choose from {', '.join(lb.MODES)})")
    # The HTTP/2 runs (hypercorn backends) get files of their own.
    name = "rolling_restart_h2" if modes == ["h2"] else "rolling_restart"
    lb.require_tools()
    lb.install_sigterm()

    runs = []
    for mode in modes:
        for variant in variants(args.grace):
            print(f"rolling restart, mode {mode}, {variant.label} ...")
            run = run_restart(
                mode,
                variant,
                grace=args.grace,
                conns=args.connections,
                before=args.before,
                settle=args.settle,
            )
            print(
                f"  {run.wrk.requests} requests, {run.wrk.failed} failed "
                f"(read {run.wrk.read_errors}, write {run.wrk.write_errors}, connect "
                f"{run.wrk.connect_errors}, timeout {run.wrk.timeouts}, non-2xx {run.wrk.non_2xx}); "
                f"HAProxy {run.haproxy}"
            )
            runs.append(run)

    text = report(runs, grace=args.grace, conns=args.connections)
    lb.RESULTS.mkdir(exist_ok=True)
    (lb.RESULTS / f"{name}.md").write_text(text)
    lb.plot_panels(
        [
            (
                f"mode {run.mode}, {run.variant.label}: {run.wrk.failed} failed requests",
                run.samples,
                [(t, label) for t, label in run.marks if label.startswith("SIGTERM")],
            )
            for run in runs
        ],
        lb.RESULTS / f"{name}.png",
        suptitle="Rolling restart under load: requests/s per backend (dotted: SIGTERM)",
    )
    print(text)


if __name__ == "__main__":
    main()
