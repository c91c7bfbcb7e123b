"""wait-<transport>: messages waiting for a host, sent down the connection another message opened.

When a remote delivery to a host is held up (the host is down, or busy),
the attempt records the message's id in the hints database
``wait-<transport>`` under that host's name (mta.deliver.waiting).  When a
delivery to the host succeeds later, the process that made it (a queue
runner, a daemon worker) delivers the messages waiting for the same host
at once, one after the other, so they go out over the SMTP connection
that is already open (the smtp transport
keeps it for `connection_max_messages` messages).  A host that was down
for a day therefore gets one connection for its backlog, not one per
message (Exim's wait-<transport> and its -MC continuation).

The record is only a hint: an id that is no longer on the spool, is frozen,
or is being delivered by another process (locked) is skipped, and a lost
or damaged database only means each message waits for its own queue run.
"""

from __future__ import annotations

from mta.deliver.waiting import take_waiting

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from mta.runtime import Runtime


def deliver_with_followers(
    runtime: Runtime, message_id: str, deliver: Callable[[str], Any], limit: int = 500,
    attempted: set[str] | None = None,
) -> list[Any]:
    """Deliver `message_id` with `deliver(id) -> DeliveryReport`, then, for each host a delivery
    reached, the messages waiting for it (and theirs), up to `limit` messages in all.  Returns
    every report.  Every id tried is added to `attempted` (a queue run's, so that it does not
    try a follower again; a follower already tried by the run is still sent when its host has
    just been reached)."""
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
        report = deliver(current)  # which notes it as waiting for the hosts it could not reach
        reports.append(report)
        for transport, host in sorted(report.delivered_hosts):
            for follower in take_waiting(runtime, transport, host, limit - len(done)):
                if follower not in done and follower not in queue:
                    queue.append(follower)
    return reports
