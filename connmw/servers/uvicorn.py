"""uvicorn (h11 and httptools protocols).

Facts (measured; the conformance suite is the source of truth)
-----
- Both protocols honour an application's ``connection: close`` (sent once with
  h11, as given with httptools) and close the socket after the response.
- The httptools protocol sends chunked framing even to HTTP/1.0 clients when the
  application gives no length; its cycle (``send.__self__``) decides the framing
  from ``chunked_encoding`` and ``expected_content_length``.
- The idle timeout between requests is ``--timeout-keep-alive`` (default 5 s),
  copied from the config onto each protocol as ``timeout_keep_alive``; the timer
  starts when a response completes. The cycle reaches its protocol through
  ``on_response`` (a bound method of the protocol) until the application returns.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from .base import AsgiProfile, BodyHook, number

__all__ = ["UVICORN_H11", "UVICORN_HTTPTOOLS"]


class _UvicornProfile(AsgiProfile):
    __slots__ = ()
    idle_setting = "uvicorn --timeout-keep-alive"

    def idle_timeout(self, send: Any) -> float | None:
        cycle = getattr(send, "__self__", None)
        protocol = getattr(getattr(cycle, "on_response", None), "__self__", None)
        return number(getattr(protocol, "timeout_keep_alive", None))


class _HttptoolsProfile(_UvicornProfile):
    __slots__ = ()

    def close_delimit(self, send: Any) -> BodyHook | None:
        cycle = getattr(send, "__self__", None)
        if (
            cycle is None
            or not hasattr(cycle, "chunked_encoding")
            or not hasattr(cycle, "expected_content_length")
        ):
            return None
        # Raw body, no chunk markers: the connection's close delimits it.
        cycle.chunked_encoding = False

        def hook(message: MutableMapping[str, Any]) -> None:
            if message.get("type") == "http.response.body":
                body = message.get("body", b"")
                # uvicorn checks the bytes written against this count; keep it
                # one ahead until the last message so it never sees a mismatch.
                cycle.expected_content_length = len(body) + (1 if message.get("more_body", False) else 0)

        hook(  # the count starts at 0: make room for the first message
            {"type": "http.response.body", "body": b"", "more_body": True}
        )
        return hook


UVICORN_H11 = _UvicornProfile("uvicorn-h11")
UVICORN_HTTPTOOLS = _HttptoolsProfile("uvicorn-httptools")
