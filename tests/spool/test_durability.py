"""Durability, tested on the real `mta` command: nothing is acknowledged before it is on disk.

Each test runs the CLI with the system-call recorder of tests/support/durability.py
and checks the order DESIGN.md promises: -D and hdr.ID fsynced, hdr.ID renamed
to -H, the directory fsynced, and only then exit 0; each -J line fsynced before
the process does anything else; the -H rewrite at the end of a delivery fsynced
and renamed, and -J removed only once that is durable; each delivery durable
(in -J, or the message's -H durably removed when it completes the message)
before it is logged.

The checker itself is tested first, on hand-made traces, so that it is known to
fail when a step is missing or out of order.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.durability import (
    DurabilityError,
    Event,
    SyscallTrace,
    assert_committed,
    assert_deliveries_recorded,
    assert_header_rewritten,
    assert_journal_durable,
    exit_index,
)
from tests.support.mta import SMARTHOST_CONFIG, MtaEnv
from tests.support.sink import SmtpSink

ID = "1xZ0qu-000000005HX-3m60"
INPUT = "/spool/input"
D, H, T, J = f"{INPUT}/{ID}-D", f"{INPUT}/{ID}-H", f"{INPUT}/hdr.{ID}", f"{INPUT}/{ID}-J"
LOG, MSGLOG = "/spool/log/mainlog", f"/spool/msglog/{ID}"


def trace_of(*steps: tuple[str, ...]) -> list[Event]:
    """Events from short tuples: ("fsync", path[, size]), ("write", path), ("rename", src, dst), ..."""
    events = []
    for index, step in enumerate(steps):
        op, *rest = step
        pid = 2 if op.endswith("@child") else 1
        op = op.removesuffix("@child")
        if op == "rename":
            events.append(Event(index, pid, op, rest[0], dst=rest[1]))
        elif op == "syncfs":  # ("syncfs",): the whole file system
            events.append(Event(index, pid, op, INPUT, is_dir=True))
        elif op in ("fsync", "fdatasync"):
            size = int(rest[1]) if len(rest) > 1 else None
            events.append(Event(index, pid, op, rest[0], size=size, is_dir=rest[0] == INPUT))
        elif op == "exit":
            events.append(Event(index, pid, op))
        elif op == "log":  # ("log", text): a main log line
            events.append(Event(index, pid, "write", LOG, n=len(rest[0]), text=f"2026-12-03 14:00:00 {ID} {rest[0]}"))
        else:
            events.append(Event(index, pid, op, rest[0], n=1))
    return events


COMMIT = (
    ("write", D),
    ("fsync", INPUT),
    ("fsync", D, "100"),
    ("write", T),
    ("fsync", T, "50"),
    ("rename", T, H),
    ("fsync", INPUT),
    ("exit",),
)


def test_checker_accepts_the_promised_order() -> None:
    events = trace_of(*COMMIT)
    assert_committed(events, ID, ack=exit_index(events, 1), data_size=100, header_size=50)


@pytest.mark.parametrize(
    ("steps", "rule"),
    [
        ([s for s in COMMIT if s != ("fsync", D, "100")], "before any fsync of -D"),
        ([s for s in COMMIT if s != ("fsync", T, "50")], "without an fsync"),
        ([*COMMIT[:-2], ("exit",), ("fsync", INPUT)], "no fsync of the directory"),
        ([*COMMIT[:3], ("write", D), *COMMIT[3:]], "-D written after its last fsync"),
        ([*COMMIT[:4], ("fsync", T, "50"), ("write", T), *COMMIT[5:]], "written after its last fsync"),
        ([s for s in COMMIT if s[0] != "rename"], "no rename"),
    ],
    ids=["no-fsync-D", "no-fsync-hdr", "dir-fsync-after-exit", "D-written-late", "hdr-written-late", "no-rename"],
)
def test_checker_refuses_a_missing_or_late_step(steps: list[tuple[str, ...]], rule: str) -> None:
    events = trace_of(*steps)
    with pytest.raises(DurabilityError, match=rule):
        assert_committed(events, ID, ack=exit_index(events, 1))


# The daemon's group commit (spool_sync_method = syncfs): one syncfs for the files, one for the renames.
SYNCFS_COMMIT = (("write", D), ("write", T), ("syncfs",), ("rename", T, H), ("syncfs",), ("exit",))


def test_checker_accepts_a_group_commit_by_syncfs() -> None:
    events = trace_of(*SYNCFS_COMMIT)
    assert_committed(events, ID, ack=exit_index(events, 1), data_size=100, header_size=50)


@pytest.mark.parametrize(
    ("steps", "rule"),
    [
        ([("write", D), ("write", T), ("rename", T, H), ("syncfs",), ("exit",)], "before any fsync of -D"),
        ([("write", D), ("write", T), ("syncfs",), ("rename", T, H), ("exit",), ("syncfs",)],
         "no fsync of the directory"),
        ([("write", D), ("write", T), ("syncfs",), ("write", T), ("rename", T, H), ("syncfs",), ("exit",)],
         "written after its last fsync"),
    ],
    ids=["renamed-before-syncfs", "no-syncfs-after-rename", "hdr-written-after-syncfs"],
)
def test_checker_refuses_a_group_commit_missing_a_syncfs(steps: list[tuple[str, ...]], rule: str) -> None:
    events = trace_of(*steps)
    with pytest.raises(DurabilityError, match=rule):
        assert_committed(events, ID, ack=exit_index(events, 1))


def test_checker_compares_what_the_fsync_covered() -> None:
    events = trace_of(*COMMIT)
    with pytest.raises(DurabilityError, match="covered 100 bytes, not 120"):
        assert_committed(events, ID, data_size=120)
    with pytest.raises(DurabilityError, match="covered 50 bytes, not 60"):
        assert_committed(events, ID, header_size=60)


JOURNAL = (
    ("write@child", "/mail/alice"),
    ("create", J),
    ("write", J),
    ("fsync", J),
    ("fsync", INPUT),
    ("write@child", "/mail/bob"),
    ("write", J),
    ("fsync", J),
    ("write", T),
    ("fsync", T),
    ("rename", T, H),
    ("fsync", INPUT),
    ("unlink", J),
    ("exit",),
)


def test_journal_checker_accepts_append_then_fsync() -> None:
    events = trace_of(*JOURNAL)
    assert [w.index for w in assert_journal_durable(events, ID)] == [2, 6]
    assert assert_header_rewritten(events, ID, ack=exit_index(events, 1)).index == 10
    # Appending to a -J that a crashed attempt left: no new directory entry, no directory fsync needed.
    existing = trace_of(*(step for step in JOURNAL if step not in (("create", J), ("fsync", INPUT))))
    assert len(assert_journal_durable(existing, ID)) == 2


@pytest.mark.parametrize(
    ("steps", "rule"),
    [
        ([*JOURNAL[:3], *JOURNAL[4:]], "not by an fsync of -J"),
        ([*JOURNAL[:3], ("write", "/spool/log/mainlog"), *JOURNAL[3:]], "not by an fsync of -J"),
        ([*JOURNAL[:4], ("write", "/spool/log/mainlog"), *JOURNAL[4:]], "before an fsync of its directory"),
        ([*JOURNAL[:4], *JOURNAL[5:]], "before an fsync of its directory"),
        ([*JOURNAL[:8], ("exit",)], "-H was never renamed into place"),
        ([*JOURNAL[:11], ("exit",), ("fsync", INPUT)], "-H rewrite: no fsync of the directory"),
    ],
    ids=[
        "no-fsync",
        "log-before-fsync",
        "new-J-dir-synced-late",
        "new-J-dir-not-synced",
        "no-rewrite",
        "rewrite-not-synced",
    ],
)
def test_journal_checker_refuses_a_late_fsync(steps: list[tuple[str, ...]], rule: str) -> None:
    events = trace_of(*steps)
    with pytest.raises(DurabilityError, match=rule):
        assert_journal_durable(events, ID)
        assert_header_rewritten(events, ID, ack=exit_index(events, 1))


def test_rewrite_checker_refuses_dropping_the_journal_first() -> None:
    unsafe = [*JOURNAL[:11], ("unlink", J), ("fsync", INPUT), ("exit",)]
    with pytest.raises(DurabilityError, match=r"-J removed .* before the rewritten -H was made durable"):
        assert_header_rewritten(trace_of(*unsafe), ID)
    early = [*JOURNAL[:8], ("unlink", J), *JOURNAL[8:12], ("exit",)]
    with pytest.raises(DurabilityError, match=r"-J removed .* before -H was rewritten"):
        assert_header_rewritten(trace_of(*early), ID)


RETIRE = (
    ("unlink", MSGLOG),
    ("unlink", H),
    ("fsync", INPUT),
    ("log", "=> a@example.org R=smarthost T=remote_smtp H=127.0.0.1 [127.0.0.1]"),
    ("log", "-> b@example.org R=smarthost T=remote_smtp H=127.0.0.1 [127.0.0.1]"),
    ("log", "Completed"),
    ("unlink", D),
)


def test_delivery_checker_accepts_a_journal_line_or_the_message_retired_before_the_log() -> None:
    journalled = [*JOURNAL[:5], ("log", "=> alice <alice@example.org>"), *JOURNAL[5:8], ("log", "=> bob"), *JOURNAL[8:]]
    assert len(assert_deliveries_recorded(trace_of(*journalled), ID)) == 2
    assert len(assert_deliveries_recorded(trace_of(*RETIRE), ID)) == 2
    assert assert_deliveries_recorded(trace_of(("log", "=> :blackhole: <x@example.org> R=drop")), ID) == []


@pytest.mark.parametrize(
    "steps",
    [
        [*JOURNAL[:3], ("log", "=> alice"), *JOURNAL[3:]],  # logged before the -J fsync
        [*JOURNAL[:5], ("log", "=> alice"), *JOURNAL[5:7], ("log", "=> bob"), *JOURNAL[7:]],  # second one early
        [RETIRE[0], RETIRE[1], RETIRE[3], RETIRE[2], *RETIRE[4:]],  # logged before the directory fsync
        [RETIRE[3], *RETIRE[:3], *RETIRE[4:]],  # logged before -H went
        [RETIRE[0], RETIRE[2], *RETIRE[3:]],  # -H never removed, no -J
        [RETIRE[0], ("unlink@child", H), ("fsync@child", INPUT), *RETIRE[3:]],  # removed by another process
    ],
    ids=["before-J-fsync", "second-before-its-fsync", "before-dir-fsync", "before-unlink", "no-record", "other-pid"],
)
def test_delivery_checker_refuses_a_delivery_logged_before_it_is_durable(steps: list[tuple[str, ...]]) -> None:
    with pytest.raises(DurabilityError, match=r"delivery logged .* before it was made durable"):
        assert_deliveries_recorded(trace_of(*steps), ID)


# -- the real command -------------------------------------------------------------------------------


BODY = "".join(f"line {n:05d} of a body that spans several writes and fsync covers all of\n" for n in range(4000))


def submitted_id(events: list[Event]) -> str:
    [commit] = [e for e in events if e.op == "rename" and e.dst is not None and e.dst.endswith("-H")][:1]
    assert commit.dst is not None
    return Path(commit.dst).name[:-2]


def main_pid(events: list[Event]) -> int:
    return next(e.pid for e in events if e.op == "start")


@pytest.mark.parametrize("flags", [["-odq"], ["-odq", "-t"]], ids=["odq", "odq-t"])
def test_submission_is_durable_before_exit_0(mta_env: MtaEnv, syscall_trace: SyscallTrace, flags: list[str]) -> None:
    message = f"To: bob@example.org\nSubject: big\n\n{BODY}"
    args = [*flags] if "-t" in flags else [*flags, "bob@example.org"]
    result = mta_env.run(*args, input=message, env=syscall_trace.env())
    assert result.returncode == 0, result.stderr
    events = syscall_trace.events()
    [message_id] = mta_env.message_ids()
    data = mta_env.spool / "input" / f"{message_id}-D"
    header = mta_env.spool / "input" / f"{message_id}-H"
    assert data.stat().st_size > len(BODY)
    assert_committed(
        events,
        message_id,
        ack=exit_index(events, main_pid(events)),
        data_size=data.stat().st_size,
        header_size=header.stat().st_size,
    )


def test_background_delivery_exits_only_after_the_commit(
    mta_env: MtaEnv, syscall_trace: SyscallTrace, sink: SmtpSink
) -> None:
    """-odb: the command returns while a child delivers; its exit must still follow the commit."""
    mta_env.write_config(SMARTHOST_CONFIG.format(port=sink.port))
    result = mta_env.run("-odb", "bob@example.org", input=f"Subject: big\n\n{BODY}", env=syscall_trace.env())
    assert (result.returncode, result.stderr) == (0, "")
    events = syscall_trace.events()
    message_id = submitted_id(events)
    assert_committed(events, message_id, ack=exit_index(events, main_pid(events)))
    # The child goes on to deliver (an event to wait for, bounded only against a hang).
    deadline = time.monotonic() + 30
    while not any(line.endswith(f"{message_id} Completed") for line in mta_env.log_lines()):
        assert time.monotonic() < deadline, mta_env.log_lines()
        time.sleep(0.05)
    assert [m.rcpt_tos for m in sink.messages] == [["bob@example.org"]]


def test_immediate_delivery_journals_and_rewrites_durably(
    mta_env: MtaEnv, syscall_trace: SyscallTrace, sink: SmtpSink
) -> None:
    """-odi to two recipients, one taken and one deferred: the commit, then -J (fsync) for the
    delivered one, then -H rewritten durably before -J goes and before exit 0."""
    sink.rcpt_replies["later@example.org"] = "451 4.2.1 Mailbox busy"
    mta_env.write_config(SMARTHOST_CONFIG.format(port=sink.port))
    result = mta_env.run(
        "-odi", "good@example.org", "later@example.org", input=f"Subject: x\n\n{BODY}", env=syscall_trace.env()
    )
    assert result.returncode == 0, result.stderr
    assert [m.rcpt_tos for m in sink.messages] == [["good@example.org"]]
    events = syscall_trace.events()
    [message_id] = mta_env.message_ids()
    ack = exit_index(events, main_pid(events))
    commit = submitted_id(events)
    assert commit == message_id
    assert_committed(events, message_id, ack=ack)
    writes = assert_journal_durable(events, message_id)
    assert len(writes) == 1  # one delivery, one journal line
    header = mta_env.spool / "input" / f"{message_id}-H"
    rewrite = assert_header_rewritten(events, message_id, ack=ack, header_size=header.stat().st_size)
    assert rewrite.index > writes[0].index
    assert not (mta_env.spool / "input" / f"{message_id}-J").exists()
    assert len(assert_deliveries_recorded(events, message_id)) == 1


def test_a_delivery_that_completes_the_message_removes_it_instead_of_journalling(
    mta_env: MtaEnv, syscall_trace: SyscallTrace, sink: SmtpSink
) -> None:
    """-odi to two recipients at one host, both taken: no -J at all; the msglog and -H are removed
    (directory fsynced) before either delivery is logged, then the rest of the message goes."""
    mta_env.write_config(SMARTHOST_CONFIG.format(port=sink.port))
    result = mta_env.run("-odi", "a@example.org", "b@example.org", input="Subject: x\n\nhi\n", env=syscall_trace.env())
    assert result.returncode == 0, result.stderr
    assert [m.rcpt_tos for m in sink.messages] == [["a@example.org", "b@example.org"]]
    events = syscall_trace.events()
    message_id = submitted_id(events)
    assert mta_env.message_ids() == []
    assert not [e for e in events if e.path is not None and e.path.endswith(f"{message_id}-J")]
    lines = assert_deliveries_recorded(events, message_id)
    assert [line.text.split(f"{message_id} ")[1][:2] for line in lines if line.text] == ["=>", "->"]
    removed = [e for e in events if e.op == "unlink" and e.path is not None and message_id in e.path]
    assert [Path(e.path or "").parent.name + "/" + Path(e.path or "").name for e in removed] == [
        f"msglog/{message_id}",
        f"input/{message_id}-H",
        f"input/{message_id}-D",
    ]
    assert (mta_env.spool / "msglog").exists() and not list((mta_env.spool / "msglog").iterdir())
    assert f"{message_id} Completed" in "\n".join(mta_env.log_lines())


LOCAL_CONFIG = """
begin directors
everyone:
  driver = smartuser
  transport = box
  user = {user}
