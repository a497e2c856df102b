"""Mistakes that used to pass silently now fail at construction with a message that
names the option, the value and the fix (or have one documented meaning)."""

from __future__ import annotations

import functools
import logging
from typing import Any

import pytest

from connmw import ConnectionMiddleware, Options, Rule, WSGIConnectionMiddleware
from connmw._policy import suggest_option

# -- Rule methods ---------------------------------------------------------------


def test_misspelled_method_is_refused_with_the_method_meant() -> None:
    with pytest.raises(ValueError) as error:
        Rule("/x", methods="GTE")
    assert str(error.value) == (
        "Rule methods: unknown method 'GTE' (did you mean 'GET'?); to match a method outside "
        "RFC 9110, PATCH, WebDAV, QUERY and PURGE, pass custom_methods=True"
    )
    with pytest.raises(ValueError, match=r"unknown method 'POTS' \(did you mean 'POST'\?\)"):
        Rule.from_mapping({"path": "/x", "methods": "GET,POTS"})


@pytest.mark.parametrize(
    "method",
    ["GET", "head", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "PROPFIND", "MKCOL", "QUERY", "PURGE"],
)
def test_standard_and_common_extension_methods_are_accepted(method: str) -> None:
    assert Rule(methods=method).matches_request(method.upper(), "/")


def test_custom_methods_is_the_escape_hatch() -> None:
    rule = Rule("/cache/*", methods="BAN", custom_methods=True)
    assert rule.matches_request("BAN", "/cache/a")
    assert not rule.matches_request("GET", "/cache/a")
    assert Rule.from_mapping({"methods": "BAN", "custom_methods": "true"}).methods == frozenset({"BAN"})
    with pytest.raises(TypeError, match="Rule custom_methods must be True or False, not 'yes'"):
        Rule(methods="BAN", custom_methods="yes")  # type: ignore[arg-type]


def test_empty_status_set_is_refused_and_empty_text_means_every_status() -> None:
    with pytest.raises(ValueError, match=r"Rule status must not be empty \(use None to match every status\)"):
        Rule("/x", status=())
    assert Rule.from_mapping({"path": "/x", "status": "", "methods": ""}) == Rule("/x")


# -- options that do nothing alone ---------------------------------------------------


def test_jitter_without_its_limit_is_refused() -> None:
    with pytest.raises(ValueError) as error:
        Options(max_requests_jitter=100)
    assert str(error.value) == (
        "max_requests_jitter=100 has no effect without max_requests_per_connection: "
        "set max_requests_per_connection too, or drop max_requests_jitter"
    )
    with pytest.raises(
        ValueError, match="max_connection_age_jitter=60 has no effect without max_connection_age"
    ):
        ConnectionMiddleware(async_app, max_connection_age_jitter=60)
    assert Options(max_requests_per_connection=10, max_requests_jitter=5).max_requests_jitter == 5


def test_idle_timeout_shorter_than_the_advertised_keep_alive_is_refused() -> None:
    with pytest.raises(ValueError) as error:
        Options(keep_alive_timeout=30, connection_idle_timeout=10)
    assert str(error.value) == (
        "connection_idle_timeout=10 is shorter than keep_alive_timeout=30: connmw would forget "
        "connections clients still reuse (and restart their request count); set "
        "connection_idle_timeout to at least 30"
    )
    Options(keep_alive_timeout="auto", connection_idle_timeout=10)


# -- the wrapped application's interface ------------------------------------------


def flask_app() -> Any:
    from flask import Flask

    return Flask(__name__)


def django_wsgi() -> Any:
    from django.core.handlers.wsgi import WSGIHandler

    return WSGIHandler.__new__(WSGIHandler)  # the interface only: no settings needed


def django_asgi() -> Any:
    from django.core.handlers.asgi import ASGIHandler

    return ASGIHandler.__new__(ASGIHandler)


def fastapi_app() -> Any:
    from fastapi import FastAPI

    return FastAPI()


def starlette_app() -> Any:
    from starlette.applications import Starlette

    return Starlette()


WSGI_HINT = "Wrap it with WSGIConnectionMiddleware instead"
ASGI_HINT = "Wrap it with ConnectionMiddleware instead"


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(flask_app, id="flask-app"),
        pytest.param(lambda: flask_app().wsgi_app, id="flask-wsgi_app"),
        pytest.param(django_wsgi, id="django-wsgihandler"),
        pytest.param(lambda: lambda environ, start_response: [b""], id="function"),
    ],
)
def test_asgi_middleware_refuses_a_wsgi_app(make: Any) -> None:
    app = make()
    with pytest.raises(TypeError) as error:
        ConnectionMiddleware(app)
    text = str(error.value)
    assert text.startswith("ConnectionMiddleware got a WSGI application (it takes environ, start_response): ")
    assert text.endswith(
        f"{WSGI_HINT} (Flask: connmw.contrib.flask.install(app); "
        "Django: connmw.contrib.django.get_wsgi_application())"
    )
    WSGIConnectionMiddleware(app)  # where it belongs


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(fastapi_app, id="fastapi"),
        pytest.param(starlette_app, id="starlette"),
        pytest.param(django_asgi, id="django-asgihandler"),
    ],
)
def test_wsgi_middleware_refuses_an_asgi_app(make: Any) -> None:
    app = make()
    with pytest.raises(TypeError) as error:
        WSGIConnectionMiddleware(app)
    text = str(error.value)
    assert text.startswith(
        "WSGIConnectionMiddleware got an ASGI application (async, taking scope, receive, send): "
    )
    assert text.endswith(f"{ASGI_HINT} (FastAPI/Starlette: app.add_middleware(ConnectionMiddleware))")
    ConnectionMiddleware(app)


