"""wait-<transport>: the hints database of messages waiting for a host.

    record_waiting(runtime, [(transport, host)], message_id)
    take_waiting(runtime, transport, host, limit) -> [message id]

Every delivery attempt whose remote delivery to a host is held up (the
host is down, or busy) notes the message under that host's name
(mta.route.host.wait_name) in ``<spool>/db/wait-<transport>``: the attempt
itself does it, whoever started it (an arrival, a queue run, `-M`), as
Exim's smtp transport does.  A process that later reaches the host takes
the waiting ids and sends them down its open connection
(mta.queue.wait.deliver_with_followers).

The record is only a hint: the ids, one per line, oldest first, at most
`MAX_WAITING` (older ones are dropped: they are still on the spool and the
queue runs find them); anything that is not a message id is damage and
ignored, and a database that cannot be used means each message waits for
its own queue run.
"""

from __future__ import annotations

import os

from mta.hints.db import HintsDb, HintsError, hints_key
from mta.spool.ids import is_message_id

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

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
    key = hints_key(host.lower())

    def take(old: dict[bytes, bytes]) -> tuple[dict[bytes, bytes | None], list[str]]:
        ids = _decode(old.get(key))
        taken, rest = ids[:limit], ids[limit:]
        if not taken:
            return {}, []
        # Every id taken: the record goes, or the same ids would be offered again.
        return {key: "\n".join(rest).encode("ascii") if rest else None}, taken

    try:
        db = _database(runtime, transport)
        # Usually nothing waits: a read transaction says so without taking the database's
        # write lock, which every worker would otherwise take after every delivery.
        if db.get(key) is None:
            return []
        return db.update_many([key], take)
    except HintsError:
        return []
