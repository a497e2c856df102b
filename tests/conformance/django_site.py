"""A Django project in one module (settings, views, URLs) for the conformance suite.

Served by Django's own ``runserver`` (``DJANGO_SETTINGS_MODULE`` names this module
and ``WSGI_APPLICATION`` points at :data:`tests.conformance.django_wsgi.application`).
"""

from __future__ import annotations

from collections.abc import Iterator

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import path, re_path

import connmw
from tests.apps import STREAM_PARTS
from tests.conformance.frameworks import HOP_CONNECTION, HOP_HEADERS

SECRET_KEY = "conformance-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = __name__
INSTALLED_APPS: list[str] = []
# CommonMiddleware sets Content-Length: without it runserver closes every response.
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES: dict[str, object] = {}
USE_TZ = True
WSGI_APPLICATION = "tests.conformance.django_wsgi.application"
LOGGING_CONFIG = None


def index(request: HttpRequest, rest: str = "") -> HttpResponse:
    return HttpResponse(b"hello", content_type="text/plain")


def _parts() -> Iterator[bytes]:
    yield from STREAM_PARTS


def stream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(_parts(), content_type="text/plain")


def handler(request: HttpRequest) -> HttpResponse:
    connmw.request_close(request, "test handler")
    return HttpResponse(b"hello", content_type="text/plain")


def hop(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(b"hello", content_type="text/plain")
    response["Connection"] = HOP_CONNECTION
    for name, value in HOP_HEADERS:
        response[name] = value
    return response


urlpatterns = [
    path("", index),
    path("stream", stream),
    re_path(r"^rule/(?P<rest>.*)$", index),
    path("handler", handler),
    path("hop", hop),
]
