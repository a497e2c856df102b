"""In-process ASGI helpers: hand-built scopes and a capturing send."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
App = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]


def make_scope(
    path: str = "/",
    *,
    method: str = "GET",
    http_version: str = "1.1",
    headers: list[tuple[bytes, bytes]] | None = None,
    client: tuple[str, int] | None = ("127.0.0.1", 50000),
    root_path: str = "",
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": http_version,
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": headers or [(b"host", b"test")],
        "client": client,
        "server": ("127.0.0.1", 8000),
    }


def responder(
    status: int = 200,
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes | list[bytes] = b"hello",
) -> App:
    """An app that answers with exactly these headers and body parts."""
    parts = body if isinstance(body, list) else [body]

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": list(headers or [])})
        for i, part in enumerate(parts):
            await send({"type": "http.response.body", "body": part, "more_body": i < len(parts) - 1})

    return app


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def call(app: App, scope: MutableMapping[str, Any]) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, _receive, send)
    return sent


def header_lines(messages: list[Message], name: bytes) -> list[bytes]:
    start = messages[0]
    assert start["type"] == "http.response.start"
    return [v for k, v in start["headers"] if k.lower() == name]


def body_of(messages: list[Message]) -> bytes:
    return b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
