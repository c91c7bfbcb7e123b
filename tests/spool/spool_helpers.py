"""Helpers for the spool tests: Exim's sample files, child processes."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.samples import SAMPLES

REPO_ROOT = Path(__file__).resolve().parents[2]


def sample_bytes(name: str) -> bytes:
    """A sample file without its first line (a '#' comment saying where it
    came from, not part of the file)."""
    data = (SAMPLES / name).read_bytes()
    assert data.startswith(b"#")
    return data[data.index(b"\n") + 1 :]


def sample_id(data: bytes) -> str:
    """The message id from a -H file's first line ("ID-H")."""
    return data[: data.index(b"\n")].decode()[:-2]


def header_samples() -> list[str]:
    return sorted(p.name for p in SAMPLES.glob("spool-*-H.txt"))


class Child:
    """A separate Python process running `code` (with `args` in sys.argv[1:])
    and the repository on its path; it talks in lines over stdin/stdout.
    Leaving the `with` block kills it if still running and reaps it."""

    def __init__(self, code: str, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
            cwd=REPO_ROOT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def read_line(self, timeout: float = 30) -> str:
        """The child's next line of output (it must flush it)."""
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline().strip() if ready else ""
        if not line:
            self.process.kill()
            _, stderr = self.process.communicate(timeout=10)
            raise AssertionError(f"child said nothing; stderr: {stderr}")
        return line

    def send_line(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the child (SIGKILL: no cleanup of any kind runs) and reap it."""
        os.kill(self.process.pid, sig)
        self.process.wait(10)

    def finish(self) -> int:
        """Close its stdin, wait for it to exit, return its status."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.process.wait(30)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None and not stream.closed:
                stream.close()
