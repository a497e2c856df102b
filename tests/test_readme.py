"""The README's generated sections are what their generators print now."""

from __future__ import annotations

from tests.conformance import gen_table


def _section(text: str) -> str:
    start = text.index(gen_table.START)
    return text[start : text.index(gen_table.END) + len(gen_table.END)]


def test_servers_section_is_what_gen_table_prints() -> None:
    readme = gen_table.README.read_text(encoding="utf-8")
    assert readme.count(gen_table.START) == 1 and readme.count(gen_table.END) == 1
    want = gen_table.render(gen_table.expected_results())
    assert _section(readme) == want, "README.md is stale: run python -m tests.conformance.gen_table"


def test_a_run_that_differs_from_the_pins_renders_differently() -> None:
    """The comparison --run makes can fail: one server keeping what its spec says it closes."""
    results = gen_table.expected_results()
    entry = next(e for e in results if e["server"] == "uvicorn-h11" and e["case"] == "http10-keep-alive")
    assert entry["observed"] == "closed"
    entry["observed"] = "kept"
    assert gen_table.render(results) != gen_table.render(gen_table.expected_results())


def test_known_failures_and_not_applicable_cases_show_as_such() -> None:
    section = gen_table.render(gen_table.expected_results())
    granian = next(line for line in section.splitlines() if line.startswith("| granian-h1 |"))
    assert "✗ known" in granian
    h2 = next(line for line in section.splitlines() if line.startswith("| hypercorn-h2c |"))
    assert "n/a" in h2
