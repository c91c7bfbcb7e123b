"""What every admin command in spool_tools shares (docs/admin.md, "What they have in common").

    parser = ToolParser("mta-qgrep", "Select messages on the queue.")
    add_spool_options(parser)
    ...
    return run_tool("mta-qgrep", lambda: body(parser.parse_args(argv)))

- ``-C FILE`` / ``--config FILE`` reads mta's configuration as mta does
  (without it: $MTA_CONFIG for ordinary users, else /etc/mta/mta.conf).
  ``--spool DIR`` names the spool: it takes the place of the configuration's
  spool_directory, and without -C no configuration is read at all.
- A bad argument is one line on standard error, ``prog: what is wrong (see
  prog --help)``, and exit status 2 (argparse's own output is a usage block
  that would need a careful eye); any other failure, a file that cannot be
  read or a bad configuration included, is ``prog: reason`` and exit status
  1.  Never a traceback: even a bug is one line, ``prog: internal error: ...``.
  An interrupt (^C) ends the command with status 130 and nothing more; a
  reader that goes away (``| head``) ends the output quietly, status 0.
- Standard output and standard error go through mta.printable, as mta's
  own: a sender, a header or a log line carrying escape sequences (text
  from the network) is shown escaped, never sent to the terminal raw.

What is particular to one family of commands lives beside it:
spool_tools.logfiles (where the logs are) and spool_tools.hints_databases
(which hints database, opened how).
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

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # as a shell reports a command ended by SIGINT
SPOOL_HELP = "the spool directory (no configuration is read without -C)"


class ToolError(MtaError):
    """A failure the command reports as one line (`str()`) and exit status 1."""


class UsageError(ToolError):
    """A bad argument: one line pointing at --help, and exit status 2."""


class ToolParser(argparse.ArgumentParser):
    """argparse with one-line errors (UsageError) instead of a usage block and exit.

    Long options are never abbreviated (a script's ``--inc`` would change meaning the day
    another option starting so is added).  The description and epilog are printed as
    written, unless `wrap` asks argparse to fill them to the terminal's width.
    """

    def __init__(self, prog: str, description: str, epilog: str | None = None, usage: str | None = None,
                 wrap: bool = False) -> None:
        formatter = argparse.HelpFormatter if wrap else argparse.RawDescriptionHelpFormatter
        super().__init__(prog=prog, description=description, epilog=epilog, usage=usage, allow_abbrev=False,
                         formatter_class=formatter)

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def add_spool_options(parser: argparse.ArgumentParser, spool_help: str = SPOOL_HELP) -> None:
    """``-C FILE`` / ``--config FILE`` (args.config) and ``--spool DIR`` (args.spool)."""
    parser.add_argument("-C", "--config", metavar="FILE", help="mta's configuration file (as mta -C)")
    parser.add_argument("--spool", metavar="DIR", help=spool_help)


def load_configuration(path: str | None) -> Config:
    """The configuration as mta reads it (ConfigError if it is bad); when the default file is
    missing, a ToolError that says how to name another or do without."""
    from mta.config.loader import default_config_path, load_config

    chosen = path or default_config_path()
    if path is None and not os.path.exists(chosen):
        raise ToolError(f"{chosen}: configuration file not found (name one with -C, or the spool with --spool)")
    return load_config(chosen)


def load_spool(args: argparse.Namespace) -> tuple[Config | None, Spool]:
    """The configuration (None for --spool without -C) and the spool the arguments name."""
    from mta.spool.store import Spool

    if args.spool is not None and args.config is None:
        return None, Spool(args.spool)
    config = load_configuration(args.config)
    directory = config.main.spool_directory if args.spool is None else args.spool
    return config, Spool(directory, split=config.main.split_spool_directory)


def caller_is_admin(config: Config) -> bool:
    from mta.config.caller import current_caller, is_administrator

    return is_administrator(current_caller(), config)


def printable_output() -> None:
    """Route stdout and stderr through mta.printable, as mta.cli does."""
    from mta.printable import PrintableStream

    if not isinstance(sys.stdout, PrintableStream):
        sys.stdout = PrintableStream(sys.stdout, keep="\n\t")  # type: ignore[assignment]
        sys.stderr = PrintableStream(sys.stderr, keep="\t", one_line_writes=True)  # type: ignore[assignment]


def run_tool(prog: str, body: Callable[[], int]) -> int:
    """Run a command's body with printable output; turn every failure into one line and a status."""
    printable_output()
    try:
        return body()
    except UsageError as exc:
        _say(prog, f"{exc} (see {prog} --help)")
        return EXIT_USAGE
    except ConfigError as exc:
        _say(prog, f"configuration error: {exc}")
        return EXIT_ERROR
    except MtaError as exc:
        _say(prog, str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (mta-qgrep ... | head): not an error.  Point stdout at /dev/null
        # so that the interpreter's flush at exit writes to nowhere rather than fail again.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 0
    except OSError as exc:
        _say(prog, os_error_text(exc))
        return EXIT_ERROR
    except Exception as exc:  # a bug is reported in one line too
        _say(prog, f"internal error: {type(exc).__name__}: {exc}")
        return EXIT_ERROR


def _say(prog: str, text: str) -> None:
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass  # stdout gone (a closed pipe): the message still goes to stderr
    sys.stderr.write(f"{prog}: {text}\n")


def os_error_text(exc: OSError) -> str:
    """``path: reason`` for an OSError, without Python's ``[Errno N]`` decoration."""
    reason = exc.strerror or str(exc)
    return f"{exc.filename}: {reason}" if exc.filename else reason
