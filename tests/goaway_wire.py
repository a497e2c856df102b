"""What the HTTP/2 GOAWAY wire tests share: the servers, the clients, the TLS material.

Servers (real, on loopback, ephemeral ports): hypercorn h2c and TLS and uvicorn's
HTTP/2 (``--http zttp --http2``) in a thread of the test process, daphne (TLS) in
a subprocess configured through ``CONNMW_*`` variables. Clients: the h2-library
client of ``tests/h2load.py``, curl and Node's ``http2`` module.
"""

from __future__ import annotations

import collections
import contextlib
import json
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connmw import ConnectionMiddleware
from tests import servers
from tests.goaway_apps import Echo

NODE_SCRIPT = Path(__file__).resolve().parent / "node" / "h2load.js"


@dataclass
class Tls:
    certfile: str
    keyfile: str
    cafile: str

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.cafile)
        ctx.set_alpn_protocols(["h2"])
        return ctx


def make_tls(directory: Path) -> Tls:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    tls = Tls(str(directory / "cert.pem"), str(directory / "key.pem"), str(directory / "ca.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(tls.certfile)
    cert.private_key_pem.write_to_path(tls.keyfile)
    ca.cert_pem.write_to_path(tls.cafile)
    return tls


@dataclass
class Running:
    """A started server: where it listens and what its application saw."""

    port: int
    tls: Tls | None
    middleware: ConnectionMiddleware | None = None
    echo: Echo | None = None
    log: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def seen(self) -> collections.Counter[str]:
        if self.echo is not None:
            return self.echo.seen
        assert self.log is not None
        text = self.log.read_text() if self.log.exists() else ""
        return collections.Counter(text.split())


SERVERS = ("hypercorn-h2c", "hypercorn-tls", "daphne-tls", "uvicorn-tls")


def uvicorn_h2_missing() -> str | None:
    try:
        import zttp  # noqa: F401
        from uvicorn.protocols.http import zttp_h2_impl  # noqa: F401
    except ImportError as exc:
        return f"uvicorn's HTTP/2 needs uvicorn >= 0.54 and zttp ({exc})"
    return None


@contextlib.contextmanager
def start(
    name: str,
    tmp: Path,
    tls: Tls,
    options: dict[str, Any] | None = None,
    *,
    own_cap: int | None = None,
    drain_signal: int | None = None,
    graceful_timeout: float | None = None,
) -> Iterator[Running]:
    """Start ``name`` serving :class:`Echo`, wrapped in connmw with ``options``
    (or bare when ``options`` is None, with hypercorn's own request cap ``own_cap``);
    ``graceful_timeout``: hypercorn's (in a thread), how long its stop waits for streams."""
    echo = Echo()
    app: Any = echo if options is None else ConnectionMiddleware(echo, **options)
    mw = app if options is not None else None
    if name.startswith("hypercorn") and own_cap is not None:
        # hypercorn's own cap, no connmw: in a process of its own, since the connections
        # that cap breaks can keep hypercorn from stopping in time (SIGTERM, then SIGKILL).
        use_tls = name == "hypercorn-tls"
        config = tmp / "hypercorn_own_cap.py"
        config.write_text(f"keep_alive_max_requests = {own_cap}\n")
        port = servers.free_port()
        argv = [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", "-c", f"file:{config}"]
        if use_tls:
            argv += ["--certfile", tls.certfile, "--keyfile", tls.keyfile]
        with servers.subprocess_server([*argv, "tests.goaway_apps:bare"], port) as proc:
            yield Running(port, tls if use_tls else None, None, None, None, proc)
    elif name.startswith("hypercorn"):
        use_tls = name == "hypercorn-tls"
        extra: dict[str, Any] = {} if graceful_timeout is None else {"graceful_timeout": graceful_timeout}
        with servers.hypercorn_thread(
            app,
            certfile=tls.certfile if use_tls else None,
            keyfile=tls.keyfile if use_tls else None,
            **extra,
        ) as port:
            yield Running(port, tls if use_tls else None, mw, echo)
    elif name == "uvicorn-tls":
        with servers.uvicorn_thread(
            app, http="zttp", http2=True, ssl_certfile=tls.certfile, ssl_keyfile=tls.keyfile
        ) as port:
            yield Running(port, tls, mw, echo)
    elif name == "daphne-tls":
        log = tmp / f"seen-{time.monotonic_ns()}.log"
        env = {"GOAWAY_SEEN_LOG": str(log)}
        for key, value in (options or {}).items():
            env["CONNMW_" + key.upper()] = str(value)
        if drain_signal is not None:
            env["GOAWAY_DRAIN_SIGNAL"] = str(drain_signal)
        port = servers.free_port()
        endpoint = f"ssl:{port}:interface=127.0.0.1:privateKey={tls.keyfile}:certKey={tls.certfile}"
        argv = [sys.executable, "-m", "daphne", "-e", endpoint, "-v", "0", "tests.goaway_apps:app"]
        with servers.subprocess_server(argv, port, env=env) as proc:
            yield Running(port, tls, None, None, log, proc)
    else:  # pragma: no cover - a typo in a parametrisation
        raise ValueError(name)


# -- clients -----------------------------------------------------------------------------


@dataclass
class ClientRun:
    """One client's load run, in the terms the tests assert on."""

    client: str
    requests: int
    failed: list[str]
    connections: int
    retried: int = 0
    goaways: list[tuple[int, int, int, bytes]] = field(default_factory=list)  # (conn, last id, code, debug)
    moved_ms: list[float] = field(default_factory=list)
    elapsed: float = 0.0

    def summary(self) -> str:
        moved = sorted(self.moved_ms)
        median = moved[len(moved) // 2] if moved else float("nan")
        return (
            f"{self.client}: {self.requests} requests, {len(self.failed)} failed, "
            f"{self.connections} connections, {self.retried} retried, "
            f"moved after GOAWAY: median {median:.1f} ms, max {max(moved, default=float('nan')):.1f} ms, "
            f"{self.elapsed:.2f} s"
        )


def h2lib_load(run: Running, requests: int, concurrency: int = 8, stall: float = 2.0) -> ClientRun:
    """The h2-library client; after a GOAWAY, streams that see no frame for ``stall``
    seconds fail."""
    from tests.h2load import load

    ctx = run.tls.client_context() if run.tls else None
    result = load(run.port, requests, concurrency=concurrency, ssl_context=ctx, stall=stall)
    failed = []
    for i in range(requests):
        outcome = result.outcomes.get(i)
        if outcome is None or outcome.error or outcome.status != 200 or outcome.body != f"/load/{i}".encode():
            failed.append(f"{i}: {outcome}")
    return ClientRun(
        "h2 library",
        requests,
        failed,
        result.connections,
        result.retried,
        [(g.conn, g.last_stream_id, g.error_code, g.debug) for g in result.goaways],
        [m * 1000 for m in result.moved_after],
        result.elapsed,
    )


def node_available() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    return None


def node_load(run: Running, requests: int, concurrency: int = 8) -> ClientRun:
    argv = ["node", str(NODE_SCRIPT), run.url, str(requests), str(concurrency)]
    if run.tls:
        argv.append(run.tls.cafile)
    proc = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    data = json.loads(proc.stdout)
    failed = []
    for i in range(requests):
        o = data["outcomes"].get(str(i))
        if o is None or o["error"] or o["status"] != 200 or o["body"] != f"/load/{i}":
            failed.append(f"{i}: {o}")
    goaways = [(g["conn"], g["lastId"], g["code"], g["debug"].encode()) for g in data["goaways"]]
    return ClientRun(
        "node http2",
        requests,
        failed,
        data["connections"],
        data["retried"],
        goaways,
        data["moved"],
        data["elapsed"],
    )


def curl_available() -> str | None:
    if shutil.which("curl") is None:
        return "curl is not installed"
    out = subprocess.run(["curl", "--version"], capture_output=True, text=True, check=False).stdout
    if "HTTP2" not in out:
        return "curl is built without HTTP/2"
    return None


def curl_load(run: Running, requests: int, concurrency: int = 8, max_time: float = 10.0) -> ClientRun:
    """curl, multiplexed (``-Z``) over TLS (ALPN ``h2``); a transfer that takes
    longer than ``max_time`` seconds fails.

    Over h2c curl 7.88 cannot carry this load: it cannot reuse a prior-knowledge
    connection (the second transfer fails with "Error in the HTTP2 framing layer",
    GOAWAY or not), and with the Upgrade, when several transfers wait for a new
    connection, it sends a second HTTP/1.1 request behind the upgrade request.
    """
    with tempfile.TemporaryDirectory(prefix="connmw-curl-") as name:
        out = Path(name)
        config = out / "urls"
        config.write_text(
            "".join(f'url = "{run.url}/load/{i}"\noutput = "{out}/{i}"\n' for i in range(requests))
        )
        argv = ["curl", "-sS", "--max-time", str(max_time), "-K", str(config)]
        argv += ["-w", "%{http_code} %{num_connects} %{url_effective} %{exitcode} %{errormsg}\\n"]
        assert run.tls is not None, "curl runs over TLS (see above)"
        argv += ["--http2", "-Z", "--parallel-max", str(concurrency), "--cacert", run.tls.cafile]
        start = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        elapsed = time.monotonic() - start
        connections = 0
        ok = set()
        why: dict[int, str] = {}
        for line in proc.stdout.splitlines():
            code, connects, url, *error = line.split(" ", 4)
            connections += int(connects)
            i = int(url.rsplit("/", 1)[1])
            body = out / str(i)
            if code == "200" and body.exists() and body.read_bytes() == f"/load/{i}".encode():
                ok.add(i)
            else:
                why[i] = f"{code} {' '.join(error)}"
    failed = [f"{i}: {why.get(i, 'no transfer')}" for i in range(requests) if i not in ok]
    return ClientRun("curl", requests, failed, connections, elapsed=elapsed)
