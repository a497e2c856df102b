"""ASGI entry point: Django's application, wrapped by connmw with ``settings.CONNMW``."""

import os

from connmw.contrib.django import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exampleproject.settings")

application = get_asgi_application()
