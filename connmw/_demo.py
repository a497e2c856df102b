"""``connmw demo``: the same small app under uvicorn, bare and wrapped in connmw.

Both servers run in this process, in threads, on loopback sockets bound to free
ports; both are stopped (and their sockets closed) before the command returns,
so nothing is left behind. The probe from :mod:`connmw.probe` sends the same
requests to both and the differences are printed side by side, each close with
the reason connmw gave for it (read from the ``x-connmw`` response header that
the ``decision_header`` option adds).

Needs only ``uvicorn`` (``pip install "connmw[demo]"``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

from . import __version__
from ._policy import Rule
from .asgi import ConnectionMiddleware, Receive, Scope, Send
from .probe import CaseResult, CaseSpec, ProbeConfig, Report, Style, Target, render_table, run_probe

__all__ = ["CASES", "DEMO_OPTIONS", "app", "run"]

KEEP_ALIVE = 5
DEMO_OPTIONS: dict[str, Any] = {
    "rules": [Rule("/downloads/*")],
    "max_requests_per_connection": 3,
    "keep_alive_timeout": KEEP_ALIVE,
    "decision_header": "x-connmw",
}
OPTIONS_TEXT = (
    'ConnectionMiddleware(app, rules=[Rule("/downloads/*")], max_requests_per_connection=3,\n'
    f'                     keep_alive_timeout={KEEP_ALIVE}, decision_header="x-connmw")'
)

CASES: tuple[CaseSpec, ...] = (
    CaseSpec("get", "GET /", path="/"),
    CaseSpec("third", "GET / (3rd on a connection)", path="/", requests=3),
    CaseSpec("rule", "GET /downloads/report.csv", path="/downloads/report.csv"),
    CaseSpec("status", "GET /flaky (answers 503)", path="/flaky"),
    CaseSpec("te-close", "GET /, Connection: TE, close", connection="TE, close", path="/"),
    CaseSpec("http10-stream", "HTTP/1.0 GET /stream", protocol="HTTP/1.0", path="/stream"),
    CaseSpec(
        "http10-keep-alive",
        "HTTP/1.0 GET /, keep-alive",
        protocol="HTTP/1.0",
        connection="keep-alive",
        path="/",
    ),
)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """``/downloads/*`` a small CSV, ``/flaky`` 503, ``/stream`` three parts without a
    length, anything else ``hello``. Requests are GETs: the body is not read. uvicorn
    runs it with ``lifespan="off"``, so only ``http`` scopes arrive."""
    path = scope["path"]
    if path == "/stream":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        for i in range(3):
            await send({"type": "http.response.body", "body": b"part %d;" % i, "more_body": i < 2})
        return
    status, body, ctype = 200, b"hello", b"text/plain"
    if path.startswith("/downloads/"):
        body, ctype = b"id,total\n1,42\n", b"text/csv"
    elif path == "/flaky":
        status, body = 503, b"try again"
    headers = [(b"content-type", ctype), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextlib.contextmanager
def serve(asgi_app: Any) -> Iterator[tuple[int, str]]:
    """uvicorn in a thread on a free loopback port; yields ``(port, http implementation)``."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port: int = sock.getsockname()[1]
    config = uvicorn.Config(
        asgi_app,
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="connmw-demo")
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        yield port, _impl_name(config)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _impl_name(config: Any) -> str:
    cls = getattr(config, "http_protocol_class", None)
    module = getattr(cls, "__module__", "")
    if "httptools" in module:
        return "httptools"
    if "h11" in module:
        return "h11"
    return str(getattr(config, "http", "?"))


def _explain(spec: CaseSpec, result: CaseResult) -> str:
    """The ``x-connmw`` value and what it means, on two lines."""
    values = result.captured.get("x-connmw", [])
    if not values:
        return "-"
    value = values[0]
    if not value.startswith("close"):
        if result.headers.get("keep-alive"):
            return f"{value}\nKeep-Alive: keep_alive_timeout={KEEP_ALIVE}"
        return value
    reason = value.partition("reason=")[2] or "?"
    why = {
        "rule": 'Rule("/downloads/*") matched',
        "max-requests": "max_requests_per_connection=3",
        "status": f"{result.status} is in close_on_status",
        "client": f"the client sent {spec.connection!r}",
        "http-1.0": (
            "uvicorn does not keep 1.0 connections"
            if "keep-alive" in spec.request_tokens
            else "HTTP/1.0 without keep-alive"
        ),
    }.get(reason, reason)
    return f"{value}\n{why}"


def _cell(result: CaseResult) -> str:
    """Status and fate, then the connection lines, one per line."""
    if result.error is not None:
        return f"error: {result.error}"
    if result.closed:
        fate = "closed at body end" if result.framing == "close" else "closed"
    elif result.next_request == "answered":
        fate = "kept (reused)"
    else:
        fate = "kept (next request unanswered)"
    lines = [f"{result.status}, {fate}"]
    for name, label in (
        ("connection", "Connection"),
        ("keep-alive", "Keep-Alive"),
        ("transfer-encoding", "Transfer-Encoding"),
    ):
        lines += [f"{label}: {v}" for v in result.headers.get(name, [])]
    lines += [f"[!] {f.code}" for f in result.violations]
    return "\n".join(lines)


def format_demo(bare: Report, wrapped: Report, impl: str, style: Style, elapsed: float | None = None) -> str:
    import uvicorn

    lines = [
        style(
            f"connmw {__version__} demo: one app, twice under uvicorn {uvicorn.__version__} ({impl}) on loopback",
            "bold",
        ),
        "",
        "wrapped in " + OPTIONS_TEXT.replace("\n", "\n" + " " * 11),
        "",
    ]
    rows: list[list[str]] = []
    colors: list[str | None] = []
    for spec, a, b in zip(CASES, bare.results, wrapped.results, strict=True):
        rows.append([spec.title, _cell(a), _cell(b), _explain(spec, b)])
        colors.append("green" if _cell(a) != _cell(b) else None)
    table = render_table(
        ["request (fresh connection)", "uvicorn alone", "uvicorn + connmw", "x-connmw: why"],
        rows,
        colors,
        style,
        color_column=2,
    )
    lines += table
    found = [
        (label, r, f)
        for label, rep in (("alone", bare), ("+ connmw", wrapped))
        for r in rep.results
        for f in r.findings
    ]
    if found:
        lines.append("")
        for label, r, f in found:
            sev = style("[!]", "red") if f.severity == "violation" else style("warning:", "yellow")
            lines.append(f"{sev} uvicorn {label}, {r.spec.title}: {f.message} ({f.rfc})")
    lines.append("")
    summary = (
        f"RFC violations: uvicorn alone {bare.violations}, uvicorn + connmw {wrapped.violations}. "
        f"connmw changed {sum(c is not None for c in colors)} of {len(CASES)} answers."
    )
    lines.append(style(summary, "red" if wrapped.violations else "green"))
    tail = "Probe any server the same way: connmw probe http://127.0.0.1:8000/"
    if elapsed is not None:
        tail = f"Done in {elapsed:.1f} s. " + tail
    lines.append(tail)
    return "\n".join(lines) + "\n"


def probe_both(config: ProbeConfig | None = None) -> tuple[Report, Report, str]:
    """Start both servers, probe them at once, stop them."""
    config = config or ProbeConfig(close_wait=0.5, timeout=5.0, concurrency=4, capture=("x-connmw",))
    wrapped_app = ConnectionMiddleware(app, **DEMO_OPTIONS)
    reports: dict[str, Report] = {}
    errors: list[BaseException] = []

    def probe(name: str, port: int) -> None:
        target = Target("http", "127.0.0.1", port, "/", f"http://127.0.0.1:{port}/")
        try:
            reports[name] = run_probe(target, config, CASES)
        except BaseException as exc:  # re-raised below, in the caller's thread
            errors.append(exc)

    with serve(app) as (bare_port, impl), serve(wrapped_app) as (wrapped_port, _):
        threads = [
            threading.Thread(target=probe, args=("bare", bare_port)),
            threading.Thread(target=probe, args=("wrapped", wrapped_port)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return reports["bare"], reports["wrapped"], impl


def run(out: IO[str], *, color: bool, write: Callable[[IO[str], str], None]) -> int:
    """The ``connmw demo`` command; returns the exit status."""
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        from .probe import UsageError

        raise UsageError('connmw demo needs uvicorn: pip install "connmw[demo]"') from None
    start = time.monotonic()
    bare, wrapped, impl = probe_both()
    text = format_demo(bare, wrapped, impl, Style(color), time.monotonic() - start)
    write(out, text)
    return 1 if wrapped.violations or wrapped.errors else 0
