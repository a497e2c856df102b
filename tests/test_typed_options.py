"""Typed options: one signature for both middlewares, in step with :class:`connmw.Options`,
checked by mypy (through Starlette's ``add_middleware`` too) and at run time."""

from __future__ import annotations

import dataclasses
import inspect
import re
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest

import connmw
from connmw import ConnectionMiddleware, Decision, Options, RequestFacts, Rule, WSGIConnectionMiddleware

MIDDLEWARES = [ConnectionMiddleware, WSGIConnectionMiddleware]
ROOT = Path(__file__).resolve().parent.parent
USAGE = ROOT / "tests" / "typecheck" / "options_usage.py"


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("not called")


def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
    raise AssertionError("not called")


def app_for(cls: Any) -> Any:
    return asgi_app if cls is ConnectionMiddleware else wsgi_app


#: Options normalises these (any iterable to a tuple or frozenset; the callback's
#: arguments typed); every other parameter has exactly the field's type.
TAKES_INPUT_FORMS = frozenset(("rules", "close_on_status", "on_decision", "protected_request_headers"))


@pytest.mark.parametrize("cls", MIDDLEWARES)
def test_parameters_are_the_options_fields_with_their_defaults(cls: Any) -> None:
    params = list(inspect.signature(cls).parameters.values())
    assert params[0].name == "app" and params[0].kind is inspect.Parameter.POSITIONAL_ONLY
    fields = [f for f in dataclasses.fields(Options) if not f.name.startswith("_")]
    assert [p.name for p in params[1:]] == [f.name for f in fields]
    for param, field in zip(params[1:], fields, strict=True):
        assert param.kind is inspect.Parameter.KEYWORD_ONLY, param.name
        assert param.default == field.default, param.name
        assert param.annotation != inspect.Parameter.empty, param.name
    hints = typing.get_type_hints(cls.__init__, localns={"RequestFacts": RequestFacts, "Decision": Decision})
    field_hints = typing.get_type_hints(Options)
    for field in fields:
        if field.name not in TAKES_INPUT_FORMS:
            assert hints[field.name] == field_hints[field.name], field.name
    doc = inspect.getdoc(cls.__init__) or ""

    for field in fields:
        assert f":param {field.name}:" in doc, f"{field.name} has no docstring line"


#: A value different from the default for every option.
SAMPLE: dict[str, Any] = {
    "rules": [Rule("/x")],
    "close_on_status": (500,),
    "max_requests_per_connection": 7,
    "max_requests_jitter": 2,
    "max_connection_age": 30,
    "max_connection_age_jitter": 3,
    "max_connection_age_grace": 5,
    "keep_alive_timeout": 4,
    "overload_soft_limit": 1,
    "overload_hard_limit": 9,
    "pressure": lambda: 0.0,
    "overload_http2": True,
    "on_decision": lambda facts, decision: None,
    "decision_header": "x-why",
    "connection_idle_timeout": 60,
    "max_tracked_connections": 10,
    "strip_nominated_request_headers": True,
    "protected_request_headers": ["x-a"],
    "max_connection_tokens": 8,
    "clock": lambda: 0.0,
    "random": lambda: 0.5,
}


@pytest.mark.parametrize("cls", MIDDLEWARES)
def test_every_option_reaches_options(cls: Any) -> None:
    assert set(SAMPLE) == set(Options.field_names())
    middleware = cls(app_for(cls), **SAMPLE)
    expected = Options(**SAMPLE)
    for name in Options.field_names():
        assert getattr(middleware.options, name) == getattr(expected, name), name
        assert getattr(expected, name) != getattr(Options(), name), name


