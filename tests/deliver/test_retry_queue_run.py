"""Retry times that only a queue run waits for: routing, 4xx-to-RCPT addresses, local deliveries.

The command line has no queue run that passes ``queue_run`` yet (that is the
queue runner's), so these tests make real deliveries in this process, the way
a queue runner does: `Delivery(runtime, id, queue_run=True, now=...)` on a
real spool, with a real retry database and real SMTP servers on loopback.
Messages are put on the spool by the real `mta -odq`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from mta.config.loader import load_config
from mta.deliver.delivery import Delivery
from mta.runtime import Runtime, build_runtime
from tests.support.fakesmtp import FakeSmtpServer
from tests.support.mta import MtaEnv
from tests.support.retry_time import retry_records

M = 60

CONFIG = """
begin directors
everyone:
  driver = smartuser
  transport = mailbox
begin routers
flaky_dns:
  driver = queryprogram
  domains = example.net
  command = /bin/echo DEFER DNS lookup timed out
relay:
  driver = domainlist
  transport = remote_smtp
  route_list = * "127.0.0.1::{port}" byname
  self = send
begin transports
remote_smtp:
  driver = smtp
  allow_localhost
  hosts_avoid_tls = *
  command_timeout = 2s
mailbox:
  driver = appendfile
  file = {root}/mail/$local_part
begin retry
*   *   F,2h,15m; F,4d,6h
"""


@pytest.fixture
def server() -> Iterator[FakeSmtpServer]:
    with FakeSmtpServer(rcpt_replies={"bob@example.org": "451 4.2.1 Mailbox busy, try later"}) as fake:
        yield fake


@pytest.fixture
def runtime(mta_env: MtaEnv, server: FakeSmtpServer) -> Runtime:
    mta_env.write_config(CONFIG.format(port=server.port, root=mta_env.root))
    return build_runtime(load_config(str(mta_env.config)))


def queue(env: MtaEnv, recipient: str, sender: str = "alice@example.org") -> str:
    before = set(env.message_ids())
    result = env.run("-odq", "-f", sender, recipient, input="Subject: hi\n\nbody\n")
    assert result.returncode == 0, result.stderr
    [new] = set(env.message_ids()) - before
    return new


def last_line(env: MtaEnv, message_id: str) -> str:
    return next(line.split(" ", 3)[3] for line in reversed(env.log_lines()) if line.split(" ", 3)[2] == message_id)


def test_a_routing_deferral_waits_for_its_retry_time_in_a_queue_run(mta_env: MtaEnv, runtime: Runtime) -> None:
    message_id = queue(mta_env, "bob@example.net")
    now = time.time()
    Delivery(runtime, message_id, now=now).run()
    assert last_line(mta_env, message_id) == "== bob@example.net R=flaky_dns defer (0): DNS lookup timed out"
    assert list(retry_records(mta_env.spool)) == ["R:example.net"]
    Delivery(runtime, message_id, now=now + 60, queue_run=True).run()
    assert last_line(mta_env, message_id) == "== bob@example.net routing defer (-52): retry time not reached"
    # Not in a queue run (straight after reception, -Mc), or forced: routed anyway.
    Delivery(runtime, message_id, now=now + 120).run()
    assert last_line(mta_env, message_id).startswith("== bob@example.net R=flaky_dns defer (0): DNS")
    Delivery(runtime, message_id, now=now + 180, queue_run=True, ignore_retry=True).run()
    assert last_line(mta_env, message_id).startswith("== bob@example.net R=flaky_dns defer (0): DNS")
    # Each of those failures renewed the record: the next try is 15 minutes after the last one.
    Delivery(runtime, message_id, now=now + 180 + 14 * M, queue_run=True).run()
    assert last_line(mta_env, message_id) == "== bob@example.net routing defer (-52): retry time not reached"
    Delivery(runtime, message_id, now=now + 180 + 15 * M, queue_run=True).run()
    assert last_line(mta_env, message_id).startswith("== bob@example.net R=flaky_dns defer (0): DNS")


def test_a_4xx_to_rcpt_holds_that_address_and_sender_only(
    mta_env: MtaEnv, runtime: Runtime, server: FakeSmtpServer
) -> None:
    first = queue(mta_env, "bob@example.org")
    now = time.time()
    Delivery(runtime, first, now=now).run()
    assert len(server.connections) == 1
    assert last_line(mta_env, first).startswith("== bob@example.org R=relay T=remote_smtp defer (0): SMTP error")
    assert list(retry_records(mta_env.spool)) == ["R:bob@example.org:<alice@example.org>"]
    assert retry_records(mta_env.spool)["R:bob@example.org:<alice@example.org>"].error == "rcpt_451"
    Delivery(runtime, first, now=now + 60, queue_run=True).run()
    assert len(server.connections) == 1
    assert last_line(mta_env, first) == "== bob@example.org routing defer (-52): retry time not reached"
    # The same address from another sender is tried: the refusal may be about the sender.
    other = queue(mta_env, "bob@example.org", sender="zed@example.org")
    Delivery(runtime, other, now=now + 60, queue_run=True).run()
    assert len(server.connections) == 2
    # Once it is accepted, the record goes.
    server.behaviour.rcpt_replies.clear()
    Delivery(runtime, first, now=now + 16 * M, queue_run=True).run()
    assert last_line(mta_env, first) == "Completed"
    assert "R:bob@example.org:<alice@example.org>" not in retry_records(mta_env.spool)


def test_a_local_deferral_waits_for_its_retry_time_in_a_queue_run(mta_env: MtaEnv, runtime: Runtime) -> None:
    message_id = queue(mta_env, "carol@example.com")
    now = time.time()
    Delivery(runtime, message_id, now=now).run()
    deferral = last_line(mta_env, message_id)
    assert deferral.startswith("== carol <carol@example.com> R=everyone T=mailbox defer")
    assert list(retry_records(mta_env.spool)) == ["T:carol@example.com"]
    Delivery(runtime, message_id, now=now + 60, queue_run=True).run()
    assert last_line(mta_env, message_id) == (
        "== carol <carol@example.com> R=everyone T=mailbox defer (-53): Retry time not yet reached"
    )
    Delivery(runtime, message_id, now=now + 16 * M, queue_run=True).run()
    assert last_line(mta_env, message_id) == deferral


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_hints_damaged_under_a_running_process(
    mta_env: MtaEnv, runtime: Runtime, server: FakeSmtpServer, damage: str
) -> None:
    """One process (a queue runner, a daemon worker) keeps the retry file open across messages;
    the file is truncated or deleted under it.  Delivery goes on: the hints are rebuilt."""
    first, second = queue(mta_env, "bob@example.org"), queue(mta_env, "bob@example.org")
    now = time.time()
    Delivery(runtime, first, now=now).run()
    assert len(server.connections) == 1
    path = mta_env.spool / "db" / "retry"
    if damage == "truncate":
        with open(path, "r+b") as f:
            f.truncate(0)
    else:
        path.unlink()
    Delivery(runtime, second, now=now + 60, queue_run=True).run()
    assert len(server.connections) == 2  # nothing remembered: tried again
    assert list(retry_records(mta_env.spool)) == ["R:bob@example.org:<alice@example.org>"]
    Delivery(runtime, first, now=now + 120, queue_run=True).run()
    assert len(server.connections) == 2
    if damage == "truncate":
        assert "recreated" in (mta_env.spool / "log" / "paniclog").read_text()
