"""The `misc` hints database: serialisation records (Exim's enq_start/enq_end).

    serialize_start(db_directory, key, now, stale_after, panic) -> bool
    serialize_end(db_directory, key, panic)

A serialisation record says "something keyed thus is running": today, a
queue run started by ETRN (`etrn-<argument>`, Exim's key), so that a client
repeating ETRN in a loop cannot start a queue run per command
(`smtp_etrn_serialize`).  The record holds the time it was made; the
process that took it deletes it when the work is done.  A record older than
`stale_after` is taken over (its holder died without deleting it: Exim's
records stay until exim_tidydb removes them; a day-long lockout after a
crash helps nobody).

Keys are made with `hints_key`, since an ETRN argument comes from the
network.  A database that cannot be used at all lets the work go ahead:
the hints only say when, never whether.
"""

from __future__ import annotations

from collections.abc import Callable

from mta.hints.db import HintsDb, HintsError, hints_key

MISC_DB = "misc"


def _db(directory: str, panic: Callable[[str], None] | None) -> HintsDb:
    return HintsDb(directory, MISC_DB, panic=panic)


def serialize_start(directory: str, key: str, now: float, stale_after: float,
                    panic: Callable[[str], None] | None = None) -> bool:
    """Take the record `key` unless a fresh one exists; True when taken (the work may start)."""
    def take(value: bytes | None) -> tuple[bytes | None, bool]:
        started = _started(value)
        if started is not None and 0 <= now - started < stale_after:
            return value, False
        return f"{int(now)}".encode("ascii"), True

    try:
        return _db(directory, panic).update(hints_key(key), take)
    except HintsError:
        return True


def serialize_end(directory: str, key: str, panic: Callable[[str], None] | None = None) -> None:
    """The work keyed `key` is over."""
    try:
        _db(directory, panic).delete(hints_key(key))
    except HintsError:
        pass


def _started(value: bytes | None) -> int | None:
    """The record's time; None for no record or a damaged one (taken over)."""
    if value is None:
        return None
    text = value.decode("ascii", "replace").strip()
    return int(text) if text.isdigit() and len(text) <= 12 else None
