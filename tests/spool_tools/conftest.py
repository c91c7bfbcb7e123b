"""Fixtures for the log tools' tests: one world of real logs per test run, shared by the
pytest-xdist workers (building it costs seconds: a daemon, SMTP sessions, deliveries)."""

from __future__ import annotations

import fcntl
import importlib
import io
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.adminlogs import World, build_world

TOOLS = {"grep": "mta-grep", "stats": "mta-stats", "qsumm": "mta-qsumm", "cyclog": "mta-cyclog"}
MODULES = {"grep": "spool_tools.grep", "stats": "spool_tools.stats.cli", "qsumm": "spool_tools.qsumm",
           "cyclog": "spool_tools.cyclog"}
BIN = Path(sys.executable).parent


def command(name: str) -> list[str]:
    """The console script of tool `name` ("grep", "stats", ...), as scripts/test installs it from
    pyproject; in a virtualenv installed before the script was added (pip not re-run), the same
    entry point as `python -m` (test_console_scripts checks that pyproject names it)."""
    script = BIN / TOOLS[name]
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", MODULES[name].removesuffix(".cli")]


def tool(name: str, *args: str, input: str | None = None, env: dict[str, str] | None = None,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run tool `name` ("grep", "stats", ...) as a subprocess, by its console script."""
    result = subprocess.run([*command(name), *args], input=input, capture_output=True, text=True,
                            timeout=60, env={**os.environ, **(env or {})}, stdin=None if input is not None
                            else subprocess.DEVNULL)
    if check:
        assert result.returncode == 0, f"{TOOLS[name]} {' '.join(args)}: {result.stderr}"
        assert result.stderr == "", result.stderr
    return result


def run(name: str, *args: str, input: str | bytes | None = None, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """`tool`, but in this process: the same entry point (spool_tools.admin_command.run_tool with the
    tool's main: printable output, one-line errors, exit status) without the cost of starting
    Python, for the many runs that compare outputs.  Standard streams are swapped for the run
    and put back; `env` is applied to os.environ for the run (TZ is re-read)."""
    from spool_tools.admin_command import run_tool

    main = importlib.import_module(MODULES[name]).main
    data = input.encode() if isinstance(input, str) else (input or b"")
    stdin = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="surrogateescape")
    out, err = io.StringIO(), io.StringIO()
    saved_streams = sys.stdin, sys.stdout, sys.stderr
    saved_env = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    time.tzset()
    sys.stdin, sys.stdout, sys.stderr = stdin, out, err
    try:
        status = run_tool(TOOLS[name], lambda: main(list(args)))
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        time.tzset()
    result = subprocess.CompletedProcess([TOOLS[name], *args], status, out.getvalue(), err.getvalue())
    if check:
        assert status == 0, f"{TOOLS[name]} {' '.join(args)}: {result.stderr}"
        assert result.stderr == "", result.stderr
    return result


def _not_special(directory: str, names: list[str]) -> list[str]:
    """copytree's ignore: sockets and other special files (the daemon's submit.sock)."""
    out = []
    for name in names:
        mode = os.lstat(os.path.join(directory, name)).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
            out.append(name)
    return out


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Logs, a queue and its `mta -bp` listing made by the real mta (tests/support/adminlogs.py).

    Built once per run: the first worker to get here builds it (in a directory under /tmp that
    the delivery user can enter), copies it into the run's shared temporary directory and
    removes the original; the others wait on the lock and use the copy."""
    if os.geteuid() != 0:
        pytest.skip("the world of real logs needs root: local deliveries run as nobody, the daemon binds a port")
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    target = shared / "mta-admin-logs-world"
    with open(shared / "mta-admin-logs-world.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "ready").exists():
            root = Path(tempfile.mkdtemp(prefix="mta-adminlogs-", dir="/tmp"))
            try:
                root.chmod(0o755)
                build_world(root)
                shutil.copytree(root, target, symlinks=True, ignore=_not_special)
            finally:
                shutil.rmtree(root, ignore_errors=True)
            config = target / "mta.conf"
            config.write_text(config.read_text().replace(str(root), str(target)))
            (target / "ready").write_text("")
    yield World(target)
