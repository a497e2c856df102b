"""waitress.

Facts (measured; the conformance suite is the source of truth)
-----
- waitress raises ``AssertionError`` (a 500) on any hop-by-hop header from the
  application; its task (``write.__self__``) has ``set_close_on_finish()``, which
  also writes ``Connection: close``.
- For HTTP/1.0 keep-alive requests the request's ``CONNECTION`` header must say
  ``close`` too, or waitress adds ``Keep-Alive`` next to the close.
- waitress closes an HTTP/1.1 response it has to chunk.
- An idle connection is closed once it has been quiet longer than
  ``channel_timeout`` (default 120 s), checked every ``cleanup_interval`` (30 s):
  never before ``channel_timeout``. The task reaches it as ``channel.adj``.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from .base import WsgiServer, number

__all__ = ["WAITRESS"]


class _Waitress(WsgiServer):
    __slots__ = ()
    name = "waitress"
    http10_keep_alive = True
    idle_setting = "waitress channel_timeout"

    def idle_timeout(self, handle: Any) -> float | None:
        adj = getattr(getattr(handle, "channel", None), "adj", None)
        return number(getattr(adj, "channel_timeout", None))

    def close(self, handle: Any, environ: MutableMapping[str, Any]) -> bool:
        request = getattr(handle, "request", None)
        headers = getattr(request, "headers", None)
        if isinstance(headers, dict) and "CONNECTION" in headers:
            headers["CONNECTION"] = "close"
        handle.set_close_on_finish()
        return True

    def advertise(self, handle: Any, value: str) -> bool:
        # waitress closes an HTTP/1.1 response it has to chunk; it knows whether it
        # will only when the body starts, so Keep-Alive is promised only when the
        # application gave the length itself.
        headers = handle.response_headers
        if not any(name.lower() == "content-length" for name, _ in headers):
            return False
        headers.append(("Keep-Alive", value))
        return True


WAITRESS = _Waitress()
