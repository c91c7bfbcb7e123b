"""`mta -bd` as a service: start-up checks, the processes and their users, signals, the pid file."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import smtplib
import socket
import time
from pathlib import Path

from tests.support.daemon import DaemonWorld, RawClient


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[2])  # the effective uid
    raise AssertionError("no Uid line")


def test_start_processes_pid_file_and_stop(daemon_world: DaemonWorld) -> None:
    daemon_world.write_config(receivers=2, workers=2)
    daemon_world.start()
    assert daemon_world.process is not None
    master = daemon_world.process.pid
    pid_file = daemon_world.spool / "mta-daemon.pid"
    assert pid_file.read_text() == f"{master}\n"
    line = daemon_world.wait_for_log("daemon started")
    assert f"daemon started: pid={master}, no queue runs, listening for SMTP on [127.0.0.1]:{daemon_world.port}" \
        in line
    kids = children(master)
    mail_uid = pwd.getpwnam("mail").pw_uid
    time.sleep(0.5)  # the first queue run (a short-lived child) has ended
    kids = children(master)
    users = sorted(uid_of(pid) for pid in kids)
    # Two receivers as mail, two workers as root (they must become recipients).
    assert users.count(mail_uid) == 2 and users.count(0) == 2, users
    # A second daemon on the same pid file is refused, naming the first.
    second = daemon_world.run("-bdf")
    assert second.returncode == 1
    assert f"another mta daemon is running (pid {master}" in second.stderr
    # SIGTERM to the master and then to every child, as `pkill mta` or a stop without
    # KillMode=mixed sends it: each child then has two (the master passes it on), and each stops
    # cleanly (a worker's second one used to raise out of its event loop's teardown: a traceback).
    assert daemon_world.process is not None
    daemon_world.process.send_signal(signal.SIGTERM)
    for pid in kids:
        with contextlib.suppress(ProcessLookupError):  # (already gone)
            os.kill(pid, signal.SIGTERM)
    assert daemon_world.stop() == 0
    assert not pid_file.exists()
    assert all(not Path(f"/proc/{pid}").exists() for pid in kids)
    assert "SIGTERM received: daemon terminating" in daemon_world.mainlog.read_text()
    panic = daemon_world.spool / "log" / "paniclog"
    assert "Traceback" not in (panic.read_text() if panic.exists() else "")


def test_detached_start_returns_once_listening(daemon_world: DaemonWorld) -> None:
    daemon_world.write_config()
    started = daemon_world.run("-bd")
    assert (started.returncode, started.stderr) == (0, "")
    pid = int((daemon_world.spool / "mta-daemon.pid").read_text())
    try:
        with RawClient(daemon_world.port) as client:
            assert client.reply()[0] == 220
    finally:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists()


def test_refuses_to_start_on_a_bad_configuration(daemon_world: DaemonWorld) -> None:
    daemon_world.write_config(main="smtp_receive_timeout = soon\n")
    result = daemon_world.run("-bd")
    assert result.returncode == 1
    assert f"{daemon_world.config}:" in result.stderr and "smtp_receive_timeout" in result.stderr
    assert not (daemon_world.spool / "mta-daemon.pid").exists()


def test_refuses_to_start_when_the_port_is_taken(daemon_world: DaemonWorld) -> None:
    daemon_world.write_config()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", daemon_world.port))
        blocker.listen(1)
        result = daemon_world.run("-bd")
    assert result.returncode == 1
    assert f"cannot listen on [127.0.0.1]:{daemon_world.port}: Address already in use" in result.stderr


def test_oX_overrides_the_port(daemon_world: DaemonWorld) -> None:
    from tests.support.sink import free_port

    daemon_world.write_config()
    other = free_port()
    configured = daemon_world.port
    daemon_world.port = other
    daemon_world.start("-oX", str(other))
    with RawClient(other) as client:
        assert client.reply()[0] == 220
    try:
        socket.create_connection(("127.0.0.1", configured), timeout=2).close()
        raise AssertionError("the configured port should not be listened on")
    except ConnectionRefusedError:
        pass


def test_sighup_reloads_without_refusing_anyone(daemon_world: DaemonWorld) -> None:
    daemon_world.write_config()
    daemon_world.start()
    assert daemon_world.process is not None
    master = daemon_world.process.pid
    # A session open across the reload is finished by the old receiver.
    old_session = RawClient(daemon_world.port)
    assert old_session.reply()[0] == 220
    assert old_session.command("EHLO before.example")[0] == 250
    daemon_world.write_config(main="smtp_banner = reloaded banner\n")
    os.kill(master, signal.SIGHUP)
    daemon_world.wait_for_log("SIGHUP received: re-exec daemon")
    deadline = time.monotonic() + 20
    while True:
        with RawClient(daemon_world.port) as client:
            code, text = client.reply()
        if text == "reloaded banner":
            break
        assert time.monotonic() < deadline, "the new configuration never took effect"
        time.sleep(0.1)
    assert code == 220
    assert (daemon_world.spool / "mta-daemon.pid").read_text() == f"{master}\n"  # same process, re-executed
    assert old_session.command("MAIL FROM:<a@example.org>")[0] == 250
    assert old_session.command("RCPT TO:<bob@example.com>")[0] == 250
    assert old_session.command("DATA")[0] == 354
    assert old_session.command("Subject: across the reload\r\n\r\nbody\r\n.")[0] == 250
    old_session.command("QUIT")
    old_session.close()
    daemon_world.wait_for_mail("bob", "across the reload")
    # A broken configuration is logged and the running one kept.
    daemon_world.config.write_text(daemon_world.config.read_text() + "\nno_such_option = 1\n")
    os.kill(master, signal.SIGHUP)
    daemon_world.wait_for_log("new configuration not loaded")
    with RawClient(daemon_world.port) as client:
        assert client.reply() == (220, "reloaded banner")


def test_sigterm_lets_a_session_in_progress_finish(daemon_world: DaemonWorld) -> None:
    daemon_world.write_config()
    daemon_world.start()
    assert daemon_world.process is not None
    client = smtplib.SMTP("127.0.0.1", daemon_world.port, timeout=30)
    client.ehlo("client.example.org")
    client.mail("a@example.org")
    client.rcpt("bob@example.com")
    daemon_world.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # Still being served: the message is accepted, and so is on the spool or delivered.
    code, _text = client.data(b"Subject: during shutdown\r\n\r\nbody\r\n")
    assert code == 250
    client.quit()
    assert daemon_world.process.wait(timeout=60) == 0
    assert "during shutdown" in daemon_world.mailbox("bob") or daemon_world.message_ids()


def test_a_dead_receiver_is_replaced(daemon: DaemonWorld) -> None:
    assert daemon.process is not None
    mail_uid = pwd.getpwnam("mail").pw_uid
    receivers = [pid for pid in children(daemon.process.pid) if uid_of(pid) == mail_uid]
    os.kill(receivers[0], signal.SIGKILL)
    daemon.wait_for_log("ended unexpectedly")
    deadline = time.monotonic() + 20
    while True:
        try:
            with smtplib.SMTP("127.0.0.1", daemon.port, timeout=10) as client:
                client.sendmail("a@example.org", ["carol@example.com"], b"Subject: after the kill\r\n\r\nx\r\n")
            break
        except (smtplib.SMTPException, OSError):
            assert time.monotonic() < deadline
            time.sleep(0.2)
    daemon.wait_for_mail("carol", "after the kill")
