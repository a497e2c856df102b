"""Settings of the example project: just enough Django, plus ``CONNMW``."""

SECRET_KEY = "example-only-not-secret"  # an example project: not a secret
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "exampleproject.urls"
WSGI_APPLICATION = "exampleproject.wsgi.application"
INSTALLED_APPS: list[str] = []
# CommonMiddleware sets Content-Length, so responses can keep the connection on
# every server (waitress, for one, closes after a response of unknown length).
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

# connmw: the same option names as connmw.Options; read when wsgi.py / asgi.py build
# the application, and a bad value stops the start-up with ImproperlyConfigured.
CONNMW = {
    "rules": [
        {"path": "/downloads/*"},  # big one-off transfers: close afterwards
        {"path": "/healthz"},  # load-balancer probes open a new connection each time
        {"path": "/search", "status": 400, "close": False},  # a bad query is not a broken stream
    ],
    "max_requests_per_connection": 100,  # recycle connections so load rebalances
    "keep_alive_timeout": 5,  # Keep-Alive: timeout=5, max=<remaining>
    "decision_header": "x-connmw",  # debugging aid: why a connection closed (off by default)
}
