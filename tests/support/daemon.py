"""A real `mta -bdf` on 127.0.0.1 for tests, and a raw SMTP client to talk to it byte by byte.

`DaemonWorld` owns a directory every user can enter (the receiving
processes drop to mta_user, who must reach the spool), a configuration, and
the daemon process; `start()` waits for the banner, `stop()` sends SIGTERM
and waits.  `RawClient` sends exact bytes and reads whole replies, for the
tests that must control what crosses the wire (pipelining, bare LF, a
disconnect in the middle of DATA).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mta import MTA
from tests.support.sink import free_port

BASE = """\
spool_directory = {spool}
primary_hostname = mail.example.com
qualify_domain = example.com
domainlist local_domains = example.com
hostlist relay_from_hosts = 127.0.0.2
daemon_smtp_ports = {port}
local_interfaces = 127.0.0.1
smtp_receivers = {receivers}
delivery_workers = {workers}
acl_smtp_rcpt = acl_check_rcpt
{main}
begin acl

acl_check_rcpt:
  accept  hosts = +relay_from_hosts
  accept  authenticated = *
  accept  domains = +local_domains
  deny    message = relay not permitted
{acl}
begin directors

everyone:
  driver = smartuser
  transport = box
  user = nobody

begin transports

box:
  driver = appendfile
  file = {root}/mail/box
  envelope_to_add
{transports}"""


class RawClient:
    """One TCP connection to the daemon: exact bytes out, whole replies in."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 15.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def reply(self) -> tuple[int, str]:
        """(code, text) of the next whole reply (continuation lines joined by newlines)."""
        lines = []
        while True:
            while b"\r\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"connection closed; got {self.buffer!r} after {lines}")
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            text = line.decode("utf-8", "replace")
            lines.append(text[4:])
            if len(text) < 4 or text[3] != "-":
                return int(text[:3]), "\n".join(lines)

    def command(self, line: str) -> tuple[int, str]:
        self.send(line + "\r\n")
        return self.reply()

    def closed(self, timeout: float = 5.0) -> bool:
        """True once the server has closed the connection (whatever it sent first is dropped)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buffer += chunk
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def submit(port: int, recipient: str, subject: str, body: str = "hello") -> None:
    """One message from alice@example.com over SMTP, which must be accepted."""
    with RawClient(port) as client:
        client.reply()
        client.command("EHLO client.example")
        assert client.command("MAIL FROM:<alice@example.com>")[0] == 250
        assert client.command(f"RCPT TO:<{recipient}>")[0] == 250
        assert client.command("DATA")[0] == 354
        code, text = client.command(f"Subject: {subject}\r\n\r\n{body}\r\n.")
        client.command("QUIT")
    assert code == 250, text


@dataclasses.dataclass
class DaemonWorld:
    root: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def config(self) -> Path:
        return self.root / "mta.conf"

    @property
    def mainlog(self) -> Path:
        return self.spool / "log" / "mainlog"

    @property
    def mail(self) -> Path:
        return self.root / "mail"

    def write_config(self, main: str = "", acl: str = "", transports: str = "", base: str = BASE,
                     receivers: int = 1, workers: int = 1) -> None:
        if not self.port:
            self.port = free_port()
        text = base.format(spool=self.spool, port=self.port, root=self.root, main=main, acl=acl,
                           transports=transports, receivers=receivers, workers=workers)
        self.config.write_text(text)
        self.config.chmod(0o644)

    def run(self, *args: str, input: bytes | str | None = None, timeout: float = 30,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run([MTA, "-C", str(self.config), *args], input=data, capture_output=True,
                              timeout=timeout, env={**os.environ, **(env or {})})
        return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode("utf-8", "replace"),
                                           proc.stderr.decode("utf-8", "replace"))

    def start(self, *extra: str, env: dict[str, str] | None = None) -> None:
        if not self.config.exists():
            self.write_config()
        with open(self.root / "daemon.stderr", "ab") as errors:
            self.process = subprocess.Popen([MTA, "-C", str(self.config), "-bdf", *extra],
                                            stdout=subprocess.DEVNULL, stderr=errors,
                                            env={**os.environ, **env} if env else None)
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                err = (self.root / "daemon.stderr").read_text()
                raise AssertionError(f"the daemon exited with {self.process.returncode}: {err}")
            try:
                with RawClient(self.port, timeout=5) as client:
                    code, _text = client.reply()
                    client.command("QUIT")
                    if code == 220:
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, "the daemon did not start listening"
            time.sleep(0.05)

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()

    def log_lines(self) -> list[str]:
        return self.mainlog.read_text().splitlines() if self.mainlog.exists() else []

    def wait_for_log(self, text: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_lines():
                if text in line:
                    return line
            assert time.monotonic() < deadline, f"{text!r} never appeared in the main log:\n" + \
                "\n".join(self.log_lines()[-20:])
            time.sleep(0.05)

    def message_ids(self) -> list[str]:
        input_dir = self.spool / "input"
        return sorted(p.name[:-2] for p in input_dir.rglob("*-H")) if input_dir.exists() else []

    def spool_files(self) -> list[str]:
        input_dir = self.spool / "input"
        return sorted(p.name for p in input_dir.rglob("*") if p.is_file()) if input_dir.exists() else []

    def mailbox(self, local_part: str) -> str:
        """The messages delivered to local_part@example.com (one mbox holds them all; Envelope-to says whose)."""
        path = self.mail / "box"
        if not path.exists():
            return ""
        messages = path.read_text().split("\nFrom ")
        return "\nFrom ".join(m for m in messages if f"Envelope-to: {local_part}@example.com" in m)

    def wait_for_mail(self, local_part: str, text: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.mailbox(local_part):
            assert time.monotonic() < deadline, f"{text!r} never reached {local_part}'s mailbox"
            time.sleep(0.05)
        return self.mailbox(local_part)


@pytest.fixture
def daemon_world() -> Iterator[DaemonWorld]:
    if os.geteuid() != 0:
        pytest.skip("the daemon tests run mta -bd as root, as a system MTA runs")
    root = Path(tempfile.mkdtemp(prefix="mta-daemon-", dir="/tmp"))
    root.chmod(0o755)
    (root / "mail").mkdir()
    (root / "mail").chmod(0o1777)
    world = DaemonWorld(root)
    try:
        yield world
    finally:
        world.stop()
        end_stray_processes(root)
        shutil.rmtree(root, ignore_errors=True)


def end_stray_processes(root: Path, grace: float = 10.0) -> None:
    """Wait for, then kill, the processes still working in `root` once its daemon has stopped: a
    background delivery (`-odb`) forked by a test's `mta` command, a queue run.  Left running, one
    finds its spool gone under it and writes the error into a log tree it makes again, in /tmp."""
    deadline = time.monotonic() + grace
    while (stray := processes_using(root)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in stray:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def processes_using(root: Path) -> list[int]:
    """Processes (other than this one) whose command line names `root` or that hold a file in it."""
    prefix = str(root)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if prefix.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
                continue
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd).startswith(prefix + "/"):
                    found.append(int(entry.name))
                    break
        except OSError:
            continue
    return found


@pytest.fixture
def daemon(daemon_world: DaemonWorld) -> DaemonWorld:
    """A running daemon on the default test configuration."""
    daemon_world.write_config()
    daemon_world.start()
    return daemon_world
