"""daphne (Twisted).

Facts (measured; the conformance suite is the source of truth)
-----
- daphne hands ``send`` over as ``functools.partial(server.handle_reply, request)``.
- Twisted decides persistence from the request alone (``channel.persistent``), so
  an application's ``Connection: close`` goes out but the connection stays open;
  clearing ``channel.persistent`` before the response ends makes Twisted close.
- When the client sent ``close``, Twisted has already put its own
  ``Connection: close`` in ``request.responseHeaders`` (a second line would follow).
- The idle timeout between requests is Twisted's ``HTTPFactory.timeOut`` (60 s;
  daphne does not change it; its ``--http-timeout`` bounds a response, not idle
  time), copied onto each channel; while a request is being answered the
  channel's own ``timeOut`` is suspended (None), so it is read from the factory,
  ``request.channel.factory.timeOut``.
"""

from __future__ import annotations

from typing import Any

from .base import AsgiProfile, number, reachable

__all__ = ["DAPHNE"]


class _DaphneProfile(AsgiProfile):
    __slots__ = ()
    idle_setting = "Twisted HTTPFactory.timeOut"

    def idle_timeout(self, send: Any) -> float | None:
        for request in reachable(send):
            factory = getattr(getattr(request, "channel", None), "factory", None)
            if factory is not None:
                return number(getattr(factory, "timeOut", None))
        return None

    def close(self, send: Any) -> bool:
        for request in reachable(send):
            channel = getattr(request, "channel", None)
            headers = getattr(request, "responseHeaders", None)
            if channel is not None and hasattr(channel, "persistent") and headers is not None:
                # Twisted's own line would duplicate connmw's.
                headers.removeHeader(b"connection")
                channel.persistent = False
                return True
        return False


DAPHNE = _DaphneProfile("daphne")
