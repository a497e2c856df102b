"""Suite-wide rules: markers that mean what they say, and no silent skips in CI.

- ``@pytest.mark.tools("haproxy", "wrk")``: the test needs these programs on PATH. Without
  them it is skipped, saying how to install them; under ``CI=true`` (``.ci/run`` installs
  them) it fails instead, so a broken install cannot turn CI green by skipping.
- ``@pytest.mark.server``: the test starts a server. A test without the marker that
  listens on a socket or waits for a server process's port fails, so
  ``pytest -m "not server"`` stays the fast tier.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest

from tests import servers

#: Set by CI (.ci/run runs with CI=true): what CI is meant to have must be there.
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(why: str) -> NoReturn:
    """Skip a test whose tool is missing here; fail it in CI, which installs the tool."""
    if IN_CI:
        pytest.fail(f"{why}; CI installs it (.ci/run), so it must be here", pytrace=False)
    pytest.skip(why)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("tools"):
        missing = [tool for tool in marker.args if shutil.which(tool) is None]
        if missing:
            unavailable(
                f"{' and '.join(missing)} not installed (Debian: apt-get install {' '.join(missing)})"
            )


@pytest.fixture(autouse=True)
def _event_loop_policy() -> Iterator[None]:
    """Older uvicorn (0.30) sets uvloop's event loop policy for the whole process whenever
    it starts (the demo, the probe's servers, in-process runners): each test gets the
    process's own policy back, so a later asyncio.run() is not silently uvloop's."""
    policy = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(policy)


_listen = socket.socket.listen
_wait_for_port = servers.wait_for_port


@pytest.fixture(autouse=True)
def _servers_are_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test without the ``server`` marker must not listen on a socket."""
    if request.node.get_closest_marker("server") is not None:
        yield
        return
    listened: list[Any] = []

    def listen(self: socket.socket, *args: Any) -> None:
        listened.append(self.getsockname())
        _listen(self, *args)

    def wait_for_port(port: int, *args: Any, **kwargs: Any) -> None:
        listened.append(("a server process", port))
        _wait_for_port(port, *args, **kwargs)

    socket.socket.listen = listen  # type: ignore[method-assign,assignment]
    servers.wait_for_port = wait_for_port
    try:
        yield
    finally:
        socket.socket.listen = _listen  # type: ignore[method-assign]
        servers.wait_for_port = _wait_for_port
    assert not listened, (
        f"{request.node.nodeid} listens on {listened} (starts a server) but is not marked @pytest.mark.server"
    )