begin transports
box:
  driver = appendfile
  file = {mail}/box
"""


@pytest.fixture
def shared_mail() -> Iterator[Path]:
    """A mail directory under /tmp that the delivery user (nobody) can reach: pytest's own
    directories are root's, mode 0700."""
    mail = Path(tempfile.mkdtemp(prefix="mta-durability-mail-", dir="/tmp"))
    mail.chmod(0o1777)
    try:
        yield mail
    finally:
        shutil.rmtree(mail, ignore_errors=True)


def test_a_local_delivery_that_completes_the_message_removes_it_instead_of_journalling(
    mta_env: MtaEnv, syscall_trace: SyscallTrace, shared_mail: Path
) -> None:
    """-odi to one local recipient: as for a remote one, no -J; the msglog and -H are removed
    (directory fsynced) before the delivery is logged.  Two local recipients in two runs of the
    transport: the first is journalled, the last completes the message without a -J line."""
    user = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    mta_env.write_config(LOCAL_CONFIG.format(mail=shared_mail, user=user))
    result = mta_env.run("-odi", "alice@example.com", input="Subject: x\n\nhi\n", env=syscall_trace.env())
    assert result.returncode == 0, result.stderr
    events = syscall_trace.events()
    message_id = submitted_id(events)
    assert mta_env.message_ids() == [] and "Subject: x" in (shared_mail / "box").read_text()
    assert not [e for e in events if e.path is not None and e.path.endswith(f"{message_id}-J")]
    assert len(assert_deliveries_recorded(events, message_id)) == 1
    syscall_trace.clear()
    result = mta_env.run("-odi", "alice@example.com", "bob@example.com", input="Subject: y\n\nhi\n",
                         env=syscall_trace.env())
    assert result.returncode == 0, result.stderr
    events = syscall_trace.events()
    message_id = submitted_id(events)
    assert mta_env.message_ids() == []
    assert len(assert_journal_durable(events, message_id)) == 1  # the first of the two only
    assert len(assert_deliveries_recorded(events, message_id)) == 2


