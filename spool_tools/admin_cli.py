"""What the log tools (mta-grep, mta-stats, mta-qsumm, mta-cyclog) share.

- `run_tool` runs a tool's main function the way every mta command runs:
  standard output and error go through mta.printable (a log line's ESC or
  CR never reaches the administrator's terminal raw), an error is one line
  ``PROG: reason`` on stderr with a non-zero exit (2 for bad arguments, 1
  for anything else), never a traceback, and a closed pipe (``| head``)
  ends the output quietly.
- `LogLocation` finds the log files as mta does: ``-C FILE`` (else
  $MTA_CONFIG or /etc/mta/mta.conf, as mta.config.loader) gives
  `log_file_path` and `spool_directory`; ``--spool DIR`` names the spool
  (its ``log/`` directory) without reading a configuration, or overrides
  the configuration's spool.

Security: nothing here evaluates or passes to a shell anything read from a
log.  Reading needs only read permission; no lock is taken, so a tool can
never hold up a delivery.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from mta.errors import ConfigError

EXIT_ERROR = 1
EXIT_USAGE = 2


class ToolError(Exception):
    """A failure to report as one line (a file that cannot be read, a bad log)."""


class UsageError(ToolError):
    """Bad arguments: reported with a pointer to --help, exit status 2."""


class ToolArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing its usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def printable_output() -> None:
    """Route stdout and stderr through mta.printable, as mta.cli does: the text of a log
    line (from the network) cannot repaint a terminal or fake a line of our output."""
    from mta.printable import PrintableStream

    if not isinstance(sys.stdout, PrintableStream):
        sys.stdout = PrintableStream(sys.stdout, keep="\n\t")  # type: ignore[assignment]
        sys.stderr = PrintableStream(sys.stderr, keep="\t", one_line_writes=True)  # type: ignore[assignment]


def run_tool(prog: str, main: Callable[[list[str]], int], argv: Sequence[str] | None = None) -> int:
    """Run `main(argv)` and turn every failure into one line on stderr and an exit status."""
    printable_output()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return main(args)
    except UsageError as exc:
        _say(prog, f"{exc} (try {prog} --help)")
        return EXIT_USAGE
    except ToolError as exc:
        _say(prog, str(exc))
        return EXIT_ERROR
    except ConfigError as exc:
        _say(prog, f"configuration error: {exc}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (mta-grep ... | head): not an error.  Point stdout at
        # /dev/null so that the interpreter's final flush does not complain.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 0
    except OSError as exc:
        _say(prog, os_error_text(exc))
        return EXIT_ERROR
    except Exception as exc:  # an admin tool reports an unexpected failure in one line too
        _say(prog, f"internal error: {type(exc).__name__}: {exc}")
        return EXIT_ERROR


def _say(prog: str, text: str) -> None:
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    sys.stderr.write(f"{prog}: {text}\n")


def os_error_text(exc: OSError) -> str:
    """``path: reason`` for an OSError, without Python's ``[Errno N]`` decoration."""
    reason = exc.strerror or str(exc)
    return f"{exc.filename}: {reason}" if exc.filename else reason


# -- where the logs are ----------------------------------------------------------------


def add_location_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-C", dest="config_file", metavar="FILE", help="mta's configuration file (as mta -C)")
    parser.add_argument(
        "--spool", dest="spool", metavar="DIR", help="the spool directory (its log/ directory holds the logs)"
    )


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
    config = load_tool_config(config_file)
    from mta.values import split_list

    items = [p for p in split_list(config.main.log_file_path) if p]
    files = tuple(p for p in items if p != "syslog")
    spool_directory = spool or config.main.spool_directory
    if not items:
        files = (os.path.join(spool_directory, "log", "%slog"),)
    return LogLocation(files, "syslog" in items, spool_directory)


def load_tool_config(config_file: str | None):  # type: ignore[no-untyped-def]
    """The configuration, as mta reads it; a missing default file gets a hint about -C/--spool."""
    from mta.config.loader import default_config_path, load_config

    path = config_file or default_config_path()
    if config_file is None and not os.path.exists(path):
        raise ToolError(f"{path}: configuration file not found (name one with -C, or the spool with --spool)")
    return load_config(path)
