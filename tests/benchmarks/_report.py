"""The table every in-process benchmark prints."""

from __future__ import annotations


def overhead_table(mix: str, best: dict[str, float], framework: str) -> list[str]:
    """Microseconds per request, overhead over the bare app, and that overhead as a
    share of the ``framework`` variant's per-request time (all from the same run)."""
    bare = best["bare app"]
    frame = best[framework]
    lines = [
        f"### mix: {mix}",
        "",
        f"| variant | µs/request | overhead over bare (µs) | overhead / {framework.split()[-1]} request |",
        "|---|---:|---:|---:|",
    ]
    for name, t in best.items():
        over = t - bare
        lines.append(f"| {name} | {t * 1e6:.2f} | {over * 1e6:+.2f} | {over / frame * 100:+.1f}% |")
    return lines
