"""A Starlette application whose connections connmw manages per route.

Run it under a real server, from the ``examples`` directory::

    pip install "connmw[starlette]" uvicorn
    uvicorn starlette_app:app --port 8000

Then watch the ``Connection`` header (``x-connmw`` says why)::

    curl -sv http://127.0.0.1:8000/downloads/report.csv   # Connection: close (rule)
    curl -sv http://127.0.0.1:8000/export                 # Connection: close (decorator)
    curl -sv -X POST http://127.0.0.1:8000/upload         # Connection: close (route-level middleware)
"""

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

import connmw
from connmw import ConnectionMiddleware, Rule, request_close
from connmw.contrib.starlette import close_connection, install


async def index(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello\n")


async def download(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"contents of {request.path_params['name']}\n")


@close_connection(reason="export")
async def export(request: Request) -> PlainTextResponse:
    return PlainTextResponse("a,b,c\n")


async def upload(request: Request) -> PlainTextResponse:
    body = await request.body()
    return PlainTextResponse(f"got {len(body)} bytes\n")


async def logout(request: Request) -> PlainTextResponse:
    request_close(request, "logout")  # works from any depth: routers, mounts
    return PlainTextResponse("bye\n")


# The route-level middleware below sits under the application-wide one installed
# further down: it adds its rule (close after every upload) in front of the
# application's rules.
upload_policy = [Middleware(ConnectionMiddleware, rules=[Rule(methods="POST")])]

app = Starlette(
    routes=[
        Route("/", index),
        Route("/downloads/{name}", download),
        Route("/export", export),
        Route("/upload", upload, methods=["POST"], middleware=upload_policy),
        Mount("/account", routes=[Route("/logout", logout, methods=["POST"])]),
    ],
)
# Outermost, outside Starlette's error middleware: it sees every response, 500s included.
install(
    app,
    rules=[Rule("/downloads/*")],  # close after every download
    max_requests_per_connection=100,
    decision_header="x-connmw",  # debugging aid (off by default)
)
signal_drain = connmw.drain_on_signal(app, grace=2)  # drain on SIGTERM before the server stops


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, port=8000)
