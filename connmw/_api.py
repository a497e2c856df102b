"""``request_close``: handler code asks to close the connection after its response."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._engine import RequestFacts, logger

__all__ = ["request_close"]

_HOW_TO_INSTALL = (
    "connmw.request_close: this request did not pass through connmw. Wrap the application "
    "with connmw.ConnectionMiddleware (ASGI: app = ConnectionMiddleware(app) or "
    "app.add_middleware(ConnectionMiddleware)) or connmw.WSGIConnectionMiddleware (WSGI: "
    "app.wsgi_app = WSGIConnectionMiddleware(app.wsgi_app))."
)


def _facts_of(target: Any) -> RequestFacts | None:
    if target is None:
        target = _flask_environ()
        if target is None:
            return None
    if isinstance(target, Mapping):
        facts = target.get("connmw")
        return facts if isinstance(facts, RequestFacts) else None
    for attr in ("scope", "environ", "META"):
        inner = getattr(target, attr, None)
        if isinstance(inner, Mapping):
            facts = inner.get("connmw")
            if isinstance(facts, RequestFacts):
                return facts
    return None


def _flask_environ() -> Mapping[str, Any] | None:
    try:
        import flask
    except ImportError:
        return None
    if not flask.has_request_context():
        return None
    environ: Mapping[str, Any] = flask.request.environ
    return environ


def request_close(target: Any = None, reason: str | None = None) -> bool:
    """Close the connection after the response to this request.

    :param target: the ASGI scope or WSGI environ, a Starlette/FastAPI ``Request``, a
        Flask ``request`` (or nothing, inside a Flask request context) or a Django
        ``HttpRequest``.
    :param reason: free text kept on the request facts (``facts.handler_reason``) for
        ``on_decision`` and the log; the decision's reason is ``"handler"``.
    :returns: True when it takes effect; False when the response has already started
        (too late: a warning is logged).
    :raises RuntimeError: when the request did not pass through connmw.
    :raises TypeError: when ``reason`` is not a str.
    """
    if reason is not None and not isinstance(reason, str):
        raise TypeError(f"request_close reason must be a str or None, not {reason!r}")
    facts = _facts_of(target)
    if facts is None:
        raise RuntimeError(_HOW_TO_INSTALL)
    if facts.decision is not None:
        logger.warning(
            "connmw.request_close(%s %s) came after the response started: too late to close",
            facts.method,
            facts.path,
        )
        return False
    facts.handler_reason = reason or "handler"
    return True
