"""Running the real `mta` command against a configuration in a temporary directory.

`MtaEnv` owns one test's world: a directory with the config file, the spool,
and helpers to run the CLI as a subprocess and look at what it left.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

MTA = str(Path(sys.executable).with_name("mta"))

BASE_CONFIG = """\
spool_directory = {spool}
primary_hostname = mail.example.com
qualify_domain = example.com
domainlist local_domains = example.com
"""

# Routers and transports that send every remote address to one SMTP server on loopback
# (a tests.support.sink.SmtpSink): append to the base config with MtaEnv.write_config.
SMARTHOST_CONFIG = """
begin routers
smarthost:
  driver = domainlist
  transport = remote_smtp
  route_list = * 127.0.0.1::{port} byname
  self = send
begin transports
remote_smtp:
  driver = smtp
  allow_localhost
  hosts_avoid_tls = *
"""


# How coverage (patch = subprocess) tells a child Python to measure itself.
COVERAGE_VARIABLES = ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START")


def unmeasured(env: MtaEnv) -> MtaEnv:
    """`env` with its CLI runs left out of coverage: for long tables of cases that each start
    `mta` to check one value of code that in-process tests already measure.  Coverage
    costs each child Python about 0.15 s of start-up, and such a table starts hundreds."""
    env.measured = False
    return env


@dataclasses.dataclass
class MtaEnv:
    root: Path
    config_text: str = ""
    # False: the CLI runs without coverage measuring it (see `unmeasured`).
    measured: bool = True

    @property
    def config(self) -> Path:
        return self.root / "mta.conf"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def mainlog(self) -> Path:
        return self.spool / "log" / "mainlog"

    def write_config(self, extra: str = "", base: str | None = None) -> Path:
        """Write the config: the base main options (spool in this env) plus `extra`."""
        text = (BASE_CONFIG if base is None else base).format(spool=self.spool, root=self.root) + extra
        self.config.write_text(text)
        self.config_text = text
        return self.config

    def run(
        self,
        *args: str,
        input: bytes | str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 30,
        config: bool = True,
        **kwargs: object,
    ) -> subprocess.CompletedProcess[str]:
        """Run `mta [-C config] args...`; stdout/stderr as text."""
        argv = [MTA, *(["-C", str(self.config)] if config else []), *args]
        data = input.encode() if isinstance(input, str) else input
        run_env = dict(os.environ)
        if not self.measured:
            for name in COVERAGE_VARIABLES:
                run_env.pop(name, None)
        if env is not None:
            run_env.update(env)
        proc = subprocess.run(
            argv, input=data, capture_output=True, timeout=timeout, env=run_env, **kwargs  # type: ignore[arg-type]
        )
        return subprocess.CompletedProcess(
            proc.args, proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
        )

    def message_ids(self) -> list[str]:
        """Ids of the messages on the spool (those whose -H exists)."""
        input_dir = self.spool / "input"
        if not input_dir.exists():
            return []
        return sorted(p.name[:-2] for p in input_dir.rglob("*-H"))

    def spool_files(self) -> list[str]:
        """Every file under input/ (to check nothing partial was left)."""
        input_dir = self.spool / "input"
        if not input_dir.exists():
            return []
        return sorted(str(p.relative_to(input_dir)) for p in input_dir.rglob("*") if p.is_file())

    def header_file(self, message_id: str) -> str:
        return next((self.spool / "input").rglob(f"{message_id}-H")).read_text()

    def data_file(self, message_id: str) -> bytes:
        return next((self.spool / "input").rglob(f"{message_id}-D")).read_bytes()

    def log_lines(self) -> list[str]:
        return self.mainlog.read_text().splitlines() if self.mainlog.exists() else []
