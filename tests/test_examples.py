"""The examples run: in-process, on one real server each, and with the exact command
their docstring gives, so none of them can rot."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from werkzeug.test import Client

from connmw import RequestFacts

from . import servers, wire
from .examples_support import DJANGO_PROJECT, EXAMPLES, ROOT, django_module, load_example

# (method, path, status, close reason or None when the connection is kept, handler reason)
Case = tuple[str, str, int, str | None, str | None]

COMMON: list[Case] = [
    ("GET", "/", 200, None, None),
    ("GET", "/downloads/report.csv", 200, "rule", None),
    ("GET", "/healthz", 200, "rule", None),
    ("GET", "/search", 400, None, None),  # Rule("/search", status=400, close=False) beats close_on_status
    ("GET", "/search?q=x", 200, None, None),
    ("GET", "/export", 200, "handler", "export"),
    ("POST", "/logout", 200, "handler", "logout"),
]
FASTAPI = [
    *COMMON,
    ("GET", "/report", 200, "handler", "report"),
    ("GET", "/export/x", 422, "handler", "export"),  # the endpoint never runs: the route closes
]
# Starlette's own 500 for an unhandled exception (in process, the exception reaches the client).
FASTAPI_WIRE = [*FASTAPI, ("GET", "/boom", 500, "status", None)]
DJANGO = [*COMMON, ("GET", "/async-export", 200, "handler", "export")]
STARLETTE: list[Case] = [
    ("GET", "/", 200, None, None),
    ("GET", "/downloads/report.csv", 200, "rule", None),
    ("GET", "/export", 200, "handler", "export"),
    ("POST", "/upload", 200, "rule", None),  # the route-level middleware's rule
    ("GET", "/upload", 405, None, None),
    ("POST", "/account/logout", 200, "handler", "logout"),  # request_close inside a Mount
]


def _ids(cases: list[Case]) -> list[str]:
    return [f"{m} {p}" for m, p, *_ in cases]


# -- in-process --------------------------------------------------------------------


def _asgi_run(app: Any, cases: list[Case], decision_header: bool = True) -> None:
    scopes: list[dict[str, Any]] = []

    async def capture(scope: Any, receive: Any, send: Any) -> None:
        scopes.append(scope)
        await app(scope, receive, send)

    async def main() -> None:
        transport = httpx.ASGITransport(app=capture)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            for method, path, status, reason, why in cases:
                response = await client.request(method, path)
                label = f"{method} {path}"
                assert response.status_code == status, label
                facts = scopes[-1]["connmw"]
                assert isinstance(facts, RequestFacts)
                assert facts.handler_reason == why, label
                assert facts.decision is not None
                assert facts.decision.reason == reason, label
                if reason is None:
                    assert "connection" not in response.headers, label
                else:
                    assert response.headers.get_list("connection") == ["close"], label
                if decision_header:
                    expected = f"close; reason={reason}" if reason else "keep"
                    assert response.headers["x-connmw"] == expected, label

    asyncio.run(main())


def _wsgi_run(app: Any, cases: list[Case]) -> None:
    environs: list[dict[str, Any]] = []

    def capture(environ: Any, start_response: Any) -> Any:
        environs.append(environ)
        return app(environ, start_response)

    client = Client(capture)
    for method, path, status, reason, why in cases:
        response = client.open(path, method=method)
        label = f"{method} {path}"
        assert response.status_code == status, label
        # PEP 3333: nothing hop-by-hop reaches start_response; the server makes the close real.
        assert "Connection" not in response.headers, label
        facts = environs[-1]["connmw"]
        assert isinstance(facts, RequestFacts)
        assert facts.decision is not None
        assert facts.decision.reason == reason, label
        assert facts.handler_reason == why, label
        response.close()


def test_fastapi_example_in_process() -> None:
    _asgi_run(load_example("fastapi_app").app, FASTAPI)


def test_starlette_example_in_process() -> None:
    _asgi_run(load_example("starlette_app").app, STARLETTE)


def test_django_example_asgi_in_process() -> None:
    _asgi_run(django_module("exampleproject.asgi").application, DJANGO)


def test_flask_example_in_process() -> None:
    _wsgi_run(load_example("flask_app").app, COMMON)


def test_django_example_wsgi_in_process() -> None:
    _wsgi_run(django_module("exampleproject.wsgi").application, DJANGO)


def test_flask_example_exposes_its_middleware_for_drain() -> None:
    module = load_example("flask_app")
    assert module.app.wsgi_app is module.middleware
    assert module.app.extensions["connmw"] is module.middleware
    assert module.middleware.options.max_requests_per_connection == 100


# -- on the wire ---------------------------------------------------------------------


def _wire_run(port: int, cases: list[Case], keep_alive: str | None) -> None:
    for method, path, status, reason, _ in cases:
        label = f"{method} {path}"
        resp, _, reader = wire.exchange(port, method, path, check_close=False)
        try:
            assert resp.status == status, label
            if reason is None:
                assert resp.lines("connection") == [], label
                assert resp.lines("keep-alive") == ([keep_alive] if keep_alive else []), label
                assert resp.lines("x-connmw") == ["keep"], label
                assert wire.still_open(reader), f"{label}: the connection should stay open"
            else:
                assert resp.lines("connection") == ["close"], label
                assert resp.lines("keep-alive") == [], label
                assert resp.lines("x-connmw") == [f"close; reason={reason}"], label
                assert reader.closed(5.0), f"{label}: the server should have closed the socket"
        finally:
            reader.sock.close()


@pytest.mark.server
def test_fastapi_example_on_uvicorn() -> None:
    with servers.uvicorn_thread(load_example("fastapi_app").app) as port:
        _wire_run(port, FASTAPI_WIRE, "timeout=5, max=99")


@pytest.mark.server
def test_starlette_example_on_uvicorn() -> None:
    with servers.uvicorn_thread(load_example("starlette_app").app) as port:
        _wire_run(port, STARLETTE, None)


@pytest.mark.server
def test_flask_example_on_waitress() -> None:
    with servers.waitress_thread(load_example("flask_app").app) as port:
        _wire_run(port, COMMON, "timeout=5, max=99")


@pytest.mark.server
def test_django_example_wsgi_on_waitress() -> None:
    with servers.waitress_thread(django_module("exampleproject.wsgi").application) as port:
        _wire_run(port, DJANGO, "timeout=5, max=99")


@pytest.mark.server
def test_django_example_asgi_on_uvicorn() -> None:
    with servers.uvicorn_thread(django_module("exampleproject.asgi").application) as port:
        _wire_run(port, DJANGO, "timeout=5, max=99")


# -- the run command each docstring gives ---------------------------------------------

RUN_COMMANDS = [
    pytest.param(EXAMPLES / "fastapi_app.py", EXAMPLES, "uvicorn fastapi_app:app", id="fastapi"),
    pytest.param(EXAMPLES / "starlette_app.py", EXAMPLES, "uvicorn starlette_app:app", id="starlette"),
    pytest.param(EXAMPLES / "flask_app.py", EXAMPLES, "waitress-serve --port=8000 flask_app:app", id="flask"),
    pytest.param(
        DJANGO_PROJECT / "exampleproject" / "__init__.py",
        DJANGO_PROJECT,
        "waitress-serve --port=8000 exampleproject.wsgi:application",
        id="django-wsgi",
    ),
    pytest.param(
        DJANGO_PROJECT / "exampleproject" / "__init__.py",
        DJANGO_PROJECT,
        "uvicorn exampleproject.asgi:application",
        id="django-asgi",
    ),
]


@contextmanager
def _serve(argv: list[str], cwd: Path, port: int) -> Iterator[None]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        servers.wait_for_port(port, 30, proc)
        yield
    finally:
        # SIGINT: the FastAPI and Starlette examples drain for 2 s on SIGTERM (what they
        # show), which nothing here checks; every server here stops at once on SIGINT.
        servers.stop_process(proc, sig=signal.SIGINT)


@pytest.mark.server
@pytest.mark.parametrize(("source", "cwd", "command"), RUN_COMMANDS)
def test_docstring_run_command_serves_the_example(source: Path, cwd: Path, command: str) -> None:
    text = source.read_text()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip().startswith(command)), None)
    assert line is not None, f"{source.name} no longer says how to run it with {command!r}"
    argv = shlex.split(line.split("#")[0])
    # The script beside this interpreter (a venv that is not activated is not on PATH).
    script = Path(sys.executable).parent / argv[0]
    found = str(script) if script.exists() else shutil.which(argv[0])
    assert found is not None, f"{argv[0]} is neither beside {sys.executable} nor on PATH"
    argv[0] = found
    port = servers.free_port()
    argv = [re.sub(r"^8000$", str(port), re.sub(r"=8000$", f"={port}", a)) for a in argv]
    assert str(port) in " ".join(argv), f"{line!r} names no port 8000 to replace"
    with _serve(argv, cwd, port):
        resp, closed, reader = wire.exchange(port, "GET", "/downloads/report.csv", close_timeout=5.0)
        reader.sock.close()
        assert resp.status == 200
        assert resp.lines("connection") == ["close"]
        assert closed


# -- the README's per-framework snippets ------------------------------------------------


def _readme_blocks() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    usage = text.split("<!-- section:usage -->", 1)[1].split("<!-- /section:usage -->", 1)[0]
    blocks: dict[str, str] = {}
    for title, body in re.findall(r"### ([^\n]+)\n.*?```python\n(.*?)```", usage, re.S):
        blocks[title.strip()] = body
    return blocks


def test_readme_configures_each_framework_in_under_ten_lines() -> None:
    blocks = _readme_blocks()
    for title in ("FastAPI / Starlette", "Flask", "Django"):
        lines = [ln for ln in blocks[title].splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        assert len(lines) < 10, f"{title}: {len(lines)} lines"


def test_readme_fastapi_snippet_runs() -> None:
    namespace: dict[str, Any] = {}
    exec(_readme_blocks()["FastAPI / Starlette"], namespace)
    _asgi_run(
        namespace["app"],
        [("GET", "/downloads/x", 404, "rule", None), ("GET", "/export", 200, "handler", "endpoint export")],
        decision_header=False,
    )


def test_readme_flask_snippet_runs() -> None:
    namespace: dict[str, Any] = {"__name__": "readme_flask"}
    exec(_readme_blocks()["Flask"], namespace)
    app = namespace["app"]
    decisions: list[Any] = []
    environs: list[Any] = []
    inner = app.wsgi_app

    def capture(environ: Any, start_response: Any) -> Any:
        environs.append(environ)
        return inner(environ, start_response)

    client = Client(capture)
    for path in ("/downloads/x", "/export"):
        client.get(path).close()
        decisions.append(environs[-1]["connmw"].decision.reason)
    assert decisions == ["rule", "handler"]
