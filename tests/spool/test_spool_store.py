"""The spool directory: create/commit/read/list, abort, locks across
processes, the journal, split directories, crashes, tidying."""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path

import pytest

from mta.errors import LockedError, SpoolError, SpoolFormatError
from mta.spool.format import Envelope, Recipient, SpoolHeader, read_header_file
from mta.spool.ids import new_message_id
from mta.spool.store import NoSuchMessage, Spool
from tests.spool.spool_helpers import Child

BODY = b"Hello Bob,\n\nsee you on Friday.\n"


# One arrival time for every envelope a test makes: a test that writes one and compares
# it with another made later must not fail because a second boundary fell between them.
RECEIVED_TIME = int(time.time())


def envelope_for(message_id: str, *recipients: str) -> Envelope:
    return Envelope(
        message_id=message_id,
        originator_login="mta",
        originator_uid=os.getuid(),
        originator_gid=os.getgid(),
        sender_address="alice@example.com",
        received_time=RECEIVED_TIME,
        received_time_usec=0,
        body_linecount=BODY.count(b"\n"),
        max_received_linelength=20,
        recipients=[Recipient(r) for r in recipients or ("bob@example.org",)],
        headers=[SpoolHeader("F", "From: alice@example.com\n"), SpoolHeader(" ", "Subject: Friday\n")],
    )


def make_message(spool: Spool, body: bytes = BODY, *recipients: str) -> str:
    message_id = new_message_id()
    with spool.new_message(message_id) as writer:
        writer.data_file.write(body)
        writer.commit(envelope_for(message_id, *recipients))
    return message_id


def spool_files(spool: Spool) -> list[str]:
    """Every file under the spool, relative, sorted."""
    return sorted(str(p.relative_to(spool.directory)) for p in spool.directory.rglob("*") if p.is_file())


CHILD_PRELUDE = """
import os, sys, time
from mta.spool.store import Spool
spool = Spool(sys.argv[1], split=sys.argv[2] == "split")
"""


def child(spool: Spool, body: str, *args: str) -> Child:
    """Another process with its own Spool on the same directory."""
    split = "split" if spool.split else "flat"
    return Child(CHILD_PRELUDE + body, str(spool.directory), split, *args)


# ---------------------------------------------------------------------------
# Layout


def test_ensure_directories(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "var" / "spool" / "mta")
    spool.ensure_directories()
    for name in ("input", "msglog", "db", "log"):
        path = spool.directory / name
        assert path.is_dir()
        assert stat.S_IMODE(path.stat().st_mode) == 0o750
    spool.ensure_directories()  # idempotent


def test_ensure_directories_reports_unwritable_spool(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SpoolError, match="spool directory"):
        Spool(blocker / "spool").ensure_directories()


# ---------------------------------------------------------------------------
# Creating, reading, listing


def test_create_commit_read_list(spool: Spool) -> None:
    message_id = new_message_id()
    with spool.new_message(message_id) as writer:
        for chunk in (BODY[:5], BODY[5:]):
            writer.data_file.write(chunk)
        assert spool.list_message_ids() == []  # not a message until committed
        assert not spool.exists(message_id)
        writer.commit(envelope_for(message_id))
        assert spool.exists(message_id)
    assert spool.list_message_ids() == [message_id]
    assert spool_files(spool) == [f"input/{message_id}-D", f"input/{message_id}-H"]

    data_path = spool.directory / "input" / f"{message_id}-D"
    assert data_path.read_bytes() == f"{message_id}-D\n".encode() + BODY
    for suffix in ("-D", "-H"):
        mode = (spool.directory / "input" / f"{message_id}{suffix}").stat().st_mode
        assert stat.S_IMODE(mode) == 0o640

    assert spool.read_envelope(message_id) == envelope_for(message_id)
    with spool.open_body(message_id) as body:
        assert body.read() == BODY
    assert spool.body_size(message_id) == len(BODY)
    assert not spool.is_locked(message_id)


def test_list_is_oldest_first_and_ignores_other_files(spool: Spool) -> None:
    ids = [make_message(spool) for _ in range(5)]
    (spool.directory / "input" / "hdr.1xV6uE-0005SY-29").write_bytes(b"x")
    (spool.directory / "input" / "junk-H").write_bytes(b"x")
    (spool.directory / "input" / "1xV6uE-0005SY-29-D").write_bytes(b"x")  # no -H: unfinished
    (spool.directory / "input" / "1xV6uE-0005SY-29-J").write_bytes(b"x")
    assert spool.list_message_ids() == ids


