"""A -J that a crash left owned by root must not make a daemon deliver again and again.

Found by scripts/crash-test (issue 16): a delivery worker runs as root while it
journals a local delivery; append_journal creates the -J and then gives it to
mta_user (fchown).  Killed between the two, it left a -J of root's.  The next
attempt skipped the journalled local recipient, delivered the remote one as
mta_user, could not journal it (Permission denied) and left the message on the
spool: every queue run delivered it to the remote recipient once more (158
copies in two minutes of 1 s queue runs), for ever.  Reading the -J as root
now gives it to the spool directory's owner first.
"""

from __future__ import annotations

import time

from tests.support.daemon import DaemonWorld
from tests.support.sink import SmtpSink

REMOTE = """
remote_smtp:
  driver = smtp
  allow_localhost
  hosts_avoid_tls = *

begin routers

sink:
  driver = domainlist
  transport = remote_smtp
  route_list = * 127.0.0.1::{port} byname
  self = send
"""


def test_a_journal_left_as_roots_by_a_crash_does_not_repeat_remote_deliveries(
    daemon_world: DaemonWorld, sink: SmtpSink
) -> None:
    """Delivered once to bob, never again to alice, and the message completes."""
    daemon_world.write_config(main="queue_only", transports=REMOTE.format(port=sink.port))
    daemon_world.start()
    submitted = daemon_world.run("-odq", "-f", "a@example.com", "alice@example.com", "bob@remote.example",
                                 input="Subject: once\n\nhello\n")
    assert submitted.returncode == 0, submitted.stderr
    daemon_world.stop()
    (message_id,) = daemon_world.message_ids()
    journal = daemon_world.spool / "input" / f"{message_id}-J"
    journal.write_text("alice@example.com\n")  # alice was delivered; the crash came before the fchown
    journal.chmod(0o640)
    assert journal.stat().st_uid == 0 and (daemon_world.spool / "input").stat().st_uid != 0

    daemon_world.start("-q1s")
    daemon_world.wait_for_log(f"{message_id} Completed")
    time.sleep(1.5)  # a queue run or two more: nothing is delivered again
    assert [m.rcpt_tos for m in sink.messages] == [["bob@remote.example"]]
    assert daemon_world.mailbox("alice") == ""  # delivered before the crash: not again
    assert daemon_world.message_ids() == []
