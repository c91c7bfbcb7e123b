"""The daemon says 250 only after the message is durable, also when many sessions commit at once.

The receivers commit messages in batches (mta.receive.spool_writer); each
session's 250 must still come after its own -D and -H were synced, the -H
renamed into place and the directory synced (by syncfs, the default).  The daemon runs with the
system-call recorder (tests/support/syscall_trace); right after a client
reads a 250, everything the recorder holds happened before that 250.
"""

from __future__ import annotations

import threading
from pathlib import Path

from tests.support.daemon import DaemonWorld, RawClient
from tests.support.durability import SyscallTrace, assert_committed

SESSIONS = 6
MESSAGES = 4


def test_every_250_follows_a_durable_commit_in_concurrent_sessions(daemon_world: DaemonWorld) -> None:
    trace = SyscallTrace(daemon_world.root / "trace.jsonl", roots=[daemon_world.spool])
    trace.log.touch()
    trace.log.chmod(0o666)  # the receivers write it as mta_user
    daemon_world.write_config(main="queue_only", receivers=2)
    daemon_world.start(env=trace.env())
    failures: list[BaseException] = []
    checked: list[str] = []
    lock = threading.Lock()

    def session(number: int) -> None:
        try:
            with RawClient(daemon_world.port) as client:
                assert client.reply()[0] == 220
                assert client.command("EHLO client.example.org")[0] == 250
                for n in range(MESSAGES):
                    client.send(f"MAIL FROM:<s{number}@example.org>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n")
                    assert [client.reply()[0] for _ in range(3)] == [250, 250, 354]
                    client.send(f"Subject: {number}.{n}\r\n\r\n" + "some text\r\n" * (n * 300) + ".\r\n")
                    code, text = client.reply()
                    events = trace.events()  # all of it happened before this 250
                    assert code == 250, text
                    message_id = text.split("id=")[1]
                    assert_committed(events, message_id)
                    with lock:
                        checked.append(message_id)
                client.command("QUIT")
        except BaseException as exc:  # reported below, from the test's own thread
            failures.append(exc)

    threads = [threading.Thread(target=session, args=(n,)) for n in range(SESSIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    if failures:
        raise failures[0]
    assert len(set(checked)) == SESSIONS * MESSAGES
    assert sorted(checked) == daemon_world.message_ids()
    assert Path(trace.log).stat().st_size > 0
    assert any(event.op == "syncfs" for event in trace.events())  # the default group commit
