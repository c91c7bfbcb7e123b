"""Is a message durable before it is acknowledged?  Checked on a real process's calls.

DESIGN.md ("The spool") promises: reception writes -D, then -H under a
temporary name, fsyncs both, renames -H into place and fsyncs the directory,
and only then says 250 or exits 0; each delivered address goes to -J (fsync)
before the next delivery, unless that delivery completes the message, whose
-H is then removed (directory fsynced) instead; at the end -H is rewritten
atomically and -J removed.  These checks read what a real `mta` did, recorded by
tests/support/syscall_trace/sitecustomize.py, and say which rule broke.

Use (any process that runs Python can be traced: the CLI, the coming
daemon and queue runner, their forked children):

    trace = SyscallTrace(tmp_path / "trace.jsonl", roots=[spool_directory])
    proc = subprocess.Popen(argv, env={**os.environ, **trace.env()}, ...)
    ...
    events = trace.events()              # a snapshot: all of it happened before now
    assert_committed(events, message_id, ack=exit_index(events, proc.pid))

For an SMTP reply the acknowledgement is the moment the client reads the
250: take the snapshot right after reading it and leave `ack` out (the
whole snapshot precedes the reply).  A check passes only if every step it
needs is in the events before `ack`, in order.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

TRACE_DIRECTORY = Path(__file__).resolve().parent / "syscall_trace"
SYNC_OPS = ("fsync", "fdatasync")
# syncfs(2) makes every file of its file system durable, directories included: an event with this op
# covers every path (the traced spool is on one file system).
FILESYSTEM_SYNC = "syncfs"


@dataclasses.dataclass(frozen=True)
class Event:
    """One recorded call: `op` is start, create, write, fsync, fdatasync, syncfs, rename, unlink or exit."""

    index: int
    pid: int
    op: str
    path: str | None = None
    dst: str | None = None  # rename target
    size: int | None = None  # file size after an fsync
    n: int | None = None  # bytes written
    is_dir: bool = False
    text: str | None = None  # the start of a write to a main log

    def __str__(self) -> str:
        what = {"rename": f"{self.path} -> {self.dst}", "write": f"{self.path} ({self.n} bytes)"}.get(
            self.op, f"{self.path or ''}" + (f" size={self.size}" if self.size is not None else "")
        )
        return f"#{self.index} pid {self.pid} {self.op} {what}".rstrip()


class DurabilityError(AssertionError):
    """A durability rule is broken; the message names the rule and shows the events."""

    def __init__(self, rule: str, events: Sequence[Event]) -> None:
        shown = "\n".join(f"  {event}" for event in events[-60:])
        super().__init__(f"{rule}\nrecorded events:\n{shown}")


@dataclasses.dataclass
class SyscallTrace:
    """A log file the traced processes append to, and the directories whose files are recorded."""

    log: Path
    roots: list[Path]

    def env(self) -> dict[str, str]:
        """Environment for a traced process (merge into os.environ)."""
        python_path = os.environ.get("PYTHONPATH", "")
        return {
            "PYTHONPATH": os.pathsep.join(p for p in (str(TRACE_DIRECTORY), python_path) if p),
            "MTA_TEST_TRACE": str(self.log),
            "MTA_RUN_SITE": "1",  # mta's launchers skip `site`, and with it this sitecustomize
            "MTA_TEST_TRACE_ROOTS": os.pathsep.join(str(root) for root in self.roots),
        }

    def events(self) -> list[Event]:
        if not self.log.exists():
            return []
        events = []
        # Only whole lines: a traced process may be in the middle of writing the last one.
        lines = self.log.read_text().split("\n")[:-1]
        for index, line in enumerate(lines):
            fields = json.loads(line)
            events.append(
                Event(
                    index=index,
                    pid=fields["pid"],
                    op=fields["op"],
                    path=fields.get("path"),
                    dst=fields.get("dst"),
                    size=fields.get("size"),
                    n=fields.get("n"),
                    is_dir=bool(fields.get("dir", False)),
                    text=fields.get("text"),
                )
            )
        return events

    def clear(self) -> None:
        self.log.unlink(missing_ok=True)


def exit_index(events: Sequence[Event], pid: int) -> int:
    """Index of process `pid`'s exit (its acknowledgement to the caller)."""
    for event in events:
        if event.op == "exit" and event.pid == pid:
            return event.index
    raise DurabilityError(f"process {pid} recorded no exit: was it traced, did it exit normally?", events)


