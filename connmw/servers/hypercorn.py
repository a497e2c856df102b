"""hypercorn.

Facts (measured; the conformance suite is the source of truth)
-----
- hypercorn (h11) honours an application's ``connection: close`` and closes.
- The idle timeout between requests is ``--keep-alive`` (``config.keep_alive_timeout``,
  default 5 s): the server closes a connection with no stream for that long. On
  HTTP/1 ``send.__self__`` is the stream, which holds the ``config``.
"""

from __future__ import annotations

from typing import Any

from .base import AsgiProfile, number

__all__ = ["HYPERCORN"]


class _HypercornProfile(AsgiProfile):
    __slots__ = ()
    idle_setting = "hypercorn --keep-alive"

    def idle_timeout(self, send: Any) -> float | None:
        config = getattr(getattr(send, "__self__", None), "config", None)
        return number(getattr(config, "keep_alive_timeout", None))


HYPERCORN = _HypercornProfile("hypercorn")
