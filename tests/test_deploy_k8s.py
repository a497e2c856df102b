"""The README's Kubernetes recipe: readiness follows the drain, and the pod's deadline
leaves room for preStop and the grace (in-process: no server, no signal sent)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

import connmw
from connmw import ConnectionMiddleware

from .test_deploy import snippet


def run_app_snippet(monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], dict[str, Any]]:
    installed: dict[str, Any] = {}

    def drain_on_signal(target: Any, **kwargs: Any) -> None:  # record; no handler in the test process
        installed.update(target=target, **kwargs)

    monkeypatch.setattr(connmw, "drain_on_signal", drain_on_signal)
    namespace: dict[str, Any] = {}
    exec(compile(snippet("k8s-app"), "README.md:k8s-app", "exec"), namespace)
    return namespace, installed


def test_readiness_reports_the_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    namespace, installed = run_app_snippet(monkeypatch)
    middleware = namespace["middleware"]
    assert isinstance(middleware, ConnectionMiddleware)
    assert installed["target"] is middleware

    async def readyz() -> list[tuple[int, str | None]]:
        seen = []
        transport = httpx.ASGITransport(app=namespace["app"])
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            for _ in range(2):
                response = await client.get("/readyz")
                seen.append((response.status_code, response.headers.get("connection")))
                middleware.drain()
        return seen

    assert asyncio.run(readyz()) == [(200, None), (503, "close")]


def test_pod_deadline_covers_prestop_and_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    yaml = pytest.importorskip("yaml")
    pod = yaml.safe_load(snippet("k8s-pod"))["spec"]
    container = pod["containers"][0]
    sleep = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    _, installed = run_app_snippet(monkeypatch)
    # Leave at least as much again for requests still in flight when the grace ends.
    assert sleep + installed["grace"] * 2 <= pod["terminationGracePeriodSeconds"]
