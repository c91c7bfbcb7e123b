"""scripts/bench/run (issue 19's benchmark command) starts: its help lists every load, a bad reference is refused.

The benchmark itself is not run here: it is a script that prints figures, not a test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).resolve().parents[1] / "scripts" / "bench" / "run"


def test_help_lists_the_loads_and_a_bad_reference_is_refused() -> None:
    shown = subprocess.run([sys.executable, str(RUN), "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    for load in ("spool-reuse", "relay", "local", "queue", "sendmail", "scale-1000", "big"):
        assert load in shown.stdout
    refused = subprocess.run(
        [sys.executable, str(RUN), "--against", "sendmail.example"], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2
    assert "--against sendmail.example: expected exim, postfix, aiosmtpd or HOST:PORT" in refused.stderr
    no_rounds = subprocess.run([sys.executable, str(RUN), "--rounds", "0"], capture_output=True, text=True, timeout=60)
    assert no_rounds.returncode == 2
    assert "--rounds must be 1 or more" in no_rounds.stderr


def test_flat_spool_and_no_spare_files_take_their_lines_out_of_the_configurations() -> None:
    """--flat-spool (docs/performance.md, "Split spool directories"): the bench's mta and Exim
    configurations both say split_spool_directory = true, and the switch removes it from each.
    --no-spare-files does the same for mta's spool_spare_files ("Spare spool files")."""
    bench_dir = RUN.parent
    sys.path.insert(0, str(bench_dir))
    try:
        import _servers
    finally:
        sys.path.remove(str(bench_dir))
    mta_config = _servers.bench.CONFIG
    for config, line in ((mta_config, _servers.SPLIT_LINE), (_servers.EXIM_CONFIG, _servers.SPLIT_LINE),
                         (mta_config, _servers.SPARE_LINE)):
        assert line in config
        without = _servers.without_line(config, line)
        assert line.split()[0] not in without
        assert len(without) == len(config) - len(line)
    try:
        _servers.without_line("spool_directory = /x\n", _servers.SPLIT_LINE)
    except ValueError as exc:
        assert "no line 'split_spool_directory = true'" in str(exc)
    else:
        raise AssertionError("a configuration without the line was accepted")
    shown = subprocess.run([sys.executable, str(RUN), "--help"], capture_output=True, text=True, timeout=60)
    assert "--flat-spool" in shown.stdout
    assert "--no-spare-files" in shown.stdout
