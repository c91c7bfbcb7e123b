"""What this process is doing now, for `mta-what` (Exim's set_process_info and SIGUSR1).

Each mta process keeps a short text in memory, "daemon(0.1.0): -q30m,
listening for SMTP on [0.0.0.0]:25" or "delivering 1xZ2Tx-... to
mx.example.org [192.0.2.5] (bob@example.org)".  Keeping it costs a string
assignment; nothing is written until someone asks.  `mta-what` asks by
sending SIGUSR1: the process appends "<pid> <text>" to
``<spool>/mta-process.info`` (Exim's exim-process.info), and the tool prints
the file.  Nothing is ever written per message, so the daemon's throughput
does not pay for the feature.

A process may do several things at once: a receiving process runs many SMTP
sessions, a delivery sends to several hosts in parallel tasks.  Those are
kept apart (`sessions`, keyed by connection; `set_task_activity`, keyed by
the running asyncio task) and reported one line each, in place of the
process's main text, which is what shows when it has nothing more specific
to say.

Signal safety.  The report is built from strings already made and written
with one os.write() on an O_APPEND descriptor, so lines from many processes
never interleave (each is far below PIPE_BUF).  It takes no lock, touches no
buffered file object and never logs, so it cannot deadlock against the code
it interrupts.  Asyncio processes run it from the event loop
(loop.add_signal_handler); plain processes from a signal.signal handler.

Security.  The texts may hold addresses from messages: newlines and other
control characters are escaped when written, so a line in the file is always
one process's report; `mta-what` prints them through mta.printable as well.
The file is opened with O_NOFOLLOW.
"""

from __future__ import annotations

import os

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Hashable
    from typing import Any

REPORT_NAME = "mta-process.info"

_main = "initializing"
# Sessions of a receiving process, by connection id: set and removed by the receiver itself.
sessions: dict[Hashable, str] = {}
# Parallel work of one process (remote deliveries), by asyncio task; a finished task's entry is
# dropped the next time anything is set or reported.
_tasks: dict[Any, str] = {}
_report_path: str | None = None


def set_activity(text: str) -> str:
    """Set the main text; returns the previous one (to put back when the job is done)."""
    global _main
    previous, _main = _main, text
    return previous


def activity() -> str:
    return _main


def set_task_activity(text: str) -> None:
    """The text of the asyncio task running now (the main text when no loop is running)."""
    task = _current_task()
    if task is None:
        set_activity(text)
        return
    _prune()
    _tasks[task] = text


def remote_delivery(message_id: str, host: str, address: str | None, port: int | None, recipients: list[str]) -> None:
    """Exim's smtp transport text: "delivering ID to HOST [IP]:PORT (first@rcpt, ...)"."""
    where = f"{host} [{address}]" if address else host
    if port not in (None, 25):
        where += f":{port}"
    more = ", ..." if len(recipients) > 1 else ""
    first = recipients[0] if recipients else ""
    set_task_activity(f"delivering {message_id} to {where} ({first}{more})")


def lines() -> list[str]:
    """What the process would report now: its sessions and tasks, or else its main text.

    Changes nothing: a signal handler may run it while the code it interrupted is half-way
    through a loop over the same dicts (list() copies each in one step)."""
    current = list(sessions.values()) + [text for task, text in list(_tasks.items()) if not task.done()]
    return current or [_main]


def set_report_path(spool_directory: str) -> None:
    """Where the report goes: <spool>/mta-process.info.  Until this is called (the
    configuration is not read yet) a SIGUSR1 is acknowledged and nothing is written."""
    global _report_path
    _report_path = os.path.join(spool_directory, REPORT_NAME)


def write_report() -> None:
    """Append this process's lines to the report file; silent on any failure (the asker
    sees no line for this process, which is all it can be told)."""
    path = _report_path
    if path is None:
        return
    pid = os.getpid()
    text = "".join(f"{pid:5d} {_one_line(item)}\n" for item in lines())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
    except OSError:
        return
    try:
        _adopt_owner(fd, path)
        os.write(fd, text.encode("utf-8", "backslashreplace"))
    except OSError:
        pass
    finally:
        os.close(fd)


def install() -> None:
    """Answer SIGUSR1 in a process without an event loop (or before it has one)."""
    # _signal, not signal: the same call without the enum classes signal builds at import
    # (3 ms of every command's start).
    import _signal

    _signal.signal(_signal.SIGUSR1, _on_signal)


def _on_signal(signum: int, frame: object) -> None:
    write_report()


def _one_line(text: str) -> str:
    if text.isprintable():
        return text
    from mta.printable import printable

    return printable(text)


def _adopt_owner(fd: int, path: str) -> None:
    """A report file root made belongs to the spool's owner, so that the processes running
    as mta_user can append to it too (Exim opens it as the exim user)."""
    if os.geteuid() != 0:
        return
    st = os.fstat(fd)
    if st.st_uid == 0 and st.st_size == 0:
        parent = os.stat(os.path.dirname(path))
        if parent.st_uid != 0:
            os.fchown(fd, parent.st_uid, parent.st_gid)


def _current_task() -> object | None:
    import sys

    asyncio = sys.modules.get("asyncio")  # never imported here: a process without it has no tasks
    if asyncio is None:
        return None
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def _prune() -> None:
    for task in [t for t in _tasks if t.done()]:
        _tasks.pop(task, None)
