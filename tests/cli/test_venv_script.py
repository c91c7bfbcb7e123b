"""scripts/_venv.sh's choice of interpreter for the development virtualenv (scripts/run, scripts/test).

The scripts are sourced by a real shell, as scripts/run and scripts/test source them; sourcing
only sets variables and defines functions, so nothing is installed here.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _chosen_python(**environment: str) -> str:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **environment}
    result = subprocess.run(
        ["sh", "-c", '. scripts/_venv.sh && printf %s "$PYTHON"'],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def test_mta_python_names_the_interpreter() -> None:
    assert _chosen_python(MTA_PYTHON="/opt/python3.12/bin/python3") == "/opt/python3.12/bin/python3"


def _system_python_is_recent() -> bool:
    if not os.access("/usr/bin/python3", os.X_OK):
        return False
    check = subprocess.run(["/usr/bin/python3", "-c", "import sys; sys.exit(sys.version_info < (3, 11))"])
    return check.returncode == 0


@pytest.mark.skipif(not _system_python_is_recent(), reason="no /usr/bin/python3 of 3.11 or later here")
def test_the_distributions_python_by_default_even_with_another_first_on_path(tmp_path: Path) -> None:
    # A pyenv-like python3 first on PATH (as on the machines this is built on) is not taken:
    # the distribution's is the one the installed mta runs, and the faster build.
    shim = tmp_path / "python3"
    shim.write_text("#!/bin/sh\nexit 1\n")
    shim.chmod(0o755)
    assert _chosen_python(PATH=f"{tmp_path}:/usr/bin:/bin") == "/usr/bin/python3"
