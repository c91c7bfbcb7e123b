"""The README's first command, as an ordinary user in a fresh copy of the checkout, with no root step.

The user gets their own copy of the tracked files (what a clone holds),
runs `scripts/run` with a plain PATH (so the system's python3 makes the
virtualenv, as on a fresh Debian machine), and then lists the queue,
submits a message and finds it delivered into the checkout's var/mail.
"""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import E2E, LocalUser

REPO = Path(__file__).resolve().parents[2]
PLAIN_PATH = "/usr/local/bin:/usr/bin:/bin"


def wait_for_file_text(path: Path, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in (path.read_text() if path.exists() else ""):
        assert time.monotonic() < deadline, f"{text!r} never reached {path}"
        time.sleep(0.1)


def copy_checkout(target: Path, owner: LocalUser) -> None:
    """What a clone of this work tree would hold (tracked and new, not ignored files), owned by `owner`."""
    argv = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    listed = subprocess.run(argv, cwd=REPO, capture_output=True, check=True)
    for name in listed.stdout.decode().split("\0"):
        source = REPO / name
        if not name or not source.is_file():
            continue  # deleted in the work tree but not yet in the index
        dest = target / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)
    for path in [target, *target.rglob("*")]:
        os.chown(path, owner.uid, owner.gid, follow_symlinks=False)


def as_user(user: LocalUser, argv: list[str], cwd: Path, input: str | None = None,
            env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    run_env = {"PATH": PLAIN_PATH, "HOME": str(user.home), "USER": user.name, "LOGNAME": user.name,
               "LANG": "C.UTF-8", **(env or {})}
    # Hand on the machine's pip settings (a local wheel directory, certificates), nothing else.
    run_env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_") or k.endswith("_CA_BUNDLE")})
    return subprocess.run(argv, cwd=cwd, input=input, capture_output=True, text=True, timeout=timeout,
                          user=user.uid, group=user.gid, extra_groups=[], env=run_env)


def test_readme_first_command_then_queue_submission_and_delivery(e2e: E2E, tmp_path: Path) -> None:
    """One test, in the order a newcomer goes: a virtualenv costs seconds to build, so it is built once."""
    if not Path("/usr/bin/python3").exists() or shutil.which("git") is None:
        pytest.fail("this test needs Debian's /usr/bin/python3 and git, as the README promises a fresh machine has")
    user = e2e.user("newcomer")
    checkout = user.home / "mta"
    copy_checkout(checkout, user)

    # The README's first command: the daemon on 127.0.0.1:2525, detached once it listens.
    started = as_user(user, ["scripts/run"], checkout)
    pid_file = checkout / "var" / "spool" / "mta-daemon.pid"
    try:
        assert started.returncode == 0, started.stderr
        assert (checkout / ".venv" / "bin" / "mta").exists()
        with smtplib.SMTP("127.0.0.1", 2525, timeout=30) as client:
            refused = client.sendmail("someone@example.org", [f"{user.name}@localhost"],
                                      b"Subject: over SMTP\r\n\r\nhello\r\n")
        assert refused == {}
        wait_for_file_text(checkout / "var" / "mail" / user.name, "Subject: over SMTP")
    finally:
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
    deadline = time.monotonic() + 30
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_file.exists(), "the daemon did not stop on SIGTERM"

    listing = as_user(user, ["scripts/run", "-bp"], checkout)
    assert (listing.returncode, listing.stdout, listing.stderr) == (0, "", "")

    address = f"{user.name}@localhost"
    queued = as_user(user, ["scripts/run", "-odq", address], checkout, input="Subject: queued first\n\nhello\n")
    assert (queued.returncode, queued.stderr) == (0, "")
    listing = as_user(user, ["scripts/run", "-bp"], checkout)
    assert listing.returncode == 0 and address in listing.stdout, listing
    message_id = listing.stdout.split()[2]
    delivered = as_user(user, ["scripts/run", "-M", message_id], checkout)
    assert (delivered.returncode, delivered.stderr) == (0, "")

    # The default: delivered in the background, into the checkout's var/mail, not /var/mail.
    sent = as_user(user, ["scripts/run", address], checkout, input="Subject: from a newcomer\n\nhello\n")
    assert (sent.returncode, sent.stderr) == (0, "")
    mailbox = checkout / "var" / "mail" / user.name
    wait_for_file_text(mailbox, "Subject: from a newcomer")
    assert "Subject: queued first" in mailbox.read_text()
    assert mailbox.stat().st_uid == user.uid
    assert as_user(user, ["scripts/run", "-bp"], checkout).stdout == ""
    log = (checkout / "var" / "spool" / "log" / "mainlog").read_text()
    assert f"=> {user.name} <{address}> R=localuser T=local_delivery" in log

    # A .venv this user cannot run (made by root from a Python under /root): explained, with the way out.
    (checkout / ".venv").rename(user.home / "venv-aside")
    private = tmp_path / "root-only"
    private.mkdir(mode=0o700)
    (private / "python3").symlink_to("/usr/bin/python3")
    venv_bin = checkout / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(private / "python3")
    result = as_user(user, ["scripts/run", "-bp"], checkout)
    assert result.returncode == 1
    assert "cannot be run by" in result.stderr and "MTA_VENV" in result.stderr, result.stderr
    assert "bad interpreter" not in result.stderr
