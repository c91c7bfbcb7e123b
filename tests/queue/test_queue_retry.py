"""Queue runs and retry times, through the real command line: `mta -q` waits for them, `-qf` ignores
them but tries a host that failed during the run only once, and frozen messages are handed to delivery
when the freezing options would act on them.  A down host is a server answering every connection with
421 (so connections can be counted: tests/support/retry_world.py); time passes by ageing the spool
(tests/support/retry_time.py)."""

from __future__ import annotations

import smtplib
import time

import pytest

from tests.support.daemon import DaemonWorld
from tests.support.fakesmtp import FakeSmtpServer
from tests.support.mta import MtaEnv
from tests.support.retry_time import age_spool, edit_envelope
from tests.support.retry_world import configure, down, sink
from tests.support.sink import SmtpSink

M, H = 60, 3600
__all__ = ["down", "sink"]  # fixtures

def queued(env: MtaEnv, *recipients: str, sender: str = "alice@example.org") -> str:
    before = set(env.message_ids())
    result = env.run("-odq", "-f", sender, *recipients, input="Subject: q\n\nbody\n")
    assert result.returncode == 0, result.stderr
    (new,) = set(env.message_ids()) - before
    return new


def test_q_waits_for_the_hosts_retry_time_and_qf_does_not(mta_env: MtaEnv, down: FakeSmtpServer,
                                                          sink: SmtpSink) -> None:
    configure(mta_env, down.port, sink)
    first = queued(mta_env, "bob@example.net")
    assert mta_env.run("-q").returncode == 0
    assert len(down.connections) == 1  # a new message: tried, and the host is now waiting 15 minutes
    second = queued(mta_env, "carol@example.net")
    assert mta_env.run("-q").returncode == 0
    assert len(down.connections) == 1, "-q connected to a host before its retry time"
    log = "\n".join(mta_env.log_lines())
    assert "retry time not reached for any host for 'example.net'" in log
    # -qf tries every message, but the host that fails for the first one is not tried again in the run.
    # (Records keep whole seconds, and a try in the second a -qf run began counts as that run's own.)
    age_spool(mta_env.spool, 1)
    assert mta_env.run("-qf").returncode == 0
    assert len(down.connections) == 2
    assert sorted(mta_env.message_ids()) == sorted([first, second])
    # Once the retry time has passed, a plain run tries it again (once for both messages).
    age_spool(mta_env.spool, 20 * M)
    assert mta_env.run("-q").returncode == 0
    assert len(down.connections) == 3


def test_qf_over_many_messages_connects_to_a_dead_host_once(mta_env: MtaEnv, down: FakeSmtpServer,
                                                             sink: SmtpSink) -> None:
    configure(mta_env, down.port, sink)
    for i in range(6):
        queued(mta_env, f"r{i}@example.net", f"ok{i}@example.org")
    assert mta_env.run("-qf").returncode == 0
    assert len(down.connections) == 1
    # The live host got every message meant for it, whatever the dead one did.
    assert sorted(r for m in sink.messages for r in m.rcpt_tos) == [f"ok{i}@example.org" for i in range(6)]
    assert len(mta_env.message_ids()) == 6


def test_a_queue_run_thaws_a_message_when_auto_thaw_has_passed(mta_env: MtaEnv, down: FakeSmtpServer,
                                                                sink: SmtpSink) -> None:
    configure(mta_env, down.port, sink, main="auto_thaw = 1h")
    message_id = queued(mta_env, "dave@example.org")
    assert mta_env.run("-Mf", message_id).returncode == 0
    assert mta_env.run("-q").returncode == 0
    assert mta_env.message_ids() == [message_id]  # frozen, and auto_thaw has not passed
    assert sink.messages == []

    def frozen_long_ago(envelope):  # type: ignore[no-untyped-def]
        envelope.frozen -= 2 * H

    edit_envelope(mta_env.spool, message_id, frozen_long_ago)
    assert mta_env.run("-q").returncode == 0
    assert mta_env.message_ids() == []
    assert [r for m in sink.messages for r in m.rcpt_tos] == ["dave@example.org"]
    assert any(f"{message_id} Unfrozen by auto-thaw" in line for line in mta_env.log_lines())


