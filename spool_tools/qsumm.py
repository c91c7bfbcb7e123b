"""mta-qsumm: a summary of the queue by recipient domain (Exim's exiqsumm).

    mta -bp | mta-qsumm [-a | -c] [-b] [-f] [-s] [FILE ...]
    mta-qsumm [--queue] [-C FILE | --spool DIR]

Reads a queue listing (``mailq`` / ``mta -bp`` output, or Exim's) on
standard input, or from the files named, and prints, for each recipient domain, how many deliveries
are waiting (undelivered recipients, not messages), their volume, the ages
of the oldest and the newest message, and a TOTAL line::

    Count  Volume  Oldest  Newest  Domain
    -----  ------  ------  ------  ------

        1    1536      0m      0m  example.com
    ---------------------------------------------------------------
        1    1536      0m      0m  TOTAL

With ``--queue``, ``-C`` or ``--spool``, or when standard input is a
terminal, it lists the queue itself instead (the same code as ``mta -bp``,
in this process: no ``mailq`` is looked for on $PATH).  Message
ids of either form are accepted: the listing is parsed by its columns, not
by the id's shape.

Options as exiqsumm: ``-a`` sort by the oldest message, ``-c`` by count
(default: by domain); ``-b`` and ``-f`` mark bounces ``(b)`` and frozen
messages ``(f)`` in separate lines; ``-s`` splits each domain by sender
domain (``sender-domain > recipient-domain``).  The arithmetic (sizes read
back from the 5-column size, rounding) is exiqsumm's, so both print the same
figures for the same listing.

Security: the listing is parsed, never evaluated; reading the queue takes no lock.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TextIO

from spool_tools.admin_command import ToolError, ToolParser, UsageError, add_spool_options, load_spool, run_tool

PROG = "mta-qsumm"

# exiqsumm's two patterns: a message's first line (age, size, id, <sender>) and a recipient line.
_MESSAGE_LINE = re.compile(r"^([\d\s]{2,3}\w)\s+(\S+)\s(\S+)\s<(\S*)>", re.ASCII)
_RECIPIENT_LINE = re.compile(r"^\s+[^@]*@([\w.\-]+|\[(?:\d+\.){3}\d+\])", re.ASCII)
_DELIVERED_LINE = re.compile(r"^\s*D\s\S+", re.ASCII)
_AGE = re.compile(r"(\d+)(\w)", re.ASCII)


@dataclass
class DomainRow:
    count: int = 0
    volume: float = 0.0  # exiqsumm adds sizes read back from "1.5K": fractions of a byte survive
    oldest: str = ""
    newest: str = ""


@dataclass
class Summary:
    rows: dict[str, DomainRow] = field(default_factory=dict)


def size_value(text: str) -> float:
    """exiqsumm's s_conv: "1.5K" -> 1536.0, "369" -> 369.0."""
    m = re.search(r"([\d.]+)([A-Z]|)", text, re.ASCII)
    if m is None:
        return 0.0
    try:
        value = float(m.group(1))
    except ValueError:
        return 0.0
    return value * {"K": 1024, "M": 1024 * 1024}.get(m.group(2), 1)


def older(a: str, b: str) -> int:
    """exiqsumm's `older`: 1 if age `a` is older than age `b`, -1 if younger, 0 if equal."""
    ma, mb = _AGE.search(a), _AGE.search(b)
    va, ua = (int(ma.group(1)), ma.group(2)) if ma else (0, "")
    vb, ub = (int(mb.group(1)), mb.group(2)) if mb else (0, "")
    if ua == ub:
        return (va > vb) - (va < vb)
    return 1 if (ub == "m" or (ub == "h" and ua == "d") or (ub == "d" and ua == "w")) else -1


def summarise(lines: Iterable[str], by_sender: bool = False, bounces: bool = False, frozen: bool = False) -> Summary:
    summary = Summary()
    age, source, is_bounce, is_frozen, size = "0d", "", False, False, "0"
    for line in lines:
        line = line.rstrip("\n")
        if not line or _DELIVERED_LINE.match(line):
            continue
        m = _MESSAGE_LINE.match(line)
        if m:
            age, size, source = m.group(1), m.group(2), m.group(4)
            # The sender's domain ("" for the null sender, shown as <>).
            source = re.sub(r"([^@]*)@(.*?)$", r"\2", source)
            is_frozen = "*** frozen ***" in line
            is_bounce = source == ""
            if is_bounce:
                source = "<>"
            continue
        r = _RECIPIENT_LINE.match(line)
        if r is None:
            continue
        domain = f"{source} > {r.group(1)}" if by_sender else r.group(1)
        domain = _ascii_lower(domain)
        if is_bounce and bounces:
            domain += " (b)"
        if is_frozen and frozen:
            domain += " (f)"
        row = summary.rows.setdefault(domain, DomainRow())
        row.count += 1
        if not row.oldest or older(age, row.oldest) > 0:
            row.oldest = age
        if not row.newest or older(row.newest, age) > 0:
            row.newest = age
        row.volume += size_value(size)
    return summary


