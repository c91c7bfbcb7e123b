"""The receiving process's spool writer (mta.receive.spool_writer): batches, failures, cancellation.

Several sessions' messages are committed as one batch, sharing the
directory fsyncs.  What must hold whatever the batch: a message is reported
durable only once its -D and -H are fsynced and the -H is renamed into place
with the directory fsynced (checked on the recorded system calls of a real
process); one message's failure fails that message only; a session
cancelled mid-batch leaves a whole message or none, never an -H without -D.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mta.errors import SpoolError
from mta.receive.spool_writer import Commit, commit_batch, commit_cycle
from mta.receive.spooler import PendingMessage, Spooler
from mta.spool.envelope import Envelope, Recipient
from mta.spool.ids import new_message_id
from mta.spool.store import Spool
from tests.support.durability import SyscallTrace, assert_committed

REPO_ROOT = Path(__file__).resolve().parents[2]


def envelope(message_id: str) -> Envelope:
    return Envelope(message_id=message_id, originator_login="mail", originator_uid=8, originator_gid=8,
                    sender_address="bob@example.org", received_time=1_700_000_000,
                    recipients=[Recipient(address="alice@example.com")], headers=[])


def make_spool(tmp_path: Path) -> Spool:
    spool = Spool(tmp_path / "spool")
    spool.ensure_directories()
    return spool


def input_files(spool: Spool) -> set[str]:
    return {p.name for p in (spool.directory / "input").iterdir()}


def received(spooler: Spooler, count: int, body: bytes = b"body\n") -> list[PendingMessage]:
    """`count` messages with their text in hand, ready to commit."""
    messages = [spooler.new_message(new_message_id()) for _ in range(count)]
    for message in messages:
        message.write(b"Subject: x\n\n" + body)
    return messages


def break_header_of(message: PendingMessage) -> None:
    """Make the message's hdr.ID impossible to create (a directory is in the way): its commit fails."""
    (message.directory / f"hdr.{message.message_id}").mkdir()


def test_one_failure_in_a_batch_fails_only_that_message(tmp_path: Path) -> None:
    spooler = Spooler(make_spool(tmp_path))
    try:
        messages = received(spooler, 3)
        break_header_of(messages[1])
        logged: list[str] = []
        batch = [Commit(m, b"header\n", lambda m=m: logged.append(m.message_id), None, None) for m in messages]
        commit_batch(batch)
        assert batch[0].error is None and batch[2].error is None
        assert isinstance(batch[1].error, SpoolError)
        files = input_files(spooler.spool)
        for good in (messages[0], messages[2]):
            assert {f"{good.message_id}-D", f"{good.message_id}-H"} <= files
            assert good.is_committed
        assert f"{messages[1].message_id}-H" not in files
        assert not messages[1].is_committed
        assert logged == [messages[0].message_id, messages[2].message_id]  # the arrival of the good ones only
        for message in messages:
            message.release_lock()
    finally:
        spooler.close()


def test_a_failed_syncfs_fails_the_whole_batch_and_renames_nothing(tmp_path: Path) -> None:
    """syncfs names no file: when it fails (here on a closed descriptor), no message of the batch
    may be taken for durable, and none of their -H is renamed into place."""
    not_open = 999_999  # a descriptor number nothing has open (a closed one would be reused by -D)
    spooler = Spooler(make_spool(tmp_path))
    try:
        messages = received(spooler, 3)
        logged: list[str] = []
        batch = [Commit(m, b"header\n", lambda m=m: logged.append(m.message_id), None, None) for m in messages]
        commit_batch(batch, filesystem=not_open)
        assert all(isinstance(c.error, SpoolError) and "sync failed" in str(c.error) for c in batch)
        assert not any(m.is_committed for m in messages) and logged == []
        assert not [n for n in input_files(spooler.spool) if n.endswith("-H")]
    finally:
        for message in messages:
            message.release_lock()
        spooler.close()


