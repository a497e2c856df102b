"""The WSGI application of :mod:`tests.conformance.django_site`, wrapped with connmw."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

from connmw import WSGIConnectionMiddleware
from tests.apps import app_options

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.conformance.django_site")

application = WSGIConnectionMiddleware(get_wsgi_application(), **app_options())
