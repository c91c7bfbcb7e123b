"""Crash consistency (issue 16, point 1): the short form of scripts/crash-test.

A real `mta -bd` receives messages from several clients and delivers them to
maildirs and to an SMTP sink while it is killed with SIGKILL (all its
processes) six times, once at each phase the harness aims at (in DATA, right
after a 250, in a local delivery, in a remote delivery, in an -H rewrite,
anywhere).  After the queue has drained: nothing acknowledged is lost, every
duplicate is a delivery that was in flight at a kill, nothing arrives that was
never sent, and the spool is empty (crash leftovers included).

The harness runs without coverage: the processes it kills never write their
data, and measuring the others would only slow the daemon's restarts down.
The long form (10,000 messages, 100 kills) is `scripts/crash-test`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mta import COVERAGE_VARIABLES

HARNESS = Path(__file__).resolve().parents[2] / "scripts" / "crash-test"


@pytest.mark.crash
def test_kill_9_at_every_phase_loses_nothing_and_leaves_nothing() -> None:
    env = {name: value for name, value in os.environ.items() if name not in COVERAGE_VARIABLES}
    proc = subprocess.run(
        [sys.executable, str(HARNESS), "-n", "200", "--kills", "6", "-c", "6", "--json", "--drain-timeout", "90"],
        capture_output=True, text=True, timeout=240, env=env,
    )
    assert proc.stdout.strip(), proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    summary = json.dumps(result, indent=1, sort_keys=True)
    assert result["kills"] == 6, summary
    assert result["acknowledged"] == 200, summary
    assert result["lost"] == 0, summary
    assert result["stray"] == 0, summary
    assert result["duplicates_unexplained"] == 0, summary
    assert result["duplicates"] <= result["duplicate_bound"], summary
    assert result["spool_leftovers"] == [], summary
    assert result["delivered"] >= result["recipients_acknowledged"], summary
    assert (proc.returncode, result["ok"]) == (0, True), summary + proc.stderr

