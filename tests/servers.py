"""Start real servers on loopback with an ephemeral port, and stop them.

Servers that can run inside the test process (uvicorn, hypercorn, waitress,
wsgiref, cheroot, werkzeug) run in a thread on a socket bound here, so coverage
sees connmw's code; the others (gunicorn, granian, daphne, Django's runserver)
run as subprocesses. Every runner is a context manager that stops what it started,
with bounded waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import connmw

ROOT = Path(__file__).resolve().parent.parent


def bound_socket(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"server exited with {proc.returncode}:\n{out}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.01)  # a refused connect costs microseconds: look again soon
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


def stopped(thread: threading.Thread, what: str, timeout: float = 10.0) -> None:
    """Wait for a server's thread to end; fail when it does not within ``timeout``."""
    thread.join(timeout)
    assert not thread.is_alive(), f"{what} did not stop within {timeout} s"


@contextlib.contextmanager
def uvicorn_thread(app: Any, http: str = "h11", **config: Any) -> Iterator[int]:
    import uvicorn

    sock = bound_socket()
    port = sock.getsockname()[1]
    # older uvicorn (0.30) installs uvloop's event loop policy for the whole process:
    # put the process's back afterwards, or later asyncio.run() calls get uvloop.
    policy = asyncio.get_event_loop_policy()
    cfg = uvicorn.Config(app, http=http, lifespan="off", log_level="warning", access_log=False, **config)
    server = uvicorn.Server(cfg)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        stopped(thread, "uvicorn")
        sock.close()
        asyncio.set_event_loop_policy(policy)


#: hypercorn's ``graceful_timeout`` with ``quic_bind``: every HTTP/3 test has had its
#: answers before the server stops, so the wait at the stop only cuts idle QUIC connections.
QUIC_GRACEFUL_TIMEOUT = 0.2