def test_a_batch_committed_by_syncfs_is_whole_and_a_bad_message_fails_alone(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    spooler = Spooler(spool, sync_method="syncfs")
    try:
        assert spooler.writer._filesystem is not None  # this test machine is Linux
        messages = received(spooler, 3)
        break_header_of(messages[1])
        batch = [Commit(m, b"header\n", None, None, None) for m in messages]
        commit_batch(batch, filesystem=spooler.writer._filesystem)
        assert [c.error is None for c in batch] == [True, False, True]
        assert {f"{messages[0].message_id}-H", f"{messages[2].message_id}-H"} <= input_files(spool)
        assert messages[0].is_committed and not messages[1].is_committed
    finally:
        for message in messages:
            message.release_lock()
        spooler.close()


def test_the_syncfs_pipeline_renames_a_batch_one_turn_after_its_files(tmp_path: Path) -> None:
    """Each turn renames what the last turn made durable and writes the next batch: a message's
    -H appears only in the turn after its files were synced, and it is committed then."""
    spool = make_spool(tmp_path)
    spooler = Spooler(spool, sync_method="syncfs")
    filesystem = spooler.writer._filesystem
    assert filesystem is not None
    try:
        first, second = received(spooler, 1), received(spooler, 2)
        done, durable = commit_cycle([], [Commit(m, b"header\n", None, None, None) for m in first], filesystem)
        assert done == [] and [c.message for c in durable] == first
        assert f"{first[0].message_id}-H" not in input_files(spool) and not first[0].is_committed
        done, durable = commit_cycle(durable, [Commit(m, b"header\n", None, None, None) for m in second],
                                     filesystem)
        assert [c.message for c in done] == first and first[0].is_committed
        assert f"{first[0].message_id}-H" in input_files(spool)
        assert [c.message for c in durable] == second
        assert not {f"{m.message_id}-H" for m in second} & input_files(spool)
        done, durable = commit_cycle(durable, [], filesystem)
        assert [c.message for c in done] == second and durable == []
        assert all(m.is_committed for m in second)
    finally:
        for message in first + second:
            message.release_lock()
        spooler.close()


def test_a_failed_commit_is_refused_and_removed_the_others_are_kept(tmp_path: Path) -> None:
    async def main() -> list[object]:
        spooler = Spooler(make_spool(tmp_path))
        try:
            messages = received(spooler, 5)
            break_header_of(messages[2])
            results = await asyncio.gather(*(m.commit(envelope(m.message_id)) for m in messages),
                                           return_exceptions=True)
            for message in messages:
                message.release_lock()
            return [*results, messages]
        finally:
            spooler.close()

    *results, messages = asyncio.run(main())
    assert [r is None for r in results] == [True, True, False, True, True]
    assert isinstance(results[2], SpoolError)
    files = input_files(Spool(tmp_path / "spool"))
    bad = messages[2].message_id  # type: ignore[index]
    assert f"{bad}-D" not in files and f"{bad}-H" not in files  # abort() removed what was written
    for index in (0, 1, 3, 4):
        good = messages[index].message_id  # type: ignore[index]
        assert {f"{good}-D", f"{good}-H"} <= files


@pytest.mark.parametrize("moment", ["queued", "writing", "renaming"])
def test_cancelled_sessions_leave_whole_messages_or_none(tmp_path: Path, moment: str) -> None:
    async def main() -> list[BaseException | None]:
        spooler = Spooler(make_spool(tmp_path))
        try:
            messages = received(spooler, 16, b"body line\n" * 2000)
            tasks = [asyncio.create_task(m.commit(envelope(m.message_id))) for m in messages]
            await asyncio.sleep(0)  # every commit is queued for the writer
            # A shutdown cancels the sessions: before the writer starts, while it writes, or when
            # the first -H is in place and the others are being renamed.
            wanted = {"queued": None, "writing": "-D", "renaming": "-H"}[moment]
            while wanted and not any(name.endswith(wanted) for name in input_files(spooler.spool)):
                await asyncio.sleep(0.0002)
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for message in messages:
                message.release_lock()
            return results
        finally:
            spooler.close()

    results = asyncio.run(main())
    # (None: that session's batch had ended before the cancellation came.)
    assert all(r is None or isinstance(r, asyncio.CancelledError) for r in results)
    files = input_files(Spool(tmp_path / "spool"))
    assert not [name for name in files if name.startswith("hdr.")]
    for name in files:
        if name.endswith("-H"):
            assert name[:-2] + "-D" in files, f"{name} without its -D"


def test_close_commits_what_is_queued_then_refuses(tmp_path: Path) -> None:
    async def main() -> None:
        spooler = Spooler(make_spool(tmp_path))
        message = received(spooler, 1)[0]
        task = asyncio.create_task(message.commit(envelope(message.message_id)))
        await asyncio.sleep(0)
        await asyncio.get_running_loop().run_in_executor(None, spooler.writer.close)
        await task
        message.release_lock()
        late = Spooler.new_message(spooler, new_message_id())
        with pytest.raises(SpoolError):
            await late.commit(envelope(late.message_id))
        spooler.close()

    asyncio.run(main())
    assert not [n for n in input_files(Spool(tmp_path / "spool")) if n.endswith("-D") and
                n[:-2] + "-H" not in input_files(Spool(tmp_path / "spool"))]


# A child process commits messages through a Spooler, one of them failing, and marks each
# acknowledgement with a file "ack.ID" the moment its commit returns (where a session would
# say 250): the recorded system calls then show what had happened before each acknowledgement.
CHILD = r"""
import asyncio, json, os, sys
from pathlib import Path
from mta.receive.spooler import Spooler
from mta.spool.ids import new_message_id
from mta.spool.store import Spool
from tests.receive.test_spool_writer import envelope

async def main():
    spool = Spool(sys.argv[1])
    spooler = Spooler(spool, sync_method=sys.argv[2])
    messages = [spooler.new_message(new_message_id()) for _ in range(12)]
    for n, message in enumerate(messages):
        message.write(b"Subject: x\n\n" + b"line\n" * (n * 50))
    (messages[5].directory / f"hdr.{messages[5].message_id}").mkdir()

    async def one(message):
        try:
            await message.commit(envelope(message.message_id))
        except Exception:
            return message.message_id, False
        os.close(os.open(Path(sys.argv[1]) / f"ack.{message.message_id}", os.O_WRONLY | os.O_CREAT, 0o600))
        message.release_lock()
        return message.message_id, True

    results = await asyncio.gather(*(one(m) for m in messages))
    spooler.close()
    print(json.dumps(results))

asyncio.run(main())
"""


@pytest.mark.parametrize("sync_method", ["syncfs", "fsync"])
def test_each_acknowledgement_follows_a_durable_commit(tmp_path: Path, sync_method: str) -> None:
    spool_dir = tmp_path / "spool"
    make_spool(tmp_path)
    trace = SyscallTrace(tmp_path / "trace.jsonl", roots=[spool_dir])
    env = {**os.environ, **trace.env()}
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(REPO_ROOT)])
    done = subprocess.run([sys.executable, "-c", CHILD, str(spool_dir), sync_method], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    events = trace.events()
    assert any(e.op == "syncfs" for e in events) == (sync_method == "syncfs")
    acks = {os.path.basename(e.path or "")[4:]: e.index for e in events
            if e.op == "create" and os.path.basename(e.path or "").startswith("ack.")}
    assert [ok for _id, ok in results].count(False) == 1
    for message_id, ok in results:
        if ok:
            assert_committed(events, message_id, ack=acks[message_id])
        else:
            assert message_id not in acks
            assert not (spool_dir / "input" / f"{message_id}-H").exists()


def test_an_arrival_that_cannot_be_logged_is_still_accepted(tmp_path: Path) -> None:
    """Once the message is durable, a failure of what runs after (the arrival's log lines) is
    reported, not a failed commit: a 4xx would make the client send a second copy."""

    def broken_log() -> None:
        raise OSError(28, "No space left on device")

    async def main() -> tuple[object, PendingMessage]:
        spooler = Spooler(make_spool(tmp_path))
        try:
            [message] = received(spooler, 1)
            result = await message.commit(envelope(message.message_id), broken_log)
            message.release_lock()
            return result, message
        finally:
            spooler.close()

    result, message = asyncio.run(main())
    assert isinstance(result, OSError) and result.errno == 28
    assert message.is_committed
    assert {f"{message.message_id}-D", f"{message.message_id}-H"} <= input_files(Spool(tmp_path / "spool"))


def test_a_queued_messages_log_written_after_the_reply_is_there_before_its_lock_is_let_go(tmp_path: Path) -> None:
    # A daemon receiver writes a queued message's log after the 250, in a spool thread; the
    # message stays locked until then, so no queue run can deliver it and remove its log first.
    from mta.config.loader import load_config
    from mta.receive.smtp_context import ReceiverContext
    from mta.runtime import build_runtime

    spool_directory = tmp_path / "spool"
    config_file = tmp_path / "mta.conf"
    config_file.write_text(f"spool_directory = {spool_directory}\nlog_file_path = {tmp_path}/%slog\n")
    runtime = build_runtime(load_config(str(config_file)))
    runtime.spool.ensure_directories()
    spooler = Spooler(runtime.spool)
    context = ReceiverContext(runtime, spooler=spooler)
    context.msglog_after_reply = True
    line = context.queued_msglog_line("bob@example.org H=[127.0.0.1] P=esmtp S=10", 1_700_000_000.0)
    assert line is not None and " Received from bob@example.org H=[127.0.0.1]" in line
    message_id = new_message_id()
    seen_at_release: list[str | None] = []
    context.write_msglog_later(message_id, line,
                               then=lambda: seen_at_release.append(runtime.spool.read_msglog(message_id)))
    spooler.close()  # waits for its threads
    assert seen_at_release == [line + "\n"]
    context.msglog_after_reply = False
    assert context.queued_msglog_line("x", 0.0) is None  # outside a daemon: written before the reply
