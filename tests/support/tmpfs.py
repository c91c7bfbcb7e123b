"""A small tmpfs mounted by a test, to fill up for real (disk full, read-only remounts).

Mounting needs root and a kernel that lets this process mount; otherwise the test is
skipped with the reason.  The file system is unmounted (lazily: a daemon may still hold a
file open) when the test ends.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_tmpfs(mountpoint: Path, size: str = "64k", mode: str | None = None) -> Iterator[Path]:
    """Mount a tmpfs of `size` (mount's syntax: 64k, 1m) on `mountpoint` (made if missing)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mountpoint.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (f",mode={mode}" if mode else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mountpoint)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=True)


def remount(mountpoint: Path, options: str) -> None:
    """Change a mounted tmpfs: `size=1m` for more room, `ro`/`rw` for an I/O error."""
    subprocess.run(["mount", "-o", f"remount,{options}", str(mountpoint)], check=True, capture_output=True)


def fill(mountpoint: Path, leave: int = 0, name: str = "filler") -> Path:
    """Fill the file system until at most `leave` bytes are free; the filler file is returned."""
    path = mountpoint / name
    with open(path, "ab") as out:
        while True:
            st = os.statvfs(mountpoint)
            free = st.f_bavail * st.f_frsize
            if free <= leave:
                break
            try:
                out.write(b"f" * min(free - leave, 1 << 20))
                out.flush()
            except OSError:
                break
    return path
