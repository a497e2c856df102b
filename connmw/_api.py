"""``request_close``: handler code asks to close the connection after its response.

The request facts live in the ASGI scope / WSGI environ under the ``"connmw"`` key.
Routers and mounts pass the same scope on (or a copy, which shares the facts), so
the call works however deep the handler sits below the middleware.

Facts
-----
- A WSGI application mounted in an ASGI one gets an environ built from the scope,
  without connmw's key. a2wsgi's ``WSGIMiddleware`` puts the scope itself in
  ``environ["asgi.scope"]``. Starlette's ``WSGIMiddleware`` does not; it calls the
  application in a worker thread from ``WSGIResponder.wsgi(environ, start_response)``,
  whose ``self.scope`` is the scope: the frame that handed this very environ to the
  application holds it. Both are looked at only when the environ has no facts, so
  the common path pays nothing.
- Where no connmw is on the path (Django's test ``Client``, a view called directly),
  the call changes nothing and returns False: asking to close never turns a request
  into an error. A warning with the install hint is logged once per process.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import FrameType
from typing import Any

from ._engine import Engine, RequestFacts, logger

__all__ = ["join_outer", "request_close"]

_HOW_TO_INSTALL = (
    "connmw.request_close: this request did not pass through connmw, so the connection "
    "cannot be closed (the call returns False; this is logged once). Install it around the "
    "whole application: ASGI app = connmw.ConnectionMiddleware(app) (Starlette/FastAPI: "
    "connmw.contrib.starlette.install(app)); "
    "WSGI app.wsgi_app = connmw.WSGIConnectionMiddleware(app.wsgi_app) (Flask: "
    "connmw.contrib.flask.install(app)); Django: application = "
    "connmw.contrib.django.get_wsgi_application() in wsgi.py (get_asgi_application() in asgi.py)."
)

_NO_CONTEXT = (
    "connmw.request_close() without a target works only inside a Flask request; pass the "
    "ASGI scope, the WSGI environ or the framework's request object"
)

#: How many frames are looked at for the bridge that called a mounted WSGI application.
_MAX_FRAMES = 64

#: Whether the install hint was logged (once per process).
_warned: list[bool] = []


def _facts_in(mapping: Mapping[str, Any]) -> RequestFacts | None:
    facts = mapping.get("connmw")
    if isinstance(facts, RequestFacts):
        return facts
    if facts is None and "wsgi.version" in mapping:
        return _bridged(mapping)
    return None


def _bridged(environ: Mapping[str, Any]) -> RequestFacts | None:
    """The facts of the ASGI request a WSGI-in-ASGI bridge turned into ``environ``."""
    scope = environ.get("asgi.scope")  # a2wsgi
    if isinstance(scope, Mapping):
        facts = scope.get("connmw")
        return facts if isinstance(facts, RequestFacts) else None
    frame: FrameType | None = sys._getframe(2)
    for _ in range(_MAX_FRAMES):
        if frame is None:
            break
        local = frame.f_locals
        if local.get("environ") is environ:
            owner = local.get("self")
            scope = local.get("scope", getattr(owner, "scope", None))
            if isinstance(scope, Mapping):
                facts = scope.get("connmw")
                if isinstance(facts, RequestFacts):
                    return facts
        frame = frame.f_back
    return None


def _facts_of(target: Any) -> RequestFacts | None:
    if target is None:
        target = _flask_environ()
        if target is None:
            return None
    if isinstance(target, Mapping):
        # An ASGI scope, a WSGI environ, or a Starlette Request (a Mapping over its scope).
        return _facts_in(target)
    known = False
    for attr in ("scope", "environ", "META"):
        inner = getattr(target, attr, None)
        if isinstance(inner, Mapping):
            facts = _facts_in(inner)
            if facts is not None:
                return facts
            known = True
    if known:
        return None
    raise RuntimeError(
        f"connmw.request_close got a {type(target).__name__}, not an ASGI scope, a WSGI environ "
        "or a Starlette, FastAPI, Flask or Django request. " + _HOW_TO_INSTALL
    )


def _flask_environ() -> Mapping[str, Any] | None:
    try:
        import flask
    except ImportError:  # pragma: no cover - flask is in the test extra
        return None
    if not flask.has_request_context():
        return None
    environ: Mapping[str, Any] = flask.request.environ
    return environ


def request_close(target: Any = None, reason: str | None = None) -> bool:
    """Close the connection after the response to this request.

    :param target: the ASGI scope or WSGI environ, a Starlette/FastAPI ``Request``, a
        Flask ``request`` (or nothing, inside a Flask request context) or a Django
        ``HttpRequest`` (WSGI or ASGI).
    :param reason: free text kept on the request facts (``facts.handler_reason``) for
        ``on_decision`` and the log; the decision's reason is ``"handler"``.
    :returns: True when it takes effect; False when the response has already started
        (too late: a warning is logged) or when no connmw is on the request's path
        (Django's test ``Client``, a view called directly, no target outside a Flask
        request: the install hint is logged once), and always on HTTP/2 and HTTP/3:
        a multiplexed connection carries other requests, so one handler's wish never
        sends a GOAWAY (the load options and ``drain()`` do).
    :raises RuntimeError: when ``target`` is not a request of a known kind.
    :raises TypeError: when ``reason`` is not a str.
    """
    if reason is not None and not isinstance(reason, str):
        raise TypeError(f"request_close reason must be a str or None, not {reason!r}")
    facts = _facts_of(target)
    if facts is None:
        if not _warned:
            _warned.append(True)
            logger.warning(
                "%s", _HOW_TO_INSTALL if target is not None else _HOW_TO_INSTALL + " " + _NO_CONTEXT
            )
        return False
    if facts.version >= 20:
        return False
    if facts.decision is not None:
        logger.warning(
            "connmw.request_close(%s %s) came after the response started: too late to close",
            facts.method,
            facts.path,
        )
        return False
    facts.handler_reason = reason or "handler"
    return True


def join_outer(engine: Engine, outer: object) -> None:
    """A nested instance (a route-level ``Middleware``, a mounted sub-application
    wrapped again) met a request an outer instance already handles.

    The outermost instance owns the connection and takes the decision; the nested
    one puts its own matching rules in front of the outer's on the shared
    :class:`~connmw.RequestFacts`, so the more specific configuration is tried first.
    Its other options cannot apply to a connection it does not own: a warning
    names them once.
    """
    if not isinstance(outer, RequestFacts) or outer.decision is not None:
        return
    if engine.options.rules:
        found = engine.match_rules(outer.method, outer.path)
        if found:
            outer.rules = found + outer.rules
    if "nested" not in engine._warned:
        ignored = sorted(set(engine.options.as_kwargs()) - {"rules"})
        if ignored:
            engine.warn_once(
                "nested",
                "connmw: this middleware is nested inside another connmw middleware, which "
                "manages the connection; only its rules apply, not %s",
                ", ".join(ignored),
            )
        else:
            engine._warned.add("nested")
