"""A full spool disk, for real: a small tmpfs as the spool of a running `mta -bd`.

Exim's two answers, and what must never happen instead (a 5xx, a dropped
connection, a traceback, a half-written message left in input/):

- `check_spool_space` / `check_spool_inodes`: MAIL is answered
  ``452 Space shortage, please try later`` while the spool's file system has
  less room than that (plus the message's SIZE=);
- a write that fails while the message is received (the check turned off, or
  the disk filled up in the meantime) is answered 452 at the end of the text,
  after the rest of the text has been read, and nothing of it stays in input/.

Afterwards, once there is room again, the same daemon (the same session, even)
takes a message and delivers it.  The mailbox side, a full or read-only
mailbox disk, is in tests/e2e/test_bad_input_delivery.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.daemon import DaemonWorld, RawClient
from tests.support.tmpfs import fill, small_tmpfs


@pytest.fixture
def tmpfs_spool(daemon_world: DaemonWorld) -> Iterator[DaemonWorld]:
    """The daemon world with its spool on a 2 MB tmpfs; the logs stay outside it, to be read."""
    with small_tmpfs(daemon_world.spool, size="2m", mode="0755"):
        yield daemon_world


def log_path(world: DaemonWorld) -> str:
    return f"log_file_path = {world.root}/log/%slog\n"


def main_log(world: DaemonWorld) -> str:
    path = world.root / "log" / "mainlog"
    return path.read_text() if path.exists() else ""


def greeted(world: DaemonWorld) -> RawClient:
    client = RawClient(world.port)
    assert client.reply()[0] == 220
    assert client.command("EHLO client.example.org")[0] == 250
    return client


def send_text(client: RawClient, text: bytes) -> tuple[int, str]:
    assert client.command("MAIL FROM:<carol@example.org>") == (250, "OK")
    assert client.command("RCPT TO:<alice@example.com>") == (250, "Accepted")
    assert client.command("DATA")[0] == 354
    client.send(text + b".\r\n")
    return client.reply()


def message(subject: str, lines: int = 1) -> bytes:
    return f"Subject: {subject}\r\n\r\n".encode() + b"".join(
        f"line {n} of {subject}, long enough to fill a disk quickly\r\n".encode() for n in range(lines))


def test_mail_is_refused_with_452_while_the_spool_is_short_of_space(tmpfs_spool: DaemonWorld) -> None:
    world = tmpfs_spool
    world.write_config(main=log_path(world) + "check_spool_space = 1M\n")
    world.start()
    filler = fill(world.spool, leave=512 * 1024)
    with greeted(world) as client:
        assert client.command("MAIL FROM:<carol@example.org>") == (452, "Space shortage, please try later")
        assert "spool directory space check failed: space=" in main_log(world)
        filler.unlink()
        # Room for the check, but not for the size the client announces.
        assert client.command("MAIL FROM:<carol@example.org> SIZE=4000000")[0] == 452
        assert client.command("MAIL FROM:<carol@example.org> SIZE=1000") == (250, "OK")
        assert client.command("RSET")[0] == 250
        code, text = send_text(client, message("after the shortage"))
        assert code == 250 and text.startswith("OK id=")
    world.wait_for_mail("alice", "line 0 of after the shortage")


def test_a_full_spool_during_the_message_is_452_and_leaves_nothing(tmpfs_spool: DaemonWorld) -> None:
    world = tmpfs_spool
    world.write_config(main=log_path(world) + "check_spool_space = 0\ncheck_spool_inodes = 0\n")
    world.start()
    filler = fill(world.spool)
    with greeted(world) as client:
        # Small: fails when the -D file is written at the end of the text.
        assert send_text(client, message("small")) == (452, "Error while writing spool file")
        # Large (over the 256 KiB kept in memory): fails mid-text; the rest is read and dropped.
        assert send_text(client, message("large", lines=8000)) == (452, "Error while writing spool file")
        assert client.command("NOOP")[0] == 250  # in step: the text was not taken for commands
        # The same with BDAT.
        assert client.command("MAIL FROM:<carol@example.org>")[0] == 250
        assert client.command("RCPT TO:<alice@example.com>")[0] == 250
        body = message("chunked", lines=8000)
        client.send(f"BDAT {len(body)} LAST\r\n".encode() + body)
        assert client.reply() == (452, "Error while writing spool file")
        assert world.spool_files() == []  # no -D without -H, no hdr.ID
        log = main_log(world)
        assert log.count("Message abandoned: Spool write error (No space left on device) while receiving "
                         "message from H=(client.example.org) [127.0.0.1]") == 3
        assert "Traceback" not in log and not (world.root / "log" / "paniclog").exists()

        # Room again: the same session goes on, and the message is delivered.
        filler.unlink()
        code, text = send_text(client, message("after the full disk", lines=8000))
        assert code == 250 and text.startswith("OK id=")
    world.wait_for_mail("alice", "line 7999 of after the full disk")
