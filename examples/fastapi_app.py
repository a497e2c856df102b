"""A FastAPI application whose connections connmw manages per route.

Run it under a real server, from the ``examples`` directory::

    pip install "connmw[starlette]" fastapi uvicorn
    uvicorn fastapi_app:app --port 8000

Then watch the ``Connection`` header (``x-connmw`` says why)::

    curl -sv http://127.0.0.1:8000/downloads/report.csv   # Connection: close (rule)
    curl -sv http://127.0.0.1:8000/export                 # Connection: close (decorator)
    curl -sv http://127.0.0.1:8000/search                 # 400, connection kept (rule close=False)
    curl -sv http://127.0.0.1:8000/boom                   # 500, Connection: close (close_on_status)
    curl -sv http://127.0.0.1:8000/export/x               # 422, Connection: close (decorated route)

On SIGTERM the server keeps serving for 2 s, telling every keep-alive client to close.
"""

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

import connmw
from connmw import Rule, request_close
from connmw.contrib.starlette import CloseConnection, close_connection, install

app = FastAPI()
# Outermost, outside Starlette's error middleware: it sees every response, 500s included.
install(
    app,
    rules=[
        Rule("/downloads/*"),  # big one-off transfers: close afterwards
        Rule("/healthz"),  # load-balancer probes open a new connection each time
        Rule("/search", status=400, close=False),  # a bad query is not a broken stream
    ],
    max_requests_per_connection=100,  # recycle connections so load rebalances
    keep_alive_timeout=5,  # Keep-Alive: timeout=5, max=<remaining>
    decision_header="x-connmw",  # debugging aid: why a connection closed (off by default)
)
signal_drain = connmw.drain_on_signal(app, grace=2)  # drain before the server stops


@app.get("/")
async def index() -> dict[str, str]:
    return {"hello": "world"}


@app.get("/downloads/{name}")
async def download(name: str) -> PlainTextResponse:
    return PlainTextResponse(f"contents of {name}\n")


@app.get("/healthz")
async def healthz() -> dict[str, bool]:
    return {"ok": True}


@app.get("/search")
async def search(q: str = "") -> JSONResponse:
    if not q:
        return JSONResponse({"error": "q is required"}, status_code=400)
    return JSONResponse({"q": q, "hits": []})


@app.get("/export")
@close_connection(reason="export")
async def export() -> dict[str, list[int]]:
    return {"rows": [1, 2, 3]}


@app.get("/export/{year}")
@close_connection(reason="export")  # every response closes, the 422 of a bad year included
async def export_year(year: int) -> dict[str, int]:
    return {"year": year}


@app.get("/boom")
async def boom() -> None:
    raise RuntimeError("an unhandled error: Starlette answers 500")


@app.get("/report", dependencies=[Depends(CloseConnection("report"))])
def report() -> dict[str, str]:
    return {"report": "done"}


@app.post("/logout")
async def logout(request: Request) -> dict[str, str]:
    request_close(request, "logout")
    return {"bye": "now"}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, port=8000)
