"""The README's deployment snippets, run as written in front of a real server with connmw.

nginx and HAProxy get the exact configuration text from the README (ports swapped for
ephemeral ones) in front of uvicorn with connmw; a raw-socket client sends keep-alive
requests through the proxy; the application records what reached connmw (HTTP version,
the proxy's connection, connmw's decision). The proxies' defaults are run beside the
snippets to show what the snippets change. The logging snippets are run under uvicorn,
gunicorn and Django, and connmw's DEBUG lines must show in the server's output.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from connmw import ConnectionMiddleware, Decision, RequestFacts, Rule

from .servers import ROOT, free_port, stop_process, uvicorn_thread, wait_for_port
from .wire import Reader, build_request, connect

pytestmark = pytest.mark.server

README = ROOT / "README.md"


def snippet(name: str) -> str:
    """The fenced block right after ``<!-- snippet:name -->`` in the README."""
    text = README.read_text(encoding="utf-8")
    found = re.search(rf"<!-- snippet:{re.escape(name)} -->\n```[a-z]*\n(.*?)```", text, re.S)
    assert found, f"README has no snippet {name!r}"
    return found.group(1)


@dataclass
class Seen:
    """What reached connmw, one entry per request."""

    versions: list[str] = field(default_factory=list)
    peers: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def record(self, facts: RequestFacts, decision: Decision) -> None:
        self.reasons.append(decision.reason or "keep")


def backend(seen: Seen) -> ConnectionMiddleware:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.versions.append(scope["http_version"])
        seen.peers.append(scope["client"][1])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    return ConnectionMiddleware(
        app, max_requests_per_connection=3, rules=[Rule("/close")], on_decision=seen.record
    )


def through(port: int, paths: list[str]) -> Reader:
    """Send ``paths`` one after the other on one client connection; all answer 200."""
    reader = Reader(connect(port))
    for path in paths:
        reader.sock.sendall(build_request("GET", path))
        response = reader.read_response()
        assert (response.status, response.body) == (200, b"ok"), response
    return reader


def connections(peers: list[int]) -> int:
    """How many upstream connections the proxy used, in order of use."""
    return len(dict.fromkeys(peers))


@contextlib.contextmanager
def nginx(config: str, tmp: Path) -> Iterator[None]:
    binary = shutil.which("nginx")
    assert binary is not None  # the tools marker skips (or fails in CI) without it
    temp = "\n".join(
        f"    {kind}_temp_path {tmp}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"worker_processes 1;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log warn;\n"
        f"events {{ worker_connections 64; }}\nhttp {{\n    access_log off;\n{temp}\n{config}\n}}\n"
    )
    yield from _run(
        [binary, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log"), "-g", "daemon off;"], config
    )


@contextlib.contextmanager
def haproxy(config: str, tmp: Path) -> Iterator[None]:
    binary = shutil.which("haproxy")
    assert binary is not None
    conf = tmp / "haproxy.cfg"
    conf.write_text(config)
    yield from _run([binary, "-db", "-f", str(conf)], config)


def _run(argv: list[str], config: str) -> Iterator[None]:
    front = int(re.findall(r"(?:listen|bind) 127\.0\.0\.1:(\d+)", config)[0])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(front, 10, proc)
        yield
    finally:
        stop_process(proc)


def with_ports(text: str, front: int, back: int) -> str:
    out = text.replace("127.0.0.1:8000", f"127.0.0.1:{back}")
    out = out.replace("listen 8080;", f"listen 127.0.0.1:{front};").replace(
        "127.0.0.1:8080", f"127.0.0.1:{front}"
    )
    assert out != text
    return out


NGINX_KEEPALIVE_LINES = ("keepalive 16;", "proxy_http_version 1.1;", 'proxy_set_header Connection "";')

#: Ten requests on one client connection, then a rule's path; then, draining, two more.
PATHS = ["/"] * 10 + ["/close"]


def run_proxy(proxy: Any, config: str, tmp: Path) -> tuple[Seen, bool]:
    seen = Seen()
    middleware = backend(seen)
    with uvicorn_thread(middleware, timeout_keep_alive=30) as back:
        front = free_port()
        with proxy(with_ports(config, front, back), tmp):
            reader = through(front, PATHS)
            middleware.drain()
            for _ in range(2):
                reader.sock.sendall(build_request("GET", "/"))
                assert reader.read_response().status == 200
            client_closed = reader.closed(0.5)
            reader.sock.close()
    return seen, client_closed


def assert_connmw_acts(seen: Seen, client_closed: bool) -> None:
    assert set(seen.versions) == {"1.1"}
    # 3 requests per upstream connection; the rule closes the 11th; the drain the next two.
    assert seen.reasons == [
        *["keep", "keep", "max-requests"] * 3,
        "keep",
        "rule",
        "drain",
        "drain",
    ]
    assert connections(seen.peers) == 6
    assert not client_closed, "connmw manages the proxy's connection, not the client's"


def assert_connmw_inert(seen: Seen, expect_version: str, reason: str) -> None:
    assert set(seen.versions) == {expect_version}
    assert connections(seen.peers) == len(PATHS) + 2
    assert set(seen.reasons) == {reason}


@pytest.mark.tools("nginx")
def test_nginx_snippet_lets_connmw_act(tmp_path: Path) -> None:
    config = snippet("nginx")
    for line in NGINX_KEEPALIVE_LINES:
        assert line in config
    seen, client_closed = run_proxy(nginx, config, tmp_path)
    assert_connmw_acts(seen, client_closed)


@pytest.mark.tools("nginx")
def test_nginx_default_proxy_pass_makes_connmw_inert(tmp_path: Path) -> None:
    config = "\n".join(
        line for line in snippet("nginx").splitlines() if not any(k in line for k in NGINX_KEEPALIVE_LINES)
    )
    seen, client_closed = run_proxy(nginx, config, tmp_path)
    assert_connmw_inert(seen, "1.0", "client")
    assert not client_closed


@pytest.mark.tools("haproxy")
def test_haproxy_snippet_lets_connmw_act(tmp_path: Path) -> None:
    seen, client_closed = run_proxy(haproxy, snippet("haproxy"), tmp_path)
    assert_connmw_acts(seen, client_closed)


@pytest.mark.tools("haproxy")
def test_haproxy_http_server_close_makes_connmw_inert(tmp_path: Path) -> None:
    config = snippet("haproxy").replace("    mode http\n", "    mode http\n    option http-server-close\n")
    seen, client_closed = run_proxy(haproxy, config, tmp_path)
    assert_connmw_inert(seen, "1.1", "client")
    assert not client_closed


# -- the logging snippets -----------------------------------------------------------

LOG_APP = textwrap.dedent(
    """
    from connmw import ConnectionMiddleware, WSGIConnectionMiddleware, Rule

    async def asgi(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    def wsgi(environ, start_response):
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    asgi_app = ConnectionMiddleware(asgi, rules=[Rule("/downloads/*")])
    wsgi_app = WSGIConnectionMiddleware(wsgi, rules=[Rule("/downloads/*")])
    """
)

DEBUG_LINE = "close GET /downloads/a: rule"


def run_and_read(argv: list[str], port: int, cwd: Path) -> str:
    env = {"PYTHONPATH": f"{cwd}:{ROOT}", "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    log = cwd / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_for_port(port, 20, proc)
            reader = Reader(connect(port))
            reader.sock.sendall(build_request("GET", "/downloads/a"))
            assert reader.read_response().status == 200
            assert reader.closed(2.0)
            reader.sock.close()
        finally:
            stop_process(proc)
    return log.read_text(errors="replace")


def test_uvicorn_log_level_debug_alone_does_not_show_connmw(tmp_path: Path) -> None:
    (tmp_path / "logapp.py").write_text(LOG_APP)
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "logapp:asgi_app", "--port", str(port), "--log-level", "debug"]
    output = run_and_read(argv, port, tmp_path)
    assert "Uvicorn running" in output
    assert DEBUG_LINE not in output


def test_uvicorn_log_config_snippet_shows_decisions(tmp_path: Path) -> None:
    (tmp_path / "logapp.py").write_text(LOG_APP)
    config = json.loads(snippet("uvicorn-log-config"))
    (tmp_path / "logging.json").write_text(json.dumps(config))
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "logapp:asgi_app",
        "--port",
        str(port),
        "--log-config",
        "logging.json",
    ]
    output = run_and_read(argv, port, tmp_path)
    assert f"DEBUG connmw: {DEBUG_LINE}" in output
    assert "Uvicorn running" in output  # the server's own lines still show


def test_gunicorn_log_config_snippet_shows_decisions(tmp_path: Path) -> None:
    (tmp_path / "logapp.py").write_text(LOG_APP)
    (tmp_path / "gunicorn.conf.py").write_text(snippet("gunicorn-log-config"))
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "gunicorn.conf.py",
        "-k",
        "gthread",
        "--bind",
        f"127.0.0.1:{port}",
        "logapp:wsgi_app",
    ]
    output = run_and_read(argv, port, tmp_path)
    assert re.search(rf"\[DEBUG\] {re.escape(DEBUG_LINE)}", output), output
    assert "Booting worker" in output


def test_django_logging_snippet_shows_decisions(tmp_path: Path) -> None:
    settings = textwrap.dedent(
        """
        SECRET_KEY = "test"
        DEBUG = False
        ALLOWED_HOSTS = ["*"]
        ROOT_URLCONF = "djurls"
        MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
        CONNMW = {"rules": [{"path": "/downloads/*"}]}
        """
    ) + snippet("django-logging")
    (tmp_path / "djsettings.py").write_text(settings)
    (tmp_path / "djurls.py").write_text(
        "from django.http import HttpResponse\nfrom django.urls import path\n"
        "urlpatterns = [path('downloads/a', lambda request: HttpResponse(b'ok'))]\n"
    )
    (tmp_path / "djwsgi.py").write_text(
        "import os\nos.environ['DJANGO_SETTINGS_MODULE'] = 'djsettings'\n"
        "from connmw.contrib.django import get_wsgi_application\napplication = get_wsgi_application()\n"
    )
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-k",
        "gthread",
        "--bind",
        f"127.0.0.1:{port}",
        "djwsgi:application",
    ]
    output = run_and_read(argv, port, tmp_path)
    assert DEBUG_LINE in output, output


@pytest.mark.tools("haproxy")
def test_haproxy_httpclose_closes_the_clients_connection_too(tmp_path: Path) -> None:
    seen = Seen()
    with uvicorn_thread(backend(seen)) as back:
        front = free_port()
        config = snippet("haproxy").replace("    mode http\n", "    mode http\n    option httpclose\n")
        with haproxy(with_ports(config, front, back), tmp_path):
            reader = through(front, ["/"])
            assert reader.closed(2.0)
            reader.sock.close()
    assert (seen.versions, seen.reasons) == (["1.1"], ["client"])
