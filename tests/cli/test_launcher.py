"""mta.launcher: the commands that start Python without `site` (start-up time of sendmail)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mta import __version__
from mta.launcher import write_checkout_launcher, write_launchers
from tests.support.sink import SmtpSink, free_port

ROOT = Path(__file__).resolve().parents[2]


def _launcher(tmp_path: Path, function: str = "main") -> Path:
    """This checkout's command run by the test's venv Python, as _venv.sh writes it for an editable install."""
    script = tmp_path / "mta"
    write_checkout_launcher(str(script), function)
    return script


def _plain() -> dict[str, str]:
    """A cron-like environment: nothing of the test run's (PYTHONPATH, coverage) passed on."""
    return {"PATH": "/usr/bin:/bin"}


def test_it_runs_this_checkout_without_site_and_with_the_venv_packages(tmp_path: Path) -> None:
    # If `site` ran, it would import this sitecustomize (PYTHONPATH is honoured: -S is not -E).
    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "sitecustomize.py").write_text(f"open({str(tmp_path / 'site-ran')!r}, 'w').close()\n")
    # The launcher's own directory is not searched for modules (nor listed at every start).
    (tmp_path / "__future__.py").write_text("raise SystemExit('the launcher directory was searched')\n")
    probe = tmp_path / "probe.conf"
    probe.write_text("primary_hostname = probe.example\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(custom)}
    result = subprocess.run(
        [str(_launcher(tmp_path)), "-C", str(probe), "-be", "${primary_hostname}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "probe.example\n", "")
    assert not (tmp_path / "site-ran").exists()
    check = subprocess.run(
        [str(_launcher(tmp_path)), "-bV", "-C", str(probe)], env=env, capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith(f"mta version {__version__} ")


@pytest.mark.parametrize("asked_by", ["coverage", "MTA_RUN_SITE"])
def test_site_runs_when_coverage_measures_subprocesses_or_it_is_asked_for(tmp_path: Path, asked_by: str) -> None:
    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "sitecustomize.py").write_text(f"open({str(tmp_path / 'site-ran')!r}, 'w').close()\n")
    # An empty coverage configuration file: coverage (if installed) measures nothing of note.
    rc = tmp_path / "coveragerc"
    rc.write_text("[run]\ndata_file = " + str(tmp_path / "cov") + "\n")
    # With site, mta comes from the venv's .pth (an editable install of another checkout, maybe).
    pythonpath = f"{custom}:{ROOT}"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": pythonpath}
    env.update({"COVERAGE_PROCESS_START": str(rc)} if asked_by == "coverage" else {"MTA_RUN_SITE": "1"})
    result = subprocess.run([str(_launcher(tmp_path)), "--help"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site-ran").exists()


def test_write_launchers_rewrites_the_mta_commands_of_its_own_venv_only(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="run it with the Python of the virtualenv"):
        write_launchers(str(tmp_path))
    bin_directory = tmp_path / "bin"
    bin_directory.mkdir()
    (bin_directory / "mta").write_text("#!/usr/bin/python3\n")
    (bin_directory / "mta-qgrep").write_text("#!/usr/bin/python3\n")
    prefix, cwd = sys.prefix, os.getcwd()
    sys.prefix = str(tmp_path)
    try:
        os.chdir(tmp_path)
        written = write_launchers("bin")  # a relative directory: the scripts still name it absolutely
    finally:
        sys.prefix = prefix
        os.chdir(cwd)
    assert written == [str(bin_directory / "mta")]  # sendmail, mailq, newaliases: not there
    text = (bin_directory / "mta").read_text()
    assert text.startswith(f"#!{bin_directory}/python -S\n")
    assert "from mta.cli import main, run\n" in text
    assert (bin_directory / "mta-qgrep").read_text() == "#!/usr/bin/python3\n"  # not mta.cli's
    assert os.access(bin_directory / "mta", os.X_OK)


def test_sendmail_in_mua_wrapper_mode_exits_at_once_with_its_status_and_output(tmp_path: Path, sink: SmtpSink) -> None:
    """A short run leaves by os._exit (mta.cli.run): the status and stderr must still be whole."""
    config = tmp_path / "wrapper.conf"
    template = (
        "mua_wrapper = true\nprimary_hostname = laptop.example.com\nqualify_domain = example.com\n"
        "domainlist local_domains =\nlog_file_path = {log}/%slog\n"
        "begin routers\nsmarthost:\n  driver = domainlist\n  transport = smtp\n"
        '  route_list = * "127.0.0.1::{port}" byname\n  self = send\n'
        "begin transports\nsmtp:\n  driver = smtp\n  allow_localhost\n"
    )
    sendmail = _launcher(tmp_path)
    message = b"To: bob@example.org\nSubject: launched\n\nHello.\n"
    config.write_text(template.format(log=tmp_path, port=sink.port))
    sent = subprocess.run(
        [str(sendmail), "-C", str(config), "-t"], input=message, capture_output=True, timeout=30, env=_plain()
    )
    assert (sent.returncode, sent.stderr) == (0, b"")
    assert [m.rcpt_tos for m in sink.messages] == [["bob@example.org"]]
    assert "=> bob@example.org" in (tmp_path / "mainlog").read_text()
    config.write_text(template.format(log=tmp_path, port=free_port()))  # nothing listens there
    refused = subprocess.run(
        [str(sendmail), "-C", str(config), "-t"], input=message, capture_output=True, timeout=30, env=_plain()
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith(b"mta: ") and b"bob@example.org" in refused.stderr
