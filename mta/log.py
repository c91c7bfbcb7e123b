"""Exim-format main, reject and panic logs.

Line format: ``YYYY-MM-DD HH:MM:SS [message-id ]text``.  Files are named by
`log_file_path` (a list; ``%s`` becomes main/reject/panic, ``%D`` the date
as YYYYMMDD, ``%M`` as YYYYMM; the item ``syslog`` sends lines to syslog's
mail facility); unset, they are ``<spool>/log/mainlog`` and so on.

Diagnostics: a log write that fails is written to the panic log, and if
that fails too, to stderr.  Logging never raises: a full log disk must not
turn an accepted message into a lost one.

Security: text that came from a client is passed through `escape()` by the
caller, so that a CR or LF in it cannot start a forged log line.
"""

from __future__ import annotations

import os
import sys
import time

from mta.lazy_pattern import lazy_compile
from mta.memo import per_second
from mta.printable import printable
from mta.privilege import adopt_directory_owner

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

MAIN = "main"
REJECT = "reject"
PANIC = "panic"

# Log flags (field 3 of a message line).
ARRIVAL = "<="
DELIVERY = "=>"
DELIVERY_MORE = "->"
FAILURE = "**"
DEFERRAL = "=="
FAKE_DELIVERY = "*>"

# Optional items on by default, as Exim's log_selector defaults.
DEFAULT_SELECTORS = frozenset(
    {
        "acl_warn_skipped",
        "connection_reject",
        "delay_delivery",
        "dnslist_defer",
        "etrn",
        "host_lookup_failed",
        "lost_incoming_connection",
        "msg_id",
        "queue_run",
        "rejected_header",
        "retry_defer",
        "sender_verify_fail",
        "size_reject",
        "skip_delivery",
        "smtp_confirmation",
        "tls_certificate_verified",
        "tls_cipher",
    }
)
KNOWN_SELECTORS = DEFAULT_SELECTORS | frozenset(
    {
        "address_rewrite",
        "all_parents",
        "arguments",
        "deliver_time",
        "delivery_size",
        "incoming_interface",
        "incoming_port",
        "millisec",
        "outgoing_interface",
        "outgoing_port",
        "pid",
        "queue_time",
        "queue_time_overall",
        "received_recipients",
        "received_sender",
        "receive_time",
        "return_path_on_delivery",
        "sender_on_delivery",
        "smtp_connection",
        "smtp_incomplete_transaction",
        "smtp_no_mail",
        "smtp_protocol_error",
        "smtp_syntax_error",
        "subject",
        "tls_peerdn",
        "tls_sni",
        "unknown_in_list",
    }
)


def parse_selector(text: str) -> frozenset[str]:
    """Apply a log_selector setting (``+name -name``, ``+all``, ``-all``) to the defaults.

    Raises ValueError naming an unknown selector.
    """
    selected = set(DEFAULT_SELECTORS)
    for word in text.split():
        if word[0] not in "+-":
            raise ValueError(f'log_selector item "{word}" must start with + or -')
        name = word[1:]
        if name == "all":
            selected = set(KNOWN_SELECTORS) if word[0] == "+" else set()
            continue
        if name not in KNOWN_SELECTORS:
            raise ValueError(f'unknown log_selector item "{name}"')
        if word[0] == "+":
            selected.add(name)
        else:
            selected.discard(name)
    return frozenset(selected)


# Exim's MAX_SYSLOG_LEN: longer lines are split, as some syslog daemons truncate them.
MAX_SYSLOG_LEN = 870
BACKSLASH = "\\"
# The time stamp at the start of a log line (with millisec, log_timezone and pid parts).
_STAMP = lazy_compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{3})?(?: [-+]\d{4})?(?: \[\d+\])? ")


def syslog_pieces(text: str, limit: int = MAX_SYSLOG_LEN) -> list[str]:
    """`text` as Exim sends it to syslog: one piece when it is one short line; otherwise pieces of
    at most `limit` characters, each line of it starting a new piece, prefixed ``[i/n] ``, or
    ``[i\\n] `` when the piece ends at a newline and more follows."""
    pieces: list[tuple[str, bool]] = []  # (text, ends at a newline with more to come)
    lines = text.split("\n")
    for index, line in enumerate(lines):
        chunks = [line[k : k + limit] for k in range(0, len(line), limit)] or [""]
        for k, chunk in enumerate(chunks):
            pieces.append((chunk, k == len(chunks) - 1 and index < len(lines) - 1))
    if len(pieces) == 1:
        return [pieces[0][0]]
    total = len(pieces)
    return [f"[{i}{BACKSLASH if ends_line else '/'}{total}] {chunk}" for i, (chunk, ends_line) in enumerate(pieces, 1)]


