"""docs/config-reference.md is generated from the option tables and must be up to date."""

from __future__ import annotations

import difflib
from pathlib import Path

from mta.config.main import MainOptions
from mta.drivers import option_specs
from mta.reference import KINDS, generate, kind_registry

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "config-reference.md"


def test_committed_reference_is_current() -> None:
    fresh = generate()
    committed = REFERENCE.read_text(encoding="utf-8") if REFERENCE.exists() else ""
    if committed != fresh:
        diff = "".join(
            list(
                difflib.unified_diff(committed.splitlines(True), fresh.splitlines(True), "committed", "generated", n=1)
            )[:40]
        )
        raise AssertionError(f"docs/config-reference.md is out of date: run scripts/gen-docs\n{diff}")


def test_reference_lists_every_main_option_and_driver() -> None:
    text = generate()
    for name, _spec, _default, _owner in option_specs(MainOptions):
        assert f"| `{name}` |" in text, name
    for title, singular, target in KINDS:
        assert f"\n## {title}\n" in text
        for driver in kind_registry(target):
            assert f"\n### {driver}\n\n`driver = {driver}`." in text, driver
        if kind_registry(target):
            assert f"\n### Generic {singular} options\n" in text


def test_generation_is_deterministic() -> None:
    assert generate() == generate()
