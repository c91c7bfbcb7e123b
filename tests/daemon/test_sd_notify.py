"""`mta -bdf` under systemd's Type=notify: READY=1, RELOADING=1, STOPPING=1 on $NOTIFY_SOCKET.

The real daemon, on 127.0.0.1, with NOTIFY_SOCKET naming a datagram socket this test binds, as
systemd would.  Each notification is checked against what the daemon is doing at that moment:
READY=1 means a connection gets the banner now, and after a reload, the new configuration's banner.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta.daemon.notify import Notifier
from tests.support.daemon import DaemonWorld, RawClient
from tests.support.mta import MTA


def parse(datagram: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.decode().splitlines())


class Manager:
    """The service manager's end: a datagram socket, read with a deadline."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))

    def next(self, timeout: float = 20) -> dict[str, str]:
        self.sock.settimeout(timeout)
        try:
            return parse(self.sock.recv(4096))
        except TimeoutError:
            raise AssertionError(f"no notification within {timeout}s") from None

    def nothing(self, wait: float = 0.3) -> bool:
        self.sock.settimeout(wait)
        try:
            extra = self.sock.recv(4096)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected notification {extra!r}")

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)


@pytest.fixture
def manager(daemon_world: DaemonWorld) -> Iterator[Manager]:
    m = Manager(daemon_world.root / "notify.sock")
    yield m
    m.close()


def start(world: DaemonWorld, notify_socket: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NOTIFY_SOCKET": notify_socket}
    with open(world.root / "daemon.stderr", "ab") as errors:
        world.process = subprocess.Popen([MTA, "-C", str(world.config), "-bdf", "-q30m"], env=env,
                                         stdout=subprocess.DEVNULL, stderr=errors)
    return world.process


def banner(world: DaemonWorld) -> tuple[int, str]:
    """Connect once, no retry: a READY=1 daemon must answer at once."""
    with RawClient(world.port, timeout=10) as client:
        reply = client.reply()
        client.command("QUIT")
    return reply


def test_ready_reloading_stopping(daemon_world: DaemonWorld, manager: Manager) -> None:
    daemon_world.write_config()
    process = start(daemon_world, str(manager.path))

    ready = manager.next()
    assert ready["READY"] == "1" and ready["MAINPID"] == str(process.pid)
    assert "listening for SMTP on [127.0.0.1]" in ready["STATUS"] and "-q30m" in ready["STATUS"]
    assert banner(daemon_world)[0] == 220
    manager.nothing()

    # SIGHUP: RELOADING=1 (with the monotonic clock's time, as systemd >= 253 wants), then
    # READY=1 only once the re-executed daemon serves the new configuration.
    daemon_world.write_config(main="smtp_banner = after the reload\n")
    before = time.monotonic_ns() // 1000
    process.send_signal(signal.SIGHUP)
    reloading = manager.next()
    assert reloading["RELOADING"] == "1"
    assert before <= int(reloading["MONOTONIC_USEC"]) <= time.monotonic_ns() // 1000
    ready = manager.next()
    assert ready["READY"] == "1" and ready["MAINPID"] == str(process.pid)
    assert banner(daemon_world) == (220, "after the reload")

    # A configuration that does not load: the reload ends (READY=1 again) with the old one in force.
    daemon_world.config.write_text(daemon_world.config.read_text() + "\nno_such_option = 1\n")
    process.send_signal(signal.SIGHUP)
    assert manager.next()["RELOADING"] == "1"
    ready = manager.next()
    assert ready["READY"] == "1" and "not loaded" in ready["STATUS"]
    assert banner(daemon_world) == (220, "after the reload")

    # SIGTERM: STOPPING=1 at once, then a clean exit.
    process.send_signal(signal.SIGTERM)
    assert manager.next()["STOPPING"] == "1"
    assert process.wait(timeout=60) == 0


def test_a_vanished_socket_never_stops_the_daemon(daemon_world: DaemonWorld) -> None:
    daemon_world.write_config()
    process = start(daemon_world, str(daemon_world.root / "no-such-dir" / "notify.sock"))
    deadline = time.monotonic() + 20
    while True:
        try:
            assert banner(daemon_world)[0] == 220
            break
        except OSError:
            assert process.poll() is None, (daemon_world.root / "daemon.stderr").read_text()
            assert time.monotonic() < deadline, "the daemon never listened"
            time.sleep(0.05)
    daemon_world.write_config(main="smtp_banner = reloaded anyway\n")
    process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while banner(daemon_world)[1] != "reloaded anyway":
        assert time.monotonic() < deadline, "the reload never took effect"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


def test_abstract_socket_address_and_no_socket_at_all(tmp_path: Path) -> None:
    """`@name` is Linux's abstract namespace; without NOTIFY_SOCKET nothing is sent."""
    name = f"mta-test-notify-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(5)
        assert Notifier("@" + name).stopping("bye now")
        assert parse(receiver.recv(4096)) == {"STOPPING": "1", "STATUS": "bye now"}
    assert not Notifier(None).ready()
    assert not Notifier("@" + name).ready()  # nobody listening any more: no error, just False
    assert not Notifier("vsock:2:1234").ready()
