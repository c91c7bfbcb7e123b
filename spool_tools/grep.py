"""mta-grep: every log line of each message any of whose lines match (Exim's exigrep).

    mta-grep [-l] [-I] [-v] [-M] [-t SECONDS] [--incomplete] [-C FILE | --spool DIR] PATTERN [LOG ...]

Lines are grouped by message id (both id forms, see spool_tools.logfiles).
A message's lines are held until its ``Completed`` line (or a line saying
it was rejected, or an SMTP data timeout); then, if any of them matched,
all of them are printed, followed by a blank line.  Messages still open at
the end are printed after a ``+++ ID has not completed +++`` line, in the
order they first appeared.  Lines without a message id are printed alone
when they match.  With no LOG the configuration's main log is read; ``-``
is standard input; rotated ``.gz``/``.bz2``/``.xz`` files are read as they
are.

Options as exigrep: ``-l`` the pattern is literal text (else a regular
expression, Python's syntax, close to Perl's); ``-I`` case-sensitive (the
default is not); ``-v`` messages none of whose lines match; ``-M``
(``--related``) also messages whose lines name a matching message's id
after it matched (its bounce, its delay warning); ``-t N`` only messages
that spent more than N seconds on the queue.  ``--incomplete`` (ours) keeps
only the messages that have not completed (and no other lines).  docs/admin.md lists where this
differs from exigrep, and why.

Security: the pattern is compiled as a regular expression and nothing else;
no log text is evaluated.  The log is read without any lock.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TextIO

from spool_tools.admin_command import ToolParser, UsageError, add_spool_options, run_tool
from spool_tools.logfiles import LINE_RE, LOG_SPOOL_HELP, MESSAGE_ID_WORD_RE, log_location, read_lines, stamp_seconds

PROG = "mta-grep"


@dataclass
class GrepOptions:
    pattern: re.Pattern[str]
    invert: bool = False
    related: bool = False
    queue_time: int = -1
    incomplete_only: bool = False


@dataclass
class _Grouper:
    """exigrep's state: the lines held for each open message and whether it is wanted."""

    opts: GrepOptions
    out: TextIO
    saved: dict[str, list[str]] = field(default_factory=dict)
    first_seen: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # time stamp, zone
    wanted: dict[str, bool] = field(default_factory=dict)
    related_ids: set[str] = field(default_factory=set)

    def line(self, line: str) -> None:
        m = LINE_RE.match(line)
        if m is None:
            return  # not a log line (exigrep skips these too, matching or not)
        message_id = m.group("id")
        matched = self.opts.pattern.search(line) is not None
        if message_id is None:
            if matched != self.opts.invert and not self.opts.incomplete_only:
                # A blank line follows, as in exigrep's output (which prints the line with its
                # newline and then another): each line stands as a group of its own.
                self.out.write(line + "\n\n")
            return
        if message_id not in self.saved:
            self.saved[message_id] = []
            self.first_seen[message_id] = (m.group("stamp"), m.group("zone"))
        self.saved[message_id].append(line)
        self._judge(message_id, line, matched)
        if _completes(line[m.end() :]):
            self._complete(message_id, (m.group("stamp"), m.group("zone")))

    def _judge(self, message_id: str, line: str, matched: bool) -> None:
        if self.opts.invert:
            # Wanted until one of its lines matches.
            if matched:
                self.wanted[message_id] = False
            else:
                self.wanted.setdefault(message_id, True)
        elif matched or self.wanted.get(message_id):
            self.wanted[message_id] = True
            if self.opts.related:
                self.related_ids.add(message_id)
        elif self.related_ids and any(w in self.related_ids for w in MESSAGE_ID_WORD_RE.findall(line)):
            self.wanted[message_id] = True

    def _complete(self, message_id: str, now: tuple[str, str | None]) -> None:
        wanted = self.wanted.pop(message_id, False)
        lines = self.saved.pop(message_id)
        first = self.first_seen.pop(message_id)
        # -t: the time from the message's first line to this one (time stamps are only turned
        # into seconds here, when asked for: most runs never need them).
        if wanted and self.opts.queue_time >= 0 and stamp_seconds(*now) - stamp_seconds(*first) <= self.opts.queue_time:
            wanted = False
        if wanted and not self.opts.incomplete_only:
            self.out.write("".join(f"{line}\n" for line in lines) + "\n")

    def finish(self) -> None:
        for message_id, lines in self.saved.items():
            if self.wanted.get(message_id):
                self.out.write(f"+++ {message_id} has not completed +++\n")
                self.out.write("".join(f"{line}\n" for line in lines) + "\n")


