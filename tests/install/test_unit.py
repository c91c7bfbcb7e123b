"""etc/mta.service is a unit systemd accepts: `systemd-analyze verify`, with no warning at all.

verify also checks that ExecStart's program exists, so it runs on a copy whose /usr/sbin/mta is
a stand-in in a temporary directory (tests/install/test_install.py verifies the real installed
unit inside a fresh root).  verify exits 0 on an unknown key or a bad value, only warning: any
output is a failure here.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "etc" / "mta.service"


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def analyze() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian's systemd package: apt-get install systemd)")


def stand_in(tmp_path: Path, text: str) -> Path:
    program = tmp_path / "mta"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    unit = tmp_path / "mta.service"
    unit.write_text(text.replace("ExecStart=/usr/sbin/mta ", f"ExecStart={program} "))
    return unit


def test_the_unit_verifies_without_a_warning(analyze: None, tmp_path: Path) -> None:
    text = UNIT.read_text()
    assert "ExecStart=/usr/sbin/mta -bdf -q30m\n" in text and "Type=notify\n" in text
    proc = verify(stand_in(tmp_path, text))
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def test_verify_as_run_here_would_catch_a_mistake(analyze: None, tmp_path: Path) -> None:
    """The check above means something: a misspelt key is reported."""
    proc = verify(stand_in(tmp_path, UNIT.read_text().replace("ProtectSystem=", "ProtectSytem=")))
    assert "ProtectSytem" in proc.stdout + proc.stderr


def unit_settings(text: str) -> list[str]:
    return [line for line in text.splitlines() if "=" in line and not line.startswith("#")]


def test_docs_explain_every_line_of_the_unit_as_it_is() -> None:
    """docs/install.md quotes each setting of the unit before explaining it: the quotes must be the
    unit's lines, and no line of the unit may go unexplained."""
    page = (REPO / "docs" / "install.md").read_text()
    section = page.split("## The systemd unit", 1)[1].split("\n## ", 1)[0]
    quoted = [line for block in section.split("```")[1::2] for line in unit_settings(block)]
    settings = unit_settings(UNIT.read_text())
    assert set(quoted) <= set(settings), set(quoted) - set(settings)
    unexplained = [s for s in settings if s not in quoted and not s.startswith(("Description=", "WantedBy="))]
    assert not unexplained
