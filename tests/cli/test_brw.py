"""`mta -brw`: the command itself prints what Exim's prints (the corpus: tests/message/test_rewrite_corpus.py)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.mta import MtaEnv

CORPUS = Path(__file__).resolve().parents[1] / "data" / "rewrite"


def test_brw_prints_exims_output_and_log_lines(mta_env: MtaEnv) -> None:
    entries = json.loads((CORPUS / "exim-brw.json").read_text())["entries"]
    (entry,) = [e for e in entries if e["config"] == "rules.conf" and e["address"] == "Ford <fp42@hitch.example>"]
    config = CORPUS / "rules.conf"
    result = mta_env.run("-C", str(config), f"-DFILES={CORPUS / 'files'}", "-brw", entry["address"], config=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, entry["output"], "")


def test_a_bad_rule_stops_brw_with_file_and_line(mta_env: MtaEnv) -> None:
    mta_env.write_config("begin rewrite\n*@a.example  b@c.example  Fx\n")
    result = mta_env.run("-brw", "u@a.example")
    assert result.returncode == 1
    assert result.stderr == (
        f"mta: configuration error: {mta_env.config}:6: unknown rewrite flag character 'x' "
        "(could be missing quotes round replacement item)\n"
    )
