"""Which build runs: the pure-Python package or the optional compiled one (mypyc).

CI runs the whole suite on both and names the one it installed in ``TEST_CONNMW_BUILD``
(``pure`` or ``compiled``), so a job cannot test the other build by mistake.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

import pytest

import connmw
from connmw.cli import BUILD, main

ROOT = Path(__file__).resolve().parent.parent


def compiled_modules() -> list[str]:
    """The modules the mypyc build hook compiles, from pyproject.toml."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")  # no tomllib on Python 3.10
    hook = text.split("[tool.hatch.build.targets.wheel.hooks.mypyc]", 1)[1]
    include = hook.split("include = [", 1)[1].split("]", 1)[0]
    return [path.removesuffix(".py").replace("/", ".") for path in re.findall(r'"([^"]+)"', include)]


def test_compiled_flag_names_the_running_build() -> None:
    modules = compiled_modules()
    assert "connmw._engine" in modules
    extension = [name for name in modules if not str(importlib.import_module(name).__file__).endswith(".py")]
    # All of the listed modules are compiled, or none: never a mix.
    assert extension == (modules if connmw.COMPILED else [])
    expected = os.environ.get("TEST_CONNMW_BUILD")
    if expected is not None:
        assert ("compiled" if connmw.COMPILED else "pure") == expected


def test_version_names_the_build(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == f"connmw {connmw.__version__} ({BUILD[connmw.COMPILED]})"


def test_public_middleware_classes_can_be_subclassed() -> None:
    # The compiled build keeps them ordinary classes (a native class refuses Python subclasses).
    class Mine(connmw.ConnectionMiddleware):
        pass

    class MineWSGI(connmw.WSGIConnectionMiddleware):
        pass

    async def app(scope: object, receive: object, send: object) -> None:
        pass

    def wsgi_app(environ: object, start_response: object) -> list[bytes]:
        return []

    assert isinstance(Mine(app, max_requests_per_connection=2), connmw.ConnectionMiddleware)
    assert isinstance(MineWSGI(wsgi_app), connmw.WSGIConnectionMiddleware)
