"""Message logs of what the daemon's workers deliver at once (docs/delivery.md, "Message logs").

A message handed to a delivery worker gets its message log from the worker,
and only if the attempt leaves something to log: one delivered at once never
has one (its creation and removal were a third of the file system's work per
relayed message), one deferred starts with Exim's "Received from" line as
if the receiver had written it.  queue_only keeps the receiver's msglog.
"""

from __future__ import annotations

from tests.daemon.test_journal_after_crash import REMOTE
from tests.support.daemon import BASE, DaemonWorld, RawClient
from tests.support.durability import SyscallTrace
from tests.support.fakesmtp import wait_for
from tests.support.sink import SmtpSink

# `later@example.com` goes to a transport whose file cannot be made (its directory is missing):
# a deferral.  Remote domains go to an SMTP sink.
TRANSPORTS = """
nowhere:
  driver = appendfile
  file = {root}/missing/box
  create_directory = false
""" + REMOTE


def send(world: DaemonWorld, recipient: str, subject: str) -> str:
    with RawClient(world.port) as client:
        assert client.reply()[0] == 220
        assert client.command("EHLO client.example.org")[0] == 250
        client.send(f"MAIL FROM:<bob@example.org>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n")
        assert [client.reply()[0] for _ in range(3)] == [250, 250, 354]
        client.send(f"Subject: {subject}\r\n\r\ntext\r\n.\r\n")
        code, text = client.reply()
        assert code == 250, text
        client.command("QUIT")
    return text.split("id=")[1]


def test_a_message_relayed_at_once_never_has_a_message_log_and_a_deferred_one_starts_with_its_arrival(
    daemon_world: DaemonWorld, sink: SmtpSink
) -> None:
    trace = SyscallTrace(daemon_world.root / "trace.jsonl", roots=[daemon_world.spool])
    trace.log.touch()
    trace.log.chmod(0o666)
    director = "\nlater:\n  driver = smartuser\n  local_parts = later\n  transport = nowhere\n  user = nobody\n"
    base = BASE.replace("begin directors\n", "begin directors\n" + director).replace(
        "relay_from_hosts = 127.0.0.2", "relay_from_hosts = 127.0.0.1")
    transports = TRANSPORTS.replace("{root}", str(daemon_world.root)).replace("{port}", str(sink.port))
    daemon_world.write_config(transports=transports, base=base)
    daemon_world.start(env=trace.env())
    delivered = send(daemon_world, "carol@remote.example", "at once")
    daemon_world.wait_for_log(f"{delivered} Completed")
    deferred = send(daemon_world, "later@example.com", "later")
    deferral = daemon_world.wait_for_log(f"{deferred} == later <later@example.com>")
    msglog = daemon_world.spool / "msglog" / deferred
    # The worker writes the main log's line first, then the msglog's: wait for the second too.
    assert wait_for(lambda: msglog.exists() and msglog.read_text().count("\n") >= 2, timeout=10)
    lines = msglog.read_text().splitlines()
    arrival = next(line for line in daemon_world.log_lines() if f"{deferred} <= " in line)
    assert lines[0].endswith(" Received from " + arrival.split(" <= ", 1)[1])
    assert lines[0][:19] == arrival[:19]  # the time of arrival, not of the delivery
    assert lines[1].endswith(deferral.split(f"{deferred} ", 1)[1])
    created = [e.path for e in trace.events() if e.op == "create" and "/msglog/" in (e.path or "")]
    assert not [path for path in created if path.endswith(delivered)]
    assert [path for path in created if path.endswith(deferred)]


def test_queue_only_keeps_the_receivers_message_log(daemon_world: DaemonWorld) -> None:
    # Written after the 250 (docs/delivery.md, "Message logs"): a moment later, by the receiver.
    daemon_world.write_config(main="queue_only")
    daemon_world.start()
    message_id = send(daemon_world, "alice@example.com", "queued")
    msglog = daemon_world.spool / "msglog" / message_id
    assert wait_for(lambda: msglog.exists() and msglog.read_text().endswith("\n"), timeout=10)
    lines = msglog.read_text().splitlines()
    arrival = next(line for line in daemon_world.log_lines() if f"{message_id} <= " in line)
    assert lines == [arrival[:19] + " Received from " + arrival.split(" <= ", 1)[1]]