def _name(path: str | None) -> str:
    return os.path.basename(path) if path else ""


def _last(events: Iterable[Event], op: Sequence[str], path: str, before: int) -> Event | None:
    found = None
    for event in events:
        if event.index >= before:
            break
        if (event.op in op and event.path == path) or (event.op == FILESYSTEM_SYNC and set(op) & set(SYNC_OPS)):
            found = event
    return found


def _writes_between(events: Sequence[Event], path: str, start: int, end: int) -> list[Event]:
    return [e for e in events if start < e.index < end and e.op == "write" and e.path == path]


def _header_renames(events: Sequence[Event], message_id: str, before: int) -> list[Event]:
    return [
        e
        for e in events[:before]
        if e.op == "rename" and _name(e.path) == f"hdr.{message_id}" and _name(e.dst) == f"{message_id}-H"
    ]


def _synced_before(
    events: Sequence[Event], path: str, rename: Event, size: int | None, what: str, missing: str
) -> None:
    """`path` fsynced before `rename`, not written after that fsync, the fsync covering `size` bytes."""
    synced = _last(events, SYNC_OPS, path, rename.index)
    if synced is None:
        raise DurabilityError(f"{what}: {missing}", events)
    late = _writes_between(events, path, synced.index, rename.index)
    if late:
        raise DurabilityError(f"{what}: {_name(path)} written after its last fsync (#{late[0].index})", events)
    if size is not None and synced.op != FILESYSTEM_SYNC and synced.size != size:
        raise DurabilityError(f"{what}: the fsync of {_name(path)} covered {synced.size} bytes, not {size}", events)


def _check_header_install(events: Sequence[Event], rename: Event, ack: int, header_size: int | None, what: str) -> None:
    """hdr.ID fsynced (all of it) before its rename, the directory fsynced after it and before `ack`."""
    assert rename.path is not None and rename.dst is not None
    temp, directory = rename.path, os.path.dirname(rename.dst)
    missing = f"{_name(temp)} was renamed to {_name(rename.dst)} without an fsync"
    _synced_before(events, temp, rename, header_size, what, missing)
    dir_sync = next(
        (e for e in events[rename.index + 1 : ack]
         if (e.op in SYNC_OPS and e.is_dir and e.path == directory) or e.op == FILESYSTEM_SYNC), None
    )
    if dir_sync is None:
        raise DurabilityError(
            f"{what}: no fsync of the directory {directory} between the rename (#{rename.index}) and "
            f"the acknowledgement (#{ack})",
            events,
        )


def assert_committed(
    events: Sequence[Event],
    message_id: str,
    ack: int | None = None,
    *,
    data_size: int | None = None,
    header_size: int | None = None,
) -> None:
    """The message was durable before event `ack` (default: the end of the snapshot).

    Before `ack`, in this order: an fsync of ID-D with no write to it after
    (covering `data_size` bytes, the whole -D, when given); an fsync of
    hdr.ID with no write after (covering `header_size` bytes); the rename of
    hdr.ID to ID-H; an fsync of the directory.
    """
    end = len(events) if ack is None else ack
    renames = _header_renames(events, message_id, end)
    if not renames:
        raise DurabilityError(
            f"{message_id}: no rename of hdr.{message_id} to {message_id}-H before the acknowledgement (#{end})",
            events,
        )
    commit = renames[0]
    assert commit.dst is not None
    data = os.path.join(os.path.dirname(commit.dst), f"{message_id}-D")
    missing = f"-H renamed into place (#{commit.index}) before any fsync of -D"
    _synced_before(events, data, commit, data_size, message_id, missing)
    _check_header_install(events, commit, end, header_size, f"{message_id} commit")