async def async_app(scope: Any, receive: Any, send: Any) -> None: ...


class AsyncCallable:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...


class Asgi2:
    def __init__(self, scope: Any) -> None: ...


def test_asgi_apps_of_every_shape_are_accepted() -> None:
    apps: list[Any] = [async_app, AsyncCallable(), functools.partial(async_app), lambda *a: None, print]
    for app in apps:
        ConnectionMiddleware(app)


async def app_with_keywords(
    scope: Any, receive: Any, send: Any, *, extra: Any = None, **more: Any
) -> None: ...


def test_apps_whose_interface_cannot_be_read_or_is_passed_by_name_are_accepted() -> None:
    ConnectionMiddleware(app_with_keywords)
    unreadable: Any = dict  # a builtin without a signature: nothing to check, accepted as given
    ConnectionMiddleware(unreadable)
    WSGIConnectionMiddleware(unreadable)
    by_name: Any = ConnectionMiddleware
    assert by_name(app=async_app).app is async_app  # Starlette before 0.41 passes app=


def test_other_wrong_apps() -> None:
    with pytest.raises(
        TypeError, match=r"ConnectionMiddleware wraps an ASGI application .* got str 'app:main'"
    ):
        ConnectionMiddleware("app:main")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"ASGI 3 application taking .scope, receive, send., got type"):
        ConnectionMiddleware(Asgi2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"WSGIConnectionMiddleware wraps a WSGI application .* got NoneType"):
        WSGIConnectionMiddleware(None)  # type: ignore[arg-type]
    one_argument: Any = lambda environ: [b""]  # noqa: E731
    with pytest.raises(TypeError, match=r"WSGI application taking .environ, start_response., got function"):
        WSGIConnectionMiddleware(one_argument)
    with pytest.raises(TypeError, match="got an ASGI application"):
        WSGIConnectionMiddleware(AsyncCallable())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got an ASGI application"):
        WSGIConnectionMiddleware(async_app)  # type: ignore[arg-type]


# -- settings: empty means default, "none" means off; unknown variables warn ---------


def test_empty_means_default_for_every_option_and_none_means_off() -> None:
    defaults = Options()
    empty = Options.from_mapping(dict.fromkeys(Options.field_names(), ""))
    assert empty == defaults
    assert (
        Options.from_env(environ={"CONNMW_CLOSE_ON_STATUS": ""}).close_on_status == defaults.close_on_status
    )
    off = Options.from_env(environ={"CONNMW_CLOSE_ON_STATUS": "none", "CONNMW_DECISION_HEADER": "none"})
    assert off.close_on_status == frozenset()
    assert off.decision_header is None


def test_unknown_environment_variable_warns_and_start_up_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    env = {"CONNMW_MAX_REQUESTS": "100", "CONNMW_KEEP_ALIVE_TIMEOUT": "5", "CONNMW_HYPOTHESIS_PROFILE": "ci"}
    with caplog.at_level(logging.WARNING, logger="connmw"):
        options = Options.from_env(environ=env)
    assert options.keep_alive_timeout == 5
    assert options.max_requests_per_connection is None
    assert [r.getMessage() for r in caplog.records] == [
        "environment variable CONNMW_MAX_REQUESTS names no connmw option and is ignored "
        "(did you mean CONNMW_MAX_REQUESTS_PER_CONNECTION?)",
        "environment variable CONNMW_HYPOTHESIS_PROFILE names no connmw option and is ignored",
    ]
    with pytest.raises(ValueError, match="keep_alive_timeout must be a number of seconds, got 'soon'"):
        Options.from_env(environ={"CONNMW_KEEP_ALIVE_TIMEOUT": "soon"})


@pytest.mark.parametrize(
    ("given", "meant"),
    [
        ("max_requests", "max_requests_per_connection"),
        ("max_request_per_connection", "max_requests_per_connection"),
        ("max_age", "max_connection_age"),
        ("keepalive", "keep_alive_timeout"),
        ("keep_alive", "keep_alive_timeout"),
        ("colse_on_status", "close_on_status"),
        ("MAX-REQUESTS-JITTER", "max_requests_jitter"),
        ("zzz", None),
    ],
)
def test_suggestions(given: str, meant: str | None) -> None:
    assert suggest_option(given) == meant