@pytest.mark.parametrize("cls", MIDDLEWARES)
def test_misspelled_option_at_run_time_names_the_option_meant(cls: Any) -> None:
    with pytest.raises(TypeError) as error:
        cls(app_for(cls), max_requests=100)
    assert str(error.value) == (
        f"{cls.__name__} got an unknown option 'max_requests' (did you mean 'max_requests_per_connection'?)"
    )
    with pytest.raises(
        TypeError, match=r"got an unknown option 'colse_on_status' .did you mean 'close_on_status'"
    ):
        cls(app_for(cls), colse_on_status=())


@pytest.mark.parametrize("cls", MIDDLEWARES)
def test_options_are_keyword_only(cls: Any) -> None:
    with pytest.raises(TypeError) as error:
        cls(app_for(cls), [Rule()])
    assert str(error.value) == (
        f"{cls.__name__} takes the application as its only positional argument; "
        f"options are keyword-only, e.g. {cls.__name__}(app, rules=[...])"
    )


def test_starlette_add_middleware_passes_the_options() -> None:
    from starlette.applications import Starlette

    app = Starlette()
    app.add_middleware(ConnectionMiddleware, max_requests_per_connection=3, decision_header="x-connmw")
    middleware: Any = app.build_middleware_stack()
    while not isinstance(middleware, ConnectionMiddleware):
        middleware = middleware.app
    assert middleware.options.max_requests_per_connection == 3
    assert middleware.options.decision_header == "x-connmw"


def test_mypy_rejects_misspelled_options_and_wrong_types() -> None:
    """mypy --strict on tests/typecheck/options_usage.py: exactly the marked lines fail."""
    api = pytest.importorskip("mypy.api")
    assert len(expected_errors(checked_only=False)) == 12
    expected = expected_errors()
    stdout, stderr, _status = api.run(
        [
            "--strict",
            "--no-error-summary",
            "--hide-error-context",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            str(USAGE),
        ]
    )
    found = {
        (int(m.group(1)), m.group(2))
        for m in re.finditer(r"options_usage\.py:(\d+): error: .*\[([a-z-]+)\]$", stdout, re.MULTILINE)
    }
    assert found == expected, stdout + stderr


def expected_errors(checked_only: bool = True) -> set[tuple[int, str]]:
    expected: set[tuple[int, str]] = set()
    lines = USAGE.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        marker = re.search(r"# error: ([a-z-]+)$", line)
        if marker:
            expected.add((number, marker.group(1)))
    import starlette.middleware

    if checked_only and not hasattr(starlette.middleware, "_MiddlewareFactory"):
        # Starlette before 0.41 types its middleware as taking ``app`` by keyword, which a
        # positional-only ``app`` does not match: type checkers then check no option passed
        # through add_middleware or Middleware (they still work at run time).
        through = re.compile(r"(^|[^A-Za-z])Middleware\(|add_middleware\(")
        expected = {(n, code) for n, code in expected if not through.search(lines[n - 1])}
    return expected


@pytest.mark.tools("node")
def test_pyright_rejects_the_same_lines() -> None:
    """pyright (what editors such as VS Code run) flags exactly the lines mypy does."""
    pytest.importorskip("pyright")
    done = subprocess.run(
        [sys.executable, "-m", "pyright", "--pythonpath", sys.executable, str(USAGE)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    found = {int(n) for n in re.findall(r"options_usage\.py:(\d+):\d+ - error", done.stdout)}
    import starlette.middleware

    if not hasattr(starlette.middleware, "_MiddlewareFactory"):
        # Before Starlette 0.41 pyright refuses every add_middleware/Middleware line (app
        # typed as a keyword there): only the direct constructor calls are compared.
        lines = USAGE.read_text().splitlines()
        through = re.compile(r"(^|[^A-Za-z])Middleware\(|add_middleware\(")
        found = {n for n in found if not through.search(lines[n - 1])}
    assert found == {line for line, _ in expected_errors()}, done.stdout + done.stderr


def test_public_names_unchanged() -> None:
    assert connmw.ConnectionMiddleware is ConnectionMiddleware
    assert connmw.WSGIConnectionMiddleware is WSGIConnectionMiddleware
