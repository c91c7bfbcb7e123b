"""Queue runs through the real CLI: what -q, -qff, -qi, -R, -S and an id range take, two runs at once,
and messages waiting for a host going out down one connection (wait-<transport>)."""

from __future__ import annotations

import subprocess
import time

from tests.support.fakesmtp import SmtpServer
from tests.support.mta import MTA, MtaEnv
from tests.support.queue import submit_batch

# The RCPT ACL lets queue_many's batched SMTP (-bS) in.
ROUTE = """
acl_smtp_rcpt = everyone
begin acl
everyone:
  accept

begin routers
smarthost:
  driver = domainlist
  transport = remote_smtp
  route_list = * "127.0.0.1::{port}" byname
  self = send

begin transports
remote_smtp:
  driver = smtp
  allow_localhost
  hosts_avoid_tls = *
  connect_timeout = 2s
"""


def queue(env: MtaEnv, recipient: str, sender: str = "a@example.com", subject: str = "x") -> str:
    before = set(env.message_ids())
    result = env.run("-odq", "-f", sender, recipient, input=f"Subject: {subject}\n\nhello\n")
    assert result.returncode == 0, result.stderr
    (new,) = set(env.message_ids()) - before
    return new


def queue_many(env: MtaEnv, recipients: list[str]) -> list[str]:
    """One message per recipient, all queued by one `mta -bS` (a process per message costs
    ~0.2 s of start-up under coverage)."""
    return submit_batch(env, [("a@example.com", [r], "Subject: x\n\nhello\n") for r in recipients])


def test_q_delivers_everything_and_logs_the_run(mta_env: MtaEnv) -> None:
    with SmtpServer() as server:
        mta_env.write_config(ROUTE.format(port=server.port))
        ids = queue_many(mta_env, [f"r{i}@example.org" for i in range(5)])
        result = mta_env.run("-q")
        assert (result.returncode, result.stderr) == (0, "")
        assert sorted(r for m in server.messages for r in m.rcpt_tos) == [f"r{i}@example.org" for i in range(5)]
        assert server.connections == 1  # one connection, reused from message to message
    assert mta_env.message_ids() == []
    log = mta_env.log_lines()
    assert any("Start queue run: pid=" in line for line in log) and any("End queue run: pid=" in line for line in log)
    assert all(any(line.split()[2] == i and line.endswith("Completed") for line in log) for i in ids)


def test_selections(mta_env: MtaEnv) -> None:
    with SmtpServer() as server:
        mta_env.write_config(ROUTE.format(port=server.port))
        to_x = queue(mta_env, "someone@x.example")
        from_y = queue(mta_env, "other@z.example", sender="boss@y.example")
        frozen = queue(mta_env, "frozen@z.example")
        header = next((mta_env.spool / "input").rglob(f"{frozen}-H"))
        from mta.spool.format import read_header_file, write_header_file

        envelope = read_header_file(header.read_bytes(), frozen)
        envelope.frozen = int(time.time())
        header.write_bytes(write_header_file(envelope))

        assert mta_env.run("-R", "@x.example").returncode == 0
        assert mta_env.message_ids() == sorted([from_y, frozen])
        assert mta_env.run("-S", "boss@").returncode == 0
        assert mta_env.message_ids() == [frozen]
        assert mta_env.run("-q").returncode == 0  # frozen: left alone
        assert mta_env.message_ids() == [frozen]
        assert mta_env.run("-qff").returncode == 0  # thawed for the attempt
        assert mta_env.message_ids() == []
    assert "Start queue run: pid" in "\n".join(mta_env.log_lines()) and " -qff" in "\n".join(mta_env.log_lines())
    assert to_x


def test_first_only_and_an_id_range(mta_env: MtaEnv) -> None:
    with SmtpServer() as server:
        mta_env.write_config(ROUTE.format(port=server.port))
        ids = sorted(queue_many(mta_env, [f"n{i}@example.org" for i in range(4)]))
        assert mta_env.run("-q", ids[1], ids[2]).returncode == 0
        assert mta_env.message_ids() == [ids[0], ids[3]]
        assert mta_env.run("-q", "not-an-id").returncode == 1


