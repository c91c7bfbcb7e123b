"""A spool whose hints were written by the real mta, for the hints tools' tests.

`HintsWorld.build(root)` queues two messages for bob@example.net and
carol@example.net, whose router sends them to 127.0.0.1 on a port that
refuses connections (a socket bound there and never listening), and runs
``mta -qf``: the attempt writes the retry record of that host and the
wait-remote_smtp record naming both messages.  Building takes about a
second, so a test module builds one world and each test works on its own
copy (`copy_to`): the fixtures `built` (per module) and `world` (per test).

`run_tool(name, *args)` runs ``python -m spool_tools.NAME`` as an
administrator would run the console script, with TZ set (UTC unless told),
so that the times it prints can be compared with times formatted here.
"""

from __future__ import annotations

import calendar
import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.mta import SMARTHOST_CONFIG, MtaEnv

ROOT = Path(__file__).resolve().parents[2]

# Every remote domain goes to the one host; local domains (example.com) have no directors.
CONFIG = SMARTHOST_CONFIG + """
begin retry
*   *   F,2h,15m; G,16h,1h,1.5; F,4d,6h
"""


def refusing_port() -> tuple[socket.socket, int]:
    """A port on 127.0.0.1 that refuses connections, held by a socket that never listens (so no
    other test can start a server there meanwhile)."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    return holder, holder.getsockname()[1]


@dataclasses.dataclass
class HintsWorld:
    env: MtaEnv
    port: int
    message_ids: list[str]  # in the order they were queued

    @property
    def spool(self) -> Path:
        return self.env.spool

    @property
    def host_key(self) -> str:
        return f"T:[127.0.0.1]:127.0.0.1:{self.port}"

    @classmethod
    def build(cls, root: Path) -> HintsWorld:
        holder, port = refusing_port()
        try:
            env = MtaEnv(root)
            env.write_config(CONFIG.format(port=port))
            ids = []
            for rcpt in ("bob@example.net", "carol@example.net"):
                before = set(env.message_ids())
                result = env.run("-odq", "-f", "alice@example.org", rcpt, input="Subject: hints\n\nbody\n")
                assert result.returncode == 0, result.stderr
                (new,) = set(env.message_ids()) - before
                ids.append(new)
            result = env.run("-qf")
            assert result.returncode == 0, result.stderr
        finally:
            holder.close()
        return cls(env, port, ids)

    def copy_to(self, root: Path) -> HintsWorld:
        """The same world in `root` (its configuration names the new spool)."""
        shutil.copytree(self.env.root, root, dirs_exist_ok=True)
        env = MtaEnv(root)
        env.write_config(CONFIG.format(port=self.port))
        return HintsWorld(env, self.port, list(self.message_ids))


def run_tool(name: str, *args: str, input: str | None = None, tz: str = "UTC"
             ) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TZ=tz)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.pop("MTA_CONFIG", None)
    return subprocess.run([sys.executable, "-m", f"spool_tools.{name}", *args], input=input,
                          capture_output=True, text=True, timeout=30, env=env)


def without_exit_line(text: str) -> str:
    """A research sample's output without its last line (``# exit status: 0``)."""
    lines = text.splitlines(keepends=True)
    assert lines[-1].startswith("# exit status:")
    return "".join(lines[:-1])


def sample_epoch(text: str) -> int:
    """A research sample's ``22-Nov-2026 12:43:32`` as seconds, read as UTC (the tools under test
    run with TZ=UTC, so they print it back as it is)."""
    return calendar.timegm(time.strptime(text, "%d-%b-%Y %H:%M:%S"))


def utc(when: int) -> str:
    """A time as the tools print it when run with TZ=UTC."""
    return time.strftime("%d-%b-%Y %H:%M:%S", time.gmtime(when))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> HintsWorld:
    return HintsWorld.build(tmp_path_factory.mktemp("hints"))


@pytest.fixture
def world(built: HintsWorld, tmp_path: Path) -> HintsWorld:
    return built.copy_to(tmp_path / "world")
