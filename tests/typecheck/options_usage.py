"""Type-checked, never run: how editors and mypy see connmw's options.

``tests/test_typed_options.py`` runs mypy on this file. A line ending in
``# error: CODE`` must get exactly that mypy error; every other line must be clean.
(The directory is excluded from the project's own mypy run, which must pass.)
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from starlette.applications import Starlette
from starlette.middleware import Middleware

from connmw import ConnectionMiddleware, Rule, WSGIConnectionMiddleware
from connmw.contrib.django import get_wsgi_application
from connmw.contrib.flask import install as flask_install
from connmw.contrib.starlette import install as starlette_install


async def asgi_app(scope: Any, receive: Any, send: Any) -> None: ...


def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
    return [b""]


app = Starlette()

# Correct use: clean.
app.add_middleware(ConnectionMiddleware, rules=[Rule("/downloads/*")], max_requests_per_connection=1000)
app.add_middleware(ConnectionMiddleware, keep_alive_timeout=5, close_on_status=range(500, 600))
Middleware(ConnectionMiddleware, rules=[Rule()], decision_header="x-connmw")
ConnectionMiddleware(asgi_app, max_connection_age=300, max_connection_age_jitter=60.5)
ConnectionMiddleware(asgi_app, keep_alive_timeout="auto")
WSGIConnectionMiddleware(wsgi_app, overload_soft_limit=10, overload_hard_limit=20)

starlette_install(app, max_requests_per_connection=10)
flask_install(Flask(__name__), rules=[{"path": "/export/*"}])
get_wsgi_application(keep_alive_timeout="auto")

# The framework helpers take the same options.
starlette_install(app, max_request_per_connection=10)  # error: call-arg
flask_install(Flask(__name__), keep_alive_timeout="5")  # error: arg-type
get_wsgi_application(rules="/export/*")  # error: arg-type

# A misspelled option, through add_middleware, Middleware and both constructors.
app.add_middleware(ConnectionMiddleware, max_request_per_connection=1000)  # error: call-arg
Middleware(ConnectionMiddleware, keep_alive=5)  # error: call-arg
ConnectionMiddleware(asgi_app, max_requests=1000)  # error: call-arg
WSGIConnectionMiddleware(wsgi_app, close_on_statuses=())  # error: call-arg

# A wrong type.
app.add_middleware(ConnectionMiddleware, max_requests_per_connection="1000")  # error: arg-type
app.add_middleware(ConnectionMiddleware, rules=Rule("/x"))  # error: arg-type
ConnectionMiddleware(asgi_app, keep_alive_timeout="5")  # error: arg-type
WSGIConnectionMiddleware(wsgi_app, strip_nominated_request_headers="yes")  # error: arg-type

# Options are keyword-only.
ConnectionMiddleware(asgi_app, [Rule()])  # error: call-arg