def test_forced_delivery_journals_each_address_before_the_next(
    mta_env: MtaEnv, syscall_trace: SyscallTrace, sink: SmtpSink
) -> None:
    """-M of a queued message with two hosts' worth of recipients: two transactions, two -J lines,
    each fsynced before anything else; the deferred third keeps the message and -H is rewritten."""
    other = SmtpSink().start()
    try:
        mta_env.write_config(
            SMARTHOST_CONFIG.format(port=sink.port).replace(
                "  route_list = *", f"  route_list = example.net 127.0.0.1::{other.port} byname ; *"
            )
        )
        sink.rcpt_replies["later@example.org"] = "451 4.2.1 Mailbox busy"
        queued = mta_env.run("-odq", "a@example.org", "b@example.net", "later@example.org", input="Subject: x\n\nhi\n")
        assert queued.returncode == 0, queued.stderr
        [message_id] = mta_env.message_ids()
        result = mta_env.run("-M", message_id, env=syscall_trace.env())
        assert result.returncode == 0, result.stderr
        assert [m.rcpt_tos for m in sink.messages] == [["a@example.org"]]
        assert [m.rcpt_tos for m in other.messages] == [["b@example.net"]]
    finally:
        other.stop()
    events = syscall_trace.events()
    assert len(assert_journal_durable(events, message_id)) == 2
    assert len(assert_deliveries_recorded(events, message_id)) == 2
    assert_header_rewritten(events, message_id, ack=exit_index(events, main_pid(events)))
    listing = mta_env.run("-bp", message_id).stdout
    assert "D a@example.org" in listing and "D b@example.net" in listing and "  later@example.org" in listing
