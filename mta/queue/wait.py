"""wait-<transport>: messages waiting for a host, sent down the connection another message opened.

When a remote delivery to a host is held up (the host is down, or busy),
the message's id is recorded in the hints database ``wait-<transport>``
under that host's name.  When a delivery to the host succeeds later, the
process that made it (a queue runner, a daemon worker) delivers the
messages waiting for the same host at once, one after the other, so they
go out over the SMTP connection that is already open (the smtp transport
keeps it for `connection_max_messages` messages).  A host that was down
for a day therefore gets one connection for its backlog, not one per
message (Exim's wait-<transport> and its -MC continuation).

The record is only a hint: an id that is no longer on the spool, is frozen,
or is being delivered by another process (locked) is skipped, and a lost
or damaged database only means each message waits for its own queue run.

Record: the ids, one per line, oldest first, at most `MAX_WAITING` (older
ones are dropped: they are still on the spool and the queue runs find them).
"""

from __future__ import annotations

import os

from mta.hints.db import HintsDb, HintsError, hints_key
from mta.spool.ids import is_message_id

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from mta.runtime import Runtime

MAX_WAITING = 1000


def _database(runtime: Runtime, transport: str) -> HintsDb:
    directory = os.path.join(runtime.config.main.spool_directory, "db")
    return HintsDb(directory, f"wait-{transport}", panic=runtime.logger.panic)


def _decode(value: bytes | None) -> list[str]:
    if not value:
        return []
    ids = []
    for line in value.decode("ascii", "replace").split("\n"):
        if is_message_id(line):  # anything else is damage: ignored
            ids.append(line)
    return ids


def record_waiting(runtime: Runtime, hosts: Iterable[tuple[str, str]], message_id: str) -> None:
    """Note that `message_id` waits for each (transport, host name)."""
    for transport, host in hosts:
        def add(value: bytes | None) -> tuple[bytes | None, None]:
            ids = [i for i in _decode(value) if i != message_id]
            ids.append(message_id)
            return "\n".join(ids[-MAX_WAITING:]).encode("ascii"), None

        try:
            _database(runtime, transport).update(hints_key(host.lower()), add)
        except HintsError:
            return  # only a hint: the queue runs will find the message anyway


def take_waiting(runtime: Runtime, transport: str, host: str, limit: int) -> list[str]:
    """Up to `limit` ids waiting for `host` (oldest first), taken out of the record."""
    def take(value: bytes | None) -> tuple[bytes | None, list[str]]:
        ids = _decode(value)
        taken, rest = ids[:limit], ids[limit:]
        return ("\n".join(rest).encode("ascii") if rest else None), taken

    try:
        return _database(runtime, transport).update(hints_key(host.lower()), take)
    except HintsError:
        return []


def deliver_with_followers(
    runtime: Runtime, message_id: str, deliver: Callable[[str], Any], limit: int = 500,
    attempted: set[str] | None = None,
) -> list[Any]:
    """Deliver `message_id` with `deliver(id) -> DeliveryReport`, then, for each host a delivery
    reached, the messages waiting for it (and theirs), up to `limit` messages in all.  Messages
    held up are recorded as waiting for their hosts.  Returns every report.  Every id tried is
    added to `attempted` (a queue run's, so that it does not try a follower again; a follower
    already tried by the run is still sent when its host has just been reached)."""
    reports = []
    queue = [message_id]
    done: set[str] = set()
    while queue and len(done) < limit:
        current = queue.pop(0)
        if current in done:
            continue
        done.add(current)
        if attempted is not None:
            attempted.add(current)
        report = deliver(current)
        reports.append(report)
        if report.deferred_hosts and not report.completed:
            record_waiting(runtime, report.deferred_hosts, current)
        for transport, host in sorted(report.delivered_hosts):
            for follower in take_waiting(runtime, transport, host, limit - len(done)):
                if follower not in done and follower not in queue:
                    queue.append(follower)
    return reports
