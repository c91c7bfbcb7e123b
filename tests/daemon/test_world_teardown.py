"""The daemon tests' world ends its stray processes before its directory goes.

A background delivery forked by a test's `mta` command (or a queue run) that
outlives its test finds the spool removed under it, and writes the error into
a log tree it makes again: /tmp collected such trees.  The fixture's teardown
waits for the processes still working in the world, then kills them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.support.daemon import end_stray_processes, processes_using


def test_a_process_named_after_the_world_or_holding_a_file_in_it_is_ended(tmp_path: Path) -> None:
    other = tmp_path.parent / (tmp_path.name + "-other")
    other.mkdir()
    (tmp_path / "held").write_text("x")
    # One names the world on its command line (as `mta -C <world>/mta.conf` does), one holds a file
    # open in it, and one only has a name that starts the same way: it is not the world's.
    named = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", str(tmp_path / "mta.conf")])
    with open(tmp_path / "held") as held, open(other / "file", "w+") as elsewhere:
        holding = subprocess.Popen(["/bin/sleep", "30"], stdin=held)
        bystander = subprocess.Popen(["/bin/sleep", "30"], stdin=elsewhere)
    try:
        found = set(processes_using(tmp_path))
        assert {named.pid, holding.pid} <= found
        assert bystander.pid not in found
        started = time.monotonic()
        end_stray_processes(tmp_path, grace=0.3)
        assert named.wait(timeout=5) == -9 and holding.wait(timeout=5) == -9
        assert time.monotonic() - started < 5
        assert bystander.poll() is None
    finally:
        for process in (named, holding, bystander):
            if process.poll() is None:
                process.kill()
                process.wait()
