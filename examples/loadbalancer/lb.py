"""Shared harness of the load-balancer experiments: HAProxy, uvicorn backends, wrk.

Everything runs on 127.0.0.1 and is stopped on exit, on errors and on Ctrl-C.
The pure parts (config generation, output parsing, share arithmetic) are imported by
``tests/test_loadbalancer_scripts.py`` so they cannot rot.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = HERE / "results"
APP = HERE / "app.py"

INSTALL_HINT = (
    "{missing} not found. Install with:\n"
    "    sudo apt-get install -y haproxy wrk      # Debian, Ubuntu\n"
    "    brew install haproxy wrk                 # macOS\n"
    "and for the plots: pip install 'connmw[bench]' (matplotlib)."
)


def missing_tools(tools: Sequence[str] = ("haproxy", "wrk")) -> list[str]:
    """The command-line tools that are not on PATH."""
    return [t for t in tools if shutil.which(t) is None]


def require_tools() -> None:
    """Exit with an install hint unless haproxy, wrk and matplotlib are there."""
    missing = missing_tools()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        missing.append("matplotlib")
    if missing:
        sys.exit(INSTALL_HINT.format(missing=", ".join(missing)))


# -- variants ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One backend configuration: ``options`` is ``None`` for the bare app."""

    name: str
    label: str
    options: Mapping[str, Any] | None = None

    def env(self) -> dict[str, str]:
        return {"LB_CONNMW": "" if self.options is None else json.dumps(dict(self.options))}


BARE = Variant("bare", "plain keep-alive (no connmw)")


# -- HAProxy ----------------------------------------------------------------------------


#: HAProxy modes the experiments run: L4, L7 with HTTP/1.1 backends, L7 with HTTP/2 backends.
MODES = ("tcp", "http", "h2")
#: The backend server each mode runs (hypercorn speaks HTTP/2 without TLS, prior knowledge).
SERVERS = {"tcp": "uvicorn", "http": "uvicorn", "h2": "hypercorn"}


def backend_argv(server: str, port: int) -> list[str]:
    """The command that runs ``app.py``'s app under ``server`` on 127.0.0.1:``port``."""
    if server == "uvicorn":
        return [sys.executable, str(APP), str(port)]
    if server == "hypercorn":
        # --workers 0: one process, signals handled on its event loop (where connmw's
        # drain_on_signal chains in front of hypercorn's own graceful shutdown).
        bind = f"127.0.0.1:{port}"
        return [sys.executable, "-m", "hypercorn", "--workers", "0", "--bind", bind, "app:app"]
    raise ValueError(f"server must be 'uvicorn' or 'hypercorn', got {server!r}")


