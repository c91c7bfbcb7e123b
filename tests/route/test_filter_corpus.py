"""`mta -bf` / `mta -bF` against Exim 4.96's own output, byte for byte, over the filter corpus.

The cases are tests/data/filter/cases.txt (filters and messages beside it);
Exim's outputs were recorded by scripts/record-exim-filters.  Each case runs
in-process through the same code as `mta -bf` (mta.cli_filter), with the
corpus configuration and the corpus directory as the current directory,
which keeps the suite fast; one test runs the real command for a few cases
at once.  Where mta departs from Exim on purpose, differences.txt says
which lines differ and why.
"""

from __future__ import annotations

import io
import json
import os
import pwd
import shlex
import subprocess
from pathlib import Path

import pytest

from mta.cli_args import parse_command_line
from mta.cli_filter import run_filter_test
from mta.config.loader import load_config
from tests.support.mta import MTA

CORPUS = Path(__file__).parents[1] / "data" / "filter"
RECORDED = {e["name"]: e for e in json.loads((CORPUS / "exim-outputs.json").read_text(encoding="utf-8"))["entries"]}


def _cases() -> dict[str, tuple[list[str], str]]:
    cases = {}
    for line in (CORPUS / "cases.txt").read_text(encoding="utf-8").split("\n"):
        if not line.strip() or line.startswith("#"):
            continue
        name, _, rest = line.partition(": ")
        args, _, message = rest.rpartition(" < ")
        cases[name] = (shlex.split(args), message.strip())
    return cases


def _differences() -> dict[str, list[tuple[str, str]]]:
    """differences.txt: case -> [(Exim's text, mta's text)], for the deliberate differences."""
    out: dict[str, list[tuple[str, str]]] = {}
    block: dict[str, str] = {}
    for line in [*(CORPUS / "differences.txt").read_text(encoding="utf-8").split("\n"), ""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if block:
                unescape = lambda text: text.replace("\\n", "\n")  # noqa: E731
                out.setdefault(block["case"], []).append((unescape(block["exim"]), unescape(block["mta"])))
            block = {}
            continue
        field, _, value = line.partition(": ")
        block[field] = value
    return out


CASES = _cases()
DIFFERENCES = _differences()
LOGIN = pwd.getpwuid(os.getuid()).pw_name


def expected(name: str) -> tuple[str, int]:
    entry = RECORDED[name]
    output = entry["output"].replace("{LOGIN}@", f"{LOGIN}@")
    for exim_text, mta_text in DIFFERENCES.get(name, []):
        assert exim_text in output, f"differences.txt: {exim_text!r} is not in Exim's output for {name}"
        output = output.replace(exim_text, mta_text)
    return output, int(entry["status"])


@pytest.fixture(scope="module")
def config():  # type: ignore[no-untyped-def]
    return load_config(str(CORPUS / "filter.conf"))


def run_case(name: str, config) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    args, message = CASES[name]
    inv = parse_command_line(["-C", str(CORPUS / "filter.conf"), *args])
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(CORPUS)
    try:
        with open(message, "rb") as stdin:
            status = run_filter_test(inv, config, stdin=stdin, out=out)
    finally:
        os.chdir(cwd)
    return out.getvalue(), status


def test_every_case_was_recorded() -> None:
    assert set(CASES) == set(RECORDED), "run scripts/record-exim-filters after changing cases.txt"
    assert set(DIFFERENCES) <= set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_output_as_exim(name: str, config) -> None:  # type: ignore[no-untyped-def]
    output, status = run_case(name, config)
    want, want_status = expected(name)
    assert output == want
    assert status == want_status


def test_the_real_command(tmp_path: Path) -> None:
    """The command line itself, stdout through the CLI's printable stream, and the exit status."""
    for name in ("mail", "system-and-user", "err-command"):
        args, message = CASES[name]
        with open(CORPUS / message, "rb") as stdin:
            proc = subprocess.run(
                [MTA, "-C", str(CORPUS / "filter.conf"), *args],
                stdin=stdin,
                capture_output=True,
                cwd=CORPUS,
                check=False,
                timeout=60,
            )
        want, want_status = expected(name)
        assert proc.stdout.decode() == want
        assert proc.returncode == want_status
