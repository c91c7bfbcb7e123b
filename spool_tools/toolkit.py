"""What every admin tool in spool_tools shares: its options for finding the spool, one-line
errors, and output that cannot repaint a terminal.

    parser = ToolParser("mta-qgrep", "Select messages on the queue.")
    add_spool_options(parser)
    ...
    return run_tool("mta-qgrep", lambda: body(parser.parse_args(argv)))

- ``-C FILE`` / ``--config FILE`` reads the configuration as mta does (its
  spool_directory, split_spool_directory, the administrators);
  ``--spool DIR`` names the spool directly and reads no configuration.
- A bad argument is one line on standard error, ``prog: what is wrong (see
  prog --help)``, and exit status 2 (argparse's own output is a usage block
  and would need a careful eye); any other failure is ``prog: reason`` and
  exit status 1.  Never a traceback for something the user can fix.
- Standard output and standard error go through mta.printable (as mta's
  own): a sender or header with escape sequences is shown escaped.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from mta.errors import ConfigError, MtaError

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from mta.config.loader import Config
    from mta.spool.store import Spool

USAGE_STATUS = 2


class ToolError(MtaError):
    """A failure the tool reports as one line (`str()`) and exit status 1."""


class UsageError(ToolError):
    """A bad argument: one line and exit status 2."""


class ToolParser(argparse.ArgumentParser):
    """argparse with one-line errors (UsageError) instead of a usage block and exit."""

    def __init__(self, prog: str, description: str, epilog: str | None = None) -> None:
        super().__init__(prog=prog, description=description, epilog=epilog, allow_abbrev=False,
                         formatter_class=argparse.RawDescriptionHelpFormatter)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def add_spool_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-C", "--config", metavar="FILE", help="the configuration file (as mta -C)")
    parser.add_argument("--spool", metavar="DIR", help="the spool directory (no configuration is read)")


def load_spool(args: argparse.Namespace) -> tuple[Config | None, Spool]:
    """The configuration (None with --spool) and the spool the arguments name."""
    from mta.spool.store import Spool

    if args.spool is not None:
        if args.config is not None:
            raise UsageError("give -C or --spool, not both")
        return None, Spool(args.spool)
    from mta.config.loader import load_config

    config = load_config(args.config)
    return config, Spool(config.main.spool_directory, split=config.main.split_spool_directory)


def caller_is_admin(config: Config) -> bool:
    from mta.config.caller import current_caller, is_administrator

    return is_administrator(current_caller(), config)


def run_tool(prog: str, body: Callable[[], int]) -> int:
    """Run a tool's body with printable output; turn every expected failure into one line."""
    from mta.printable import PrintableStream

    if not isinstance(sys.stdout, PrintableStream):
        sys.stdout = PrintableStream(sys.stdout, keep="\n\t")  # type: ignore[assignment]
        sys.stderr = PrintableStream(sys.stderr, keep="\t", one_line_writes=True)  # type: ignore[assignment]
    try:
        return body()
    except UsageError as exc:
        _say(prog, str(exc))
        return USAGE_STATUS
    except ConfigError as exc:
        _say(prog, f"configuration error: {exc}")
        return 1
    except MtaError as exc:
        _say(prog, str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into something that went away (mta-qgrep | head): stop quietly, and let
        # the flush at exit write to nowhere rather than fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _say(prog: str, text: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"{prog}: {text}\n")
