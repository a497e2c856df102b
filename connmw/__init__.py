"""connmw: manage the HTTP ``Connection`` header of WSGI and ASGI applications.

Honours the client's ``Connection: close`` and HTTP/1.0 rules, closes connections
on purpose (per route, method, status, handler code, request count, age, load,
drain), advertises keep-alive honestly, keeps HTTP/2 and HTTP/3 responses clean of
connection-specific headers, and makes each announced close real on the server.
"""

from __future__ import annotations

from . import _engine
from ._api import request_close
from ._decide import Decision, decide
from ._engine import RequestFacts
from ._policy import DEFAULT_CLOSE_ON_STATUS, Options, Reason, Rule
from ._pressure import EventLoopLag
from ._signals import SignalDrain, drain_on_signal
from .asgi import ConnectionMiddleware
from .wsgi import WSGIConnectionMiddleware

__version__ = "0.1.0"

#: True when the optional compiled build (mypyc) is installed, False for the pure-Python one.
COMPILED = not _engine.__file__.endswith(".py")

__all__ = [
    "COMPILED",
    "DEFAULT_CLOSE_ON_STATUS",
    "ConnectionMiddleware",
    "Decision",
    "EventLoopLag",
    "Options",
    "Reason",
    "RequestFacts",
    "Rule",
    "SignalDrain",
    "WSGIConnectionMiddleware",
    "__version__",
    "decide",
    "drain_on_signal",
    "request_close",
]
