"""-bi / newaliases: runs bi_command (argv, no shell), or does nothing when none is set."""

from __future__ import annotations

from tests.support.mta import MtaEnv


def test_without_bi_command_nothing_happens(mta_env: MtaEnv) -> None:
    result = mta_env.run("-bi")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_bi_command_runs_without_a_shell(mta_env: MtaEnv) -> None:
    marker = mta_env.root / "ran"
    mta_env.write_config(f'bi_command = /usr/bin/touch {marker} "{mta_env.root}/a;b"\n')
    result = mta_env.run("-bi")
    assert result.returncode == 0, result.stderr
    assert marker.exists()
    assert (mta_env.root / "a;b").exists()  # one argument: no shell split it at the ;


def test_bi_command_failure_is_the_exit_status(mta_env: MtaEnv) -> None:
    mta_env.write_config("bi_command = /bin/false\n")
    assert mta_env.run("-bi").returncode == 1


def test_relative_bi_command_is_refused(mta_env: MtaEnv) -> None:
    mta_env.write_config("bi_command = touch x\n")
    result = mta_env.run("-bi")
    assert result.returncode == 1
    assert "absolute path" in result.stderr
