"""Making time pass for retry tests, without touching the clock of the program under test.

`age_spool(spool, seconds)` moves everything a spool remembers back in time
by `seconds`: each message's arrival (and freezing) time in its -H file, and
every time in every retry record.  To the next `mta` command it is exactly
as if that much time had passed since.  This goes through mta's own spool
and hints modules (mta.spool.store, mta.hints.retry_db), never by editing
bytes, so a test cannot leave a file mta would refuse.

Why not an injectable clock (an environment variable the binary reads):
it would be a way to change the behaviour of a program that runs as root,
present in every installation for the sake of the tests; ageing the state
needs nothing in the binary.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mta import record
from mta.hints.retry_db import RetryDb, RetryRecord
from mta.spool.envelope import Envelope
from mta.spool.store import Spool


def age_spool(spool: Path, seconds: int) -> None:
    """Everything on the spool happened `seconds` earlier than it did."""
    def older(envelope: Envelope) -> None:
        envelope.received_time -= seconds
        if envelope.received_time_complete is not None:
            secs, usec = envelope.received_time_complete
            envelope.received_time_complete = (secs - seconds, usec)
        if envelope.frozen is not None:
            envelope.frozen -= seconds

    for message_id in Spool(str(spool)).list_message_ids():
        edit_envelope(spool, message_id, older)
    age_hints(spool, seconds)


def edit_envelope(spool: Path, message_id: str, change: Callable[[Envelope], None]) -> None:
    """Change a message's -H as an administrator's tool would: under the message's lock."""
    store = Spool(str(spool))
    lock = store.lock(message_id)
    try:
        envelope = store.read_envelope(message_id)
        change(envelope)
        store.rewrite_envelope(envelope)
    finally:
        lock.release()


def age_hints(spool: Path, seconds: int) -> None:
    db = RetryDb.for_spool(str(spool))
    for key, rec in db.dump():
        db.put(key, shifted(rec, -seconds))


def shifted(rec: RetryRecord, delta: int) -> RetryRecord:
    """`rec` with every time moved by `delta` seconds (negative: into the past)."""
    return record.replace(
        rec,
        first_failed=rec.first_failed + delta,
        last_try=rec.last_try + delta,
        next_try=rec.next_try + delta,
        time_stamp=rec.time_stamp + delta,
    )


def retry_records(spool: Path) -> dict[str, RetryRecord]:
    return dict(RetryDb.for_spool(str(spool)).dump())
