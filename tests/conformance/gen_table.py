"""Write README.md's server compatibility table from the conformance suite.

Usage (from the repository root)::

    python -m tests.conformance.gen_table            # rewrite the README section from the specs
    python -m tests.conformance.gen_table --print    # print the section, leave README.md alone
    python -m tests.conformance.gen_table --run      # run the suite first; stop unless it agrees
    python -m tests.conformance.gen_table --results results.json   # from a saved run

Only the text between ``<!-- section:servers -->`` and ``<!-- /section:servers -->``
changes. The table is rendered from what each server's spec pins (``targets.expected``),
which the suite asserts case by case, so the table is what the suite checks; a test
(``tests/test_readme.py``) keeps the README equal to what this prints. The suite records
one entry per (server, case) when the ``CONNMW_CONFORMANCE_RESULTS`` environment variable
names a file (see conftest.py); ``--run`` renders from those and refuses to write a table
that differs from the pinned one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.conformance.cases import CASES
from tests.conformance.conftest import RESULTS_ENV
from tests.conformance.targets import SPECS, expected

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
START, END = "<!-- section:servers -->", "<!-- /section:servers -->"

COLUMNS = {
    "http11-plain": "1.1",
    "close": "`close`",
    "te-close": "`TE, close`",
    "Close": "`Close`",
    "two-fields": "2 fields",
    "http10-plain": "1.0",
    "http10-keep-alive": "1.0 keep-alive",
    "http10-keep-alive-rule": "1.0 keep-alive, rule",
    "stream-http10": "stream 1.0",
    "stream-http11": "stream 1.1",
    "rule": "rule",
    "handler": "handler",
    "hop": "app hop-by-hop",
    "pipelined": "pipelined",
}
PROTOCOLS = {"h1": "HTTP/1.x", "h2c": "HTTP/2 (h2c)", "h2-tls": "HTTP/2 (TLS)", "h3": "HTTP/3 (QUIC)"}


def run_suite(results: Path) -> float:
    env = dict(os.environ)
    env[RESULTS_ENV] = str(results)
    start = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/conformance/test_conformance.py",
        ],
        cwd=ROOT,
        env=env,
        check=False,
    )
    return time.monotonic() - start


def expected_results() -> list[dict[str, Any]]:
    """The results a run of the suite gives when every server does what its spec pins."""
    results: list[dict[str, Any]] = []
    for spec in SPECS:
        for case, want in expected(spec).items():
            entry: dict[str, Any] = {"server": spec.id, "case": case, "outcome": "passed", "observed": want}
            if want is None:
                entry.update(
                    outcome="skipped", reason="an HTTP/1.x header case; HTTP/2 has no Connection header"
                )
            elif case in spec.known:
                entry.update(outcome="xfailed", observed=None, reason=spec.known[case])
            results.append(entry)
    return results


def _cell(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "?"
    outcome = entry["outcome"]
    if outcome == "passed":
        return "✓ " + str(entry.get("observed") or "")
    if outcome == "skipped":
        return "n/a"
    if outcome == "xfailed":
        return "✗ known"
    return "✗ **fails**"


def render(results: list[dict[str, Any]]) -> str:
    by_server: dict[str, dict[str, dict[str, Any]]] = {}
    for entry in results:
        by_server.setdefault(entry["server"], {})[entry["case"]] = entry
    lines = [
        START,
        "## Servers",
        "",
        "connmw makes each announced close real through the server's own objects (see",
        "`connmw/servers/`). Each row below is a real server on loopback, each column a case of",
        "`tests/conformance/` checked on the raw bytes (status, every `Connection`/`Keep-Alive`/",
        "`Transfer-Encoding` line, the body) and on the socket: **closed** means `recv()` returned",
        '`b""` after exactly one `Connection: close` (or, for HTTP/1.0, none), **open** means a second',
        "request on the same socket was answered, **kept** means an HTTP/1.0 keep-alive connection was",
        "announced and kept. The words after ✓ are what the server did; n/a is an HTTP/1 header case",
        "on an HTTP/2 or HTTP/3 row.",
        "",
        "| server | app | protocol | passed | " + " | ".join(COLUMNS.values()) + " |",
        "|---|---|---|---|" + "---|" * len(COLUMNS),
    ]
    notes: list[str] = []
    for spec in SPECS:
        row = by_server.get(spec.id, {})
        applicable = [e for e in row.values() if e["outcome"] != "skipped" or e["case"] not in CASES]
        passed = sum(1 for e in row.values() if e["outcome"] == "passed")
        skipped_all = row and all(e["outcome"] == "skipped" for e in row.values())
        if skipped_all:
            reason = next(iter(row.values())).get("reason", "")
            cells = [f"skipped: {reason}"] + [""] * (len(COLUMNS) - 1)
            count = "—"
        else:
            cells = [_cell(row.get(case)) for case in COLUMNS]
            count = f"{passed}/{len(applicable)}"
        lines.append(
            f"| {spec.id} | {spec.interface}, {spec.app} | {PROTOCOLS[spec.protocol]} | {count} | "
            + " | ".join(cells)
            + " |"
        )
        text = spec.notes
        if spec.always_closes:
            text = f"Closes every connection ({spec.closes_why}): cases that would stay open are expected closed, with the close announced. {text}"
        for case, why in spec.known.items():
            text += f" Known failure, {COLUMNS[case]}: {why}."
        if text:
            notes.append(f"- **{spec.id}**: {text.strip()}")
    lines += ["", "How each server is handled, and every exception:", "", *notes]
    lines += [
        "",
        "HTTP/2 and HTTP/3 rows check the multiplexed form of a case: no connection-specific header in the response",
        "(including `te` other than `trailers` and headers the app's `Connection` nominates), the",
        "stream complete, and the connection still serving a further stream. On an unknown WSGI",
        "server connmw sends no hop-by-hop header and logs one warning naming the server. A WSGI",
        "app mounted in an ASGI one (a2wsgi's or Starlette's `WSGIMiddleware`) has the bridge as its",
        "server: connmw passes `Connection: close` through it when an ASGI `ConnectionMiddleware`",
        "sits outside the mount (which makes the close real), and announces nothing otherwise.",
        "Where the server gives no connection identity (granian's WSGI interface: no `REMOTE_PORT`,",
        "nothing that lives as long as the connection), the per-connection options",
        "(`max_requests_per_connection`, `max_connection_age`) cannot apply; connmw says so once.",
        "",
        "This section is generated from what each server's spec in `tests/conformance/targets.py` pins,",
        "which the suite asserts case by case: `python -m tests.conformance.gen_table` rewrites it",
        "(`--run` runs the suite first). Do not edit it by hand; a test checks it.",
        END,
    ]
    return "\n".join(lines)


def replace_section(text: str, section: str) -> str:
    start = text.index(START)
    end = text.index(END) + len(END)
    return text[:start] + section + text[end:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--run", action="store_true", help="run the suite and render from its results")
    parser.add_argument("--results", type=Path, help="a results file from an earlier run")
    parser.add_argument("--print", dest="print_only", action="store_true", help="print, do not write")
    args = parser.parse_args(argv)
    pinned = render(expected_results())
    if args.run or args.results is not None:
        if args.results is None:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "results.json"
                took = run_suite(path)
                if not path.exists():
                    print("the suite wrote no results", file=sys.stderr)
                    return 1
                results = json.loads(path.read_text(encoding="utf-8"))
            print(f"conformance suite: {took:.1f} s", file=sys.stderr)
        else:
            results = json.loads(args.results.read_text(encoding="utf-8"))
        # The suite makes no test where a case does not apply: those cells are pinned.
        results += [e for e in expected_results() if e["outcome"] == "skipped"]
        section = render(results)
        if section != pinned:
            print(section)
            print(
                "the servers did not do what tests/conformance/targets.py pins (table above); "
                "README.md left alone",
                file=sys.stderr,
            )
            return 1
    else:
        section = pinned
    if args.print_only:
        print(section)
        return 0
    README.write_text(replace_section(README.read_text(encoding="utf-8"), section), encoding="utf-8")
    print(f"wrote {README}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
