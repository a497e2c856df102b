"""The ``connmw`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="connmw",
        description="Manage the HTTP Connection header of WSGI and ASGI applications.",
    )
    parser.add_argument("--version", action="version", version=f"connmw {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("demo", help="show what connmw does to a small app on a real server")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        print(f"connmw {__version__}")
        print(
            "connmw wraps a WSGI or ASGI app and decides, for every HTTP/1.x response, "
            "whether the connection closes: it honours the client's Connection: close, "
            "closes on purpose by rule, status, request count, age, load or drain, "
            "advertises Keep-Alive honestly, and strips connection-specific headers "
            "from HTTP/2 and HTTP/3 responses."
        )
        return 0
    parser.print_help(sys.stderr)
    return 2
