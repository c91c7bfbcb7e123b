"""spool_tools.admin_command: what every admin tool shares (docs/admin.md, the introduction).

The failures each tool can meet are turned into the same one line and exit status, whichever
family the tool belongs to: run here in this process, on bodies that fail on purpose.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from mta.errors import ConfigError, SpoolError
from mta.hints.db import HintsError
from spool_tools import admin_command, hints_databases
from spool_tools.admin_command import ToolError, ToolParser, UsageError, add_spool_options, load_spool
from tests.support.mta import MtaEnv


def _raise(exc: BaseException) -> Callable[[], int]:
    def body() -> int:
        raise exc

    return body


def _parse(*argv: str) -> Callable[[], int]:
    parser = ToolParser("mta-x", "A tool.")
    add_spool_options(parser)
    parser.add_argument("--incomplete", action="store_true")

    def body() -> int:
        parser.parse_args(list(argv))
        return 0

    return body


@pytest.mark.parametrize(("body", "status", "line"), [
    (_parse("--nosuch"), 2, "mta-x: unrecognized arguments: --nosuch (see mta-x --help)"),
    (_parse("--inc"), 2, "mta-x: unrecognized arguments: --inc (see mta-x --help)"),
    (_parse("-C"), 2, "mta-x: argument -C/--config: expected one argument (see mta-x --help)"),
    (_raise(UsageError("-t: not a number")), 2, "mta-x: -t: not a number (see mta-x --help)"),
    (_raise(ToolError("no such message")), 1, "mta-x: no such message"),
    (_raise(ConfigError("unknown option", "/etc/mta/mta.conf", 3)), 1,
     "mta-x: configuration error: /etc/mta/mta.conf:3: unknown option"),
    (_raise(SpoolError("spool directory /x is not writable")), 1, "mta-x: spool directory /x is not writable"),
    (_raise(FileNotFoundError(2, "No such file or directory", "/var/log/x")), 1,
     "mta-x: /var/log/x: No such file or directory"),
    (_raise(KeyError("surprise")), 1, "mta-x: internal error: KeyError: 'surprise'"),
], ids=["parser", "no-abbreviation", "missing-value", "usage", "tool", "config", "mta", "os", "bug"])
def test_every_failure_is_one_line(capsys: pytest.CaptureFixture[str], body: Callable[[], int], status: int,
                                   line: str) -> None:
    assert admin_command.run_tool("mta-x", body) == status
    assert capsys.readouterr() == ("", line + "\n")


def test_interrupt_and_closed_pipe_are_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    assert admin_command.run_tool("mta-x", _raise(KeyboardInterrupt())) == 130
    assert admin_command.run_tool("mta-x", _raise(BrokenPipeError())) == 0
    assert capsys.readouterr() == ("", "")


def test_output_is_printable(capsys: pytest.CaptureFixture[str]) -> None:

    def body() -> int:
        sys.stdout.write("<evil\x1b[2J@example.com>\n")
        raise ToolError("bad\x1b[31m")

    assert admin_command.run_tool("mta-x", body) == 1
    assert capsys.readouterr() == ("<evil\\033[2J@example.com>\n", "mta-x: bad\\033[31m\n")


def test_hints_errors_are_one_line_too(capsys: pytest.CaptureFixture[str]) -> None:
    assert hints_databases.run_tool("mta-x", _raise(HintsError("cannot open db/retry"))) == 1
    assert capsys.readouterr() == ("", "mta-x: cannot open db/retry\n")


def test_spool_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--spool alone reads no configuration; with -C (or --config) it takes the place of the
    configuration's spool_directory; neither: the configuration's, and a missing default file
    says how to name one."""
    env = MtaEnv(tmp_path)
    env.write_config("split_spool_directory = true\n")
    parser = ToolParser("mta-x", "A tool.")
    add_spool_options(parser)
    other = tmp_path / "other"

    config, spool = load_spool(parser.parse_args(["--spool", str(other)]))
    assert (config, spool.directory, spool.split) == (None, other, False)
    config, spool = load_spool(parser.parse_args(["--config", str(env.config), "--spool", str(other)]))
    assert config is not None and (spool.directory, spool.split) == (other, True)
    config, spool = load_spool(parser.parse_args(["-C", str(env.config)]))
    assert spool.directory == env.spool

    monkeypatch.setenv("MTA_CONFIG", str(tmp_path / "none.conf"))
    monkeypatch.setattr(admin_command.os, "getuid", lambda: 1000)
    monkeypatch.setattr(admin_command.os, "geteuid", lambda: 1000)
    with pytest.raises(ToolError, match=r"none\.conf: configuration file not found \(name one with -C, or the spool"):
        load_spool(parser.parse_args([]))


def test_every_tool_takes_both_spellings_of_c() -> None:
    """-C and --config, whichever family (mta-stats parses eximstats' options by hand)."""
    from spool_tools import cyclog, dumpdb, grep, qgrep, qsumm, tidydb, what
    from spool_tools import next as next_tool
    from spool_tools.stats.options import parse_args

    for parser in (qgrep.build_parser(), what.build_parser(), grep.parser(), qsumm.parser(), cyclog.parser(),
                   dumpdb.build_parser(), tidydb.build_parser(), next_tool.build_parser()):
        tail = ["x", "retry"] if parser.prog in ("mta-dumpdb", "mta-tidydb") else ["x"] * (parser.prog == "mta-next")
        for spelling in (["-C", "a.conf"], ["--config", "a.conf"], ["--config=a.conf"]):
            assert parser.parse_args([*spelling, *tail]).config == "a.conf", (parser.prog, spelling)
    for spelling in (["-C", "a.conf"], ["--config", "a.conf"], ["--config=a.conf"]):
        assert parse_args(spelling).config_file == "a.conf"
    with pytest.raises(UsageError, match="--config needs a configuration file"):
        parse_args(["--config"])