def test_list_reads_old_and_new_ids(spool: Spool) -> None:
    new = make_message(spool)
    old = "1xV6uE-0005SY-29"  # 2026, Exim 4.96 form: older than nothing made now
    with spool.new_message(old) as writer:
        writer.commit(envelope_for(old))
    assert set(spool.list_message_ids()) == {new, old}


def test_large_body_streams(spool: Spool) -> None:
    message_id = new_message_id()
    chunk = b"x" * 65535 + b"\n"
    with spool.new_message(message_id) as writer:
        for _ in range(160):  # 10 MiB, written as it "arrives"
            writer.data_file.write(chunk)
        writer.commit(envelope_for(message_id))
    assert spool.body_size(message_id) == 160 * len(chunk)


def test_open_body_checks_the_first_line(spool: Spool) -> None:
    message_id = make_message(spool)
    (spool.directory / "input" / f"{message_id}-D").write_bytes(b"someone-else-D\nbody\n")
    with pytest.raises(SpoolFormatError, match="first line"):
        spool.open_body(message_id)


def test_held_body_is_read_through_the_lock(spool: Spool) -> None:
    message_id = make_message(spool)
    assert spool.held_body(message_id, 1000) is None  # not locked here: open_body serves
    with spool.lock(message_id):
        data_file = spool.directory / "input" / f"{message_id}-D"
        data_file.rename(data_file.with_name("moved-D"))  # what is read is the locked file, not a path
        assert spool.held_body(message_id, len(BODY)) == BODY
        assert spool.held_body(message_id, len(BODY) - 1) is None  # larger than the limit


def test_held_body_checks_the_first_line(spool: Spool) -> None:
    message_id = make_message(spool)
    (spool.directory / "input" / f"{message_id}-D").write_bytes(f"{message_id}-X\nbody\n".encode())
    with spool.lock(message_id), pytest.raises(SpoolFormatError, match="first line"):
        spool.held_body(message_id, 1000)


def test_missing_message(spool: Spool) -> None:
    missing = new_message_id()
    calls = (
        spool.read_envelope,
        spool.open_body,
        spool.body_size,
        spool.lock,
        spool.is_locked,
        spool.read_journal,
    )
    for call in calls:
        with pytest.raises(NoSuchMessage):
            call(missing)


def test_malformed_header_is_a_format_error(spool: Spool) -> None:
    message_id = make_message(spool)
    path = spool.directory / "input" / f"{message_id}-H"
    path.write_bytes(path.read_bytes().replace(b"\n1\n", b"\n7\n"))
    with pytest.raises(SpoolFormatError):
        spool.read_envelope(message_id)


def test_ids_that_are_not_ids_are_refused(spool: Spool) -> None:
    for call in (spool.new_message, spool.read_envelope, spool.lock, spool.remove_message):
        with pytest.raises(ValueError):
            call("../../etc/passwd")


# ---------------------------------------------------------------------------
# Abort: no partial files remain


def test_abort_leaves_nothing(spool: Spool) -> None:
    writer = spool.new_message(new_message_id())
    writer.data_file.write(BODY)
    writer.abort()
    assert spool_files(spool) == []
    writer.abort()  # idempotent


def test_exception_in_block_leaves_nothing(spool: Spool) -> None:
    with pytest.raises(RuntimeError), spool.new_message(new_message_id()) as writer:
        writer.data_file.write(BODY)
        raise RuntimeError("connection lost")
    assert spool_files(spool) == []


def test_block_left_without_commit_leaves_nothing(spool: Spool) -> None:
    with spool.new_message(new_message_id()) as writer:
        writer.data_file.write(BODY)
    assert spool_files(spool) == []


def test_failed_commit_leaves_nothing(spool: Spool) -> None:
    message_id = new_message_id()
    with pytest.raises(SpoolFormatError), spool.new_message(message_id) as writer:
        writer.data_file.write(BODY)
        bad = envelope_for(message_id)
        bad.sender_address = "a@b\r\n-frozen 1"
        writer.commit(bad)
    assert spool_files(spool) == []
    # The id's lock is free again: the message can be spooled anew.
    with spool.new_message(message_id) as writer:
        writer.commit(envelope_for(message_id))


def test_abort_after_commit_keeps_the_message(spool: Spool) -> None:
    message_id = new_message_id()
    writer = spool.new_message(message_id)
    writer.commit(envelope_for(message_id))
    writer.abort()
    writer.close()
    assert spool.list_message_ids() == [message_id]