@contextlib.contextmanager
def hypercorn_thread(
    app: Any,
    *,
    h2c: bool = False,
    certfile: str | None = None,
    keyfile: str | None = None,
    keep_alive: float | None = None,
    mode: str = "asgi",
    **options: Any,
) -> Iterator[int]:
    """hypercorn on loopback in a thread; ``options`` are set on its ``Config`` as given."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    sock = bound_socket()
    port = sock.getsockname()[1]
    config = Config()
    # hypercorn closes the descriptor it was given: hand it a duplicate.
    config.bind = [f"fd://{os.dup(sock.fileno())}"]
    config.accesslog = None
    config.errorlog = None
    if keep_alive is not None:
        config.keep_alive_timeout = keep_alive
    if "quic_bind" in options:
        # hypercorn's QUIC server task runs until it is cancelled, so stopping a server with
        # quic_bind always waits out graceful_timeout (3 s by default), requests or not.
        options.setdefault("graceful_timeout", QUIC_GRACEFUL_TIMEOUT)
    for name, value in options.items():
        setattr(config, name, value)
    if certfile:
        config.certfile = certfile
        config.keyfile = keyfile
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        await serve(app, config, shutdown_trigger=stop.wait, mode=mode)  # type: ignore[arg-type]

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_for_port(port, 10)
        yield port
    finally:
        loop.call_soon_threadsafe(stop.set)
        stopped(thread, "hypercorn")
        loop.close()
        sock.close()


@contextlib.contextmanager
def waitress_thread(app: Any, **kw: Any) -> Iterator[int]:
    from waitress.server import create_server

    server = create_server(app, host="127.0.0.1", port=0, threads=4, **kw)
    port = server.effective_port
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for_port(port, 10)
        yield port
    finally:
        # First the worker threads: each pulls the trigger (writes to its pipe) when a
        # task ends, and a pull after the pipe is closed writes to a closed descriptor
        # (EBADF) or to whatever reused its number. shutdown() lets running tasks end.
        dispatcher = server.task_dispatcher
        dispatcher.shutdown(timeout=10)
        assert not dispatcher.threads, f"waitress worker threads still running: {dispatcher.threads}"

        # Then every connection, closed from inside waitress's own loop (closing them
        # from here races the loop's select() on the same descriptors); the loop ends
        # when its map is empty. The trigger and the listening server (whose close()
        # closes the trigger too) only leave the map there: the loop may run this thunk,
        # woken by an earlier pull, before pull_trigger() below has written its byte, so
        # they are closed here once the loop has ended.
        trigger = server.trigger

        def stop() -> None:
            for item in list(server._map.values()):
                if item is trigger or item is server:
                    item.del_channel()
                else:
                    item.close()

        trigger.pull_trigger(stop)
        stopped(thread, "waitress")
        server.close()
        assert trigger._closed


@contextlib.contextmanager
def wsgiref_thread(app: Any) -> Iterator[int]:
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    port = server.server_port
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()
        stopped(thread, "wsgiref")


@contextlib.contextmanager
def subprocess_server(
    argv: Sequence[str],
    port: int,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
    stop_signal: int = signal.SIGTERM,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` until the block ends, then stop its process group with ``stop_signal``
    (see :func:`stop_process`)."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), full_env.get("PYTHONPATH", "")])
    if env:
        full_env.update(env)
    proc = subprocess.Popen(
        list(argv),
        cwd=str(ROOT),
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_port(port, timeout, proc)
        yield proc
    finally:
        stop_process(proc, sig=stop_signal)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to the process group, then SIGKILL if it has not ended in ``timeout``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)
    if proc.stdout:
        proc.stdout.close()
    assert proc.returncode is not None, f"process {proc.pid} did not stop"


def gunicorn_argv(
    app: str,
    port: int,
    worker: str = "gthread",
    threads: int = 4,
    keep_alive: int = 10,
    *,
    workers: int = 1,
    graceful_timeout: int = 3,
    log_level: str = "warning",
    extra: Sequence[str] = (),
) -> list[str]:
    import gunicorn

    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        worker,
        "--keep-alive",
        str(keep_alive),
        "--graceful-timeout",
        str(graceful_timeout),
        "--log-level",
        log_level,
        *extra,
    ]
    if worker == "gthread":
        argv += ["--threads", str(threads)]
    if gunicorn.version_info >= (25, 1):
        argv.append("--no-control-socket")  # else one control socket per $HOME for all instances
    return [*argv, app]


@contextlib.contextmanager
def werkzeug_thread(app: Any, threaded: bool = True) -> Iterator[int]:
    """Werkzeug's development server (what ``run_simple`` and ``flask run`` start)."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log(self, type: str, message: str, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, app, threaded=threaded, request_handler=Quiet)
    port = server.port
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        wait_for_port(port, 10)
        yield port
    finally:
        server.shutdown()
        server.server_close()
        stopped(thread, "werkzeug")


@contextlib.contextmanager
def cheroot_thread(app: Any, threads: int = 4) -> Iterator[int]:
    from cheroot import wsgi

    server = wsgi.Server(("127.0.0.1", 0), app, numthreads=threads)
    server.prepare()
    port: int = server.bind_addr[1]
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        wait_for_port(port, 10)
        yield port
    finally:
        server.stop()
        stopped(thread, "cheroot")


def granian_argv(app: str, port: int, http: str = "1", interface: str = "asgi") -> list[str]:
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        interface,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--http",
        http,
        "--workers",
        "1",
        "--no-ws",
        "--log-level",
        "warning",
        app,
    ]


def gevent_argv(app: str, port: int) -> list[str]:
    """gevent's own WSGI server (``gevent.pywsgi.WSGIServer``) serving ``module:attribute``."""
    module, _, attr = app.partition(":")
    code = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import importlib, sys\n"
        "from gevent.pywsgi import WSGIServer\n"
        f"app = getattr(importlib.import_module({module!r}), {attr!r})\n"
        f"WSGIServer(('127.0.0.1', {port}), app, log=None).serve_forever()\n"
    )
    return [sys.executable, "-c", code]


