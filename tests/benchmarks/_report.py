"""The tables the in-process benchmarks print."""

from __future__ import annotations

import platform

import connmw


def build_line() -> str:
    """Which connmw build the tables measured, on which Python."""
    build = "compiled (mypyc)" if connmw.COMPILED else "pure Python"
    return f"connmw {connmw.__version__}, {build} build, {platform.python_implementation()} {platform.python_version()}"


def overhead_table(mix: str, best: dict[str, float], framework: str) -> list[str]:
    """Microseconds per request, overhead over the bare app, and that overhead as a
    share of the ``framework`` variant's per-request time (all from the same run)."""
    bare = best["bare app"]
    frame = best[framework]
    lines = [
        f"### mix: {mix}",
        "",
        f"| variant | µs/request | overhead over bare (µs) | overhead / empty layer's "
        f"| overhead / {framework.split()[-1]} request |",
        "|---|---:|---:|---:|---:|",
    ]
    empty = best["empty layer"] - bare
    for name, t in best.items():
        over = t - bare
        lines.append(
            f"| {name} | {t * 1e6:.2f} | {over * 1e6:+.2f} | {over / max(empty, 1e-12):.2f}x "
            f"| {over / frame * 100:+.1f}% |"
        )
    return lines


def option_cost_table(title: str, best: dict[str, float], defaults: str = "connmw defaults") -> list[str]:
    """What each option costs alone, over connmw with its defaults, and over an empty
    layer's overhead (the least any layer costs), from one run."""
    bare = best["bare app"]
    base = best[defaults]
    empty = best["empty layer"] - bare
    lines = [
        f"### {title}",
        "",
        "| option (alone) | µs/request | cost over defaults (µs) | overhead / empty layer's |",
        "|---|---:|---:|---:|",
    ]
    for name, t in best.items():
        if name in ("bare app", "empty layer"):
            continue
        lines.append(
            f"| {name} | {t * 1e6:.2f} | {(t - base) * 1e6:+.2f} | {(t - bare) / max(empty, 1e-12):.2f}x |"
        )
    return lines
