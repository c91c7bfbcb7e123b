"""`mta-what`: what each mta process is doing now (Exim's exiwhat).

    # mta-what
      812 daemon(0.1.0): -q30m, listening for SMTP on [0.0.0.0]:25, [::]:25
      815 handling incoming connection from [192.0.2.7]
      816 receiving SMTP: no connections
      817 delivery worker: waiting for messages
      818 delivering 1xZ2Tx-000000005zT-0nM1 to mx.example.org [198.51.100.5] (bob@example.org)

Exim's way, for the same reason: asking costs the mail system nothing until
someone asks.  Each mta process keeps a line saying what it is doing in
memory (mta.process_info); this tool empties ``<spool>/mta-process.info``,
sends SIGUSR1 to every mta process of this configuration, and prints what
they append, sorted by process id.

Which processes.  Those whose command line is mta's (the ``mta``,
``sendmail``, ``mailq``, ``runq`` or ``rmail`` script run by Python) and
names the same configuration file (``-C``), found by scanning /proc as
exiwhat scans ``ps``; plus the daemon of the pid file and its children.
Processes of another configuration are left alone: they would write to
their own spool anyway.  A process is signalled only when it catches SIGUSR1
(/proc/PID/status, SigCgt): one that has only just started, and would be
killed by a SIGUSR1 it cannot catch yet, is skipped.

Who may.  Signalling needs root, or the user the processes run as (the
receivers run as mta_user, the master and the delivery workers as root).
A process that cannot be signalled is named on standard error and the exit
status is 1.

The report file is locked while a run uses it, so two runs at once do not
empty each other's answers; every line is printed through mta.printable.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import time

from mta.errors import ConfigError
from mta.process_info import REPORT_NAME
from spool_tools.admin_command import ToolError, ToolParser, UsageError, add_spool_options, load_spool, run_tool

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import TextIO

    from mta.config.loader import Config

PROG = "mta-what"
SCRIPT_NAMES = frozenset({"mta", "sendmail", "mailq", "runq", "rmail", "newaliases"})
LOCK_WAIT = 10.0  # seconds to wait for another mta-what using the report file
POLL = 0.02


def build_parser() -> ToolParser:
    parser = ToolParser(PROG, "Show what each mta process is doing now (as Exim's exiwhat).")
    add_spool_options(parser)
    parser.add_argument("-t", "--timeout", metavar="SECONDS", type=_positive, default=1.0,
                        help="how long to wait for the answers (default 1; done sooner when all have answered)")
    return parser


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 60:
        raise UsageError(f'-t: "{text}" is not a number of seconds from 0 to 60')
    return value


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    return run_tool(PROG, lambda: what(parser.parse_args(sys.argv[1:] if argv is None else argv), sys.stdout))


def what(args: argparse.Namespace, out: TextIO) -> int:
    config, spool = load_spool(args)
    config_path = None if config is None else config.path
    _check_caller(config, str(spool.directory))
    pids = mta_processes(config_path, _pid_files(config, str(spool.directory)))
    path = os.path.join(spool.directory, REPORT_NAME)
    fd = _open_report(path, str(spool.directory))
    try:
        asked, denied = _signal(pids)
        lines = _collect(fd, set(asked), args.timeout)
    finally:
        os.close(fd)  # releases the lock
    if lines:
        for line in lines:
            out.write(line + "\n")
    else:
        out.write("No mta process data\n")
    if denied:
        out.flush()
        sys.stderr.write(f"{PROG}: cannot signal {len(denied)} mta process{'es' if len(denied) > 1 else ''} "
                         f"(pid {', '.join(map(str, denied))}): permission denied (only root can ask every "
                         "mta process)\n")
        return 1
    return 0


def _check_caller(config: Config | None, spool_directory: str) -> None:
    """Root, mta_user, or the owner of the spool (a per-user instance) may ask."""
    euid = os.geteuid()
    if euid == 0:
        return
    try:
        if os.stat(spool_directory).st_uid == euid:
            return
    except FileNotFoundError:
        raise ToolError(f"spool directory {spool_directory} does not exist") from None
    except OSError:
        pass
    if config is not None:
        from mta.config.caller import mta_identity

        try:
            _login, uid, _gid = mta_identity(config)
        except ConfigError:
            uid = -1
        if euid == uid:
            return
        raise ToolError(f"permission denied: only root or mta_user ({config.main.mta_user}) may ask mta "
                        "processes what they are doing")


def _pid_files(config: Config | None, spool_directory: str) -> list[str]:
    files = [os.path.join(spool_directory, "mta-daemon.pid"), os.path.join(spool_directory, "mta-queue.pid")]
    if config is not None and config.main.pid_file_path:
        files.insert(0, config.main.pid_file_path)
    return files


# -- finding the processes ---------------------------------------------------------------------------------


def mta_processes(config_path: str | None, pid_files: list[str]) -> list[int]:
    """Pids of the mta processes of this configuration (any configuration when None)."""
    table = _process_table()
    wanted = None if config_path is None else os.path.realpath(config_path)
    chosen = {pid for pid, (_ppid, argv, cwd) in table.items()
              if _is_mta(argv) and (wanted is None or _config_of(argv, cwd) == wanted)}
    # The daemon named by a pid file (however it was started) and its children.
    roots = {pid for pid in map(_read_pid, pid_files) if pid in table and _is_mta(table[pid][1])}
    for pid, (ppid, argv, _cwd) in table.items():
        if _is_mta(argv) and (pid in roots or _descends(ppid, roots, table)):
            chosen.add(pid)
    chosen.discard(os.getpid())
    return sorted(chosen)


def _process_table() -> dict[int, tuple[int, list[str], str]]:
    """pid -> (parent pid, argv, working directory) of every process we can see."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = [a.decode("utf-8", "surrogateescape") for a in f.read().split(b"\0")[:-1]]
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # gone, or a kernel thread
        fields = stat[stat.rfind(b")") + 2 :].split()  # after "pid (comm) ": the name may hold spaces
        try:
            cwd = os.readlink(f"/proc/{name}/cwd")
        except OSError:
            cwd = "/"
        table[int(name)] = (int(fields[1]), argv, cwd)
    return table


