"""-bi / newaliases: runs bi_command (argv, no shell), or does nothing when none is set.

What matters is what the command did and what it said, not only the exit
status: each test checks the files it wrote and what reached stdout/stderr.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.mta import MTA, MtaEnv

# A bi_command that shows what it was given and what it ran as: one line per argument.
RECORDER = '#!/bin/sh\nprintf "%s\\n" "$@" > "$(dirname "$0")/argv"\necho "rebuilt $# files"\n'


def recorder(env: MtaEnv) -> Path:
    script = env.root / "rebuild"
    script.write_text(RECORDER)
    script.chmod(0o755)
    return script


def test_without_bi_command_nothing_happens(mta_env: MtaEnv) -> None:
    before = sorted(p.name for p in mta_env.root.iterdir())
    result = mta_env.run("-bi")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert sorted(p.name for p in mta_env.root.iterdir()) == before  # nothing made, no spool


def test_bi_command_runs_without_a_shell(mta_env: MtaEnv) -> None:
    script = recorder(mta_env)
    mta_env.write_config(f'bi_command = {script} /etc/aliases "{mta_env.root}/a;b" "two words"\n')
    result = mta_env.run("-bi")
    assert (result.returncode, result.stdout, result.stderr) == (0, "rebuilt 3 files\n", "")
    # Exactly these arguments: no shell split at the ; or the space, nothing added.
    assert (mta_env.root / "argv").read_text().splitlines() == ["/etc/aliases", f"{mta_env.root}/a;b", "two words"]
    assert not (mta_env.root / "b").exists()


def test_newaliases_name_runs_bi_command(mta_env: MtaEnv) -> None:
    """Called as `newaliases`, mta means -bi (the console script of that name)."""
    script = recorder(mta_env)
    mta_env.write_config(f"bi_command = {script} aliases\n")
    newaliases = str(Path(MTA).with_name("newaliases"))
    result = subprocess.run([newaliases, "-C", str(mta_env.config)], capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (0, "rebuilt 1 files\n", "")
    assert (mta_env.root / "argv").read_text() == "aliases\n"


def test_bi_command_failure_is_the_exit_status(mta_env: MtaEnv) -> None:
    """The command's own status and its own complaint reach the caller unchanged."""
    mta_env.write_config('bi_command = /bin/sh -c "echo cannot rebuild: locked >&2; exit 3"\n')
    result = mta_env.run("-bi")
    assert (result.returncode, result.stdout, result.stderr) == (3, "", "cannot rebuild: locked\n")


def test_relative_bi_command_is_refused(mta_env: MtaEnv) -> None:
    mta_env.write_config("bi_command = touch x\n")
    result = mta_env.run("-bi", cwd=mta_env.root)
    assert result.returncode == 1
    assert result.stderr == "mta: bi_command must start with an absolute path: 'touch x'\n"
    assert not (mta_env.root / "x").exists()  # refused, not run from $PATH