def test_a_queue_run_cancels_a_frozen_message_after_timeout_frozen_after(mta_env: MtaEnv, down: FakeSmtpServer,
                                                                        sink: SmtpSink) -> None:
    configure(mta_env, down.port, sink, main="timeout_frozen_after = 1d")
    message_id = queued(mta_env, "erin@example.org")
    assert mta_env.run("-Mf", message_id).returncode == 0
    age_spool(mta_env.spool, 25 * H)
    assert mta_env.run("-q").returncode == 0
    assert mta_env.message_ids() == []
    log = "\n".join(mta_env.log_lines())
    assert f"{message_id} cancelled by timeout_frozen_after" in log
    # The sender hears of it; erin never got the message.
    assert [r for m in sink.messages for r in m.rcpt_tos] == ["alice@example.org"]


DAEMON_CONFIG = """\
spool_directory = {spool}
primary_hostname = mail.example.com
daemon_smtp_ports = {port}
local_interfaces = 127.0.0.1
smtp_receivers = 1
delivery_workers = 1
begin routers
down:
  driver = domainlist
  transport = remote_smtp
  route_list = * "127.0.0.1::%d" byname
  self = send
begin transports
remote_smtp:
  driver = smtp
  allow_localhost
  hosts_avoid_tls = *
  connect_timeout = 2s
begin retry
*   *   F,2h,15m
"""


def test_the_daemons_queue_runs_wait_for_the_retry_time(daemon_world: DaemonWorld, down: FakeSmtpServer) -> None:
    """-bd -q1s: the first run tries the queued message, then a run every second finds the host waiting and
    leaves it alone: one connection, however many runs."""
    daemon_world.write_config(base=DAEMON_CONFIG % down.port)
    daemon_world.start("-q1s")
    result = daemon_world.run("-odq", "bob@example.net", input="Subject: q\n\nbody\n")
    assert result.returncode == 0, result.stderr
    daemon_world.wait_for_log("Start queue run")
    deadline = time.monotonic() + 20
    while not any("retry time not reached" in line for line in daemon_world.log_lines()):
        assert time.monotonic() < deadline, "\n".join(daemon_world.log_lines()[-20:])
        time.sleep(0.1)
    time.sleep(2)  # two more runs
    assert len(down.connections) == 1
    assert len([line for line in daemon_world.log_lines() if "Start queue run" in line]) >= 3


@pytest.mark.parametrize("flags", ["", "f", "ff"])
def test_a_daemon_run_sends_its_flags_to_the_workers_with_each_id(flags: str) -> None:
    from mta.queue.runner import Selection, delivery_options, dispatch_datagram, parse_dispatch_datagram

    selection = Selection.from_flags(flags)
    datagram = dispatch_datagram("1xZ2zG-000000004Cg-1byy", selection, 1796289623.25)
    assert parse_dispatch_datagram(datagram) == ("1xZ2zG-000000004Cg-1byy", delivery_options(selection, 1796289623.25))
    assert parse_dispatch_datagram(datagram)[1]["queue_run"] is True
    assert parse_dispatch_datagram(datagram)[1]["ignore_retry"] is bool(flags)


@pytest.mark.parametrize("data", [b"1xZ2zG-000000004Cg-1byy", b"1xZ2zG-000000004Cg-1byy qx 5",
                                  b"1xZ2zG-000000004Cg-1byy qf x"])
def test_a_bare_or_odd_datagram_is_an_immediate_delivery(data: bytes) -> None:
    from mta.queue.runner import parse_dispatch_datagram

    assert parse_dispatch_datagram(data) == ("1xZ2zG-000000004Cg-1byy", {})


