"""mta-cyclog (exicyclog): exicyclog's generations, and no log line lost while a real daemon
writes; the shipped logrotate file, run by the real logrotate, loses none either."""

from __future__ import annotations

import fcntl
import gzip
import os
import pwd
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

from tests.spool_tools.conftest import run, tool
from tests.support.daemon import DaemonWorld, RawClient, daemon_world

__all__ = ["daemon_world"]

LOGROTATE_FILE = Path(__file__).resolve().parents[2] / "etc" / "logrotate.d" / "mta"


def cycle(spool: Path, *args: str) -> None:
    run("cyclog", "--spool", str(spool), *args)


def test_generations_as_exicyclog(tmp_path: Path) -> None:
    logs = tmp_path / "log"
    logs.mkdir()
    for day in range(1, 6):
        (logs / "mainlog").write_text(f"main {day}\n")
        (logs / "rejectlog").write_text(f"reject {day}\n")
        cycle(tmp_path, "-k", "3")
    # .01 plain (a process may still append to it), older ones gzipped, no more than -k.
    assert sorted(p.name for p in logs.iterdir()) == [
        "mainlog", "mainlog.01", "mainlog.02.gz", "mainlog.03.gz",
        "rejectlog", "rejectlog.01", "rejectlog.02.gz", "rejectlog.03.gz",
    ]
    assert (logs / "mainlog").read_text() == ""
    assert (logs / "mainlog.01").read_text() == "main 5\n"
    assert gzip.decompress((logs / "mainlog.02.gz").read_bytes()) == b"main 4\n"
    assert gzip.decompress((logs / "rejectlog.03.gz").read_bytes()) == b"reject 3\n"
    assert (logs / "mainlog").stat().st_mode & 0o777 == 0o640


def test_three_digits_beyond_99_and_the_owner_is_kept(tmp_path: Path) -> None:
    logs = tmp_path / "log"
    logs.mkdir()
    (logs / "mainlog").write_text("one\n")
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(logs / "mainlog", nobody.pw_uid, nobody.pw_gid)
    cycle(tmp_path, "-k", "100")
    cycle(tmp_path, "-k", "100")
    assert sorted(p.name for p in logs.iterdir()) == ["mainlog", "mainlog.001", "mainlog.002.gz"]
    if os.geteuid() == 0:
        assert (logs / "mainlog").stat().st_uid == nobody.pw_uid
        assert (logs / "mainlog.002.gz").stat().st_uid == nobody.pw_uid


def test_what_it_refuses(tmp_path: Path) -> None:
    (tmp_path / "log").mkdir()
    # Nothing logged yet: nothing to do, as exicyclog.
    assert run("cyclog", "--spool", str(tmp_path), "-v").stdout == ""
    (tmp_path / "log" / "mainlog").write_text("x\n")
    for args, message in (
        (["-l", "syslog"], "-l names no log files (syslog only): nothing to cycle"),
        (["-l", f"{tmp_path}/%slog-%D"], "carry the date"),
        (["-l", f"{tmp_path}/mainlog"], "has no %s"),
        (["-k", "x"], "-k needs a number of generations"),
    ):
        result = run("cyclog", "--spool", str(tmp_path), *args, check=False)
        assert result.returncode != 0 and message in result.stderr and result.stderr.count("\n") == 1, result
    # A second run while one holds the directory's lock is refused, not queued behind it.
    fd = os.open(tmp_path / "log", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = run("cyclog", "--spool", str(tmp_path), check=False)
        assert result.returncode == 1 and "another mta-cyclog" in result.stderr
    finally:
        os.close(fd)
    syslog_only = tmp_path / "syslog.conf"
    syslog_only.write_text(f"spool_directory = {tmp_path}\nlog_file_path = syslog\n")
    result = run("cyclog", "-C", str(syslog_only), check=False)
    assert result.returncode == 1 and "syslog only" in result.stderr


def _all_lines(logs: Path) -> list[str]:
    lines: list[str] = []
    for path in sorted(logs.iterdir()):
        if path.name.startswith("mainlog"):
            data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
            lines += data.decode().splitlines()
    return lines


def test_no_line_lost_while_the_daemon_writes(daemon_world: DaemonWorld, tmp_path: Path) -> None:
    """Messages arrive and are delivered (receiving process, delivery worker: both keep their
    log open) while mta-cyclog runs twice and then logrotate, with the shipped file: every
    message has its arrival and Completed lines exactly once somewhere, and after each
    rotation the daemon's processes write to the new file."""
    daemon_world.write_config()
    daemon_world.start()
    logs = daemon_world.spool / "log"
    accepted: list[str] = []
    stop = threading.Event()
    failures: list[BaseException] = []

    def send() -> None:
        try:
            n = 0
            while not stop.is_set():
                n += 1
                with RawClient(daemon_world.port) as client:
                    client.reply()
                    client.command("HELO client.example.org")
                    client.command("MAIL FROM:<sender@example.org>")
                    client.command(f"RCPT TO:<user{n}@example.com>")
                    client.command("DATA")
                    code, text = client.command(f"Subject: {n}\r\n\r\nmessage {n}\r\n.")
                    assert code == 250, text
                    accepted.append(re.search(r"id=(\S+)", text).group(1))  # type: ignore[union-attr]
                    client.command("QUIT")
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    def more(count: int) -> None:
        """Wait for `count` more messages to be accepted (the sender keeps going meanwhile)."""
        target = len(accepted) + count
        deadline = time.monotonic() + 30
        while len(accepted) < target and not failures:
            assert time.monotonic() < deadline, f"only {len(accepted)} of {target} messages accepted"
            time.sleep(0.02)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        more(2)
        tool("cyclog", "-C", str(daemon_world.config))
        more(2)
        tool("cyclog", "-C", str(daemon_world.config))
        # logrotate leaves an empty log alone (notifempty): let lines reach the new one first.
        more(2)
        if shutil.which("logrotate") or Path("/usr/sbin/logrotate").exists():
            conf = tmp_path / "logrotate.conf"
            conf.write_text(LOGROTATE_FILE.read_text().replace("/var/spool/mta", str(daemon_world.spool)))
            conf.chmod(0o644)
            subprocess.run([shutil.which("logrotate") or "/usr/sbin/logrotate", "-f", "-s",
                            str(tmp_path / "state"), str(conf)], check=True, capture_output=True, timeout=60)
            assert (logs / "mainlog.1").exists()
        more(2)
    finally:
        stop.set()
        sender.join(timeout=60)
    assert not failures, failures
    deadline = time.monotonic() + 30
    while True:
        lines = _all_lines(logs)
        completed = [line.split()[2] for line in lines if line.endswith(" Completed")]
        if set(accepted) <= set(completed):
            break
        assert time.monotonic() < deadline, f"not all messages completed: {set(accepted) - set(completed)}"
        time.sleep(0.05)
    for message_id in accepted:
        assert sum(f" {message_id} <= " in line for line in lines) == 1, message_id
        assert completed.count(message_id) == 1, message_id
    assert len(lines) == len(set(lines))  # nothing written twice
    names = {p.name for p in logs.iterdir()}
    assert {"mainlog", "mainlog.01", "mainlog.02.gz"} <= names
    # The last messages (sent after every rotation) are in the new main log: the daemon reopened it.
    assert any(f" {accepted[-1]} <= " in line for line in (logs / "mainlog").read_text().splitlines())
    assert (logs / "mainlog").stat().st_uid == (logs / "mainlog.01").stat().st_uid