def test_commit_needs_the_matching_id(spool: Spool) -> None:
    with spool.new_message(new_message_id()) as writer, pytest.raises(ValueError):
        writer.commit(envelope_for(new_message_id()))


def test_duplicate_id_is_refused_and_the_first_kept(spool: Spool) -> None:
    message_id = make_message(spool)
    with pytest.raises(SpoolError):
        spool.new_message(message_id)
    assert spool.read_envelope(message_id) == envelope_for(message_id)


# ---------------------------------------------------------------------------
# Locks across processes

HOLD_LOCK = """
lock = spool.lock(sys.argv[3])
print("locked", flush=True)
sys.stdin.readline()
"""


def test_lock_held_by_another_process(spool: Spool) -> None:
    message_id = make_message(spool)
    with child(spool, HOLD_LOCK, message_id) as holder:
        assert holder.read_line() == "locked"
        assert spool.is_locked(message_id)
        with pytest.raises(LockedError):
            spool.lock(message_id)
        with pytest.raises(LockedError):
            spool.remove_message(message_id)
        holder.send_line("")
        assert holder.finish() == 0
    assert not spool.is_locked(message_id)
    with spool.lock(message_id) as lock:
        assert lock.held
    assert not spool.is_locked(message_id)


def test_lock_dies_with_its_process(spool: Spool) -> None:
    message_id = make_message(spool)
    with child(spool, HOLD_LOCK, message_id) as holder:
        assert holder.read_line() == "locked"
        holder.kill(signal.SIGKILL)
    assert not spool.is_locked(message_id)
    spool.lock(message_id).release()


def test_message_being_received_is_locked_for_other_processes(spool: Spool) -> None:
    message_id = new_message_id()
    with spool.new_message(message_id) as writer:
        writer.data_file.write(BODY)
        probe = """
from mta.errors import LockedError
try:
    spool.lock(sys.argv[3])
    print("got it")
except LockedError:
    print("LockedError")
"""
        with child(spool, probe, message_id) as prober:
            assert prober.read_line() == "LockedError"
        writer.commit(envelope_for(message_id))
        assert spool.is_locked(message_id)  # still ours until the block ends
    assert not spool.is_locked(message_id)


def test_second_lock_in_the_same_process_is_refused(spool: Spool) -> None:
    message_id = make_message(spool)
    with spool.lock(message_id):
        with pytest.raises(LockedError):
            spool.lock(message_id)
        # A separate Spool object is a separate open file: still refused.
        with pytest.raises(LockedError):
            Spool(spool.directory).lock(message_id)
        # Reading the body (another descriptor, opened and closed) keeps the lock.
        with spool.open_body(message_id) as body:
            body.read()
        assert spool.is_locked(message_id)
    spool.lock(message_id).release()


def test_detach_lock_hands_over_the_lock(spool: Spool) -> None:
    message_id = new_message_id()
    with spool.new_message(message_id) as writer:
        writer.commit(envelope_for(message_id))
        lock = writer.detach_lock()
    assert spool.is_locked(message_id)
    spool.rewrite_envelope(envelope_for(message_id, "carol@example.org"))
    lock.release()
    assert not spool.is_locked(message_id)


def test_lock_of_a_removed_message_is_refused(spool: Spool) -> None:
    message_id = make_message(spool)
    spool.remove_message(message_id)
    with pytest.raises(NoSuchMessage):
        spool.lock(message_id)


# ---------------------------------------------------------------------------
# Rewriting -H


def test_rewrite_needs_the_lock(spool: Spool) -> None:
    message_id = make_message(spool)
    with pytest.raises(ValueError, match="lock"):
        spool.rewrite_envelope(envelope_for(message_id))


def test_rewrite_replaces_atomically(spool: Spool) -> None:
    message_id = make_message(spool, BODY, "a@example.org", "b@example.org")
    with spool.lock(message_id):
        envelope = spool.read_envelope(message_id)
        envelope.non_recipients.add("a@example.org")
        envelope.deliver_firsttime = False
        spool.rewrite_envelope(envelope)
    assert spool.read_envelope(message_id).non_recipients == {"a@example.org"}
    assert spool_files(spool) == [f"input/{message_id}-D", f"input/{message_id}-H"]


def test_rewrite_with_bad_value_keeps_the_old_header(spool: Spool) -> None:
    message_id = make_message(spool)
    before = (spool.directory / "input" / f"{message_id}-H").read_bytes()
    with spool.lock(message_id):
        bad = spool.read_envelope(message_id)
        bad.helo_name = "x\n-frozen 1"
        with pytest.raises(SpoolFormatError):
            spool.rewrite_envelope(bad)
    assert (spool.directory / "input" / f"{message_id}-H").read_bytes() == before


