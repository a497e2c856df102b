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
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests import servers
from tests.apps import asgi_app, wsgi_app
from tests.conformance import frameworks
from tests.h3client import free_udp_port

Starter = Callable[["Env"], AbstractContextManager[int]]


@dataclass
class Env:
    """What a starter may need: a scratch directory and the TLS material."""

    tmp: Path
    certfile: str = ""
    keyfile: str = ""
    client_ssl: ssl.SSLContext | None = None
    cafile: str = ""


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
    #: How connmw makes the close real here, and what differs (for the README).
    notes: str = ""
    #: case id -> what this server does where it differs from the default of its kind
    #: (see :func:`expected`).
    differs: dict[str, str] = field(default_factory=dict)


#: What a case observes on an HTTP/1.x server that keeps connections open.
H1_DEFAULT: dict[str, str] = {
    "http11-plain": "open",
    "close": "closed",
    "te-close": "closed",
    "Close": "closed",
    "two-fields": "closed",
    "http10-plain": "closed",
    "http10-keep-alive": "closed",
    "http10-keep-alive-rule": "closed",
    "stream-http10": "closed",
    "stream-http11": "open (chunked)",
    "rule": "closed",
    "handler": "closed",
    "hop": "open",
    "pipelined": "closed",
}
#: The cases with an HTTP/2 form; the others do not apply there.
H2_CASES = ("http11-plain", "stream-http11", "rule", "handler", "hop", "pipelined")


def expected(spec: Spec) -> dict[str, str | None]:
    """What each case must observe on ``spec``'s server (None: the case does not apply).

    The conformance tests assert it and the README's table is rendered from it, so the
    table says what the suite checks: a server that starts keeping (or closing) what it
    did not fails its row until this says otherwise.
    """
    if spec.protocol != "h1":
        out: dict[str, str | None] = {case: ("open" if case in H2_CASES else None) for case in H1_DEFAULT}
    elif spec.always_closes:
        out = dict.fromkeys(H1_DEFAULT, "closed")
        out["stream-http11"] = "closed (chunked)"
    else:
        out = dict(H1_DEFAULT)
    unknown = set(spec.differs) - set(out)
    assert not unknown, f"{spec.id}: no such case {sorted(unknown)}"
    out.update(spec.differs)
    return out


@contextlib.contextmanager
def _subprocess(argv: Callable[[int], list[str]], env: dict[str, str] | None = None) -> Iterator[int]:
    port = servers.free_port()
    with servers.subprocess_server(argv(port), port, env=env):
        yield port


def _gunicorn(app: str, worker: str) -> Starter:
    return lambda env: _subprocess(lambda port: servers.gunicorn_argv(app, port, worker=worker))


def _granian(http: str) -> Starter:
    return lambda env: _subprocess(lambda port: servers.granian_argv("tests.apps:asgi_app", port, http=http))


def _uwsgi(socket: str) -> Starter:
    return lambda env: _subprocess(lambda port: servers.uwsgi_argv("tests.apps:wsgi_app", port, socket))


@contextlib.contextmanager
def _apache(env: Env) -> Iterator[int]:
    port = servers.free_port()
    with servers.apache_mod_wsgi("tests.apps:wsgi_app", port):
        yield port


def _hypercorn_tls(env: Env) -> AbstractContextManager[int]:
    return servers.hypercorn_thread(asgi_app, certfile=env.certfile, keyfile=env.keyfile)


@contextlib.contextmanager
def _hypercorn_h3(env: Env) -> Iterator[int]:
    port = free_udp_port()
    quic = [f"127.0.0.1:{port}"]
    with servers.hypercorn_thread(asgi_app, certfile=env.certfile, keyfile=env.keyfile, quic_bind=quic):
        yield port


