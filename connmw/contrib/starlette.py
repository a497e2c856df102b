"""Starlette and FastAPI integration: the :func:`close_connection` endpoint
decorator and the :class:`CloseConnection` FastAPI dependency.

Starlette::

    from starlette.routing import Route
    from connmw.contrib.starlette import close_connection

    @close_connection
    async def export(request): ...

    routes = [Route("/export", export)]

FastAPI (either form)::

    from fastapi import Depends
    from connmw.contrib.starlette import CloseConnection, close_connection

    @app.get("/export")
    @close_connection(reason="export")
    async def export(): ...

    @app.get("/report", dependencies=[Depends(CloseConnection("report"))])
    async def report(): ...

A route-level ``Middleware(ConnectionMiddleware, rules=[...])`` works too: under an
application-wide instance it adds its rules in front of the outer ones (the outer
instance still owns the connection); alone, it is a full middleware for its route.

Starlette is imported only when a decorator or dependency is created.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

from .._api import request_close

__all__ = ["CloseConnection", "close_connection"]

F = TypeVar("F", bound=Callable[..., Any])

#: The keyword the decorator adds to an endpoint's signature so FastAPI injects the request.
_INJECTED = "connmw_request"


def _request_class() -> type[Any]:
    from starlette.requests import Request

    return Request


class CloseConnection:
    """A FastAPI dependency: close the connection after this route's response.

    ``Depends(CloseConnection())`` or ``Depends(CloseConnection("export"))``, in a
    route's ``dependencies=[...]`` or a router's.
    """

    __slots__ = ("__signature__", "reason")

    def __init__(self, reason: str | None = None) -> None:
        self.reason = reason
        request = inspect.Parameter(
            "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=_request_class()
        )
        self.__signature__ = inspect.Signature([request], return_annotation=None)

    def __call__(self, request: Any) -> None:
        request_close(request, self.reason or "dependency")

    def __repr__(self) -> str:
        return f"CloseConnection({self.reason!r})"


def _find_request(args: tuple[Any, ...], kwargs: dict[str, Any], injected: bool) -> Any:
    if injected:
        request = kwargs.pop(_INJECTED, None)
        if request is not None:
            return request
    request_class = _request_class()
    for value in (*args, *kwargs.values()):
        if isinstance(value, request_class):
            return value
    raise TypeError("connmw close_connection: the decorated endpoint got no Request")


def _with_request(func: Callable[..., Any], wrapper: Callable[..., Any]) -> bool:
    """Give ``wrapper`` the signature of ``func`` plus a keyword-only Request
    parameter, so FastAPI passes the request along (Starlette ignores it).
    False when the signature cannot be read or already takes the request."""
    try:
        sig = inspect.signature(func, eval_str=True)
    except (NameError, TypeError, ValueError):
        return False
    request_class = _request_class()
    if _INJECTED in sig.parameters:
        return False
    for p in sig.parameters.values():
        # FastAPI hands the request to one parameter only: use the endpoint's own.
        if isinstance(p.annotation, type) and issubclass(p.annotation, request_class):
            return False
    params = list(sig.parameters.values())
    extra = inspect.Parameter(_INJECTED, inspect.Parameter.KEYWORD_ONLY, annotation=request_class)
    at = len(params)
    for i, p in enumerate(params):
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            at = i
            break
    params.insert(at, extra)
    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return True


@overload
def close_connection(endpoint: F, /) -> F: ...
@overload
def close_connection(*, reason: str | None = None) -> Callable[[F], F]: ...


def close_connection(endpoint: F | None = None, /, *, reason: str | None = None) -> F | Callable[[F], F]:
    """Close the connection after every response of this endpoint.

    ``@close_connection`` or ``@close_connection(reason="export")``, below the
    route decorator. Works for Starlette endpoints (``request`` first) and for
    FastAPI path operations with any signature, sync or async. The close is
    requested before the endpoint runs, so it holds for streamed responses too.
    """

    def decorate(func: F) -> F:
        why = reason or f"endpoint {func.__qualname__}"
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_endpoint(*args: Any, **kwargs: Any) -> Any:
                request_close(_find_request(args, kwargs, injected), why)
                return await func(*args, **kwargs)

            injected = _with_request(func, async_endpoint)
            return async_endpoint  # type: ignore[return-value]

        @functools.wraps(func)
        def sync_endpoint(*args: Any, **kwargs: Any) -> Any:
            request_close(_find_request(args, kwargs, injected), why)
            return func(*args, **kwargs)

        injected = _with_request(func, sync_endpoint)
        return sync_endpoint  # type: ignore[return-value]

    if endpoint is not None:
        return decorate(endpoint)
    return decorate
