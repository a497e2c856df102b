"""Options from plain data: the strings of environment variables and settings
files read as the types :class:`connmw.Options` takes.

Only :meth:`Options.from_mapping` and :meth:`Options.from_env` come here; keyword
construction never does. A value that cannot be read raises with the option's name
and the value.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from typing import Any

from ._rules import _OFF_WORDS, Rule, _parse_bool, _plain_status

_INT_OPTIONS = frozenset(
    (
        "max_requests_per_connection",
        "max_requests_jitter",
        "overload_soft_limit",
        "overload_hard_limit",
        "max_tracked_connections",
        "max_connection_tokens",
    )
)
_FLOAT_OPTIONS = frozenset(
    (
        "max_connection_age",
        "max_connection_age_jitter",
        "max_connection_age_grace",
        "keep_alive_timeout",
        "connection_idle_timeout",
    )
)
_CALLABLE_OPTIONS = frozenset(("pressure", "on_decision", "clock", "random"))


def _import_path(name: str, text: str) -> Any:
    module, sep, attr = text.partition(":")
    if not sep:
        module, _, attr = text.rpartition(".")
    if not module or not attr:
        raise ValueError(f"{name} must be a callable or an import path 'package.module:name', got {text!r}")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{name}: cannot import {text!r} ({exc})") from None
    return obj


def _coerce(name: str, value: Any) -> Any:
    if name == "rules":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError(
                    f"rules as a string must be a JSON list of rule tables, got {value!r}"
                ) from None
        if isinstance(value, (list, tuple)):
            return tuple(Rule.from_mapping(v) if isinstance(v, Mapping) else v for v in value)
        return value
    if name == "close_on_status":
        if value is False:
            return frozenset()
        return _plain_status(value, name)
    if not isinstance(value, str):
        return value
    text = value.strip()
    if name in _INT_OPTIONS:
        if text.lower() in ("", "none"):
            return None
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{name} must be a whole number, got {value!r}") from None
    if name in _FLOAT_OPTIONS:
        if text.lower() in ("", "none"):
            return None
        if name == "keep_alive_timeout" and text.lower() == "auto":
            return "auto"
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{name} must be a number of seconds, got {value!r}") from None
    if name in ("strip_nominated_request_headers", "overload_http2"):
        return _parse_bool(text, name)
    if name == "protected_request_headers":
        return frozenset(p.strip() for p in text.split(",") if p.strip())
    if name == "decision_header":
        return None if text.lower() in _OFF_WORDS else text
    if name in _CALLABLE_OPTIONS:
        return _import_path(name, text)
    raise TypeError(f"{name} cannot be given as a string, got {value!r}")