# Python's options that take the next word as their value (or the rest of their own word).
_PYTHON_VALUE_OPTIONS = ("-W", "-X")


def _mta_arguments(argv: list[str]) -> list[str] | None:
    """The arguments of an mta command (what follows the script, or `-m mta.cli`) if `argv` is
    one run by Python, else None: a console script or mta's launcher is [python, options...,
    /path/mta, ...] (the launcher starts `python -S`); never another program that happens to be
    called sendmail."""
    if len(argv) < 2 or not os.path.basename(argv[0]).startswith("python"):
        return None
    index = 1
    while index < len(argv) and argv[index].startswith("-") and argv[index] != "-":
        word = argv[index]
        if word == "-m":
            return argv[index + 2 :] if argv[index + 1 : index + 2] == ["mta.cli"] else None
        if word.startswith("-c"):
            return None  # python -c CODE
        index += 2 if word in _PYTHON_VALUE_OPTIONS else 1
    if index < len(argv) and os.path.basename(argv[index]) in SCRIPT_NAMES:
        return argv[index + 1 :]
    return None


def _is_mta(argv: list[str]) -> bool:
    return _mta_arguments(argv) is not None


def _config_of(argv: list[str], cwd: str) -> str:
    """The configuration file an mta command line names (-C FILE or -CFILE), resolved."""
    from mta.config.loader import DEFAULT_CONFIG_PATH

    path = DEFAULT_CONFIG_PATH
    words = _mta_arguments(argv) or []
    for index, word in enumerate(words):
        if word == "--":
            break
        if word == "-C" and index + 1 < len(words):
            path = words[index + 1]
            break
        if word.startswith("-C") and len(word) > 2:
            path = word[2:]
            break
    return os.path.realpath(os.path.join(cwd, path))


def _read_pid(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return -1


def _descends(ppid: int, roots: set[int], table: dict[int, tuple[int, list[str], str]]) -> bool:
    seen = set()
    while ppid > 1 and ppid not in seen:
        if ppid in roots:
            return True
        seen.add(ppid)
        ppid = table[ppid][0] if ppid in table else 0
    return False


def catches_usr1(pid: int) -> bool:
    """True when the process has a handler for SIGUSR1 (else the signal would end it)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signal.SIGUSR1 - 1) & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


# -- asking ------------------------------------------------------------------------------------------------


def _open_report(path: str, spool_directory: str) -> int:
    """The emptied report file, locked against another mta-what, writable by every mta process."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
    except OSError as exc:
        raise ToolError(f"cannot open {path}: {exc.strerror}") from None
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise ToolError(f"{path} is in use by another {PROG}") from None
            time.sleep(POLL)
    os.ftruncate(fd, 0)
    if os.geteuid() == 0:
        # The receivers run as mta_user and append to it: it must be the spool owner's.
        owner = os.stat(spool_directory)
        os.fchown(fd, owner.st_uid, owner.st_gid)
        os.fchmod(fd, 0o640)
    return fd


def _signal(pids: list[int]) -> tuple[list[int], list[int]]:
    asked, denied = [], []
    for pid in pids:
        if not catches_usr1(pid):
            continue  # starting up (or not mta after all): a SIGUSR1 would kill it
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            continue
        except PermissionError:
            denied.append(pid)
            continue
        asked.append(pid)
    return asked, denied


def _collect(fd: int, asked: set[int], timeout: float) -> list[str]:
    """The lines written, once every process asked has answered or the time is up, sorted by
    pid (each process's own lines in their order) without repeats, as exiwhat's sort | uniq."""
    deadline = time.monotonic() + timeout
    while True:
        text = _read_all(fd)
        lines = [line for line in text.splitlines() if line.strip()]
        answered = {_pid_of(line) for line in lines}
        if asked <= answered or time.monotonic() >= deadline:
            break
        time.sleep(POLL)
    ordered = sorted(lines, key=_pid_of)
    return [line for index, line in enumerate(ordered) if index == 0 or line != ordered[index - 1]]


def _read_all(fd: int) -> str:
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 65536, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks).decode("utf-8", "backslashreplace")


def _pid_of(line: str) -> int:
    word = line.split(maxsplit=1)[0] if line.split() else ""
    return int(word) if word.isdigit() else -1


if __name__ == "__main__":
    sys.exit(main())
