"""Print pip requirements that pin every server and framework of the test extra to
its declared lower bound: ``uvicorn[standard]>=0.30`` -> ``uvicorn[standard]==0.30.*`` (the
newest patch of that release: registries do not keep every patch release of every project),
``waitress>=3.0.0`` -> ``waitress==3.0.0.*`` (that release, or a post-release of it).

The test tools (pytest, mypy, httpx, the aioquic client, ...) are left out: they are not
what connmw supports.
Used by .ci/run's job on the oldest versions.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

TOOLS = {
    "pytest",
    "pytest-cov",
    "pytest-timeout",
    "coverage",
    "hypothesis",
    "ruff",
    "mypy",
    "build",
    "twine",
    "httpx",
    "h2",
    "trustme",
    # the HTTP/3 tests' client: its own checks are what those tests show without connmw
    "aioquic",
}


def main() -> int:
    data = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    for requirement in data["project"]["optional-dependencies"]["test"]:
        requirement, _, marker = requirement.partition(";")
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?>=([0-9.]+)", requirement.strip())
        if match is None:
            print(f"cannot read a lower bound in {requirement!r}", file=sys.stderr)
            return 1
        name, extra, low = match.groups()
        if name not in TOOLS:
            print(f"{name}{extra or ''}=={low}.*" + (f"; {marker.strip()}" if marker else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