def assert_journal_durable(events: Sequence[Event], message_id: str) -> list[Event]:
    """Each append to ID-J is fsynced before its process does anything else, and a new -J's
    directory entry is fsynced before the process goes on to anything but the journal.
    Returns the -J writes (so a test can check there were as many as deliveries)."""
    writes = [e for e in events if e.op == "write" and _name(e.path) == f"{message_id}-J"]
    previous = -1
    for write in writes:
        assert write.path is not None
        own = [e for e in events[write.index + 1 :] if e.pid == write.pid]
        if not own or own[0].op not in SYNC_OPS or own[0].path != write.path:
            after = own[0] if own else "the end of the trace"
            raise DurabilityError(
                f"{message_id}: the -J append #{write.index} was followed by {after}, not by an fsync of -J", events
            )
        # Made by this append (a "create" since the last one): its directory entry must be synced too.
        created = any(e.op == "create" and e.path == write.path for e in events[previous + 1 : write.index])
        previous = write.index
        if created:
            directory = os.path.dirname(write.path)
            for event in own[1:]:
                if event.op in SYNC_OPS and event.is_dir and event.path == directory:
                    break
                if event.path != write.path:
                    raise DurabilityError(
                        f"{message_id}: -J was created (#{write.index}) and the process went on (#{event.index}) "
                        "before an fsync of its directory",
                        events,
                    )
            else:
                raise DurabilityError(f"{message_id}: -J was created and its directory never fsynced", events)
    return writes


def assert_header_rewritten(
    events: Sequence[Event], message_id: str, ack: int | None = None, *, header_size: int | None = None
) -> Event:
    """The last rewrite of ID-H before `ack` was atomic and durable: hdr.ID fsynced, renamed,
    the directory fsynced, all before `ack`; and -J (if removed) only after that fsync, so the
    deliveries it records are never in neither file.  Returns the rename."""
    end = len(events) if ack is None else ack
    renames = _header_renames(events, message_id, end)
    if not renames:
        raise DurabilityError(f"{message_id}: -H was never renamed into place", events)
    rewrite = renames[-1]
    _check_header_install(events, rewrite, end, header_size, f"{message_id} -H rewrite")
    assert rewrite.dst is not None
    directory = os.path.dirname(rewrite.dst)
    journal = os.path.join(directory, f"{message_id}-J")
    for event in events[rewrite.index + 1 : end]:
        if event.op in SYNC_OPS and event.is_dir and event.path == directory:
            break
        if event.op == "unlink" and event.path == journal:
            raise DurabilityError(
                f"{message_id}: -J removed (#{event.index}) before the rewritten -H was made durable", events
            )
    own = [e for e in events[: rewrite.index] if e.pid == rewrite.pid and e.path == journal]
    last_write = max((e.index for e in own if e.op == "write"), default=-1)
    early = [e for e in own if e.op == "unlink" and e.index > last_write]
    if last_write >= 0 and early:
        raise DurabilityError(f"{message_id}: -J removed (#{early[0].index}) before -H was rewritten", events)
    return rewrite


def assert_deliveries_recorded(events: Sequence[Event], message_id: str) -> list[Event]:
    """Each delivery of the message is durable before the process logs it (and so before it
    goes on to the next): its "=>" or "->" main log line is preceded, in the same process and
    since that process's previous delivery line, by an fsync of ID-J (the delivery journalled),
    or, at any time before it in that process, by the unlink of ID-H followed by an fsync of
    its directory (the delivery completed the message, which is gone: no -J needed).  Lines of
    a :blackhole: (nothing delivered) are exempt.  Returns the delivery lines checked."""
    lines = [
        e
        for e in events
        if e.op == "write"
        and e.text is not None
        and _name(e.path) == "mainlog"
        and (f" {message_id} => " in e.text or f" {message_id} -> " in e.text)
        and ":blackhole:" not in e.text
    ]
    since: dict[int, int] = {}
    for line in lines:
        own = [e for e in events[: line.index] if e.pid == line.pid]
        start = since.get(line.pid, -1)
        journalled = any(e.index > start and e.op in SYNC_OPS and _name(e.path) == f"{message_id}-J" for e in own)
        retired = False
        for position, event in enumerate(own):
            if event.op == "unlink" and _name(event.path) == f"{message_id}-H":
                assert event.path is not None
                directory = os.path.dirname(event.path)
                retired = any(e.op in SYNC_OPS and e.is_dir and e.path == directory for e in own[position + 1 :])
        if not (journalled or retired):
            raise DurabilityError(
                f"{message_id}: delivery logged (#{line.index}) before it was made durable: no fsync of -J "
                "since the previous delivery, and no durable removal of -H before it",
                events,
            )
        since[line.pid] = line.index
    return lines
