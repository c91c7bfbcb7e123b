"""`mta -be` against Exim 4.96's own output, byte for byte, over the whole expansion corpus.

The expressions are tests/expand/corpus/expressions.txt; Exim's outputs
were recorded by scripts/record-exim-corpus (rerun it after adding
expressions).  Each expression is expanded in-process through the same
code as `mta -be` (mta.cli_expand, with the corpus configuration), which
keeps the suite fast; one test then runs the real command once with every
plain expression as an argument and compares its whole output.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from mta.cli_args import parse_command_line
from mta.cli_expand import ExpansionTest
from mta.config.loader import load_config
from tests.support.mta import MTA

CORPUS = Path(__file__).parent / "corpus"
FILES = CORPUS / "files"
RECORDED = json.loads((CORPUS / "exim-outputs.json").read_text(encoding="utf-8"))
ENTRIES: list[dict[str, str]] = RECORDED["entries"]


def want_output(entry: dict[str, str]) -> bytes:
    """Exim's recorded output, with this checkout's files directory put back."""
    return entry["output"].replace("{FILES}", str(FILES)).encode("utf-8", "surrogateescape")


def _differences() -> dict[str, tuple[str, str]]:
    """differences.txt: expression -> (mta's output, why), for the deliberate differences."""
    out: dict[str, tuple[str, str]] = {}
    block: dict[str, str] = {}
    for line in [*(CORPUS / "differences.txt").read_text().split("\n"), ""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if block:
                out[block["expression"]] = (block["mta"] + "\n", block["why"])
            block = {}
            continue
        field, _, value = line.partition(": ")
        block[field] = value
    return out


DIFFERENCES = _differences()


def _split(line: str) -> tuple[list[str], str]:
    if line.startswith("[bem:"):
        name, _, expression = line[5:].partition("] ")
        return ["-bem", str(FILES / name)], expression
    return [], line


def _session(extra: tuple[str, ...]) -> ExpansionTest:
    inv = parse_command_line(["-C", str(CORPUS / "corpus.conf"), f"-DFILES={FILES}", *extra, "-be"])
    config = load_config(inv.config_file, inv.macros)
    return ExpansionTest(config, inv, admin=True)


_SESSIONS: dict[tuple[str, ...], ExpansionTest] = {}


def mta_output(line: str) -> bytes:
    extra, expression = _split(line)
    key = tuple(extra)
    if key not in _SESSIONS:
        _SESSIONS[key] = _session(key)
    return _SESSIONS[key].line(expression)


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")


def test_corpus_is_large_enough_and_recorded_from_exim_4_96() -> None:
    assert RECORDED["exim"].startswith("Exim version 4.96"), RECORDED["exim"]
    assert len(ENTRIES) >= 300, f"got {len(ENTRIES)} expressions, want at least 300"
    expressions = [e["expression"] for e in ENTRIES]
    lines = [ln for ln in (CORPUS / "expressions.txt").read_text().split("\n") if ln.strip() and not ln.startswith("#")]
    assert expressions == lines, (
        "expressions.txt changed since the outputs were recorded: run scripts/record-exim-corpus"
    )


SAME = [e for e in ENTRIES if e["expression"] not in DIFFERENCES]
DIFFERENT = [e for e in ENTRIES if e["expression"] in DIFFERENCES]


@pytest.mark.parametrize("entry", SAME, ids=[e["expression"][:60] for e in SAME])
def test_same_output_as_exim(entry: dict[str, str]) -> None:
    want = want_output(entry)
    got = mta_output(entry["expression"])
    assert got == want, f"{entry['expression']!r}: got {got!r}, want (Exim) {want!r}"


@pytest.mark.parametrize("entry", DIFFERENT, ids=[e["expression"][:60] for e in DIFFERENT])
def test_deliberate_difference(entry: dict[str, str]) -> None:
    want, why = DIFFERENCES[entry["expression"]]
    got = mta_output(entry["expression"])
    assert got == want.encode("utf-8", "surrogateescape"), f"{entry['expression']!r}: got {got!r}, want {want!r}"
    assert got != want_output(entry), f"no longer differs from Exim ({why})"


def test_differences_are_in_the_corpus() -> None:
    expressions = {e["expression"] for e in ENTRIES}
    assert set(DIFFERENCES) <= expressions, set(DIFFERENCES) - expressions


def test_real_cli_prints_the_whole_corpus_as_exim_did() -> None:
    plain = [e for e in SAME if not e["expression"].startswith("[")]
    argv = [MTA, "-C", str(CORPUS / "corpus.conf"), f"-DFILES={FILES}", "-be", *[e["expression"] for e in plain]]
    proc = subprocess.run(argv, capture_output=True, env={**os.environ, "TZ": "UTC"}, timeout=120, check=False)
    want = b"".join(want_output(e) for e in plain)
    assert proc.returncode == 0, proc.stderr
    if proc.stdout != want:
        got_lines, want_lines = proc.stdout.split(b"\n"), want.split(b"\n")
        first = next((i for i, (a, b) in enumerate(zip(got_lines, want_lines, strict=False)) if a != b), None)
        pytest.fail(f"first difference at output line {first}: got {got_lines[first]!r}, want {want_lines[first]!r}")