def test_two_runs_at_once_deliver_each_message_once(mta_env: MtaEnv) -> None:
    with SmtpServer() as server:
        mta_env.write_config(ROUTE.format(port=server.port))
        queue_many(mta_env, [f"once{i}@example.org" for i in range(30)])
        runs = [subprocess.Popen([MTA, "-C", str(mta_env.config), "-q"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE) for _ in range(2)]
        for run in runs:
            _out, err = run.communicate(timeout=120)
            assert run.returncode == 0, err
        got = sorted(r for m in server.messages for r in m.rcpt_tos)
    assert got == sorted(f"once{i}@example.org" for i in range(30))
    assert mta_env.message_ids() == []


def test_waiting_messages_follow_down_one_connection(mta_env: MtaEnv) -> None:
    """wait-remote_smtp: two messages held up for a host go out in one connection once one gets through."""
    from tests.support.sink import free_port

    port = free_port()
    mta_env.write_config(ROUTE.format(port=port))
    first = queue(mta_env, "w1@example.org")
    second = queue(mta_env, "w2@example.org")
    # The host is down: both are tried and held up (and noted as waiting for it).
    for message_id in (first, second):
        assert mta_env.run("-M", message_id).returncode == 0
    assert sorted(mta_env.message_ids()) == sorted([first, second])
    with SmtpServer(port=port) as server:
        # Only the first is named; the second follows it down the same connection.
        assert mta_env.run("-M", first).returncode == 0
        assert mta_env.message_ids() == []
        assert server.connections == 1
        assert sorted(r for m in server.messages for r in m.rcpt_tos) == ["w1@example.org", "w2@example.org"]


def test_q_interval_alone_is_a_daemon_that_only_runs_the_queue(open_env: MtaEnv) -> None:
    """(In a directory mta_user can reach: the workers send as mta_user and write the spool.)"""
    import os
    import signal

    mta_env = open_env
    with SmtpServer() as server:
        mta_env.write_config(ROUTE.format(port=server.port))
        started = mta_env.run("-q1s")
        assert (started.returncode, started.stderr) == (0, "")
        pid_file = mta_env.spool / "mta-queue.pid"
        pid = int(pid_file.read_text())
        try:
            queue(mta_env, "later@example.org")
            deadline = time.monotonic() + 20
            while mta_env.message_ids():
                assert time.monotonic() < deadline, "the queue daemon never delivered the message"
                time.sleep(0.1)
            assert [m.rcpt_tos for m in server.messages] == [["later@example.org"]]
        finally:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    log = "\n".join(mta_env.log_lines())
    assert "daemon started: pid=" in log and "-q1s, not listening for SMTP" in log


def test_a_queue_run_leaves_a_nonsense_H_alone_and_delivers_the_rest(mta_env: MtaEnv) -> None:
    """An -H edited into nonsense: a panic-log line, the file left as it is, every other message delivered,
    and the run itself succeeds."""
    with SmtpServer() as server:
        mta_env.write_config(ROUTE.format(port=server.port))
        ids = queue_many(mta_env, [f"ok{i}@example.org" for i in range(3)])
        broken = queue(mta_env, "broken@example.org")
        header = next((mta_env.spool / "input").rglob(f"{broken}-H"))
        header.write_bytes(b"this is\nnot an -H file \x00 at all\n")
        result = mta_env.run("-qf")
        assert (result.returncode, result.stderr) == (0, "")
        assert sorted(r for m in server.messages for r in m.rcpt_tos) == [f"ok{i}@example.org" for i in range(3)]
    assert mta_env.message_ids() == [broken]
    assert header.read_bytes() == b"this is\nnot an -H file \x00 at all\n"
    panic_log = mta_env.spool / "log" / "paniclog"
    panic = panic_log.read_text() if panic_log.exists() else ""
    assert f"{broken} spool format error" in panic
    assert all(i not in panic for i in ids)
    assert f"{broken} *** spool read error:" in mta_env.run("-bp").stdout