def uwsgi_argv(app: str, port: int, socket: str = "http11-socket") -> list[str]:
    """uWSGI (the ``pyuwsgi`` wheel) serving ``module:callable`` on an HTTP socket of the
    given kind (``http-socket`` or ``http11-socket``), one worker, one thread."""
    module, _, attr = app.partition(":")
    return [
        sys.executable,
        "-c",
        "import sys, pyuwsgi; sys.exit(pyuwsgi.run())",
        f"--{socket}",
        f"127.0.0.1:{port}",
        "--module",
        module,
        "--callable",
        attr,
        "--master",
        "--processes",
        "1",
        "--die-on-term",
        "--disable-logging",
        "--need-app",
        "--lazy-apps",
    ]


def uwsgi_available() -> str | None:
    """None when uWSGI (``pyuwsgi``) can run here, else why not."""
    import importlib.util

    if importlib.util.find_spec("pyuwsgi") is None:
        return "uWSGI is not installed (pip install pyuwsgi)"
    return None


def daphne_argv(app: str, port: int) -> list[str]:
    return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "-v", "0", app]


def django_runserver_argv(port: int) -> list[str]:
    """Django's ``runserver`` (settings come from ``DJANGO_SETTINGS_MODULE``)."""
    return [sys.executable, "-m", "django", "runserver", "--noreload", "--skip-checks", f"127.0.0.1:{port}"]


APACHE_MODULES = Path("/usr/lib/apache2/modules")


def apache_mod_wsgi_available() -> str | None:
    """None when Apache and mod_wsgi can run here, else why not."""
    import shutil

    if shutil.which("apache2") is None and not Path("/usr/sbin/apache2").exists():
        return "Apache is not installed (Debian: apt-get install apache2 libapache2-mod-wsgi-py3)"
    if not (APACHE_MODULES / "mod_wsgi.so").exists():
        return "mod_wsgi is not installed (Debian: apt-get install libapache2-mod-wsgi-py3)"
    return None


@contextlib.contextmanager
def apache_mod_wsgi(app: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Apache (event MPM) with mod_wsgi in daemon mode serving ``module:attribute``.

    A scratch directory (readable by Apache's user when started as root) holds the
    configuration, the WSGI script, the logs and the pid file; it is removed after.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="connmw-apache-") as name:
        workdir = Path(name)
        workdir.chmod(0o755)
        with _apache_in(app, port, workdir) as proc:
            yield proc


@contextlib.contextmanager
def _apache_in(app: str, port: int, workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    import shutil

    module, _, attr = app.partition(":")
    # Apache's user may not be able to read the checkout (a clone under a private
    # temporary directory, say): serve a readable copy of the code from the workdir.
    src = workdir / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    # connmw from where it is imported (the installed wheel when the suite tests one; a
    # compiled build's shared library is inside the package), the tests from the checkout.
    for package in (Path(connmw.__file__).parent, ROOT / "tests"):
        shutil.copytree(package, src / package.name, ignore=skip)
    for path in [src, *src.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    script = workdir / "app.wsgi"
    script.write_text(f"from {module} import {attr} as application\n")
    user = ""
    if os.getuid() == 0:
        user = "User www-data\nGroup www-data\n"
    mods = APACHE_MODULES
    conf = workdir / "httpd.conf"
    conf.write_text(
        f"""ServerRoot "{workdir}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile "{workdir}/httpd.pid"
ErrorLog "{workdir}/error.log"
LogLevel warn
DefaultRuntimeDir "{workdir}"
Mutex file:{workdir}
{user}LoadModule mpm_event_module {mods}/mod_mpm_event.so
LoadModule authz_core_module {mods}/mod_authz_core.so
LoadModule wsgi_module {mods}/mod_wsgi.so
StartServers 1
ServerLimit 1
ThreadsPerChild 8
MaxRequestWorkers 8
KeepAlive On
KeepAliveTimeout 10
WSGISocketPrefix "{workdir}/wsgi"
WSGIDaemonProcess conformance processes=1 threads=4 python-path={src}
WSGIProcessGroup conformance
WSGIApplicationGroup %{{GLOBAL}}
WSGIScriptAlias / "{script}"
<Directory "{workdir}">
    Require all granted
</Directory>
"""
    )
    binary = shutil.which("apache2") or "/usr/sbin/apache2"
    with subprocess_server([binary, "-f", str(conf), "-DFOREGROUND"], port) as proc:
        yield proc
