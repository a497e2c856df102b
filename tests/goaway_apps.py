"""The application the HTTP/2 GOAWAY tests run: each response's body is its path
(``/slow/...`` after 0.3 s; ``/hang/...`` sends its headers, then its body 5 s later).

Run by a server in another process (daphne), it is configured from the
environment: ``CONNMW_*`` variables are connmw's options (``Options.from_env``),
``GOAWAY_SEEN_LOG`` names a file that gets one line per request handed to the
application (to prove none is handed over twice), and ``GOAWAY_DRAIN_SIGNAL``
installs ``connmw.drain_on_signal`` on that signal number with a 0.5 s window,
``GOAWAY_LOG`` names a file that gets connmw's log lines.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
from typing import TYPE_CHECKING

import connmw
from connmw import ConnectionMiddleware

if TYPE_CHECKING:
    from connmw.asgi import Receive, Scope, Send


class Echo:
    """Answers every request with its path, after ``delay`` seconds; counts what it saw."""

    def __init__(self, delay: float = 0.002, log: str | None = None) -> None:
        self.delay = delay
        self.seen: collections.Counter[str] = collections.Counter()
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        self.seen[path] += 1
        if self.log is not None:
            fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, path.encode() + b"\n")
            finally:
                os.close(fd)
        if path.startswith("/slow/"):
            await asyncio.sleep(0.3)
        elif path.startswith("/hang/"):  # a long-lived stream: headers now, the body late
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await asyncio.sleep(5)
            await send({"type": "http.response.body", "body": path.encode()})
            return
        elif self.delay:
            await asyncio.sleep(self.delay)
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": path.encode()})


def from_env() -> ConnectionMiddleware:
    log = os.environ.get("GOAWAY_LOG")
    if log:
        logging.getLogger("connmw").addHandler(logging.FileHandler(log))
    options = connmw.Options.from_env()
    middleware = ConnectionMiddleware(Echo(log=os.environ.get("GOAWAY_SEEN_LOG")), **options.as_kwargs())
    sig = os.environ.get("GOAWAY_DRAIN_SIGNAL")
    if sig:
        # A long grace: the test stops the server before the signal is handed over.
        connmw.drain_on_signal(middleware, grace=60, window=0.5, signals=(signal.Signals(int(sig)),))
    return middleware


app = from_env()
#: The same application without connmw.
bare = Echo()
