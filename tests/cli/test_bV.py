"""`mta -bV` / `mta --version`: print the version and check the configuration."""

from __future__ import annotations

import os
import re

import pytest

from mta import __version__
from tests.support.mta import BASE_CONFIG, MtaEnv
from tests.support.nobody import Nobody

BASE_LINES = len(BASE_CONFIG.splitlines())


@pytest.mark.parametrize("option", ["-bV", "--version"])
def test_version_and_config_file(mta_env: MtaEnv, option: str) -> None:
    result = mta_env.run(option)
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert re.fullmatch(rf"mta version {re.escape(__version__)} \(Python 3\.\d+\.\d+\)", lines[0]), lines[0]
    assert lines[1].startswith("Lookups: ") and {"lsearch", "wildlsearch", "dsearch", "lmdb"} <= set(lines[1].split())
    assert lines[-1] == f"Configuration file is {mta_env.config}"


def test_config_from_environment_for_an_ordinary_user(open_env: MtaEnv, nobody: Nobody) -> None:
    result = nobody.run(open_env, "-bV", config=False, environ={"MTA_CONFIG": str(open_env.config)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"Configuration file is {open_env.config}"


def test_config_from_environment_is_ignored_for_root(mta_env: MtaEnv) -> None:
    """`sudo -E sendmail` must not run root under a configuration from a user's environment."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    result = mta_env.run("-bV", config=False, env={"MTA_CONFIG": str(mta_env.config)})
    assert f"MTA_CONFIG is ignored when running as root (use -C {mta_env.config})" in result.stderr
    assert f"Configuration file is {mta_env.config}" not in result.stdout


@pytest.mark.parametrize(
    ("extra", "line", "reason"),
    [
        ("queue_only = perhaps\n", 1, 'queue_only: "perhaps" is not a boolean (use true, false, yes or no)'),
        ("\n\nbegin routers\nr1:\n  transport = t\n", 4, 'router "r1" has no "driver =" option'),
        ("log_selector = +nosuch\n", None, 'log_selector: unknown log_selector item "nosuch"'),
        ("\nbegin acl\nrcpt:\n  accept hostz = *\n", 4, 'unknown ACL condition/modifier in "accept hostz = *"'),
        ("acl_smtp_rcpt = rcpt\n", None, 'acl_smtp_rcpt: no ACL named "rcpt"'),
    ],
    ids=["bad value", "driver without driver", "bad log_selector", "bad ACL", "missing ACL"],
)
def test_broken_config_is_exit_1_with_file_and_line(mta_env: MtaEnv, extra: str, line: int | None, reason: str) -> None:
    mta_env.write_config(extra)
    result = mta_env.run("-bV")
    assert result.returncode == 1
    where = f"{mta_env.config}:{BASE_LINES + line}" if line is not None else str(mta_env.config)
    assert result.stderr == f"mta: configuration error: {where}: {reason}\n"
    assert "Configuration file is" not in result.stdout


def test_missing_config(mta_env: MtaEnv) -> None:
    missing = mta_env.root / "nothere.conf"
    result = mta_env.run("-C", str(missing), "-bV", config=False)
    assert result.returncode == 1
    assert result.stderr == f"mta: configuration error: {missing}: configuration file not found\n"