def test_rewrite_replaces_a_stale_temporary(spool: Spool) -> None:
    message_id = make_message(spool)
    (spool.directory / "input" / f"hdr.{message_id}").write_bytes(b"left by a crash")
    with spool.lock(message_id):
        spool.rewrite_envelope(envelope_for(message_id, "z@example.org"))
    assert [r.address for r in spool.read_envelope(message_id).recipients] == ["z@example.org"]
    assert not (spool.directory / "input" / f"hdr.{message_id}").exists()


# ---------------------------------------------------------------------------
# Journal


def test_journal_append_read_remove(spool: Spool) -> None:
    message_id = make_message(spool, BODY, "a@x", "b@x")
    with pytest.raises(ValueError, match="lock"):
        spool.append_journal(message_id, "a@x")
    with spool.lock(message_id):
        spool.append_journal(message_id, "a@x")
        spool.append_journal(message_id, "b@x")
        assert spool.read_journal(message_id) == ["a@x", "b@x"]
        spool.remove_journal(message_id)
        assert spool.read_journal(message_id) == []
        spool.remove_journal(message_id)  # nothing to remove is fine


def test_a_journal_begun_after_none_was_found_is_still_removed(spool: Spool) -> None:
    """The spool remembers that a held message had no -J when it looked (so that removing the
    message does not try to unlink one); a -J this holder writes afterwards is removed all the
    same, by remove_journal and by remove_message, and a new lock looks again."""
    journal = spool.directory / "input"
    for remove in ("journal", "message"):
        message_id = make_message(spool, BODY, "a@x", "b@x")
        with spool.lock(message_id):
            assert spool.read_journal(message_id) == []
            spool.append_journal(message_id, "a@x")
            assert (journal / f"{message_id}-J").exists()
            if remove == "journal":
                spool.remove_journal(message_id)
                assert not (journal / f"{message_id}-J").exists()
                spool.append_journal(message_id, "b@x")
            else:
                spool.remove_message(message_id)
                assert not list(journal.glob(f"{message_id}-*"))
        if remove == "journal":
            with spool.lock(message_id):
                assert spool.read_journal(message_id) == ["b@x"]
                spool.remove_message(message_id)
            assert not list(journal.glob(f"{message_id}-*"))


def test_journal_torn_line_after_crash(spool: Spool) -> None:
    message_id = make_message(spool, BODY, "a@x", "bob@example.com")
    with spool.lock(message_id):
        spool.append_journal(message_id, "a@x")
    with open(spool.directory / "input" / f"{message_id}-J", "ab") as journal:
        journal.write(b"bob@exa")  # the write() that a crash cut short
    assert spool.read_journal(message_id) == ["a@x"]


def test_journal_entry_survives_sigkill_right_after_append(spool: Spool) -> None:
    message_id = make_message(spool, BODY, "a@x", "b@x")
    deliver = """
lock = spool.lock(sys.argv[3])
spool.append_journal(sys.argv[3], "a@x")
print("appended", flush=True)
time.sleep(60)
"""
    with child(spool, deliver, message_id) as deliverer:
        assert deliverer.read_line() == "appended"
        deliverer.kill(signal.SIGKILL)
    assert spool.read_journal(message_id) == ["a@x"]
    assert spool.read_envelope(message_id).recipients[0].address == "a@x"


# ---------------------------------------------------------------------------
# msglog


def test_msglog(spool: Spool) -> None:
    message_id = make_message(spool)
    assert spool.read_msglog(message_id) is None
    spool.append_msglog(message_id, "2026-11-22 12:43:32 Received from alice@example.com")
    spool.append_msglog(message_id, "2026-11-22 12:43:33 bob@example.org: delivered\n")
    assert spool.read_msglog(message_id) == (
        "2026-11-22 12:43:32 Received from alice@example.com\n"
        "2026-11-22 12:43:33 bob@example.org: delivered\n"
    )
    with pytest.raises(SpoolFormatError):
        spool.append_msglog(message_id, "two\nlines")
    spool.remove_msglog(message_id, preserve=True)
    assert (spool.directory / "msglog.OLD" / message_id).read_text().count("\n") == 2
    assert spool.read_msglog(message_id) is None


# ---------------------------------------------------------------------------
# Removing


