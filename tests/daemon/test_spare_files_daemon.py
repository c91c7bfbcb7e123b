"""spool_spare_files in a real daemon: messages received into finished messages' files.

One receiver, one worker, a mailbox, SMTP over 127.0.0.1.  A long message
is delivered, then short ones are received into its files (the same inodes
come back to spare/ each time) and each is delivered with its own bytes and
nothing of the longer one's.  A message over the spare size limit leaves an
empty spare.  `-bP` shows the option, and a value that is not a number stops
start-up with the file and line.  Once the option is 0, a queue run removes the
spares a larger setting left.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from mta.spool.spare import SPARE_MAX_SIZE
from tests.support.daemon import DaemonWorld, submit


def spares(world: DaemonWorld) -> dict[str, os.stat_result]:
    directory = world.spool / "spare"
    return {name: (directory / name).stat() for name in os.listdir(directory)} if directory.exists() else {}


def wait_for_spares(world: DaemonWorld, count: int, timeout: float = 10) -> dict[str, os.stat_result]:
    """spare/ once the last delivery has put both its files there (the -D goes when its lock does)."""
    deadline = time.monotonic() + timeout
    while len(found := spares(world)) != count:
        assert time.monotonic() < deadline, (found, world.log_lines()[-5:])
        time.sleep(0.02)
    return found


def test_short_messages_are_received_into_a_long_ones_files_and_delivered_whole(daemon_world: DaemonWorld) -> None:
    daemon_world.write_config(main="spool_spare_files = 3\n")
    daemon_world.start()
    long_body = "\r\n".join(f"long line {n:05d} " + "L" * 60 for n in range(600))  # ~46 KB
    submit(daemon_world.port, "first@example.com", "long", long_body)
    daemon_world.wait_for_mail("first", "long line 00599")
    kept = {st.st_ino for st in wait_for_spares(daemon_world, 2).values()}  # its -H and its -D

    for n in range(3):
        time.sleep(0.1)  # the receiver found spare/ empty for the first message; it looks again after 50 ms
        submit(daemon_world.port, f"short{n}@example.com", "short", f"short body {n}")
        text = daemon_world.wait_for_mail(f"short{n}", f"short body {n}")
        assert "long line" not in text  # nothing of the longer file's old bytes
        assert text.rstrip("\n").endswith(f"short body {n}")
        # The same two files came back: received into them, delivered, kept again.
        assert {st.st_ino for st in wait_for_spares(daemon_world, 2).values()} == kept

    assert daemon_world.spool_files() == []
    assert not (daemon_world.spool / "log" / "paniclog").exists()
    assert daemon_world.stop() == 0


def test_a_big_message_leaves_an_empty_spare_and_the_pool_stays_within_its_slots(
        daemon_world: DaemonWorld) -> None:
    daemon_world.write_config(main="spool_spare_files = 3\n")
    daemon_world.start()
    big_body = "\r\n".join("B" * 998 for _ in range(SPARE_MAX_SIZE // 1000 + 10))
    submit(daemon_world.port, "big@example.com", "big", big_body)
    daemon_world.wait_for_mail("big", "B" * 998)
    found = wait_for_spares(daemon_world, 2)
    assert sorted(st.st_size for st in found.values())[-1] <= SPARE_MAX_SIZE
    assert min(st.st_size for st in found.values()) == 0  # the -D, emptied before it was kept
    for n in range(6):  # delivered one after another: never more than three spares
        submit(daemon_world.port, f"more{n}@example.com", "more", f"more {n}")
        daemon_world.wait_for_mail(f"more{n}", f"more {n}")
    time.sleep(0.3)
    assert len(spares(daemon_world)) <= 3
    assert set(spares(daemon_world)) <= {"0", "1", "2"}
    for st in spares(daemon_world).values():
        assert st.st_mode & 0o777 == 0o640 or st.st_mode & 0o777 == 0o600
        assert st.st_nlink == 1
    assert daemon_world.spool_files() == []


def test_the_option_is_shown_and_a_bad_value_stops_start_up(daemon_world: DaemonWorld) -> None:
    daemon_world.write_config(main="spool_spare_files = 250\n")
    shown = daemon_world.run("-bP", "spool_spare_files")
    assert shown.returncode == 0
    assert shown.stdout.strip() == "spool_spare_files = 250"
    daemon_world.write_config(main="spool_spare_files = many\n")
    refused = daemon_world.run("-bV")
    assert refused.returncode != 0
    assert str(daemon_world.config) in refused.stderr
    assert "spool_spare_files" in refused.stderr
    assert not Path(daemon_world.spool / "spare").exists()


def test_spares_left_by_a_larger_setting_go_at_the_next_queue_run_once_it_is_0(daemon_world: DaemonWorld) -> None:
    daemon_world.write_config(main="spool_spare_files = 3\n")
    daemon_world.start()
    submit(daemon_world.port, "first@example.com", "first", "a body")
    daemon_world.wait_for_mail("first", "a body")
    assert len(wait_for_spares(daemon_world, 2)) == 2
    assert daemon_world.stop() == 0
    daemon_world.write_config(main="spool_spare_files = 3\n")  # the same: a queue run keeps them
    assert daemon_world.run("-q").returncode == 0
    assert len(spares(daemon_world)) == 2
    daemon_world.write_config(main="spool_spare_files = 0\n")
    run = daemon_world.run("-q")
    assert run.returncode == 0, run.stderr
    assert spares(daemon_world) == {}
    assert any(line.endswith("removed 2 spare spool files: spool_spare_files is 0")
               for line in daemon_world.log_lines()), daemon_world.log_lines()[-3:]


def test_a_message_spilled_to_disk_while_it_arrives_is_written_into_a_spare_whole(
        daemon_world: DaemonWorld) -> None:
    """Over SPILL_SIZE the body goes to -D in parts while it arrives: the first part into a spare
    taken from spare/, the rest after it, and the old contents cut off at the end."""
    daemon_world.write_config(main="spool_spare_files = 3\n")
    daemon_world.start()
    submit(daemon_world.port, "first@example.com", "first", "old " * 1000)
    daemon_world.wait_for_mail("first", "old old")
    kept = {st.st_ino for st in wait_for_spares(daemon_world, 2).values()}
    time.sleep(0.1)  # past the receiver's 50 ms after its empty listing
    lines = [f"spilled line {n:06d} " + "S" * 50 for n in range(6000)]  # ~430 KB
    submit(daemon_world.port, "big@example.com", "big", "\r\n".join(lines))
    text = daemon_world.wait_for_mail("big", "spilled line 005999")
    body = text.split("Subject: big\n", 1)[1]
    got = [line for line in body.splitlines() if line.startswith("spilled line")]
    assert got == lines
    assert "old old" not in body
    # The same two files came back, the -D (430 KB, over the limit) emptied: it was a spare.
    back = wait_for_spares(daemon_world, 2)
    assert {st.st_ino for st in back.values()} == kept
    assert sorted(st.st_size for st in back.values())[0] == 0
    assert daemon_world.spool_files() == []
