"""The ``connmw`` command.

``connmw probe URL`` reports what any HTTP server does with the ``Connection``
header, read off the wire (see :mod:`connmw.probe` for the cases, the findings
and the JSON schema); ``connmw demo`` runs a small app under uvicorn with and
without connmw and shows the difference (see :mod:`connmw._demo`).

Exit status: 0 fine; 1 the probe found violations; 2 usage error, unreachable
target, timeout, refused connection. Errors are one line on stderr, never a
traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import IO, NoReturn

from . import COMPILED, __version__

#: What ``connmw --version`` says of the build: the optional compiled one, or pure Python.
BUILD = {True: "compiled", False: "pure Python"}


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _positive(limit: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
        if not 0 < value <= limit:
            raise argparse.ArgumentTypeError(f"must be > 0 and <= {limit:g} seconds, got {text}")
        return value

    return parse


def _concurrency(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 8:
        raise argparse.ArgumentTypeError(f"must be between 1 and 8, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="connmw",
        description="Manage the HTTP Connection header of WSGI and ASGI applications.",
    )
    parser.add_argument("--version", action="version", version=f"connmw {__version__} ({BUILD[COMPILED]})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    probe = sub.add_parser(
        "probe",
        help="report what a server does with the Connection header, read off the wire",
        description=(
            "Send a few requests, each on a fresh connection (HTTP/1.1 plain and with Connection: close, "
            "TE, close and Close; HTTP/1.0 plain and keep-alive; HTTP/2 with --http2), and report the "
            "Connection, Keep-Alive, Transfer-Encoding and Content-Length lines, whether the server "
            "really closed the connection, whether it answered another request, and every RFC violation. "
            "Exit status: 0 none, 1 violations, 2 usage error or unreachable target."
        ),
    )
    probe.add_argument("url", metavar="URL", help="http:// or https:// URL to probe")
    probe.add_argument("--method", default="GET", help="request method (default GET)")
    probe.add_argument(
        "--header",
        "-H",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra request header, repeatable (Connection and framing headers are the cases' own)",
    )
    probe.add_argument(
        "--timeout",
        type=_positive(300),
        default=5.0,
        metavar="SECONDS",
        help="for each connect and each response (default 5)",
    )
    probe.add_argument(
        "--close-wait",
        type=_positive(60),
        default=1.0,
        metavar="SECONDS",
        help="how long to wait for the server to close after a response (default 1)",
    )
    probe.add_argument(
        "--concurrency",
        type=_concurrency,
        default=1,
        metavar="N",
        help="cases run at once, 1-8 (default 1: one connection at a time)",
    )
    probe.add_argument(
        "--decision-header",
        default="x-connmw",
        metavar="NAME",
        help="the response header connmw's decision_header option names, read to tell a proxy in between "
        "that closes every upstream connection (default x-connmw; '' to ignore)",
    )
    probe.add_argument("--insecure", action="store_true", help="https: skip the certificate check")
    probe.add_argument("--cacert", metavar="FILE", help="https: trust the CA certificates in FILE")
    probe.add_argument(
        "--http2",
        action="store_true",
        help="add the HTTP/2 cases: one stream, then up to 200 on one connection, 8 at once, reporting "
        "any GOAWAY and whether every stream completed (prior knowledge; ALPN on https; needs connmw[probe])",
    )
    probe.add_argument("--json", action="store_true", help="print a JSON report (schema connmw.probe/1)")
    probe.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the table (default auto: on a terminal, unless NO_COLOR is set)",
    )
    demo = sub.add_parser(
        "demo",
        help="show what connmw does to a small app on a real server (needs connmw[demo])",
        description=(
            "Start the same small ASGI app twice under uvicorn on loopback, bare and wrapped in connmw, "
            "probe both and print what connmw changed and why."
        ),
    )
    demo.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    return parser


def use_color(choice: str, stream: IO[str]) -> bool:
    if choice != "auto":
        return choice == "always"
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def write(stream: IO[str], text: str) -> None:
    """Write, falling back to ASCII section signs where the stream cannot encode them."""
    try:
        stream.write(text)
    except UnicodeEncodeError:
        stream.write(text.replace("\u00a7", "sec. ").encode("ascii", "replace").decode("ascii"))
    stream.flush()


def _probe(args: argparse.Namespace) -> int:
    from . import probe as p

    target = p.parse_url(args.url)
    config = p.ProbeConfig(
        method=p.check_method(args.method),
        headers=tuple(p.parse_header(h) for h in args.header),
        timeout=args.timeout,
        close_wait=args.close_wait,
        concurrency=args.concurrency,
        insecure=args.insecure,
        cafile=args.cacert,
        http2=args.http2,
        capture=(args.decision_header.strip().lower(),) if args.decision_header.strip() else (),
    )
    if args.cacert and not os.path.isfile(args.cacert):
        raise p.UsageError(f"--cacert: no such file {args.cacert!r}")
    if args.insecure and args.cacert:
        raise p.UsageError("--insecure and --cacert contradict each other")
    if (args.insecure or args.cacert) and not target.tls:
        raise p.UsageError("--insecure and --cacert only apply to https:// URLs")
    report = p.run_probe(target, config)
    if args.json:
        write(sys.stdout, json.dumps(report.as_dict(), indent=2) + "\n")
    else:
        write(sys.stdout, p.format_report(report, p.Style(use_color(args.color, sys.stdout))))
    return report.exit_code


def _demo(args: argparse.Namespace) -> int:
    from . import _demo as d

    return d.run(sys.stdout, color=use_color(args.color, sys.stdout), write=write)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (errors are one line on stderr)."""
    from .probe import ProbeError, UsageError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "probe":
            return _probe(args)
        if args.command == "demo":
            return _demo(args)
        parser.print_help(sys.stderr)
        return 2
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    except _UsageError as exc:
        write(sys.stderr, f"{exc}\n")
        return 2
    except (UsageError, ProbeError) as exc:
        write(sys.stderr, f"connmw: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        write(sys.stderr, "connmw: interrupted\n")
        return 130