def escape(text: str) -> str:
    """Make client-supplied text safe for one log line (Exim's string_printing): backslashes
    doubled, so that the escapes of mta.printable cannot be faked."""
    if text.isprintable() and "\\" not in text:
        return text
    return printable(text.replace("\\", "\\\\"))


def escape_token(text: str) -> str:
    """`escape` for a field that must stay one word (``P=``, ``U=``): a space becomes ``\\040``,
    so that programs splitting the line at spaces (exigrep, eximstats) see one field."""
    return escape(text).replace(" ", "\\040")


def _second_stamp(second: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))


# A process writes several lines a second: one localtime and strftime a second.
_stamp = per_second(_second_stamp)


def log_timestamp(now: float | None = None, with_zone: bool = False, millisec: bool = False) -> str:
    now = time.time() if now is None else now
    stamp = _stamp(now)
    if millisec:
        stamp += f".{int((now % 1) * 1000):03d}"
    if with_zone:
        stamp += " " + time.strftime("%z", time.localtime(now))
    return stamp


class Logger:
    """Writes the three logs of one process.

    `paths` is the log_file_path setting (already split into items); an
    empty list means `<spool_directory>/log/%slog`.
    """

    def __init__(
        self,
        spool_directory: str,
        paths: Iterable[str] = (),
        selectors: frozenset[str] = DEFAULT_SELECTORS,
        log_timezone: bool = False,
        write_rejectlog: bool = True,
        stderr_echo: bool = False,
        quiet_failures: bool = False,
        syslog_facility: str = "mail",
        syslog_processname: str = "mta",
        syslog_duplication: bool = True,
        syslog_timestamp: bool = True,
    ) -> None:
        items = [p for p in paths if p]
        self.use_syslog = "syslog" in items
        files = [p for p in items if p != "syslog"]
        if not items:
            files = [os.path.join(spool_directory, "log", "%slog")]
        self.file_templates = files
        # Names without a date in them are made once per log, not at every line.
        self._dated = any("%D" in t or "%M" in t for t in files)
        self._fixed_paths: dict[str, list[str]] = {}
        self.selectors = selectors
        self.log_timezone = log_timezone
        self.write_rejectlog = write_rejectlog
        # -v: echo main log lines to stderr as well.
        self.stderr_echo = stderr_echo
        # Do not report a log that cannot be written (mua_wrapper as an ordinary user).
        self.quiet_failures = quiet_failures
        self._fds: dict[str, tuple[int, int, int]] = {}  # path -> (fd, dev, ino)
        self.syslog_facility = syslog_facility
        self.syslog_processname = syslog_processname
        self.syslog_duplication = syslog_duplication
        self.syslog_timestamp = syslog_timestamp
        self._syslog_open = False

    def selected(self, name: str) -> bool:
        return name in self.selectors

    # -- public writers ---------------------------------------------------
    # Every line is made printable here, whatever its callers did: a CR, LF or ESC from a
    # message can never forge a log line or reach the terminal of whoever reads the log.
    def main(self, text: str, message_id: str | None = None, now: float | None = None) -> None:
        self._emit(MAIN, self._line(printable(text), message_id, now))

    def reject(self, text: str, detail_lines: Iterable[str] = (), now: float | None = None, main: bool = True) -> None:
        """A rejection: one line in the main log; the same line plus details in the reject log.

        `main` False leaves the main log out (an ACL's ``log_reject_target = reject``).
        """
        line = self._line(printable(text), None, now)
        # no syslog_duplication: syslog gets the reject log's copy only (with its header lines).
        once = self.write_rejectlog and not self.syslog_duplication
        if main:
            self._emit(MAIN, line, to_syslog=not once)
        if self.write_rejectlog:
            self._emit(REJECT, line + "".join(printable(d) + "\n" for d in detail_lines))

    def panic(self, text: str, message_id: str | None = None, now: float | None = None) -> None:
        """A serious problem: written to the panic log and the main log.  The panic log keeps
        the newlines of a traceback (it is read by an administrator, not parsed); the main log
        gets the same text as one line."""
        # no syslog_duplication: syslog gets the main log's copy only.
        self._emit(PANIC, self._line(printable(text, keep="\n"), message_id, now), to_syslog=self.syslog_duplication)
        self._emit(MAIN, self._line(printable(text), message_id, now))

    # -- internals --------------------------------------------------------
    def _line(self, text: str, message_id: str | None, now: float | None) -> str:
        stamp = log_timestamp(now, self.log_timezone, "millisec" in self.selectors)
        if "pid" in self.selectors:
            stamp += f" [{os.getpid()}]"
        return f"{stamp} {message_id} {text}\n" if message_id else f"{stamp} {text}\n"

    def path_for(self, which: str, now: float | None = None) -> list[str]:
        if not self._dated:
            paths = self._fixed_paths.get(which)
            if paths is None:
                paths = self._fixed_paths[which] = [t.replace("%s", which) for t in self.file_templates]
            return paths
        lt = time.localtime(now)
        return [
            t.replace("%s", which).replace("%D", time.strftime("%Y%m%d", lt)).replace("%M", time.strftime("%Y%m", lt))
            for t in self.file_templates
        ]

    def _emit(self, which: str, line: str, to_syslog: bool = True) -> None:
        if which == MAIN and self.stderr_echo:
            sys.stderr.write(line)
        if self.use_syslog and to_syslog:
            self._syslog(which, line)
        for path in self.path_for(which):
            try:
                self._append(path, line)
            except OSError as exc:
                self._write_failed(which, path, line, exc)

    def _append(self, path: str, line: str) -> None:
        data = line.encode("utf-8", "surrogateescape")
        fd = self._open(path)
        # One write(2) of the whole line on an O_APPEND descriptor, so lines
        # from concurrent processes never interleave.
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(28, f"short write ({written} of {len(data)} bytes)")

    def _open(self, path: str) -> int:
        cached = self._fds.get(path)
        if cached is not None:
            fd, dev, ino = cached
            try:
                st = os.stat(path)
                if (st.st_dev, st.st_ino) == (dev, ino):
                    return fd
            except FileNotFoundError:
                pass
            except PermissionError:
                # The process has given up its privileges since it opened the log
                # (mua_wrapper): the open descriptor is still good to write to.
                return fd
            # Rotated or removed: reopen by name.
            os.close(fd)
            del self._fds[path]
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), mode=0o750, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        st = os.fstat(fd)
        if st.st_uid == 0 and os.geteuid() == 0:
            try:
                # Made by root: it must stay writable by the daemon's processes (mta_user).
                adopt_directory_owner(fd, os.path.dirname(path) or ".")
            except OSError:
                pass
        self._fds[path] = (fd, st.st_dev, st.st_ino)
        return fd

    def _write_failed(self, which: str, path: str, line: str, exc: OSError) -> None:
        if self.quiet_failures:
            return
        note = f"cannot write {which} log {path}: {exc.strerror or exc}"
        if which != PANIC:
            stamp = log_timestamp(None, self.log_timezone)
            panic_line = f"{stamp} {note}\n{line}"
            for panic_path in self.path_for(PANIC):
                try:
                    self._append(panic_path, panic_line)
                    return
                except OSError:
                    continue
        # Last resort: stderr (never raise from logging).
        try:
            sys.stderr.write(f"mta: {note}\n")
            sys.stderr.write(f"mta: {line}")
        except OSError:
            return

    def _syslog(self, which: str, line: str) -> None:
        """One log line through the system logger, as Exim's write_syslog: main at LOG_INFO, reject
        at LOG_NOTICE, panic at LOG_ALERT; the facility and name from syslog_facility and
        syslog_processname (with the pid); the time stamp kept unless syslog_timestamp is false;
        a line with several lines in it (a reject log entry with its headers), or longer than
        MAX_SYSLOG_LEN, sent in pieces prefixed ``[n/m]`` (``[n\\m]`` when the piece ends a line)."""
        import syslog

        if not self._syslog_open:
            facility = self.syslog_facility.lower().removeprefix("log_")
            code = getattr(syslog, "LOG_" + facility.upper(), syslog.LOG_MAIL)
            syslog.openlog(self.syslog_processname, syslog.LOG_PID, code)
            self._syslog_open = True
        priority = {MAIN: syslog.LOG_INFO, REJECT: syslog.LOG_NOTICE, PANIC: syslog.LOG_ALERT}[which]
        text = line.rstrip("\n")
        if not self.syslog_timestamp:
            text = _STAMP.sub("", text, count=1)
        for piece in syslog_pieces(text):
            syslog.syslog(priority, piece)

    def close(self) -> None:
        for fd, _dev, _ino in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                continue
        self._fds.clear()