def _daphne_tls(env: Env) -> AbstractContextManager[int]:
    def argv(port: int) -> list[str]:
        endpoint = f"ssl:{port}:interface=127.0.0.1:privateKey={env.keyfile}:certKey={env.certfile}"
        return [sys.executable, "-m", "daphne", "-e", endpoint, "-v", "0", "tests.apps:asgi_app"]

    return _subprocess(argv)


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
        notes="Honours the `connection: close` connmw writes. The FastAPI app's `send` is wrapped by Starlette's error middleware: connmw finds the server behind the wrapper.",
    ),
    Spec(
        "uvicorn-httptools",
        "ASGI",
        "raw ASGI",
        lambda env: servers.uvicorn_thread(asgi_app, http="httptools"),
        notes="Honours the line. It would send chunked framing to an HTTP/1.0 client; connmw switches the response cycle to a close-delimited body.",
    ),
    Spec(
        "hypercorn-h11",
        "ASGI",
        "Starlette",
        lambda env: servers.hypercorn_thread(frameworks.starlette_app()),
        notes="Honours the line.",
    ),
    Spec(
        "hypercorn-h2c",
        "ASGI",
        "raw ASGI",
        lambda env: servers.hypercorn_thread(asgi_app),
        protocol="h2c",
        notes="HTTP/2 with prior knowledge: HTTP/1 header cases do not apply. connmw removes every connection-specific header (an app's `te: gzip` would otherwise kill the connection) and the connection keeps serving streams.",
    ),
    Spec(
        "hypercorn-h2-tls",
        "ASGI",
        "raw ASGI",
        _hypercorn_tls,
        protocol="h2-tls",
        notes="HTTP/2 over TLS (ALPN `h2`, throwaway certificate from `trustme`); as h2c.",
    ),
    Spec(
        "hypercorn-h3",
        "ASGI",
        "raw ASGI",
        _hypercorn_h3,
        protocol="h3",
        notes="HTTP/3 over QUIC (`quic_bind`, aioquic; the scope says `http_version` \"3\"): HTTP/1 header cases do not apply. hypercorn passes the app's headers to aioquic as they are, and aioquic's client rejects a response with a connection-specific header; connmw removes them, and the connection keeps serving.",
    ),
    Spec(
        "granian-h1",
        "ASGI",
        "raw ASGI",
        _granian("1"),
        notes="Honours the line; keeps an HTTP/1.0 keep-alive connection, so connmw says `keep-alive` there.",
        differs={"http10-keep-alive": "kept"},
        known={
            "http10-keep-alive-rule": "granian adds its own `keep-alive` token to connmw's `close` on an HTTP/1.0 keep-alive request (`connection: close, keep-alive`), from the request alone; the connection does close",
        },
    ),
    Spec(
        "granian-h2",
        "ASGI",
        "raw ASGI",
        _granian("2"),
        protocol="h2c",
        notes="HTTP/2 (prior knowledge): HTTP/1 header cases do not apply; forbidden headers removed, the connection keeps serving.",
    ),
    Spec(
        "daphne",
        "ASGI",
        "raw ASGI",
        lambda env: _subprocess(lambda port: servers.daphne_argv("tests.apps:asgi_app", port)),
        notes="Twisted decides persistence from the request alone and ignores the app's `connection: close`. connmw reaches the Twisted request through daphne's `send` (`functools.partial(server.handle_reply, request)`), clears `channel.persistent` and removes the line Twisted pre-set, so the close is real and announced once. Where that request cannot be reached (a `send` wrapper connmw cannot see through), connmw warns once: the client is told to close, the server may not.",
    ),
    Spec(
        "daphne-h2-tls",
        "ASGI",
        "raw ASGI",
        _daphne_tls,
        protocol="h2-tls",
        notes="HTTP/2 over TLS (ALPN `h2`): HTTP/1 header cases do not apply. Without connmw an app's `te: gzip` raises inside the app's `send` and breaks later streams; connmw removes it and every other connection-specific header.",
    ),
    Spec(
        "gunicorn-uvicorn-worker",
        "ASGI",
        "raw ASGI",
        _gunicorn("tests.apps:asgi_app", "uvicorn.workers.UvicornWorker"),
        notes="`uvicorn.workers.UvicornWorker`: uvicorn's protocol, as uvicorn-h11.",
    ),
    Spec(
        "gunicorn-sync",
        "WSGI",
        "Flask",
        _gunicorn("tests.conformance.frameworks:flask_app()", "sync"),
        always_closes=True,
        closes_why="the sync worker serves one request per connection",
        notes="It says so itself; connmw still calls the response's `force_close()` when it closes.",
    ),
    Spec(
        "gunicorn-gthread",
        "WSGI",
        "raw WSGI",
        _gunicorn("tests.apps:wsgi_app", "gthread"),
        notes="Drops an app's `Connection` header and ignores `TE, close`; connmw calls `force_close()` on the response (`start_response.__self__`). gunicorn writes its own `Connection: keep-alive` on kept HTTP/1.1 responses (redundant, harmless).",
        differs={"http10-keep-alive": "kept"},
    ),
    Spec(
        "gunicorn-gevent",
        "WSGI",
        "raw WSGI",
        _gunicorn("tests.apps:wsgi_app", "gevent"),
        notes="`-k gevent`: the same `Response` as gthread, and the same handling (`force_close()`).",
        differs={"http10-keep-alive": "kept"},
    ),
    Spec(
        "gunicorn-gevent-pywsgi",
        "WSGI",
        "raw WSGI",
        _gunicorn("tests.apps:wsgi_app", "gevent_pywsgi"),
        notes="`-k gevent_pywsgi`: gevent's own WSGI handler (gunicorn's subclass of it), as gevent-pywsgi.",
        differs={"http10-keep-alive": "kept"},
    ),
    Spec(
        "gevent-pywsgi",
        "WSGI",
        "raw WSGI",
        lambda env: _subprocess(lambda port: servers.gevent_argv("tests.apps:wsgi_app", port)),
        notes="`gevent.pywsgi.WSGIServer`. Honours an app's `Connection: close` (spelled exactly so), which connmw passes to its handler's `start_response` when it closes; compares the client's `Connection` value to `close` as a whole (`TE, close` stays open without connmw). Keeps an HTTP/1.0 keep-alive connection.",
        differs={"http10-keep-alive": "kept"},
    ),
    Spec(
        "granian-wsgi",
        "WSGI",
        "raw WSGI",
        lambda env: _subprocess(
            lambda port: servers.granian_argv("tests.apps:wsgi_app", port, interface="wsgi")
        ),
        notes="`--interface wsgi`. Honours a `Connection: close` passed to `start_response` (a `granian.wsgi.Response`), which connmw passes when it closes; keeps an HTTP/1.0 keep-alive connection. No `REMOTE_PORT`: per-connection options (request cap, age) cannot apply (connmw warns once).",
        differs={"http10-keep-alive": "kept"},
        known={
            "http10-keep-alive-rule": "as granian's ASGI interface: granian adds its own `keep-alive` token to connmw's `close` on an HTTP/1.0 keep-alive request (`connection: close, keep-alive`), from the request alone; the connection does close",
        },
    ),
    Spec(
        "hypercorn-wsgi",
        "WSGI",
        "raw WSGI",
        lambda env: servers.hypercorn_thread(wsgi_app, mode="wsgi"),
        notes="A WSGI app under hypercorn: its `start_response` (a closure in `hypercorn.app_wrappers`) hands the headers to h11, which honours the `Connection: close` connmw passes when it closes. No `REMOTE_PORT`: connmw finds the connection through hypercorn's protocol object, so the request cap and age apply.",
    ),
    Spec(
        "uwsgi-http",
        "WSGI",
        "raw WSGI",
        _uwsgi("http-socket"),
        available=servers.uwsgi_available,
        always_closes=True,
        closes_why="`--http-socket` serves one request per connection",
        notes="uWSGI 2.0 (`pyuwsgi`) does not say so itself; connmw tells uWSGI's socket kinds apart (`uwsgi.opt`) and passes `Connection: close` on every response (reason `server`), so each close is announced.",
        differs={"stream-http11": "closed (close-delimited)"},
    ),
    Spec(
        "uwsgi-http11",
        "WSGI",
        "raw WSGI",
        _uwsgi("http11-socket"),
        available=servers.uwsgi_available,
        notes="`--http11-socket` keeps HTTP/1.1 connections but ignores `Connection: close` from the client and the app (it passes the app's line on: announced, not made). connmw passes the line and shuts the socket down (`uwsgi.connection_fd()`) once the body is written, so the close is real. uWSGI never chunks: a body without length is close-delimited (reason `server`). It closes HTTP/1.0 connections, and drops pipelined requests with an unannounced close.",
        differs={"stream-http11": "closed (close-delimited)"},
    ),
    Spec(
        "waitress",
        "WSGI",
        "raw WSGI",
        lambda env: servers.waitress_thread(wsgi_app),
        notes="A hop-by-hop header from the app is a 500 here; connmw strips them and calls the task's `set_close_on_finish()` (`write.__self__`). waitress closes after every chunked response by its own choice, and says so.",
        differs={"http10-keep-alive": "kept", "stream-http11": "closed (chunked)"},
    ),
    Spec(
        "werkzeug",
        "WSGI",
        "Flask",
        lambda env: servers.werkzeug_thread(frameworks.flask_app()),
        always_closes=True,
        closes_why="the development server closes every connection",
        notes="What `run_simple` and `flask run` start; it says `Connection: close` itself. It would send chunked framing to an HTTP/1.0 client; connmw answers HTTP/1.0 clients in HTTP/1.0 (the handler's `protocol_version`), so the body is close-delimited.",
    ),
    Spec(
        "wsgiref",
        "WSGI",
        "raw WSGI",
        lambda env: servers.wsgiref_thread(wsgi_app),
        always_closes=True,
        closes_why="an HTTP/1.0 server: one response per connection",
        notes="A hop-by-hop header from the app is a 500 here; connmw strips them and, when it closes, sets `Connection: close` on the handler's headers.",
        differs={"stream-http11": "closed (close-delimited)"},
    ),
    Spec(
        "django-runserver",
        "WSGI",
        "Django",
        lambda env: _subprocess(servers.django_runserver_argv, env=_django_env()),
        notes="Ignores `TE, close` and two `Connection` fields, and a hop-by-hop header from the app is a 500. connmw sets `Connection: close` on the handler's headers (`start_response.__self__`), which runserver honours. It never chunks: a streamed body is close-delimited.",
        differs={"stream-http11": "closed (close-delimited)"},
    ),
    Spec(
        "cheroot",
        "WSGI",
        "raw WSGI",
        lambda env: servers.cheroot_thread(wsgi_app),
        notes="Passes an app's `Connection: close` but keeps the connection, and only honours a client's `close` spelled exactly so. connmw sets `close_connection` on the request (`start_response.__self__.req`); cheroot then writes the line. It keeps HTTP/1.0 only for `Keep-Alive` spelled so.",
    ),
    Spec(
        "mod_wsgi",
        "WSGI",
        "raw WSGI",
        _apache,
        available=servers.apache_mod_wsgi_available,
        notes="Apache 2.4 (event MPM), mod_wsgi in daemon mode. The header is the only handle: connmw recognises mod_wsgi's `start_response` and passes `Connection: close` to it; Apache honours it.",
        differs={"http10-keep-alive": "kept"},
    ),
]

BY_ID = {spec.id: spec for spec in SPECS}