def test_a_new_arrivals_datagram_may_carry_its_message_logs_first_line() -> None:
    from mta.queue.runner import parse_dispatch_datagram

    line = "2026-12-03 16:49:08 Received from <b\u00e9@example.org> H=(client) [127.0.0.1] P=esmtp S=334"
    data = b"1xZ2zG-000000004Cg-1byy\n" + line.encode()
    assert parse_dispatch_datagram(data) == ("1xZ2zG-000000004Cg-1byy", {"msglog_first": line})
    # A line a log could be forged with is dropped, not written.
    assert parse_dispatch_datagram(b"1xZ2zG-000000004Cg-1byy\nReceived\rX") == ("1xZ2zG-000000004Cg-1byy", {})
    assert parse_dispatch_datagram(b"1xZ2zG-000000004Cg-1byy\na\nb") == ("1xZ2zG-000000004Cg-1byy", {})


def test_a_message_waiting_for_one_port_does_not_follow_a_connection_to_another(
    mta_env: MtaEnv, down: FakeSmtpServer, sink: SmtpSink
) -> None:
    """Both servers are 127.0.0.1: wait-remote_smtp names them with their ports, so a delivery to the
    live one does not drag the message waiting for the dead one along."""
    configure(mta_env, down.port, sink)
    waiting = queued(mta_env, "bob@example.net")
    assert mta_env.run("-M", waiting).returncode == 0
    assert len(down.connections) == 1
    live = queued(mta_env, "carol@example.org")
    assert mta_env.run("-M", live).returncode == 0
    assert [r for m in sink.messages for r in m.rcpt_tos] == ["carol@example.org"]
    assert len(down.connections) == 1
    assert mta_env.message_ids() == [waiting]
    assert sum(1 for line in mta_env.log_lines() if line.split()[2] == waiting and " == " in line) == 1


def test_hints_deleted_and_truncated_under_a_running_daemon(daemon_world: DaemonWorld, down: FakeSmtpServer,
                                                           sink: SmtpSink) -> None:
    """The daemon's workers keep the hints open across messages: files damaged under them are made again
    (a panic-log line for the truncated one), and mail goes on: the live host gets its message and the
    dead one is tried again (its retry record went with the file)."""
    config = DAEMON_CONFIG.replace("  route_list = * ", "  domains = example.net\n  route_list = * ").replace(
        "begin transports", f'up:\n  driver = domainlist\n  transport = remote_smtp\n'
        f'  route_list = * "127.0.0.1::{sink.port}" byname\n  self = send\nbegin transports')
    config = config.replace("begin routers", "acl_smtp_rcpt = accept\nbegin routers")  # loopback only
    daemon_world.write_config(base=config % down.port)
    daemon_world.start()

    def send(*recipients: str) -> None:
        with smtplib.SMTP("127.0.0.1", daemon_world.port, timeout=30) as client:
            client.sendmail("alice@example.org", list(recipients), "Subject: hints\r\n\r\nbody\r\n")

    send("bob@example.net")
    daemon_world.wait_for_log("== bob@example.net")
    db = daemon_world.spool / "db"
    deadline = time.monotonic() + 10
    while not (db / "wait-remote_smtp").exists():  # noted as waiting just after the attempt's log lines
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (db / "retry").stat().st_size > 0
    (db / "retry").write_bytes(b"")  # truncated under the worker that has it open
    (db / "wait-remote_smtp").unlink()  # deleted
    send("carol@example.net", "dave@example.org")
    daemon_world.wait_for_log("== carol@example.net")
    daemon_world.wait_for_log("=> dave@example.org")
    assert len(down.connections) == 2
    panic = (daemon_world.spool / "log" / "paniclog").read_text()
    assert f"hints database {db / 'retry'} was truncated: recreated" in panic
    deadline = time.monotonic() + 10
    while not (db / "wait-remote_smtp").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (db / "retry").stat().st_size > 0
