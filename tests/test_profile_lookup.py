"""Finding the server behind an ASGI ``send``: what a method of an unknown object
leads to is searched once per class and function, and stays right."""

from __future__ import annotations

from typing import Any

from connmw.servers import UNKNOWN_ASGI, asgi_server_profile
from connmw.servers.hypercorn import HYPERCORN


class _Stream:
    """Stands for a hypercorn object: profiles are found by the module of the type."""

    async def send(self, message: Any) -> None:
        return None


_Stream.__module__ = "hypercorn.protocol.http_stream"


def _wrapper_class() -> Any:
    """A middleware outside connmw whose ``send`` is a method closing over the server's."""
    server_send = _Stream().send

    class Wrapper:
        async def send(self, message: Any) -> None:
            await server_send(message)

    return Wrapper


class _Plain:
    async def send(self, message: Any) -> None:
        return None


class _PlainChild(_Plain):
    pass


def test_a_method_of_an_unknown_object_is_searched_and_remembered() -> None:
    first, second = _wrapper_class(), _wrapper_class()
    for _ in range(3):  # the first lookup searches; the others come from what it found
        assert asgi_server_profile(first().send) is HYPERCORN
        assert asgi_server_profile(second().send) is HYPERCORN
        assert asgi_server_profile(_Plain().send) is UNKNOWN_ASGI
        assert asgi_server_profile(_PlainChild().send) is UNKNOWN_ASGI
    assert asgi_server_profile(_Stream().send) is HYPERCORN
