"""Load the example applications (``examples/`` is not a package) and Django's
example project, the one Django configuration the in-process tests share."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DJANGO_PROJECT = EXAMPLES / "django_project"
DJANGO_SETTINGS = "exampleproject.settings"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` once, as module ``connmw_example_<name>``."""
    module_name = f"connmw_example_{name}"
    found = sys.modules.get(module_name)
    if found is not None:
        return found
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    # The test process keeps its own SIGTERM handling: undo the example's drain_on_signal.
    drain = getattr(module, "signal_drain", None)
    if drain is not None:
        drain.uninstall()
    return module


def setup_django() -> None:
    """Configure Django with the example project's settings (idempotent)."""
    if str(DJANGO_PROJECT) not in sys.path:
        sys.path.insert(0, str(DJANGO_PROJECT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", DJANGO_SETTINGS)
    import django

    django.setup()


def django_module(name: str) -> Any:
    """A module of the example project, e.g. ``"exampleproject.wsgi"``."""
    setup_django()
    return importlib.import_module(name)