def _completes(text: str) -> bool:
    """True for the line that ends a message's story, as exigrep decides, but on the start of the
    text after the id: exigrep looks for "Completed" anywhere in the line, so a remote server's
    reply containing the word would split a message in two."""
    return (
        text == "Completed"
        or text.startswith("Completed ")
        or text.startswith("rejected")
        or text.startswith("SMTP data timeout")
    )


def grep(lines: Iterable[str], opts: GrepOptions, out: TextIO) -> None:
    grouper = _Grouper(opts, out)
    for line in lines:
        grouper.line(line.rstrip("\n"))
    grouper.finish()


def compile_pattern(text: str, literal: bool, case_sensitive: bool) -> re.Pattern[str]:
    flags = 0 if case_sensitive else re.IGNORECASE
    try:
        return re.compile(re.escape(text) if literal else text, flags)
    except re.error as exc:
        raise UsageError(f"bad pattern {text!r}: {exc}") from None


def parser() -> ToolParser:
    p = ToolParser(
        PROG,
        "Print every main log line of each message any of whose lines match PATTERN "
        "(grouped by message, as Exim's exigrep), and the other lines that match.",
        "With no LOG, the main log of the configuration is read; '-' reads standard input. "
        "Compressed logs (.gz, .bz2, .xz) are read as they are.",
        wrap=True,
    )
    p.add_argument("-l", "--literal", action="store_true", help="PATTERN is plain text, not a regular expression")
    p.add_argument("-I", "--sensitive", action="store_true", help="case-sensitive match (default: insensitive)")
    p.add_argument("-v", "--invert", action="store_true", help="messages none of whose lines match")
    p.add_argument(
        "-M", "--related", action="store_true", help="also messages that name a matching message's id (bounces)"
    )
    p.add_argument(
        "-t", "--queue-time", type=_seconds, default=-1, metavar="N",
        help="only messages that spent more than N seconds on the queue",
    )
    p.add_argument("--incomplete", action="store_true", help="only messages that have not completed")
    p.add_argument("--no-pager", action="store_true", help=argparse_suppress())
    add_spool_options(p, LOG_SPOOL_HELP)
    p.add_argument("pattern", metavar="PATTERN", nargs="?")
    p.add_argument("logs", metavar="LOG", nargs="*")
    return p


def argparse_suppress() -> str:
    import argparse

    return argparse.SUPPRESS  # accepted for exigrep's scripts; we never start a pager


def _seconds(text: str) -> int:
    if not text.isdigit():
        raise UsageError(f"-t needs a number of seconds, not {text!r}")
    return int(text)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.pattern is None:
        raise UsageError("no PATTERN to look for")
    opts = GrepOptions(
        pattern=compile_pattern(args.pattern, args.literal, args.sensitive),
        invert=args.invert,
        related=args.related,
        queue_time=args.queue_time,
        incomplete_only=args.incomplete,
    )
    logs = args.logs or [log_location(args.config, args.spool).path("main")]
    grep(read_lines(logs), opts, sys.stdout)
    return 0


def console_main() -> int:
    return run_tool(PROG, lambda: main(sys.argv[1:]))


if __name__ == "__main__":
    raise SystemExit(console_main())
