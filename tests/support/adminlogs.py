"""Real logs and a real queue for the log tools' tests, made by the real mta.

`build_world(root)` runs, under `root` (a directory every user can enter:
local deliveries drop to nobody):

1. ``mta -odi`` with one message to a local user, two remote recipients on
   one host (one transaction: ``=>`` then ``->``), one on a host that refuses
   connections (``==``, the message stays queued) and one unknown local user
   (``**``, and a bounce from ``<>`` delivered to the sender);
2. the same from a sender spelt ``"<script>alert(1)</script>"@example.com``
   (an HTML report must show it as text), through an alias that pipes;
3. ``mta -bd``: an SMTP client on 127.0.0.1 is refused a relay (a
   ``rejected RCPT`` line in the main and reject logs) and sends one message
   to a local user; a client on 127.0.0.2 (relay_from_hosts) relays one to the
   remote host (eximstats' "Relayed messages");
4. ``mta -odq`` to three domains (stays queued, for mta-qsumm), and the
   listing ``mta -bp`` gives of the queue, kept in ``bp.txt``.

The daemon is stopped before this returns; every log line is written.
`World` says where things are.  Building takes a few seconds, so the tests
share one world per test run (tests/spool_tools/conftest.py).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support.mta import MTA, MtaEnv
from tests.support.sink import SmtpSink, free_port

SCRIPT_SENDER = '"<script>alert(1)</script>"@example.com'

CONFIG = """\
spool_directory = {root}/spool
primary_hostname = mail.example.com
qualify_domain = example.com
domainlist local_domains = example.com
hostlist relay_from_hosts = 127.0.0.2
daemon_smtp_ports = {port}
local_interfaces = 127.0.0.1
smtp_receivers = 1
delivery_workers = 1
acl_smtp_rcpt = acl_check_rcpt

begin acl

acl_check_rcpt:
  accept  hosts = :
  accept  hosts = +relay_from_hosts
  accept  domains = +local_domains
  deny    message = relay not permitted

begin directors

aliases:
  driver = aliasfile
  file = {root}/aliases
  search_type = lsearch
  allow_fail
  user = nobody
  pipe_transport = address_pipe

everyone:
  driver = smartuser
  transport = box
  user = nobody

begin routers

smarthost:
  driver = domainlist
  transport = remote_smtp
  route_list = example.org 127.0.0.1::{sink_port} byname ; example.net 127.0.0.1::{refused_port} byname
  self = send

begin transports

box:
  driver = appendfile
  file = {root}/mail/box
  envelope_to_add

address_pipe:
  driver = pipe
  return_fail_output

remote_smtp:
  driver = smtp
  allow_localhost
  hosts_avoid_tls = *
  connect_timeout = 2s
"""

ALIASES = """\
ghost: :fail: Unknown user
alerts: |/bin/cat
"""


class World(MtaEnv):
    """An MtaEnv (config, spool, mainlog, log_lines ...) with the world's own extras."""

    @property
    def rejectlog(self) -> Path:
        return self.spool / "log" / "rejectlog"

    @property
    def bp(self) -> str:
        return (self.root / "bp.txt").read_text()

    def lines(self) -> list[str]:
        return self.log_lines()

    def ids(self, text: str) -> list[str]:
        """Ids of the messages whose arrival line contains `text`, in log order."""
        return [line.split()[2] for line in self.lines() if " <= " in line and text in line]


def _mta(config: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([MTA, "-C", str(config), *args], input=input, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"mta {' '.join(args)} failed: {result.stderr}"
    return result


def _smtp(port: int, source: str, lines: list[str]) -> list[str]:
    """Send SMTP commands one by one (no pipelining); the replies' first lines."""
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=20, source_address=(source, 0)) as sock:
        stream = sock.makefile("rb")

        def reply() -> str:
            first = stream.readline().decode()
            text = first
            while text[3:4] == "-":
                text = stream.readline().decode()
            return first.strip()

        replies.append(reply())
        in_data = False
        for line in lines:
            sock.sendall(line.encode() + b"\r\n")
            if in_data and line != ".":
                continue  # message text: no reply until the dot
            replies.append(reply())
            in_data = line == "DATA" and replies[-1].startswith("354")
    return replies


def _wait_for(mainlog: Path, predicate, what: str, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        text = mainlog.read_text() if mainlog.exists() else ""
        if predicate(text):
            return
        assert time.monotonic() < deadline, f"{what} never appeared in the main log:\n{text}"
        time.sleep(0.05)


def build_world(root: Path) -> World:
    world = World(root)
    (root / "mail").mkdir(mode=0o1777)
    (root / "mail").chmod(0o1777)
    (root / "aliases").write_text(ALIASES)
    with SmtpSink() as sink:
        port = free_port()
        world.config.write_text(
            CONFIG.format(root=root, port=port, sink_port=sink.port, refused_port=free_port())
        )
        daemon = subprocess.Popen([MTA, "-C", str(world.config), "-bdf"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            _wait_for_port(port, daemon)
            data = ["DATA", "Subject: lunch", "", "Are you free?", "."]
            replies = _smtp(port, "127.0.0.1", ["HELO client.example.org", "MAIL FROM:<erin@example.org>",
                                                "RCPT TO:<bob@example.net>", "RCPT TO:<bob@example.com>",
                                                *data, "QUIT"])
            assert replies[3].startswith("550") and replies[4].startswith("250"), replies
            replies = _smtp(port, "127.0.0.2", ["HELO relay.example.org", "MAIL FROM:<frank@example.org>",
                                                "RCPT TO:<grace@example.org>", *data, "QUIT"])
            assert replies[3].startswith("250"), replies
            _wait_for(world.mainlog, lambda t: t.count(" Completed") >= 2, "two Completed lines")
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
        message = "Subject: quarterly figures\n\nThe figures are attached.\n"
        _mta(world.config, "-odi", "-f", "alice@example.com", "bob@example.com", "carol@example.org",
             "dave@example.org", "later@example.net", "ghost@example.com", input=message)
        _mta(world.config, "-odi", "-f", SCRIPT_SENDER, "alerts@example.com", input="Subject: <b>hi</b>\n\nx\n")
        _mta(world.config, "-odq", "-f", "henry@example.org", "ivan@example.com", "judy@example.net",
             "kim@example.net", input="Subject: later\n\nqueued\n")
        (root / "bp.txt").write_text(_mta(world.config, "-bp").stdout)
    return world


def _wait_for_port(port: int, daemon: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while True:
        assert daemon.poll() is None, f"the daemon exited with {daemon.returncode}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                if sock.recv(4).startswith(b"220"):
                    sock.sendall(b"QUIT\r\n")
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, "the daemon did not start listening"
        time.sleep(0.05)


if __name__ == "__main__":  # build one by hand: python -m tests.support.adminlogs DIR
    import sys

    target = Path(sys.argv[1])
    target.mkdir(mode=0o755)
    os.chmod(target, 0o755)
    started = time.monotonic()
    build_world(target)
    print(f"built in {time.monotonic() - started:.1f}s")