def haproxy_config(
    *,
    mode: str,
    port: int,
    servers: Sequence[tuple[str, int]],
    stats_socket: str,
    check_ms: int = 200,
    fall: int = 2,
    rise: int = 1,
) -> str:
    """An HAProxy configuration: one frontend on ``port``, round-robin over ``servers``.

    ``mode`` is ``"tcp"`` (L4: a client connection is pinned to one backend),
    ``"http"`` (L7: HAProxy keeps a pool of keep-alive connections to the backends and
    balances each request) or ``"h2"`` (``mode http`` talking HTTP/2 to the backends,
    ``server ... proto h2``: HAProxy multiplexes its requests onto a few HTTP/2
    connections per backend). Servers are health-checked with ``GET /health``
    (HTTP/1.1, on connections of their own).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
    lines = [
        "global",
        "    nbthread 1",
        "    maxconn 4096",
        f"    stats socket {stats_socket} mode 600 level admin",
        "",
        "defaults",
        f"    mode {'tcp' if mode == 'tcp' else 'http'}",
        "    timeout connect 2s",
        "    timeout client 30s",
        "    timeout server 30s",
        "    retries 3",
        "    option redispatch",
    ]
    if mode == "h2":
        # HAProxy 2.6 otherwise holds small HTTP/2 frames back (MSG_MORE) and each request
        # waits for the backend's delayed ACK: ~200 ms per request instead of ~1 ms.
        lines += ["    option http-no-delay"]
    if mode != "tcp":
        lines += ["    option http-keep-alive", "    timeout http-keep-alive 30s", "    http-reuse safe"]
    lines += [
        "",
        "frontend fe",
        f"    bind 127.0.0.1:{port}",
        "    default_backend be",
        "",
        "backend be",
        "    balance roundrobin",
        "    option httpchk GET /health",
        f"    default-server inter {check_ms}ms fastinter {check_ms}ms downinter {check_ms}ms "
        f"fall {fall} rise {rise}",
    ]
    # Health checks stay on HTTP/1.1 (check-proto h1): HAProxy 2.6 reads hypercorn's HTTP/2 check
    # responses as empty.
    proto = " proto h2 check-proto h1" if mode == "h2" else ""
    lines += [f"    server {name} 127.0.0.1:{sport} check{proto}" for name, sport in servers]
    return "\n".join(lines) + "\n"


def parse_show_stat_rows(
    text: str, backend: str = "be", kinds: Sequence[str] = ()
) -> dict[str, dict[str, str]]:
    """Server name -> its row (``status``, ``scur`` current sessions...) from ``show stat`` CSV.

    With ``kinds=("BACKEND",)`` the proxy's summary row instead (``econ``, ``eresp``,
    ``wretr`` retries, ``wredis`` redispatches, ``hrsp_5xx``).
    """
    text = text.lstrip("# ")
    out: dict[str, dict[str, str]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        if row.get("pxname") != backend or row.get("svname") is None:
            continue
        summary = row["svname"] in ("FRONTEND", "BACKEND")
        if (row["svname"] in kinds) if kinds else not summary:
            out[row["svname"]] = row
    return out


def parse_show_stat(text: str, backend: str = "be") -> dict[str, str]:
    """Server name -> status (``UP``, ``DOWN``, ``MAINT``...) from ``show stat`` CSV."""
    out: dict[str, str] = {}
    for name, row in parse_show_stat_rows(text, backend).items():
        status = row.get("status") or ""
        out[name] = status.split()[0] if status else ""
    return out


# -- wrk --------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    connect_errors: int = 0
    read_errors: int = 0
    write_errors: int = 0
    timeouts: int = 0
    non_2xx: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        """Requests that did not get a 2xx/3xx answer: socket errors plus bad statuses."""
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts + self.non_2xx


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value.strip())
    if not m:
        raise ValueError(f"not a wrk duration: {value!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(text: str) -> WrkResult:
    """Parse wrk's report (run with ``--latency`` for the percentiles)."""
    r = WrkResult()
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if m:
        r.requests = int(m.group(1))
        r.seconds = _ms(m.group(2) + m.group(3)) / 1000.0
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        r.rps = float(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        r.connect_errors, r.read_errors, r.write_errors, r.timeouts = map(int, m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        r.non_2xx = int(m.group(1))
    m = re.search(r"^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)", text, re.M)
    if m:
        r.latency_ms["mean"] = _ms(m.group(1))
        r.latency_ms["max"] = _ms(m.group(3))
    for pct, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", text, re.M):
        r.latency_ms[f"p{pct}"] = _ms(value)
    return r


# -- share arithmetic -------------------------------------------------------------------


Samples = list[tuple[float, dict[str, int]]]


def rates(samples: Samples) -> tuple[list[float], dict[str, list[float]]]:
    """Cumulative counters sampled over time -> (interval mid-times, requests/s per backend).

    A counter that goes down (the backend restarted) counts from zero again; a backend
    missing from a sample (down, or its ``/stats`` did not answer in time on a busy
    machine) is counted from its last known value when it comes back with a counter
    at least that high, so a missed reading does not look like a burst.
    """
    names = sorted({n for _, counts in samples for n in counts})
    times: list[float] = []
    out: dict[str, list[float]] = {n: [] for n in names}
    last: dict[str, int] = {}
    for (t0, c0), (t1, c1) in itertools.pairwise(samples):
        dt = t1 - t0
        if dt <= 0:
            continue
        times.append((t0 + t1) / 2)
        for n in names:
            if n in c0:
                last[n] = c0[n]
            if n not in c1:
                out[n].append(0.0)
                continue
            before = last.get(n, 0)
            now = c1[n]
            out[n].append((now - before if now >= before else now) / dt)
    return times, out


def window_share(samples: Samples, group: Sequence[str], start: float, end: float) -> float | None:
    """Share of the requests served by ``group`` between ``start`` and ``end`` (seconds)."""
    times, per = rates(samples)
    ends = [t for t, _ in samples[1:]]
    starts = [t for t, _ in samples[:-1]]
    mine = total = 0.0
    for i in range(len(times)):
        lo, hi = max(starts[i], start), min(ends[i], end)
        if hi <= lo:
            continue
        span = hi - lo
        for n, series in per.items():
            total += series[i] * span
            if n in group:
                mine += series[i] * span
    return mine / total if total > 0 else None


def time_to_hold(
    samples: Samples, group: Sequence[str], since: float, target: float, hold: float = 3.0
) -> float | None:
    """Seconds after ``since`` from which ``group``'s share over the next ``hold`` seconds is >= ``target``."""
    last = samples[-1][0] if samples else 0.0
    for t, _ in samples:
        if t < since or t + hold > last:
            continue
        share = window_share(samples, group, t, t + hold)
        if share is not None and share >= target:
            return t - since
    return None


def time_to_share(
    samples: Samples, group: Sequence[str], since: float, target: float, window: float = 1.0
) -> float | None:
    """Seconds after ``since`` until ``group``'s share over the trailing ``window`` reaches ``target``."""
    for t, _ in samples:
        if t <= since:
            continue
        share = window_share(samples, group, t - window, t)
        if share is not None and share >= target:
            return t - since
    return None


# -- processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def _stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux ``/proc``); ``None`` elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Cluster:
    """HAProxy in front of uvicorn backends; a context manager that stops everything it started."""

    def __init__(self, names: Sequence[str], *, mode: str = "tcp") -> None:
        self.names = list(names)
        self.mode = mode
        self.ports = {n: free_port() for n in self.names}
        self.port = free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="connmw-lb-")
        self.dir = Path(self._tmp.name)
        self.socket_path = str(self.dir / "haproxy.sock")
        self.backends: dict[str, subprocess.Popen[Any]] = {}
        self.haproxy: subprocess.Popen[Any] | None = None
        self._others: list[subprocess.Popen[Any]] = []

    # lifecycle
    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for proc in self._others:  # wrk
            _stop(proc, signal.SIGKILL, 5)
        for proc in self.backends.values():
            # SIGINT: uvicorn stops at once (a drain on SIGTERM would wait its grace period).
            _stop(proc, signal.SIGINT, 10)
        self.backends.clear()
        if self.haproxy is not None:
            _stop(self.haproxy, signal.SIGTERM, 5)
            self.haproxy = None
        self._tmp.cleanup()

    # backends
    def start_backend(self, name: str, variant: Variant, *, delay: float = 0.0, grace: float = 0.0) -> None:
        env = dict(os.environ)
        env.update(variant.env())
        env.update(LB_NAME=name, LB_DELAY=str(delay), LB_DRAIN_GRACE=str(grace))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        argv = backend_argv(SERVERS[self.mode], self.ports[name])
        proc = subprocess.Popen(argv, env=env, cwd=HERE)
        self.backends[name] = proc
        _wait_port(self.ports[name])

    def stop_backend(self, name: str, timeout: float = 30.0) -> float:
        """SIGTERM one backend and wait for it to exit; returns how long that took."""
        proc = self.backends.pop(name)
        t0 = time.monotonic()
        _stop(proc, signal.SIGTERM, timeout)
        return time.monotonic() - t0

    # haproxy
    def start_haproxy(self, **config: Any) -> None:
        cfg = self.dir / "haproxy.cfg"
        cfg.write_text(
            haproxy_config(
                mode=self.mode,
                port=self.port,
                servers=[(n, self.ports[n]) for n in self.names],
                stats_socket=self.socket_path,
                **config,
            )
        )
        with open(self.dir / "haproxy.log", "wb") as log:
            self.haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=log, stderr=log)
        _wait_port(self.port)
        deadline = time.monotonic() + 5
        while not os.path.exists(self.socket_path):
            if time.monotonic() > deadline:
                raise RuntimeError("HAProxy's stats socket did not appear")
            time.sleep(0.05)

    def server_cpu(self) -> float:
        """CPU seconds used so far by HAProxy and the running backends (not by wrk)."""
        procs = [*self.backends.values(), *([self.haproxy] if self.haproxy else [])]
        return sum(cpu_seconds(p.pid) or 0.0 for p in procs)

    def haproxy_command(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(self.socket_path)
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def statuses(self) -> dict[str, str]:
        return parse_show_stat(self.haproxy_command("show stat"))

    def wait_status(self, names: Sequence[str], status: str, timeout: float = 15.0) -> float:
        """Wait until HAProxy reports every server in ``names`` with ``status``; returns the time."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.statuses()
            if all(st.get(n) == status for n in names):
                return time.monotonic()
            if time.monotonic() > deadline:
                raise RuntimeError(f"servers {list(names)} not {status} after {timeout} s: {st}")
            time.sleep(0.02)

    # load
    def start_wrk(self, seconds: float, connections: int = 32, threads: int = 2) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{math.ceil(seconds)}s",
                "--timeout",
                "5s",
                "--latency",
                f"http://127.0.0.1:{self.port}/",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self._others.append(proc)
        return proc

    def run_wrk(self, seconds: float, connections: int = 32, threads: int = 2) -> WrkResult:
        proc = self.start_wrk(seconds, connections, threads)
        return finish_wrk(proc, seconds)


def finish_wrk(proc: subprocess.Popen[str], seconds: float) -> WrkResult:
    out, _ = proc.communicate(timeout=math.ceil(seconds) + 30)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{out}")
    return parse_wrk(out)


def fetch_stats(port: int, timeout: float = 0.5) -> dict[str, Any] | None:
    """A backend's ``/stats``, read directly (not through HAProxy); ``None`` when down."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=timeout) as resp:
            data: dict[str, Any] = json.loads(resp.read())
            return data
    except (OSError, ValueError):
        return None


class Sampler:
    """Reads every backend's request counter every ``interval`` seconds, in a thread.

    Also records HAProxy's server statuses at each tick (``events``: status changes).
    """

    def __init__(self, cluster: Cluster, interval: float = 0.25) -> None:
        self.cluster = cluster
        self.interval = interval
        self.samples: Samples = []
        self.events: list[tuple[float, str, str]] = []
        #: (time, server -> HAProxy's current sessions to it): in mode tcp, client connections.
        self.sessions: list[tuple[float, dict[str, int]]] = []
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._last: dict[str, str] = {}

    def __enter__(self) -> Sampler:
        self.t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def mark(self, what: str, detail: str = "") -> None:
        self.events.append((self.now(), what, detail))

    def _run(self) -> None:
        tick = self.t0
        while not self._stop.is_set():
            counts: dict[str, int] = {}
            for name, port in self.cluster.ports.items():
                stats = fetch_stats(port, timeout=min(0.4, self.interval))
                if stats is not None:
                    counts[name] = int(stats["requests"])
            t = self.now()
            self.samples.append((t, counts))
            with contextlib.suppress(OSError):
                rows = parse_show_stat_rows(self.cluster.haproxy_command("show stat"))
                self.sessions.append((t, {n: int(r.get("scur") or 0) for n, r in rows.items()}))
                for name, row in rows.items():
                    status = (row.get("status") or "").split(" ")[0]
                    if self._last.get(name) != status:
                        self._last[name] = status
                        self.events.append((self.now(), name, status))
            tick += self.interval
            self._stop.wait(max(0.0, tick - time.monotonic()))


# -- output -----------------------------------------------------------------------------


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.2f}"
        return "—" if v is None else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def secs(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def plot_panels(
    panels: Sequence[tuple[str, Samples, Sequence[tuple[float, str]]]],
    path: Path,
    *,
    suptitle: str,
    smooth: int = 4,
    log: bool = False,
) -> None:
    """One panel per run: requests/s per backend over time, vertical lines at events."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.0 + 1.9 * len(panels)), sharex=True, squeeze=False)
    for ax, (title, samples, marks) in zip(axes[:, 0], panels, strict=True):
        times, per = rates(samples)
        for name in sorted(per):
            series = per[name]
            if smooth > 1:
                series = [
                    sum(series[max(0, i - smooth + 1) : i + 1]) / len(series[max(0, i - smooth + 1) : i + 1])
                    for i in range(len(series))
                ]
            ax.plot(times, series, label=name, linewidth=1.2)
        for t, label in marks:
            ax.axvline(t, color="grey", linestyle=":", linewidth=0.9)
            ax.annotate(
                label,
                (t, 1.0),
                xycoords=("data", "axes fraction"),
                fontsize=7,
                rotation=90,
                va="top",
                ha="right",
                color="dimgrey",
            )
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("req/s", fontsize=8)
        ax.tick_params(labelsize=7)
        if log:
            ax.set_yscale("log")
            ax.set_ylim(bottom=10)
        else:
            ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, ncol=6, loc="upper left")
    axes[-1, 0].set_xlabel("seconds since the load started", fontsize=8)
    fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def install_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so ``with Cluster(...)`` cleans up on ``kill`` too."""

    def raise_interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, raise_interrupt)
