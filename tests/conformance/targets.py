"""The servers of the conformance suite: how to start each one, and what to expect.

Every entry starts a real server on loopback with an ephemeral port and stops it
with bounded waits. ``always_closes`` marks servers that close every connection by
design (the cases then expect an honest close where they would expect the
connection to stay open); ``known`` lists cases a server cannot pass, with the
reason (they run as strict expected failures, so a fix shows up at once).
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests import servers
from tests.apps import asgi_app, wsgi_app
from tests.conformance import frameworks

Starter = Callable[["Env"], AbstractContextManager[int]]


@dataclass
class Env:
    """What a starter may need: a scratch directory and the TLS material."""

    tmp: Path
    certfile: str = ""
    keyfile: str = ""
    client_ssl: ssl.SSLContext | None = None


@dataclass(frozen=True)
class Spec:
    id: str
    interface: str  # "ASGI" or "WSGI"
    app: str  # what the server runs, for the README
    start: Starter
    protocol: str = "h1"
    always_closes: bool = False
    #: Why the server closes every connection (shown in the README).
    closes_why: str = ""
    #: case id -> why this server cannot pass it (a strict xfail).
    known: dict[str, str] = field(default_factory=dict)
    #: None when the server can run here, else the reason it is skipped.
    available: Callable[[], str | None] = lambda: None


@contextlib.contextmanager
def _subprocess(argv: Callable[[int], list[str]], env: dict[str, str] | None = None) -> Iterator[int]:
    port = servers.free_port()
    with servers.subprocess_server(argv(port), port, env=env):
        yield port


def _gunicorn(app: str, worker: str) -> Starter:
    return lambda env: _subprocess(lambda port: servers.gunicorn_argv(app, port, worker=worker))


def _granian(http: str) -> Starter:
    return lambda env: _subprocess(lambda port: servers.granian_argv("tests.apps:asgi_app", port, http=http))


@contextlib.contextmanager
def _apache(env: Env) -> Iterator[int]:
    port = servers.free_port()
    with servers.apache_mod_wsgi("tests.apps:wsgi_app", port):
        yield port


def _hypercorn_tls(env: Env) -> AbstractContextManager[int]:
    return servers.hypercorn_thread(asgi_app, certfile=env.certfile, keyfile=env.keyfile)


def _django_env() -> dict[str, str]:
    return {"DJANGO_SETTINGS_MODULE": "tests.conformance.django_site"}


def _any(_: Any) -> None:
    return None


SPECS: list[Spec] = [
    Spec(
        "uvicorn-h11",
        "ASGI",
        "FastAPI",
        lambda env: servers.uvicorn_thread(frameworks.fastapi_app(), http="h11"),
    ),
    Spec(
        "uvicorn-httptools",
        "ASGI",
        "raw ASGI",
        lambda env: servers.uvicorn_thread(asgi_app, http="httptools"),
    ),
    Spec(
        "hypercorn-h11",
        "ASGI",
        "Starlette",
        lambda env: servers.hypercorn_thread(frameworks.starlette_app()),
    ),
    Spec("hypercorn-h2c", "ASGI", "raw ASGI", lambda env: servers.hypercorn_thread(asgi_app), protocol="h2c"),
    Spec("hypercorn-h2-tls", "ASGI", "raw ASGI", _hypercorn_tls, protocol="h2-tls"),
    Spec("granian-h1", "ASGI", "raw ASGI", _granian("1")),
    Spec("granian-h2", "ASGI", "raw ASGI", _granian("2"), protocol="h2c"),
    Spec(
        "daphne",
        "ASGI",
        "raw ASGI",
        lambda env: _subprocess(lambda port: servers.daphne_argv("tests.apps:asgi_app", port)),
    ),
    Spec(
        "gunicorn-uvicorn-worker",
        "ASGI",
        "raw ASGI",
        _gunicorn("tests.apps:asgi_app", "uvicorn.workers.UvicornWorker"),
    ),
    Spec(
        "gunicorn-sync",
        "WSGI",
        "Flask",
        _gunicorn("tests.conformance.frameworks:flask_app()", "sync"),
        always_closes=True,
        closes_why="the sync worker serves one request per connection",
    ),
    Spec("gunicorn-gthread", "WSGI", "raw WSGI", _gunicorn("tests.apps:wsgi_app", "gthread")),
    Spec("waitress", "WSGI", "raw WSGI", lambda env: servers.waitress_thread(wsgi_app)),
    Spec(
        "werkzeug",
        "WSGI",
        "Flask",
        lambda env: servers.werkzeug_thread(frameworks.flask_app()),
        always_closes=True,
        closes_why="the development server closes every connection",
    ),
    Spec(
        "wsgiref",
        "WSGI",
        "raw WSGI",
        lambda env: servers.wsgiref_thread(wsgi_app),
        always_closes=True,
        closes_why="an HTTP/1.0 server: one response per connection",
    ),
    Spec(
        "django-runserver",
        "WSGI",
        "Django",
        lambda env: _subprocess(servers.django_runserver_argv, env=_django_env()),
    ),
    Spec("cheroot", "WSGI", "raw WSGI", lambda env: servers.cheroot_thread(wsgi_app)),
    Spec("mod_wsgi", "WSGI", "raw WSGI", _apache, available=servers.apache_mod_wsgi_available),
]

BY_ID = {spec.id: spec for spec in SPECS}
