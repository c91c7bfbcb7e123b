"""What the log tools (mta-grep, mta-stats, mta-qsumm, mta-cyclog) share: where the logs are,
and reading them, plain or compressed, in both message-id forms.

Where: `log_location` finds the log files as mta does.  ``-C FILE`` (see
spool_tools.admin_command) gives `log_file_path` and `spool_directory`;
``--spool DIR`` names the spool (its ``log/`` directory) without reading a
configuration, or, with -C, in place of the configuration's spool.

A main log line is ``YYYY-MM-DD HH:MM:SS[.mmm][ +hhmm][ [pid]] [ID ]text``
(mta.log writes it; Exim's spec, "Log files").  The message id is mta's
23-character form (Exim 4.97+, ``xxxxxx-xxxxxxxxxxx-xxxx``) or Exim 4.96's
16-character form (``xxxxxx-xxxxxx-xx``); Exim 4.96's own tools know only
the second, which is why mta needs its own.

Rotated logs are read compressed: gzip, bzip2 and xz are recognised by
their first bytes (not their names), with Python's own modules, so no
decompressor program is ever run with a file name from the command line.
Lines are decoded as UTF-8; bytes that are not UTF-8 survive as
surrogates (``surrogateescape``) and are escaped on output by mta.printable.

Security: nothing here evaluates or passes to a shell anything read from a
log.  Reading needs only read permission; no lock is taken, so a tool can
never hold up a delivery.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import os
import re
import sys
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from spool_tools.admin_command import ToolError, load_configuration, os_error_text

LOG_SPOOL_HELP = "the spool directory (its log/ directory holds the logs)"

_B62 = "[0-9A-Za-z]"
MESSAGE_ID = f"{_B62}{{6}}-(?:{_B62}{{11}}-{_B62}{{4}}|{_B62}{{6}}-{_B62}{{2}})"
MESSAGE_ID_RE = re.compile(MESSAGE_ID)
# A word that is a message id (in R=ID of a bounce's arrival, say).
MESSAGE_ID_WORD_RE = re.compile(rf"(?<![0-9A-Za-z-]){MESSAGE_ID}(?![0-9A-Za-z-])")

# The time stamp with its optional parts (millisec, log_timezone, pid selectors), then the id if any.
LINE_RE = re.compile(
    r"(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?P<frac>\.\d+)?(?: (?P<zone>[+-]\d{4}))?(?: \[\d+\])? "
    rf"(?:(?P<id>{MESSAGE_ID})(?: |$))?"
)

_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)


@contextlib.contextmanager
def open_log(path: str) -> Iterator[BinaryIO]:
    """The decompressed bytes of log file `path` ("-": standard input), closed on leaving."""
    with contextlib.ExitStack() as stack:
        if path == "-":
            raw: BinaryIO = sys.stdin.buffer
        else:
            raw = stack.enter_context(open(path, "rb"))
        buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[arg-type]
        head = buffered.peek(6)[:6]
        for magic, kind in _MAGIC:
            if head.startswith(magic):
                opener = {"gzip": gzip.GzipFile, "bzip2": bz2.BZ2File, "xz": lzma.LZMAFile}[kind]
                # These do not close the file they read (given as an object): the stack does.
                yield stack.enter_context(opener(fileobj=buffered) if kind == "gzip" else opener(buffered))
                return
        yield buffered  # type: ignore[misc]


def read_lines(paths: Iterable[str]) -> Iterator[str]:
    """Every line of every file in turn, each with its newline (if it had one).

    A file that cannot be opened or decompressed is a ToolError naming it; nothing read
    from it is used after the error (the caller stops)."""
    for path in paths:
        name = "standard input" if path == "-" else path
        try:
            with open_log(path) as stream:
                for raw in stream:
                    yield raw.decode("utf-8", "surrogateescape")
        except FileNotFoundError as exc:
            raise ToolError(os_error_text(exc)) from None
        except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
            if isinstance(exc, OSError) and exc.filename:
                raise ToolError(os_error_text(exc)) from None
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
            raise ToolError(f"{name}: cannot read: {reason}") from None


def stamp_seconds(stamp: str, zone: str | None = None) -> int:
    """Seconds since the epoch of a log time stamp (local time unless a +hhmm zone follows)."""
    if zone:
        st = time.strptime(stamp, "%Y-%m-%d %H:%M:%S")
        import calendar

        offset = (int(zone[1:3]) * 3600 + int(zone[3:5]) * 60) * (1 if zone[0] == "+" else -1)
        return calendar.timegm(st) - offset
    return int(time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")))


# -- where the logs are ----------------------------------------------------------------


@dataclass(frozen=True)
class LogLocation:
    """The log file name templates of one configuration (``%s`` = main, reject, panic)."""

    templates: tuple[str, ...]
    syslog: bool
    spool_directory: str

    def path(self, which: str = "main") -> str:
        """The current file of log `which`; ToolError when the logs go to syslog only."""
        if not self.templates:
            raise ToolError("the configuration logs to syslog only: name the log files to read")
        from mta.log import Logger

        return Logger(self.spool_directory, self.templates).path_for(which)[0]


def log_location(config_file: str | None, spool: str | None) -> LogLocation:
    """Where the logs are, from ``-C`` and ``--spool`` (see the module docstring)."""
    if spool is not None and not os.path.isabs(spool):
        spool = os.path.abspath(spool)
    if spool is not None and config_file is None:
        return LogLocation((os.path.join(spool, "log", "%slog"),), False, spool)
    config = load_configuration(config_file)
    from mta.values import split_list

    items = [p for p in split_list(config.main.log_file_path) if p]
    files = tuple(p for p in items if p != "syslog")
    spool_directory = spool or config.main.spool_directory
    if not items:
        files = (os.path.join(spool_directory, "log", "%slog"),)
    return LogLocation(files, "syslog" in items, spool_directory)
