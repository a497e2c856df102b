"""Django: settings.CONNMW read when wsgi.py / asgi.py build the application, start-up
errors for bad settings, the view decorator on sync, async and class-based views,
and request_close on WSGI and ASGI requests."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from werkzeug.test import Client

from connmw import ConnectionMiddleware, Decision, RequestFacts, Rule, WSGIConnectionMiddleware

from . import servers, wire
from .apps import install_hint_logs
from .examples_support import setup_django

setup_django()

from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.test import Client as DjangoClient  # noqa: E402
from django.test import RequestFactory, override_settings  # noqa: E402
from django.urls import path  # noqa: E402
from django.utils.decorators import method_decorator  # noqa: E402
from django.views import View  # noqa: E402

import connmw  # noqa: E402
from connmw.contrib import django as connmw_django  # noqa: E402
from connmw.contrib.django import close_connection  # noqa: E402

Seen = list[tuple[RequestFacts, Decision]]
SEEN: Seen = []


def record(facts: RequestFacts, decision: Decision) -> None:
    SEEN.append((facts, decision))


def plain(request: HttpRequest) -> HttpResponse:
    return HttpResponse("plain")


@close_connection
def sync_export(request: HttpRequest) -> HttpResponse:
    return HttpResponse("sync")


@close_connection(reason="async export")
async def async_export(request: HttpRequest) -> HttpResponse:
    return HttpResponse("async")


@method_decorator(close_connection(reason="cbv"), name="dispatch")
class ReportView(View):  # type: ignore[misc]
    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("cbv")


def files(request: HttpRequest, name: str) -> HttpResponse:
    return HttpResponse(name)


def logout(request: HttpRequest) -> HttpResponse:
    connmw.request_close(request, "logout")
    return HttpResponse("bye")


def broken(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom")


urlpatterns = [
    path("plain", plain),
    path("sync", sync_export),
    path("async", async_export),
    path("cbv", ReportView.as_view()),
    path("logout", logout),
    path("broken", broken),
    path("files/<str:name>", files),
]

SETTINGS: dict[str, Any] = {
    "ROOT_URLCONF": __name__,
    "CONNMW": {
        "rules": [{"path": "/files/*"}, Rule("/broken", close=False)],
        "on_decision": f"{__name__}:record",
    },
}

CASES = [
    ("/plain", None, None),
    ("/sync", "handler", "view sync_export"),
    ("/async", "handler", "async export"),
    ("/cbv", "handler", "cbv"),
    ("/logout", "handler", "logout"),
    ("/files/a.txt", "rule", None),
    ("/broken", None, None),  # a 500, kept: Rule("/broken", close=False) beats close_on_status
]


@pytest.fixture(autouse=True)
def _settings() -> Any:
    SEEN.clear()
    with override_settings(**SETTINGS):
        yield


def check(seen: Seen) -> None:
    assert [(f.path, d.reason, f.handler_reason) for f, d in seen] == CASES


def test_wsgi_application_reads_settings_and_views_close() -> None:
    application = connmw_django.get_wsgi_application()
    assert isinstance(application, WSGIConnectionMiddleware)
    client = Client(application)
    for url, _, _ in CASES:
        response = client.get(url)
        assert response.status_code == (500 if url == "/broken" else 200), url
        assert "Connection" not in response.headers
        response.close()
    check(SEEN)


def test_asgi_application_reads_settings_and_views_close() -> None:
    application = connmw_django.get_asgi_application()
    assert isinstance(application, ConnectionMiddleware)

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return [await client.get(url) for url, _, _ in CASES]

    responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [500 if url == "/broken" else 200 for url, _, _ in CASES]
    assert [r.headers.get("connection") for r in responses] == [
        "close" if reason else None for _, reason, _ in CASES
    ]
    check(SEEN)


def test_overrides_win_over_settings() -> None:
    application = connmw_django.get_wsgi_application(max_requests_per_connection=7, rules=[])
    assert application.options.max_requests_per_connection == 7
    assert application.options.rules == ()
    wrapped = connmw_django.wrap_asgi(lambda *a: None, keep_alive_timeout=4)
    assert wrapped.options.keep_alive_timeout == 4


def test_no_setting_means_defaults() -> None:
    with override_settings(CONNMW=None):
        assert connmw_django.options_from_settings() == {}


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        pytest.param(
            {"max_requests_per_connection": 0},
            "settings.CONNMW: max_requests_per_connection must be >= 1, got 0",
            id="value",
        ),
        pytest.param(
            {"max_request_per_connection": 5},
            "settings.CONNMW got an unknown option 'max_request_per_connection' "
            "(did you mean 'max_requests_per_connection'?)",
            id="typo",
        ),
        pytest.param({"rules": [{"path": "files/*"}]}, "Rule path must start with '/'", id="rule"),
        pytest.param(
            ["max_requests_per_connection"],
            "settings.CONNMW must be a mapping of option names to values",
            id="type",
        ),
    ],
)
def test_bad_settings_fail_at_start_up(setting: Any, message: str) -> None:
    with override_settings(CONNMW=setting):
        with pytest.raises(ImproperlyConfigured) as wsgi_error:
            connmw_django.get_wsgi_application()
        with pytest.raises(ImproperlyConfigured):
            connmw_django.get_asgi_application()
    assert message in str(wsgi_error.value)


def test_unknown_setting_names_the_setting_once_and_the_option_meant() -> None:
    with override_settings(CONNMW={"max_requests": 100}), pytest.raises(ImproperlyConfigured) as error:
        connmw_django.get_wsgi_application()
    assert str(error.value) == (
        "settings.CONNMW got an unknown option 'max_requests' (did you mean 'max_requests_per_connection'?)"
    )


def test_bad_override_fails_at_start_up() -> None:
    with pytest.raises(ImproperlyConfigured, match="unknown option 'colse_on_status'"):
        connmw_django.wrap_wsgi(lambda *a: None, colse_on_status=())  # type: ignore[call-arg]


def test_django_test_client_bypasses_wsgi_py_and_views_still_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = DjangoClient()
    install_hint_logs(caplog)
    with caplog.at_level(logging.WARNING, logger="connmw"):
        for url, body in [("/plain", b"plain"), ("/sync", b"sync"), ("/async", b"async"), ("/cbv", b"cbv")]:
            response = client.get(url)
            assert (response.status_code, response.content) == (200, body), url
        assert client.get("/logout").content == b"bye"
        # A view called directly with a request that never met a server.
        assert sync_export(RequestFactory().get("/sync")).content == b"sync"
    hints = install_hint_logs(caplog)
    assert len(hints) == 1
    assert "connmw.contrib.django.get_wsgi_application()" in hints[0]
    assert SEEN == []


def test_decorator_needs_a_request() -> None:
    with pytest.raises(TypeError, match="got no HttpRequest"):
        sync_export()  # type: ignore[call-arg]


@pytest.mark.server
def test_views_on_waitress() -> None:
    with servers.waitress_thread(connmw_django.get_wsgi_application()) as port:
        for url, reason, _ in CASES:
            resp, _, reader = wire.exchange(port, "GET", url, check_close=False)
            try:
                if reason is None:
                    assert resp.lines("connection") == [], url
                    assert wire.still_open(reader), url
                else:
                    assert resp.lines("connection") == ["close"], url
                    assert reader.closed(5.0), url
            finally:
                reader.sock.close()


def test_decorator_finds_the_request_after_other_arguments() -> None:
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    assert connmw_django._request_of(("self", request)) is request