def test_remove_message_removes_everything(spool: Spool) -> None:
    message_id = make_message(spool)
    spool.append_msglog(message_id, "line")
    with spool.lock(message_id):
        spool.append_journal(message_id, "bob@example.org")
        spool.remove_message(message_id)
    assert spool_files(spool) == []
    assert spool.list_message_ids() == []


def test_retired_message_is_removed_without_looking_again(spool: Spool) -> None:
    message_id = make_message(spool)
    with spool.lock(message_id):
        spool.append_msglog(message_id, "line")
        spool.retire_message(message_id)
        assert spool_files(spool) == [f"input/{message_id}-D"]
        # Anything named like its -H now is not this message's (remove_message does not look again).
        (spool.directory / "input" / f"{message_id}-H").write_text("not ours")
        spool.remove_message(message_id)
        assert spool_files(spool) == [f"input/{message_id}-H"]
    # Released: for a later holder, remove_message removes everything again.
    spool.remove_message(message_id)
    assert spool_files(spool) == []


def test_remove_message_preserving_msglog(spool: Spool) -> None:
    message_id = make_message(spool)
    spool.append_msglog(message_id, "line")
    spool.remove_message(message_id, preserve_msglog=True)
    assert spool_files(spool) == [f"msglog.OLD/{message_id}"]


def test_remove_header_without_data(spool: Spool) -> None:
    message_id = make_message(spool)
    (spool.directory / "input" / f"{message_id}-D").unlink()
    spool.remove_message(message_id)
    assert spool_files(spool) == []
    with pytest.raises(NoSuchMessage):
        spool.remove_message(message_id)


# ---------------------------------------------------------------------------
# split_spool_directory


