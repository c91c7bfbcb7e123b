"""Every log tool: --help, and a clear one-line error for bad input, never a traceback."""

from __future__ import annotations

import gzip
import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.spool_tools.conftest import MODULES, TOOLS, run, tool


@pytest.mark.parametrize("module", ["grep", "stats", "qsumm", "cyclog"])
def test_help_and_python_m(module: str) -> None:
    """Each tool runs as `python -m spool_tools.NAME` too, and --help describes it."""
    result = subprocess.run([sys.executable, "-m", f"spool_tools.{module}", "--help"], capture_output=True,
                            text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 0 and result.stderr == ""
    assert "mta-" + module in result.stdout or "Usage: mta-stats" in result.stdout


def test_console_scripts() -> None:
    """pyproject installs each tool under its name, pointing at the function `tool` runs."""
    with open(Path(__file__).resolve().parents[2] / "pyproject.toml", "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    for name, script in TOOLS.items():
        target, function = scripts[script].split(":")
        assert target == MODULES[name] and function == "console_main", scripts[script]
        assert callable(getattr(importlib.import_module(target), function))


def _fails(name: str, *args: str, status: int = 2, input: str | None = None) -> str:
    result = run(name, *args, check=False, input=input)
    assert result.returncode == status, (result.returncode, result.stderr)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"mta-{name}: "), result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def test_bad_arguments(tmp_path: Path) -> None:
    assert "no PATTERN" in _fails("grep")
    assert "-t needs a number" in _fails("grep", "-t", "soon", "x", "log")
    assert "unrecognized arguments: --frobnicate" in _fails("grep", "--frobnicate", "x")
    assert "unknown or malformed option -frobnicate" in _fails("stats", "-frobnicate")
    assert "-h must specify a factor of 60" in _fails("stats", "-h7")
    assert "-xls is not supported" in _fails("stats", "-xls")
    assert "unknown or malformed option -q1,__import__" in _fails("stats", "-q1,__import__")
    assert "bad time '2**3'" in _fails("stats", "-q1,2**3")
    assert "division by zero" in _fails("stats", "-q1/0")
    assert "output to '-' once" in _fails("stats", "-txt", "-html")
    assert "bad -pattern pattern" in _fails("stats", "-pattern", "x", "/(/")
    assert "not allowed with argument" in _fails("qsumm", "-a", "-c")
    assert "generations" in _fails("cyclog", "-k", "-1")


def test_bad_files(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    assert _fails("grep", "x", missing, status=1) == f"mta-grep: {missing}: No such file or directory\n"
    assert _fails("stats", missing, status=1) == f"mta-stats: {missing}: No such file or directory\n"
    assert _fails("qsumm", missing, status=1) == f"mta-qsumm: {missing}: No such file or directory\n"
    assert "no such spool directory" in _fails("qsumm", "--spool", missing, status=1)
    assert "Is a directory" in _fails("stats", str(tmp_path), status=1)
    broken = tmp_path / "mainlog.02.gz"
    broken.write_bytes(gzip.compress(b"2026-11-22 12:00:00 x\n" * 100)[:30])
    assert "cannot read" in _fails("grep", "x", str(broken), status=1)
    config = tmp_path / "bad.conf"
    config.write_text("no_such_option = 1\n")
    assert "configuration error" in _fails("stats", "-C", str(config), status=1)
    assert "configuration file not found" in _fails("grep", "-C", str(tmp_path / "none.conf"), "x", status=1)
    output = tmp_path / "no" / "such" / "dir" / "r.html"
    assert "No such file or directory" in _fails("stats", f"-html={output}", "-emptyok", missing, status=1)


def test_binary_garbage_is_not_a_crash(tmp_path: Path) -> None:
    junk = tmp_path / "mainlog"
    junk.write_bytes(bytes(range(256)) * 50 + b"\n2026-11-22 12:00:00 1xV6uq-0005Vj-1t <= \xff\xfe\x1b[31m@x S=1\n")
    assert "\\033[31m" in tool("grep", "x", str(junk)).stdout
    assert run("stats", "-json", str(junk)).stdout.startswith("{")
    assert run("qsumm", input=junk.read_bytes().decode("latin-1")).stdout.endswith("TOTAL\n\n")
