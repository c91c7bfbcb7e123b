"""Spare spool files (spool_spare_files; mta.spool.spare): finished messages' files kept for new ones.

What must hold: a spare is never two messages' file at once and never replaces a file that
is there; a new message written into a spare holds its own bytes and nothing of the old
file's (which was longer); the pool never holds more than its slots, nor a big file's
blocks; anything in spare/ that the spool did not put there (a link, a directory) is never
written through.  Real files, a real spool, the receivers' real PendingMessage and the
delivery side's real Spool.remove_message.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mta.receive.spool_writer import Commit, commit_batch
from mta.receive.spooler import Spooler
from mta.spool.envelope import Envelope, Recipient
from mta.spool.format import write_header_file
from mta.spool.ids import new_message_id
from mta.spool.spare import SPARE_MAX_SIZE, SparePool, rename_noreplace
from mta.spool.store import Spool


def spare_names(directory: Path) -> set[str]:
    spare = directory / "spare"
    return set(os.listdir(spare)) if spare.exists() else set()


def make_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_file_put_in_the_pool_is_taken_back_under_a_new_name(tmp_path: Path) -> None:
    pool = SparePool(str(tmp_path), 4)
    old = make_file(tmp_path / "old-D", b"old contents\n")
    inode = old.stat().st_ino
    assert pool.put(str(old))
    assert not old.exists()
    assert len(spare_names(tmp_path)) == 1
    fd = pool.take(str(tmp_path / "new-D"))
    assert fd is not None
    try:
        assert os.fstat(fd).st_ino == inode  # the same file: nothing freed, nothing allocated
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0  # the taker writes from the start
    finally:
        os.close(fd)
    assert spare_names(tmp_path) == set()
    assert pool.take(str(tmp_path / "other-D")) is None  # the pool is empty now
    assert not (tmp_path / "other-D").exists()


def test_a_take_never_replaces_a_file_that_is_there(tmp_path: Path) -> None:
    pool = SparePool(str(tmp_path), 4)
    assert pool.put(str(make_file(tmp_path / "old", b"spare\n")))
    mine = make_file(tmp_path / "mine-D", b"someone else's message\n")
    assert pool.take(str(mine)) is None  # as O_EXCL would: the caller's create then fails as before
    assert mine.read_bytes() == b"someone else's message\n"
    assert len(spare_names(tmp_path)) == 1  # the spare is still there for the next message
    assert rename_noreplace(str(tmp_path / "spare"), str(tmp_path / "spare")) != 0


def test_the_pool_never_holds_more_than_its_slots(tmp_path: Path) -> None:
    """Three free slots are filled; after that the pool is full, and a file replaces a spare (the
    inode freed is the one the unlink would have freed), so the pool still holds three."""
    pool = SparePool(str(tmp_path), 3)
    first = [make_file(tmp_path / f"f{n}", b"x" * 100) for n in range(3)]
    inodes = {path.stat().st_ino for path in first}
    assert all(pool.put(str(path)) for path in first)
    assert spare_names(tmp_path) == {"0", "1", "2"}
    assert {(tmp_path / "spare" / name).stat().st_ino for name in spare_names(tmp_path)} == inodes
    later = [make_file(tmp_path / f"g{n}", b"y" * 100) for n in range(10)]
    assert all(pool.put(str(path)) for path in later)
    assert spare_names(tmp_path) == {"0", "1", "2"}
    assert not any(path.exists() for path in first + later)


def test_a_big_file_gives_its_blocks_back_before_it_is_kept(tmp_path: Path) -> None:
    pool = SparePool(str(tmp_path), 4)
    big = make_file(tmp_path / "big-D", b"y" * (SPARE_MAX_SIZE + 1))
    small = make_file(tmp_path / "small-D", b"z" * 1000)
    assert pool.put(str(big))
    assert pool.put(str(small), 1000)
    sizes = sorted((tmp_path / "spare" / name).stat().st_size for name in spare_names(tmp_path))
    assert sizes == [0, 1000]


@pytest.mark.parametrize("planted", ["hard link", "symbolic link", "directory"])
def test_what_the_spool_did_not_put_in_spare_is_never_written_through(tmp_path: Path, planted: str) -> None:
    """spare/ is the spool owner's, like input/; still, a take writes only through a regular file with
    one name, so that nothing planted there could make a message's bytes land elsewhere."""
    pool = SparePool(str(tmp_path), 4)
    assert pool.put(str(make_file(tmp_path / "seed", b"s")))  # makes spare/
    for name in spare_names(tmp_path):
        (tmp_path / "spare" / name).unlink()
    victim = make_file(tmp_path / "victim", b"precious\n")
    slot = tmp_path / "spare" / "0"
    if planted == "hard link":
        os.link(victim, slot)
    elif planted == "symbolic link":
        slot.symlink_to(victim)
    else:
        slot.mkdir()
    fd = pool.take(str(tmp_path / "new-D"))
    assert fd is None
    assert victim.read_bytes() == b"precious\n"
    assert not (tmp_path / "new-D").exists()