def _ascii_lower(text: str) -> str:
    # Perl's \L on a byte string changes only A-Z.
    return text.translate(str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"))


def volume_text(volume: float) -> str:
    """exiqsumm's print_volume_rounded (Perl's %d truncates)."""
    if volume < 10000:
        return f"{int(volume):6d}"
    if volume < 10000000:
        return f"{int((volume + 512) / 1024):4d}KB"
    return f"{int((volume + 512 * 1024) / (1024 * 1024)):4d}MB"


def _row(count: int, volume: float, oldest: str, newest: str, name: str) -> str:
    return f"{count:5d}  {volume_text(volume)[:6]}  {oldest:>6}  {newest:>6}  {name[:80]}\n"


def render(summary: Summary, sort: str = "domain") -> str:
    import functools

    def by_age(a: str, b: str) -> int:
        return older(summary.rows[b].oldest, summary.rows[a].oldest) or (a > b) - (a < b)

    names = list(summary.rows)
    if sort == "age":
        names.sort(key=functools.cmp_to_key(by_age))
    elif sort == "count":
        names.sort(key=lambda n: (-summary.rows[n].count, n))
    else:
        names.sort()
    out = ["\nCount  Volume  Oldest  Newest  Domain\n-----  ------  ------  ------  ------\n\n"]
    count, volume, max_age, min_age = 0, 0.0, "0m", ""
    for name in names:
        row = summary.rows[name]
        out.append(_row(row.count, row.volume, row.oldest, row.newest, name))
        if older(row.oldest, max_age) > 0:
            max_age = row.oldest
        if not min_age or older(min_age, row.newest) > 0:
            min_age = row.newest
        volume += row.volume
        count += row.count
    out.append("-" * 63 + "\n")
    out.append(_row(count, volume, max_age, min_age or "0000d", "TOTAL"))
    out.append("\n")
    return "".join(out)


def parser() -> ToolParser:
    p = ToolParser(
        PROG,
        "Summarise a queue listing (mailq output on standard input) by recipient domain, "
        "as Exim's exiqsumm.",
        "With --queue, -C or --spool, or when standard input is a terminal, the queue itself is "
        "listed (the default configuration's, -C's, or --spool's), as mta -bp would list it.",
        wrap=True,
    )
    order = p.add_mutually_exclusive_group()
    order.add_argument("-a", dest="sort", action="store_const", const="age", help="sort by the oldest message")
    order.add_argument("-c", dest="sort", action="store_const", const="count", help="sort by count")
    p.add_argument("-b", action="store_true", help="show bounces (sender <>) on lines of their own, marked (b)")
    p.add_argument("-f", action="store_true", help="show frozen messages on lines of their own, marked (f)")
    p.add_argument("-s", action="store_true", help="split each domain by sender domain")
    p.add_argument("--queue", action="store_true", help="list the queue instead of reading standard input")
    add_spool_options(p)
    p.add_argument("listings", metavar="FILE", nargs="*", help="queue listings to read ('-': standard input)")
    return p


def queue_listing(args: argparse.Namespace) -> list[str]:
    """The `mta -bp` listing of the queue, made here by mta's own code (spool_tools.queue_list)."""
    from mta.errors import SpoolError
    from spool_tools.queue_list import list_queue

    _config, spool = load_spool(args)  # the listing finds split sub-directories by itself
    if not spool.directory.is_dir():
        raise ToolError(f"{spool.directory}: no such spool directory")
    out = io.StringIO()
    try:
        list_queue(spool, "", [], out)
    except SpoolError as exc:
        raise ToolError(str(exc)) from None
    return out.getvalue().splitlines(keepends=True)


def main(argv: list[str], stdin: TextIO | None = None) -> int:
    args = parser().parse_args(argv)
    stdin = stdin or sys.stdin
    lines: Iterable[str]
    if args.listings:
        if args.queue or args.config or args.spool:
            raise UsageError("either name listings to read or a queue to list (--queue, -C, --spool), not both")
        from spool_tools.logfiles import read_lines

        lines = read_lines(args.listings)
    elif args.queue or args.config or args.spool or stdin is None or stdin.isatty():
        # -C or --spool say which queue: there is nothing else they could mean here.
        lines = queue_listing(args)
    else:
        lines = stdin
    summary = summarise(lines, by_sender=args.s, bounces=args.b, frozen=args.f)
    sys.stdout.write(render(summary, args.sort or "domain"))
    return 0


def console_main() -> int:
    return run_tool(PROG, lambda: main(sys.argv[1:]))


if __name__ == "__main__":
    raise SystemExit(console_main())
