"""mta-stats: the command (reads the logs, then writes each report asked for).

Exit status 0; 1 when a log cannot be read or no log line was found
(eximstats' "No valid log lines read", unless -emptyok); 2 for bad
arguments.  Output files are written whole under a temporary name and
renamed into place, so a report being read is never half-written.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from spool_tools.admin_command import ToolError, run_tool
from spool_tools.logfiles import log_location, read_lines
from spool_tools.stats.aggregate import Stats
from spool_tools.stats.options import HELP, StatsOptions, parse_args

PROG = "mta-stats"


def collect(lines: Iterable[str], opts: StatsOptions) -> Stats:
    stats = Stats(opts)
    for line in lines:
        stats.add(line)
    return stats


def render(kind: str, stats: Stats) -> str:
    if kind == "txt":
        from spool_tools.stats import text

        return text.render(stats)
    if kind == "html":
        from spool_tools.stats import html

        return html.render(stats)
    from spool_tools.stats import jsonout

    return jsonout.render(stats)


def write_output(target: str, content: str) -> None:
    if target == "-":
        sys.stdout.write(content)
        return
    from mta.printable import printable

    temporary = f"{target}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w", encoding="utf-8", errors="surrogateescape") as out:
            # The same escaping as the terminal gets: a report file may be viewed with cat.
            out.write(printable(content, keep="\n\t"))
        os.replace(temporary, target)
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def main(argv: list[str]) -> int:
    opts = parse_args(argv)
    if opts.help:
        sys.stdout.write(HELP)
        return 0
    files = opts.files or [log_location(opts.config_file, opts.spool).path("main")]
    stats = collect(read_lines(files), opts)
    if stats.begin == "9999-99-99 99:99:99" and not opts.emptyok:
        raise ToolError("no valid log lines read")
    for kind, target in opts.outputs:
        write_output(target, render(kind, stats))
    return 0


def console_main() -> int:
    return run_tool(PROG, lambda: main(sys.argv[1:]))
