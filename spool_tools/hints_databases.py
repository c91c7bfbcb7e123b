"""What the hints tools (mta-dumpdb, mta-tidydb, mta-fixdb, mta-next) share: which database,
in which spool, opened how.  The rest of the command line (-C, --spool, one-line errors,
exit statuses) is every admin command's: spool_tools.admin_command.

    parser = ToolParser("mta-dumpdb", "List the records of a hints database.")
    add_database_arguments(parser)
    ...
    return run_tool("mta-dumpdb", lambda: body(parser.parse_args(argv)))

Where the database is: Exim's tools take ``<spool> <db>``; so do ours, and
as mta's other commands they also take ``--spool DIR`` or ``-C FILE`` (the
configuration's spool_directory) with the database name alone.

Locks: reading goes through LMDB read transactions, which never wait for or
hold up a writer, so a dump can run beside a busy queue run.  A tool that
writes (tidy, fix) does so in short write transactions of its own.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from mta.hints.db import HintsDb, HintsError
from spool_tools import admin_command
from spool_tools.admin_command import ToolError, UsageError, add_spool_options, load_configuration

# The databases mta keeps (Exim's callout, tls and seen databases have no use here yet).
DATABASE_KINDS = ("retry", "misc", "ratelimit", "wait")
DATABASE_NAMES = "retry, misc, ratelimit or wait-<transport>"


def add_database_arguments(parser: argparse.ArgumentParser) -> None:
    """-C, --spool and Exim's ``[SPOOL] DB``."""
    add_spool_options(parser)
    parser.add_argument("where", nargs="+", metavar="[SPOOL] DB",
                        help=f"the spool directory (as Exim's tools take it) and the database: {DATABASE_NAMES}")


def spool_and_database(args: argparse.Namespace) -> tuple[str, str]:
    """(spool directory, database name) from ``[SPOOL] DB``, ``--spool`` and ``-C``."""
    where: list[str] = args.where
    if len(where) > 2:
        raise UsageError(f"too many arguments: {' '.join(where[2:])}")
    if len(where) == 2:
        if args.spool is not None:
            raise UsageError("the spool is given twice (--spool and an argument)")
        spool, name = where
    else:
        (name,) = where
        spool = args.spool if args.spool is not None else load_configuration(args.config).main.spool_directory
    database_kind(name)
    return checked_spool(spool), name


def checked_spool(spool: str) -> str:
    if not os.path.isdir(spool):
        raise ToolError(f"spool directory {spool} does not exist")
    return spool


def database_kind(name: str) -> str:
    """Which kind of records database `name` holds; UsageError for a name mta does not use."""
    if name.startswith("wait-"):
        transport = name[len("wait-"):]
        if transport and "/" not in transport and not transport.startswith("."):
            return "wait"
    elif name in DATABASE_KINDS:
        return name
    raise UsageError(f"unknown hints database {name!r} (one of {DATABASE_NAMES})")


def _panic(text: str) -> None:
    sys.stderr.write(f"{text}\n")


def open_database(spool: str, name: str) -> HintsDb:
    """The existing database `name` of `spool`.

    A tool must not create a database that is not there (an administrator's
    typing mistake in a transport name would leave a new empty file behind),
    so its absence is an error here, as it is for Exim's tools.
    """
    directory = os.path.join(spool, "db")
    if not os.path.isfile(os.path.join(directory, name)):
        raise ToolError(f"no {name} database in {directory}")
    return HintsDb(directory, name, panic=_panic)


def run_tool(prog: str, body: Callable[[], int]) -> int:
    """admin_command.run_tool, with a database that cannot be opened or written (HintsError,
    which mta.hints raises outside mta's own errors) reported as one line, status 1."""

    def hints_body() -> int:
        try:
            return body()
        except HintsError as exc:
            raise ToolError(str(exc)) from None

    return admin_command.run_tool(prog, hints_body)
