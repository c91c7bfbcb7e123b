"""What the hints tools (mta-dumpdb, mta-tidydb, mta-fixdb, mta-next) share.

    parser = HintsToolParser("mta-dumpdb", "List the records of a hints database.")
    add_location_options(parser, database=True)
    ...
    return run_tool("mta-dumpdb", lambda: body(parser.parse_args(argv)))

Where the database is: Exim's tools take ``<spool> <db>``; so do ours, and
as mta's other commands they also take ``--spool DIR`` or ``-C FILE`` (the
configuration's spool_directory) with the database name alone.

Errors: a bad argument is one line, ``prog: what is wrong (see prog --help)``,
exit status 2; anything else that stops a tool (no spool, no such database,
a database that cannot be opened) is ``prog: reason``, exit status 1.  Never
a traceback for something the administrator can put right.

Locks: reading goes through LMDB read transactions, which never wait for or
hold up a writer, so a dump can run beside a busy queue run.  A tool that
writes (tidy, fix) does so in short write transactions of its own.

Output goes through mta.printable: a key or an error text that came from the
network (an address, a host's reply) cannot repaint the terminal.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

from mta.errors import ConfigError, MtaError
from mta.hints.db import HintsDb, HintsError

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from mta.config.loader import Config

USAGE_STATUS = 2
# The databases mta keeps (Exim's callout, tls and seen databases have no use here yet).
DATABASE_KINDS = ("retry", "misc", "ratelimit", "wait")
DATABASE_NAMES = "retry, misc, ratelimit or wait-<transport>"


class ToolError(MtaError):
    """A failure reported as one line (`str()`) and exit status 1."""


class UsageError(ToolError):
    """A bad argument: one line and exit status 2."""


class HintsToolParser(argparse.ArgumentParser):
    """argparse with one-line errors (UsageError) instead of a usage block and exit."""

    def __init__(self, prog: str, description: str, epilog: str | None = None, usage: str | None = None) -> None:
        super().__init__(prog=prog, description=description, epilog=epilog, usage=usage, allow_abbrev=False,
                         formatter_class=argparse.RawDescriptionHelpFormatter)

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def add_location_options(parser: argparse.ArgumentParser, database: bool) -> None:
    parser.add_argument("-C", "--config", metavar="FILE", help="mta's configuration file (as mta -C)")
    parser.add_argument("--spool", metavar="DIR", help="the spool directory (no configuration is needed)")
    if database:
        parser.add_argument("where", nargs="+", metavar="[SPOOL] DB",
                            help=f"the spool directory (as Exim's tools take it) and the database: {DATABASE_NAMES}")


def load_config(path: str | None) -> Config:
    """The configuration as mta reads it; a missing default file gets a hint about -C and --spool."""
    from mta.config.loader import default_config_path
    from mta.config.loader import load_config as load

    path = path or default_config_path()
    if not os.path.exists(path):
        raise ToolError(f"{path}: configuration file not found (name one with -C, or the spool with --spool)")
    return load(path)


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
        spool = args.spool if args.spool is not None else load_config(args.config).main.spool_directory
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


def dump_time(when: float) -> str:
    """Exim's time format in its tools: ``22-Nov-2026 12:43:32``, local time (or UTC, see use_utc)."""
    return time.strftime("%d-%b-%Y %H:%M:%S", time.localtime(when))


def use_utc() -> None:
    """Show every time in UTC (exim_dumpdb's -z): the process's own time zone, nothing else."""
    os.environ["TZ"] = "UTC"
    time.tzset()


def run_tool(prog: str, body: Callable[[], int]) -> int:
    """Run a tool's body with printable output; turn every expected failure into one line."""
    from mta.printable import PrintableStream

    if not isinstance(sys.stdout, PrintableStream):
        sys.stdout = PrintableStream(sys.stdout, keep="\n\t")  # type: ignore[assignment]
        sys.stderr = PrintableStream(sys.stderr, keep="\t", one_line_writes=True)  # type: ignore[assignment]
    try:
        return body()
    except UsageError as exc:
        _say(prog, f"{exc} (see {prog} --help)")
        return USAGE_STATUS
    except ConfigError as exc:
        _say(prog, f"configuration error: {exc}")
        return 1
    except (MtaError, HintsError) as exc:
        _say(prog, str(exc))
        return 1
    except BrokenPipeError:
        # Output piped into something that went away (mta-dumpdb ... | head): stop quietly, and
        # let the flush at exit write to nowhere rather than fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        reason = exc.strerror or str(exc)
        _say(prog, f"{exc.filename}: {reason}" if exc.filename else reason)
        return 1
    except KeyboardInterrupt:
        return 130


def _say(prog: str, text: str) -> None:
    try:
        sys.stdout.flush()
    except OSError:
        pass  # stdout gone (a closed pipe): the message still goes to stderr
    sys.stderr.write(f"{prog}: {text}\n")
