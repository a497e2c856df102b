"""Package metadata and the README as the package index shows it.

``python -m build`` and ``twine check`` run in ``.ci/run``; these checks are the fast part.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    tomllib = pytest.importorskip("tomllib")
    data: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return data


def test_license_file_matches_the_metadata(project: dict[str, Any]) -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 connmw contributors" in text
    assert project["project"]["license"] == "MIT"
    assert project["project"]["license-files"] == ["LICENSE"]
    assert {"name": "connmw contributors"} in project["project"]["authors"]


def test_sdist_carries_license_and_security_policy(project: dict[str, Any]) -> None:
    include = project["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]
    assert {"LICENSE", "SECURITY.md", "README.md"} <= set(include)


def test_python_classifiers_match_requires_python(project: dict[str, Any]) -> None:
    meta = project["project"]
    assert meta["requires-python"] == ">=3.10"
    versions = sorted(
        c.rsplit(" ", 1)[1]
        for c in meta["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    )
    assert versions == ["3.10", "3.11", "3.12", "3.13"]


def test_every_extra_the_readme_names_exists(project: dict[str, Any]) -> None:
    extras = set(project["project"]["optional-dependencies"])
    named = set(re.findall(r"connmw\[([a-z0-9-]+)\]", README)) | set(
        re.findall(r'"\.\[([a-z0-9-]+)\]"', README)
    )
    named |= {
        e for group in re.findall(r"\[(\w+)\], \[(\w+)\], \[(\w+)\] or \[(\w+)\]", README) for e in group
    }
    assert {"fastapi", "starlette", "flask", "django", "probe", "prometheus", "demo", "test"} <= named
    assert named <= extras, f"README names extras that do not exist: {sorted(named - extras)}"
    assert project["project"]["optional-dependencies"]["probe"] == ["h2>=4.1"]


def test_readme_starts_with_installing_into_a_project_then_the_quick_start() -> None:
    install = README.index("## Install")
    quick = README.index("## Quick start")
    assert install < quick < README.index("## Use it")
    assert 'pip install "connmw[fastapi]"' in README[install:quick]
    block = re.search(r"## Quick start\n.*?```bash\n(.*?)```", README, re.S)
    assert block
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert commands == ['pip install ".[demo]" && connmw demo', 'pip install -e ".[test]" && pytest']


def test_readme_links_and_images_work_on_the_package_index() -> None:
    """The index renders the README away from the repository: relative targets break."""
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)", README) + re.findall(
        r'<(?:img|a)\s[^>]*(?:src|href)="([^"]+)"', README
    )
    relative = [t for t in targets if not t.startswith(("https://", "http://"))]
    assert relative == []


def test_project_urls_and_security_contact_agree(project: dict[str, Any]) -> None:
    urls = project["project"]["urls"]
    assert urls and all(u.startswith("https://") for u in urls.values())
    security = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    has_email = any("email" in person for person in project["project"].get("authors", []))
    if not has_email:
        assert "address in the package metadata" not in security
    assert "private vulnerability\nreporting" in security
