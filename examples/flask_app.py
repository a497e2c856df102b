"""A Flask application whose connections connmw manages per route.

Run it under a real server, from the ``examples`` directory::

    pip install "connmw[flask]" waitress
    waitress-serve --port=8000 flask_app:app

Then watch the ``Connection`` header (``X-Connmw`` says why)::

    curl -sv http://127.0.0.1:8000/downloads/report.csv   # Connection: close (rule)
    curl -sv http://127.0.0.1:8000/export                 # Connection: close (decorator)
    curl -sv http://127.0.0.1:8000/search                 # 400, connection kept (rule close=False)
"""

from flask import Flask, request

from connmw import request_close
from connmw.contrib.flask import close_connection, install

app = Flask(__name__)
# Plain data, so it can come from a TOML/YAML file or the environment as well.
app.config["CONNMW"] = {
    "rules": [
        {"path": "/downloads/*"},  # big one-off transfers: close afterwards
        {"path": "/healthz"},  # load-balancer probes open a new connection each time
        {"path": "/search", "status": 400, "close": False},  # a bad query is not a broken stream
    ],
    "max_requests_per_connection": 100,  # recycle connections so load rebalances
    "keep_alive_timeout": 5,  # Keep-Alive: timeout=5, max=<remaining>
    "decision_header": "x-connmw",  # debugging aid: why a connection closed (off by default)
}
middleware = install(app)  # wraps app.wsgi_app; middleware.drain() before shutdown


@app.get("/")
def index() -> str:
    return "hello\n"


@app.get("/downloads/<name>")
def download(name: str) -> str:
    return f"contents of {name}\n"


@app.get("/healthz")
def healthz() -> dict[str, bool]:
    return {"ok": True}


@app.get("/search")
def search() -> tuple[dict[str, str], int]:
    q = request.args.get("q", "")
    if not q:
        return {"error": "q is required"}, 400
    return {"q": q}, 200


@app.get("/export")
@close_connection(reason="export")
def export() -> str:
    return "a,b,c\n"


@app.post("/logout")
def logout() -> str:
    request_close(reason="logout")  # no argument needed inside a Flask request
    return "bye\n"


if __name__ == "__main__":
    from waitress import serve

    serve(app, port=8000)
