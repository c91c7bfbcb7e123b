"""Exim 4.96's own exigrep, eximstats and exiqsumm, to compare mta's log tools with.

They come from Debian's exim4-base package, unpacked (not installed) by
scripts/_venv.sh into ~/.cache/mta-tests/exim4-base ($MTA_EXIM_TOOLS); an
installed exim4-base (/usr/sbin) does as well.  When neither is there, or
perl is missing, the comparisons skip and say why.

Exim 4.96's tools know only 16-character message ids: `short_ids` rewrites
mta's 23-character ids to 16-character ones, consistently (the same id
always becomes the same one, and its first six characters, the arrival
time eximstats reads from an id, are kept).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("MTA_EXIM_TOOLS") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
             / "mta-tests" / "exim4-base")
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_LONG_ID = re.compile(r"(?<![0-9A-Za-z-])([0-9A-Za-z]{6})-[0-9A-Za-z]{11}-[0-9A-Za-z]{4}(?![0-9A-Za-z-])")


def exim_tool(name: str) -> Path:
    """The path of Exim's `name` script, or skip the test with the reason."""
    if shutil.which("perl") is None:
        pytest.skip("perl is not installed: Exim's tools cannot run")
    for candidate in (CACHE / "usr" / "sbin" / name, Path("/usr/sbin") / name):
        if candidate.is_file():
            return candidate
    pytest.skip(f"Exim's {name} is not available: scripts/test fetches Debian's exim4-base into {CACHE} "
                "(apt-get download failed or was not run)")


def run_exim_tool(name: str, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(["perl", str(exim_tool(name)), *args], input=input, capture_output=True, text=True,
                            timeout=60, env={**os.environ, **(env or {})})
    assert result.returncode == 0, f"{name} {' '.join(args)} failed: {result.stderr}"
    return result.stdout


class ShortIds:
    """A consistent map from 23-character ids to 16-character ones."""

    def __init__(self) -> None:
        self.map: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        return _LONG_ID.sub(self._one, text)

    def _one(self, m: re.Match[str]) -> str:
        long_id = m.group(0)
        if long_id not in self.map:
            n = len(self.map) + 1
            digits = ""
            for _ in range(8):
                digits = _B62[n % 62] + digits
                n //= 62
            self.map[long_id] = f"{m.group(1)}-{digits[:6]}-{digits[6:]}"
        return self.map[long_id]

    def back(self, text: str) -> str:
        """Short ids in `text` made long again (to compare Exim's output with ours)."""
        for long_id, short_id in self.map.items():
            text = text.replace(short_id, long_id)
        return text
