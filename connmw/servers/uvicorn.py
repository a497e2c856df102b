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
- HTTP/2 (``--http zttp --http2``, uvicorn >= 0.54 with the ``zttp`` package):
  ``send.__self__`` is the stream's cycle (``.stream.stream_id``); its
  ``.on_response.__self__`` is the protocol (``.cycles`` until a stream's response
  is complete, ``.transport``, ``.flush()``, ``.events()`` over zttp's events, which
  include PING acknowledgements). Frames written to the transport between zttp's
  own writes are whole. A cycle marked ``disconnected`` writes nothing when its
  application returns without a response.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from .base import AsgiProfile, BodyHook, number
from .h2 import H2Handle

__all__ = ["UVICORN_H11", "UVICORN_H2", "UVICORN_HTTPTOOLS"]


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


class _UvicornH2(H2Handle):
    __slots__ = ()

    def locate(self, send: Any) -> tuple[Any, int] | None:
        cycle = getattr(send, "__self__", None)
        protocol = getattr(getattr(cycle, "on_response", None), "__self__", None)
        stream_id = getattr(getattr(cycle, "stream", None), "stream_id", None)
        if protocol is None or not isinstance(stream_id, int) or not hasattr(protocol, "cycles"):
            return None
        return protocol, stream_id

    def alive(self, conn: Any) -> bool:
        transport = conn.transport
        return transport is not None and not transport.is_closing()

    def highest_stream_id(self, conn: Any) -> int:
        return max(conn.cycles, default=0)

    def pending(self, conn: Any, last_id: int) -> bool:
        return any(sid <= last_id for sid in conn.cycles)

    def write(self, conn: Any, data: bytes) -> None:
        conn.flush()
        conn.transport.write(data)

    def watch_ping(self, conn: Any, opaque: bytes, callback: Callable[[], None]) -> None:
        found: dict[bytes, Callable[[], None]] | None = conn.__dict__.get("_connmw_pings")
        if found is None:
            watched: dict[bytes, Callable[[], None]] = {}
            conn.__dict__["_connmw_pings"] = watched
            original = conn.events

            def events() -> Iterator[Any]:
                for event in original():
                    if type(event).__name__ == "Ping" and getattr(event, "ack", False):
                        acked = watched.pop(bytes(getattr(event, "data", b"")), None)
                        if acked is not None:
                            acked()
                    yield event

            conn.events = events
            found = watched
        found[opaque] = callback

    def refuse(self, send: Any) -> None:
        send.__self__.disconnected = True

    def close(self, conn: Any) -> None:
        conn.transport.close()


UVICORN_H2 = _UvicornProfile("uvicorn-h2", h2=_UvicornH2())