def test_split_layout(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", split=True)
    spool.ensure_directories()
    message_id = make_message(spool)
    sub = message_id[5]
    spool.append_msglog(message_id, "line")
    assert spool_files(spool) == [
        f"input/{sub}/{message_id}-D",
        f"input/{sub}/{message_id}-H",
        f"msglog/{sub}/{message_id}",
    ]
    assert spool.list_message_ids() == [message_id]
    with spool.lock(message_id):
        spool.append_journal(message_id, "bob@example.org")
        assert (spool.directory / "input" / sub / f"{message_id}-J").exists()
    assert spool.read_msglog(message_id) == "line\n"
    spool.remove_message(message_id)
    assert spool_files(spool) == []


@pytest.mark.parametrize("made_split", [False, True])
def test_messages_in_the_other_place_are_found(tmp_path: Path, made_split: bool) -> None:
    before = Spool(tmp_path / "spool", split=made_split)
    before.ensure_directories()
    message_id = make_message(before)
    before.append_msglog(message_id, "line")
    after = Spool(tmp_path / "spool", split=not made_split)  # the setting changed
    assert after.list_message_ids() == [message_id]
    assert after.read_envelope(message_id).message_id == message_id
    assert after.read_msglog(message_id) == "line\n"
    with after.lock(message_id):
        after.append_journal(message_id, "bob@example.org")
        after.rewrite_envelope(after.read_envelope(message_id))
    assert len(spool_files(after)) == 4  # -D, -H, -J and msglog, all still in the old place
    after.remove_message(message_id)
    assert spool_files(after) == []


def test_file_in_a_mismatched_subdirectory_is_not_listed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", split=True)
    spool.ensure_directories()
    message_id = make_message(spool)
    wrong = "0" if message_id[5] != "0" else "1"
    (spool.directory / "input" / wrong).mkdir()
    for suffix in ("-D", "-H"):
        os.rename(
            spool.directory / "input" / message_id[5] / f"{message_id}{suffix}",
            spool.directory / "input" / wrong / f"{message_id}{suffix}",
        )
    assert spool.list_message_ids() == []


# ---------------------------------------------------------------------------
# Crashes: a half message is never listed, and is tidied

STAGE_AND_WAIT = """
from mta.spool.format import Envelope, Recipient
message_id = {message_id!r}
writer = spool.new_message(message_id)
writer.data_file.write(b"body\\n" * 1000)
if {stage!r}:
    writer._stage(Envelope(message_id=message_id, originator_login="x", originator_uid=0, originator_gid=0,
                           sender_address="a@b", received_time=0, recipients=[Recipient("c@d")]))
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("stage", [True, False], ids=["killed before -H rename", "killed mid-body"])
def test_crash_before_header_rename(tmp_path: Path, split: bool, stage: bool) -> None:
    spool = Spool(tmp_path / "spool", split=split)
    spool.ensure_directories()
    complete = make_message(spool)
    message_id = new_message_id()
    with child(spool, STAGE_AND_WAIT.format(message_id=message_id, stage=stage)) as receiver:
        assert receiver.read_line() == "ready"
        assert spool.is_locked(message_id)  # a queue runner would skip it
        receiver.kill(signal.SIGKILL)  # no cleanup code runs

    directory = spool.directory / "input" / (message_id[5] if split else "")
    leftovers = {p.name for p in directory.iterdir() if message_id in p.name}
    assert leftovers == ({f"{message_id}-D", f"hdr.{message_id}"} if stage else {f"{message_id}-D"})
    assert spool.list_message_ids() == [complete]
    assert not spool.exists(message_id)
    assert not spool.is_locked(message_id)
    with pytest.raises(NoSuchMessage):
        spool.read_envelope(message_id)

    assert spool.tidy_temporaries(max_age=3600) == []  # too recent to be sure
    removed = spool.tidy_temporaries(max_age=3600, now=time.time() + 7200)
    assert {p.name for p in removed} == leftovers
    assert spool.list_message_ids() == [complete]
    assert spool.read_envelope(complete).message_id == complete
    assert not any(message_id in p.name for p in directory.iterdir())


def test_tidy_leaves_locked_and_complete_messages(spool: Spool) -> None:
    complete = make_message(spool)
    in_progress = new_message_id()
    with spool.new_message(in_progress) as writer:
        writer.data_file.write(BODY)
        (spool.directory / "input" / f"hdr.{complete}").write_bytes(b"stale")
        removed = spool.tidy_temporaries(max_age=0, now=time.time() + 10)
        assert [p.name for p in removed] == [f"hdr.{complete}"]
        assert (spool.directory / "input" / f"{in_progress}-D").exists()
        writer.commit(envelope_for(in_progress))
    assert spool.list_message_ids() == [complete, in_progress]


def test_tidy_skips_a_message_locked_by_another_process(spool: Spool) -> None:
    message_id = new_message_id()
    with child(spool, STAGE_AND_WAIT.format(message_id=message_id, stage=False)) as receiver:
        assert receiver.read_line() == "ready"
        assert spool.tidy_temporaries(max_age=0, now=time.time() + 7200) == []
        assert (spool.directory / "input" / f"{message_id}-D").exists()


def test_tidy_removes_orphan_journal(spool: Spool) -> None:
    orphan = spool.directory / "input" / "1xV6uE-0005SY-29-J"
    orphan.write_bytes(b"a@x\n")
    assert spool.tidy_temporaries(max_age=0, now=time.time() + 10) == [orphan]


def test_envelope_read_by_exim_rules(spool: Spool) -> None:
    message_id = make_message(spool)
    data = (spool.directory / "input" / f"{message_id}-H").read_bytes()
    assert read_header_file(data, message_id) == envelope_for(message_id)
    assert data.startswith(f"{message_id}-H\n".encode())


def test_a_spool_file_is_read_whole_and_never_through_a_link_or_a_fifo(tmp_path: Path) -> None:
    from mta.spool.files import read_regular_file

    for size in (0, 1, 4095, 4096, 70_000):
        data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        (tmp_path / f"f{size}").write_bytes(data)
        assert read_regular_file(tmp_path / f"f{size}") == data
    (tmp_path / "link").symlink_to(tmp_path / "f1")
    os.mkfifo(tmp_path / "fifo")
    for planted in ("link", "fifo"):
        with pytest.raises(OSError):
            read_regular_file(tmp_path / planted)  # neither followed nor waited on
    with pytest.raises(FileNotFoundError):
        read_regular_file(tmp_path / "missing")


def test_a_directory_another_process_made_meanwhile_is_made_durable_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two receivers making the same split sub-directory: the one that loses the race to mkdir
    must not acknowledge a message in it before the directory's entry is durable."""
    from mta.spool import files

    target = tmp_path / "input" / "E"
    (tmp_path / "input").mkdir()
    real_mkdir, synced = os.mkdir, []
    real_fsync = os.fsync

    def mkdir_lost_race(path: object, mode: int = 0o777) -> None:
        real_mkdir(path, mode)  # the other process's mkdir, just before ours
        raise FileExistsError(17, "File exists", str(path))

    def fsync_spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "mkdir", mkdir_lost_race)
    monkeypatch.setattr(os, "fsync", fsync_spy)
    files.make_directory(target)
    assert target.is_dir()
    assert synced == [str(tmp_path / "input")]