def test_no_slots_means_no_spare_directory_and_no_spares(tmp_path: Path) -> None:
    pool = SparePool(str(tmp_path), 0)
    path = make_file(tmp_path / "f", b"x")
    assert not pool.put(str(path))
    assert pool.take(str(tmp_path / "g")) is None
    assert path.exists()
    assert not (tmp_path / "spare").exists()


# -- a whole message's life: received into spares, delivered, its files kept again -------------------


def envelope(message_id: str) -> Envelope:
    return Envelope(message_id=message_id, originator_login="mail", originator_uid=8, originator_gid=8,
                    sender_address="bob@example.org", received_time=1_700_000_000,
                    recipients=[Recipient(address="alice@example.com")], headers=[])


def receive(spooler: Spooler, body: bytes) -> str:
    """One message through the receivers' code: PendingMessage, committed by the spool writer."""
    message = spooler.new_message(new_message_id())
    message.write(body)
    header = write_header_file(envelope(message.message_id))
    batch = [Commit(message, header, None, None, None)]
    commit_batch(batch)
    assert batch[0].error is None
    message.release_lock()
    return message.message_id


def deliver(spool: Spool, message_id: str) -> None:
    """What a delivery does at the end: remove the message under its lock."""
    lock = spool.lock(message_id)
    spool.remove_message(message_id)
    lock.release()


def test_messages_received_into_spares_hold_their_own_bytes_only(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", split=True, spare_files=10)
    spool.ensure_directories()
    spooler = Spooler(spool, sync_method="fsync")
    try:
        first = receive(spooler, b"A" * 50_000 + b"\n")
        deliver(spool, first)
        kept = {(spool.directory / "spare" / name).stat().st_ino for name in spare_names(spool.directory)}
        assert len(kept) == 2  # its -H and -D
        assert spool.list_message_ids() == []

        time.sleep(0.06)  # a receiver that found spare/ empty (the first message) looks again 50 ms later
        second = receive(spooler, b"short body\n")  # written into the first message's longer files
        used = {os.stat(spool.input_directory_for(second) / f"{second}-{kind}").st_ino for kind in "DH"}
        assert used == kept
        assert spare_names(spool.directory) == set()
        assert spool.read_envelope(second).message_id == second  # the -H's first line names it
        with spool.open_body(second) as body:
            assert body.read() == b"short body\n"  # nothing of the first message's 50,000 bytes
        deliver(spool, second)
        assert {(spool.directory / "spare" / name).stat().st_ino
                for name in spare_names(spool.directory)} == kept
        assert [p for p in (spool.directory / "input").rglob("*") if p.is_file()] == []
    finally:
        spooler.close()


def test_a_removed_message_keeps_its_data_file_locked_until_it_is_let_go(tmp_path: Path) -> None:
    """The -D carries the message's lock: it becomes a spare only once the lock is released, so a
    receiver never takes a file some process still holds locked."""
    spool = Spool(tmp_path / "spool", spare_files=10)
    spool.ensure_directories()
    spooler = Spooler(spool, sync_method="fsync")
    try:
        message_id = receive(spooler, b"body\n")
        lock = spool.lock(message_id)
        spool.remove_message(message_id)
        assert len(spare_names(spool.directory)) == 1  # the -H, at once
        assert (spool.input_directory_for(message_id) / f"{message_id}-D").exists()
        lock.release()
        assert len(spare_names(spool.directory)) == 2
        assert not (spool.input_directory_for(message_id) / f"{message_id}-D").exists()
    finally:
        spooler.close()


def test_without_spare_files_a_message_is_unlinked_as_in_exim(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.ensure_directories()
    spooler = Spooler(spool, sync_method="fsync")
    try:
        deliver(spool, receive(spooler, b"body\n"))
        assert not (spool.directory / "spare").exists()
        assert [p for p in (spool.directory / "input").rglob("*") if p.is_file()] == []
    finally:
        spooler.close()
