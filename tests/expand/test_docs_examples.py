"""Every "expression → result" example in docs/expansion.md is what `mta -be` prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mta.cli_args import parse_command_line
from mta.cli_expand import ExpansionTest
from mta.config.loader import load_config

DOCS = Path(__file__).resolve().parents[2] / "docs" / "expansion.md"
CORPUS = Path(__file__).parent / "corpus"
# `expression` → `result` in the tables, and "expression   -> result" in code blocks.
_TABLE = re.compile(r"`(\$\{[^`]*\})` → `([^`]*)`")
_BLOCK = re.compile(r"^(\$\{.*\})\s+-> (.*)$", re.MULTILINE)
EXAMPLES = _TABLE.findall(DOCS.read_text()) + _BLOCK.findall(DOCS.read_text())


@pytest.fixture(scope="module")
def session() -> ExpansionTest:
    inv = parse_command_line(["-C", str(CORPUS / "corpus.conf"), f"-DFILES={CORPUS / 'files'}", "-be"])
    return ExpansionTest(load_config(inv.config_file, inv.macros), inv, admin=True)


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 40, len(EXAMPLES)


@pytest.mark.parametrize(("text", "want"), EXAMPLES, ids=[e[0][:50] for e in EXAMPLES])
def test_documented_example(session: ExpansionTest, text: str, want: str) -> None:
    got = session.line(text).decode("utf-8", "surrogateescape")
    assert got == want + "\n", f"{text}: got {got!r}, docs say {want!r}"
