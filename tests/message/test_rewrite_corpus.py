"""`-brw` against Exim: what the rules make of each address of the corpus, byte for byte.

The expected outputs were recorded from Exim 4.96 by scripts/record-exim-rewrite
(tests/data/rewrite/exim-brw.json); mta's rewriting of the same configuration
must print the same.  In process (Rewriter.test is what `mta -brw` prints);
tests/cli/test_brw.py runs the command itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mta.config.loader import load_config
from mta.config.variables import rewrite_env
from mta.message.rewrite import Rewriter, parse_rules

CORPUS = Path(__file__).resolve().parents[1] / "data" / "rewrite"
ENTRIES = json.loads((CORPUS / "exim-brw.json").read_text(encoding="utf-8"))["entries"]


@pytest.fixture(scope="module")
def rewriters() -> dict[str, Rewriter]:
    made = {}
    for name in {e["config"] for e in ENTRIES}:
        config = load_config(str(CORPUS / name), macros={"FILES": str(CORPUS / "files")})
        made[name] = Rewriter(parse_rules(config.rewrite_rules), rewrite_env(config))
    return made


def test_the_corpus_covers_every_kind_of_rule() -> None:
    text = (CORPUS / "rules.conf").read_text()
    for flag in ("f", "Fsfr", "T", "h", "E", "tc", "q", "R", "Q", "w", "F"):
        assert f" {flag}\n" in text
    assert len(ENTRIES) >= 35


@pytest.mark.parametrize("entry", ENTRIES, ids=[f"{e['config']}:{e['address']}" for e in ENTRIES])
def test_brw_output_is_exims(entry: dict[str, str], rewriters: dict[str, Rewriter]) -> None:
    lines = rewriters[entry["config"]].test(entry["address"])
    assert "".join(line + "\n" for line in lines) == entry["output"]
