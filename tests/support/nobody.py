"""Running the real `mta` as an unprivileged user (``nobody``) from a test run as root.

Trust, admin checks and permission errors can only be seen from a process
that is not root.  The venv's interpreter may live where `nobody` cannot
reach it (a pyenv build under /root), so when the venv's `mta` cannot be run
as nobody we fall back to the system's python of the same minor version with
this checkout and the venv's site-packages on sys.path.  Tests that need
nobody are skipped (with the reason) when neither works or we are not root.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mta import MTA, MtaEnv

REPO = Path(__file__).resolve().parents[2]  # tests/support/nobody.py -> the checkout
_BOOT = "import sys; sys.path[:0] = {paths!r}; sys.argv[0] = 'mta'; from mta.cli import main; sys.exit(main())"


@dataclasses.dataclass(frozen=True)
class Nobody:
    """How to run `mta` as nobody."""

    prefix: tuple[str, ...]
    uid: int
    gid: int

    def run(
        self,
        env: MtaEnv,
        *args: str,
        input: bytes | str | None = None,
        config: bool = True,
        environ: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        argv = [*self.prefix, *(["-C", str(env.config)] if config else []), *args]
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(
            argv,
            input=data,
            capture_output=True,
            timeout=30,
            user=self.uid,
            group=self.gid,
            extra_groups=[],
            cwd="/",
            env={**os.environ, **(environ or {})},
        )
        return subprocess.CompletedProcess(
            proc.args, proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
        )


def _works(prefix: list[str], uid: int, gid: int) -> bool:
    try:
        proc = subprocess.run(
            [*prefix, "--help"], capture_output=True, timeout=30, user=uid, group=gid, extra_groups=[], cwd="/"
        )
    except OSError:
        return False
    return proc.returncode == 0 and b"usage" in proc.stdout


@functools.cache
def find_nobody() -> Nobody | str:
    """A Nobody runner, or the reason there is none."""
    if os.getuid() != 0:
        return "needs root to run mta as another user"
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        return "no user called nobody"
    system_python = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    boot = _BOOT.format(paths=[str(REPO), sysconfig.get_paths()["purelib"]])
    for prefix in ([MTA], [system_python, "-I", "-c", boot]):
        if _works(prefix, pw.pw_uid, pw.pw_gid):
            return Nobody(tuple(prefix), pw.pw_uid, pw.pw_gid)
    return "user nobody cannot run this checkout's mta (interpreter or source not reachable)"


@pytest.fixture
def nobody() -> Nobody:
    found = find_nobody()
    if isinstance(found, str):
        pytest.skip(found)
    return found


@pytest.fixture
def open_env() -> Iterator[MtaEnv]:
    """An MtaEnv in a directory every user can enter (pytest's tmp_path is 0700 root)."""
    root = Path(tempfile.mkdtemp(prefix="mta-test-"))
    root.chmod(0o755)
    env = MtaEnv(root)
    env.write_config()
    env.config.chmod(0o644)
    yield env
    shutil.rmtree(root, ignore_errors=True)


def give_spool_to(env: MtaEnv, nobody: Nobody) -> None:
    """Make the spool nobody's, so an unprivileged submission can write it."""
    env.spool.mkdir(exist_ok=True)
    os.chown(env.spool, nobody.uid, nobody.gid)
