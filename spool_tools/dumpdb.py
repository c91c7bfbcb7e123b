"""mta-dumpdb: list the records of a hints database, in exim_dumpdb's shape.

    mta-dumpdb [-z] [-k] [SPOOL] DB          (DB: retry, misc, ratelimit, wait-<transport>)

    $ mta-dumpdb /var/spool/mta retry
      T:mx.example.net:192.0.2.5 111 65 Connection refused
    22-Nov-2026 12:43:32  22-Nov-2026 12:43:53  22-Nov-2026 12:58:53 *
    $ mta-dumpdb /var/spool/mta wait-remote_smtp
    mx.example.net 1xV6uq-000000005Vj-1t2a 1xV6v2-000000005WW-1k3b

A retry record is two lines: key, error number, extra error number, last
error text; then first failure, last try, next try and ``*`` when past the
final cutoff.  A wait- record is the host and the waiting message ids; a
misc record its time and key; a ratelimit record its time, rate (and Bloom
filter) and key.  ``-z`` shows times in UTC, ``-k`` the keys only.

The whole database is read in one LMDB read transaction (one consistent
snapshot, and no lock a delivery would wait for).  A record that does not
decode is reported on standard error and the exit status is 1, as
exim_dumpdb does for a damaged record; the others are still listed.
"""

from __future__ import annotations

import sys

from spool_tools.admin_command import ToolParser
from spool_tools.hints_databases import (
    add_database_arguments,
    database_kind,
    open_database,
    run_tool,
    spool_and_database,
)
from spool_tools.hints_records import dump_lines, shown_key, use_utc

PROG = "mta-dumpdb"


def build_parser() -> ToolParser:
    parser = ToolParser(PROG, "List the records of one of mta's hints databases, as exim_dumpdb does.",
                        epilog=__doc__.split("\n\n")[1],
                        usage="%(prog)s [-z] [-k] [-C FILE] [--spool DIR] [SPOOL] DB")
    parser.add_argument("-z", dest="utc", action="store_true", help="show times in UTC, not local time")
    parser.add_argument("-k", dest="keys_only", action="store_true", help="list the keys only")
    add_database_arguments(parser)
    return parser


def dump(spool: str, name: str, keys_only: bool) -> int:
    kind = database_kind(name)
    status = 0
    out = sys.stdout
    for raw_key, value in open_database(spool, name).items():
        key = shown_key(raw_key)
        if keys_only:
            out.write(f"{key}\n")
            continue
        try:
            lines = dump_lines(kind, key, value)
        except ValueError as exc:
            out.flush()
            sys.stderr.write(f"**** Data for {key} corrupted: {exc}\n")
            status = 1
            continue
        out.write("".join(f"{line}\n" for line in lines))
    return status


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def body() -> int:
        args = parser.parse_args(argv)
        spool, name = spool_and_database(args)
        if args.utc:
            use_utc()
        return dump(spool, name, args.keys_only)

    return run_tool(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
