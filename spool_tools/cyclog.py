"""mta-cyclog: rotate the main, reject and panic logs, keeping N generations (Exim's exicyclog).

    mta-cyclog [-k N] [-l LOG_FILE_PATH] [-C FILE | --spool DIR]

Run it once a day (cron) to get exicyclog's files::

    mainlog          the current log
    mainlog.01       yesterday's, left uncompressed
    mainlog.02.gz    ... up to mainlog.NN.gz (N = -k, default 10; three digits when N > 99)

and the same for rejectlog and paniclog.  Nothing is done when there is no
main log (as exicyclog); a log that goes to syslog only, or whose name
carries the date (``%D``, ``%M``: a new file every day already), is refused
with a message.

Safe against a running mta.  mta.log writes each line with one write(2) on
an O_APPEND descriptor, and before each line checks that the name still
leads to the file it has open, reopening by name when it does not.  So the
current log is never renamed away here: it is hard-linked to ``.01`` and a
new empty file (made under a temporary name, with the old one's owner and
mode) is renamed over the name, atomically.  At every instant the name
exists: a writer never creates a stray file of its own, and a line written
by a process that had the old file open just before goes into ``.01``,
which is why ``.01`` stays uncompressed until the next run (exicyclog's
reason too).  Compression writes ``.NN.gz`` under a temporary name, syncs it
and renames it before the uncompressed file is removed: a crash leaves one
or the other, never neither.

Two runs at once are refused (an flock on the log directory, which no mta
process takes: delivery is never held up).
"""

from __future__ import annotations

import errno
import fcntl
import gzip
import os
import shutil
import sys
from pathlib import Path

from mta.errors import SpoolError
from mta.spool.files import fsync_directory
from spool_tools.admin_command import ToolError, ToolParser, UsageError, add_spool_options, run_tool
from spool_tools.logfiles import LOG_SPOOL_HELP

PROG = "mta-cyclog"
LOGS = ("main", "reject", "panic")
SUFFIX = ".gz"


def parser() -> ToolParser:
    p = ToolParser(
        PROG,
        "Rotate mta's main, reject and panic logs as Exim's exicyclog: LOG becomes LOG.01, "
        "older generations are renumbered and gzipped, and only N are kept.",
        wrap=True,
    )
    p.add_argument("-k", dest="keep", type=_keep, default=10, metavar="N", help="generations to keep (default 10)")
    p.add_argument(
        "-l", dest="log_file_path", metavar="PATH", help="log_file_path to use instead of the configuration's"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="say what was renamed, compressed and removed")
    add_spool_options(p, LOG_SPOOL_HELP)
    return p


def _keep(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"-k needs a number of generations (1 or more), not {text!r}")
    return int(text)


def log_files(template: str) -> tuple[str, dict[str, str]]:
    """The directory and the three file names of a log_file_path item."""
    if "%D" in template or "%M" in template:
        raise ToolError(
            f"the log file names carry the date ({template}): a new file starts each day; "
            "remove old ones by age instead of cycling them"
        )
    directory, base = os.path.split(template)
    if "%s" not in base:
        raise ToolError(f"log_file_path item {template!r} has no %s: cannot tell the three logs apart")
    return directory or ".", {which: base.replace("%s", which) for which in LOGS}


def generation(name: str, number: int, keep: int) -> str:
    return f"{name}.{number:03d}" if keep > 99 else f"{name}.{number:02d}"


def cycle(directory: str, names: dict[str, str], keep: int) -> list[str]:
    """Rotate the logs of `directory`; returns what was done (for -v)."""
    done: list[str] = []
    main = os.path.join(directory, names["main"])
    if not os.path.exists(main):
        return done  # nothing logged yet (exicyclog exits quietly too)
    lock = _lock_directory(directory)
    try:
        paths = [os.path.join(directory, names[which]) for which in LOGS]
        for path in paths:
            last = generation(path, keep, keep)
            for victim in (last, last + SUFFIX):
                _remove(victim, done)
        for path in paths:
            for number in range(keep, 1, -1):
                older, newer = generation(path, number - 1, keep), generation(path, number, keep)
                if os.path.exists(older):
                    os.rename(older, newer)
                    done.append(f"{older} -> {newer}")
                elif os.path.exists(older + SUFFIX):
                    os.rename(older + SUFFIX, newer + SUFFIX)
                    done.append(f"{older}{SUFFIX} -> {newer}{SUFFIX}")
        for path in paths:
            if os.path.exists(path):
                _start_new(path, generation(path, 1, keep))
                done.append(f"{path} -> {generation(path, 1, keep)}")
        for path in paths:
            for number in range(2, keep + 1):
                old = generation(path, number, keep)
                if os.path.exists(old):
                    _compress(old)
                    done.append(f"{old} compressed")
        fsync_directory(Path(directory))
    finally:
        os.close(lock)
    return done


def _lock_directory(directory: str) -> int:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise ToolError(f"another {PROG} is cycling the logs in {directory}") from None
        raise
    return fd


def _remove(path: str, done: list[str]) -> None:
    try:
        os.unlink(path)
        done.append(f"{path} removed")
    except FileNotFoundError:
        pass


def _start_new(path: str, first: str) -> None:
    """`path` becomes generation `first` and a new empty file takes its name, with no moment
    at which the name is missing (see the module docstring)."""
    st = os.stat(path)
    try:
        os.link(path, first)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        # A file system without hard links: rename, as exicyclog does (a line written in the
        # instant before the new file is in place starts a file that the rename replaces).
        os.rename(path, first)
    temporary = f"{path}.{os.getpid()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
    try:
        if os.geteuid() == 0:
            # Run by root for logs the daemon's processes (mta_user) write: keep their owner.
            os.fchown(fd, st.st_uid, st.st_gid)
        os.fchmod(fd, 0o640)
    finally:
        os.close(fd)
    os.rename(temporary, path)


def _compress(path: str) -> None:
    """path -> path.gz, durable before the original goes."""
    target = path + SUFFIX
    temporary = f"{target}.{os.getpid()}"
    st = os.stat(path)
    with open(path, "rb") as source, open(temporary, "xb") as raw:
        with gzip.GzipFile(filename=os.path.basename(path), mode="wb", fileobj=raw, compresslevel=6) as packed:
            shutil.copyfileobj(source, packed, 1024 * 1024)
        if os.geteuid() == 0:
            os.fchown(raw.fileno(), st.st_uid, st.st_gid)
        os.fchmod(raw.fileno(), st.st_mode & 0o777)
        raw.flush()
        os.fsync(raw.fileno())
    os.rename(temporary, target)
    os.unlink(path)


def main(argv: list[str]) -> int:
    try:
        return _main(argv)
    except SpoolError as exc:  # fsync_directory's report of a directory it could not sync
        raise ToolError(str(exc)) from None


def _main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.log_file_path is not None:
        from mta.values import split_list

        templates = [p for p in split_list(args.log_file_path) if p and p != "syslog"]
        if not templates:
            raise ToolError("-l names no log files (syslog only): nothing to cycle")
        template = templates[0]
    else:
        from spool_tools.logfiles import log_location

        location = log_location(args.config, args.spool)
        if not location.templates:
            raise ToolError("mta is logging to syslog only: no log files to cycle")
        template = location.templates[0]
    directory, names = log_files(template)
    for step in cycle(directory, names, args.keep):
        if args.verbose:
            sys.stdout.write(step + "\n")
    return 0


def console_main() -> int:
    return run_tool(PROG, lambda: main(sys.argv[1:]))


if __name__ == "__main__":
    sys.exit(console_main())
