"""The ``retry`` hints database: ``<spool>/db/retry``, Exim's keys, our record format.

Public API::

    db = RetryDb(db_directory, panic=logger.panic, data_expire=7*86400, interval_max=86400)
    db.read(keys, now) -> {key: RetryRecord}          # usable records only
    db.update(keys, now, change) -> result | None     # one write transaction
    db.put(key, record) / db.delete(key)              # for tools and tests
    db.dump() -> [(key, RetryRecord)]                 # every valid record, in key order
    dumpdb_lines(key, record) -> [line, line]         # exim_dumpdb's two lines

Keys are Exim's (research/exim-contracts.md, "Retry keys"):

    T:<host>:<ip>[:<port>]          a host (connection refused, timeout, 4xx/5xx greeting ...)
    T:<host>:<ip>[:<port>]:<id>     that host for one message (4xx to MAIL or DATA)
    R:<domain>                      routing of a domain (a router's DNS deferral)
    R:<local>@<domain>              routing of one address (the directors)
    R:<address>:<<sender>>          an address refused with 4xx at RCPT (with its sender unless
                                    the transport's address_retry_include_sender is false)
    T:<local>@<domain>              a local delivery (quota, a locked mailbox ...)

A host name that is an IP address, and an IPv6 address, are written in
brackets (Exim 4.97 and later).  Keys are stored through
`mta.hints.db.hints_key`, so an address with odd bytes in it cannot make a
key LMDB refuses or that reads as another record in a dump.

Record format (ours; Exim's holds the same fields in a C struct): one ASCII
line of space-separated fields

    R1 <time_stamp> <first_failed> <last_try> <next_try> <expired 0|1> <errno> <more_errno> <error> <text>

times in seconds since the epoch, `error` the retry-rule error name of the
last failure (``refused_A``, ``rcpt_451``; ``-`` for none), `text` the last
error message, printable ASCII, at most 150 characters (Exim's limit).
`decode_record` refuses anything else with ValueError; a record that does
not decode is deleted with a panic-log line and counts as absent, and the
next failure writes a good one in its place.

Reading (`read`) applies two rules before a record is believed:
retry_data_expire (a record not written for that long is ignored, Exim),
and the clock rule: a record whose times lie in the future was written
before the clock was set back.  Believed as it is, it would keep a host
untried for as long as the clock jumped; so such a destination is due at
once (its times clamped to now), and no next try is ever further away than
retry_interval_max.

Errors: a database that cannot be opened or written at all (HintsError) is
reported once per call in the panic log and treated as empty: the spool is
the truth, so delivery goes on as if nothing had ever failed.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable

from mta import record
from mta.hints.db import HintsDb, HintsError, hints_key
from mta.hints.retry import RetryTimes

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypeVar

    _R = TypeVar("_R")

RETRY_DB = "retry"
MAX_TEXT = 150  # Exim keeps at most this much of the error text
_MAGIC = "R1"
_MAX_TIME = 2**40  # far beyond any real clock; rejects garbage that decodes as a number
_ERROR_FIELD = re.compile(r"[A-Za-z0-9_*]{1,40}|-")
_INT = re.compile(r"-?\d{1,13}")


@record.dataclass(frozen=True, slots=True)
class RetryRecord:
    """One retry record: Exim's dbdata_retry, plus the retry-rule error name."""

    first_failed: int
    last_try: int
    next_try: int
    expired: bool
    errno: int = 0
    more_errno: int = 0
    error: str | None = None  # retry-rule error name of the last failure
    text: str = ""
    time_stamp: int = 0  # when written; retry_data_expire counts from it

    @property
    def times(self) -> RetryTimes:
        return RetryTimes(self.first_failed, self.last_try, self.next_try, self.expired)


def printable_text(text: str) -> str:
    """The error text as a record keeps it: printable ASCII (escaped), at most MAX_TEXT characters."""
    out = []
    for ch in text:
        if " " <= ch <= "~":
            out.append(ch)
        elif ch == "\n":
            out.append("\\n")
        else:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
    return "".join(out)[:MAX_TEXT]


def encode_record(rec: RetryRecord) -> bytes:
    error = rec.error or "-"
    if not _ERROR_FIELD.fullmatch(error):
        raise ValueError(f"bad retry error name {error!r}")  # our own code's mistake
    fields = (rec.time_stamp, rec.first_failed, rec.last_try, rec.next_try, int(rec.expired), rec.errno, rec.more_errno)
    text = printable_text(rec.text)
    return f"{_MAGIC} {' '.join(str(int(f)) for f in fields)} {error} {text}".rstrip(" ").encode("ascii")


def decode_record(data: bytes) -> RetryRecord:
    """A record from its bytes; ValueError for anything that is not one we wrote."""
    if len(data) > 400:
        raise ValueError(f"retry record of {len(data)} bytes")
    try:
        line = data.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("retry record is not ASCII") from None
    if any(not (" " <= ch <= "~") for ch in line):
        raise ValueError("retry record has control characters")
    parts = line.split(" ", 9)
    if len(parts) < 9 or parts[0] != _MAGIC:
        raise ValueError("not a retry record")
    numbers = parts[1:8]
    if not all(_INT.fullmatch(n) for n in numbers):
        raise ValueError("retry record with a malformed number")
    stamp, first, last, nxt, expired, errno, more = (int(n) for n in numbers)
    if not all(0 <= t < _MAX_TIME for t in (stamp, first, last, nxt)):
        raise ValueError("retry record with an impossible time")
    if expired not in (0, 1) or not (-(2**31) <= errno < 2**31 and -(2**31) <= more < 2**31):
        raise ValueError("retry record with a bad flag or error number")
    if not _ERROR_FIELD.fullmatch(parts[8]):
        raise ValueError("retry record with a bad error name")
    text = parts[9] if len(parts) > 9 else ""
    if len(text) > MAX_TEXT:
        raise ValueError("retry record text too long")
    return RetryRecord(
        first_failed=first, last_try=last, next_try=nxt, expired=bool(expired), errno=errno, more_errno=more,
        error=None if parts[8] == "-" else parts[8], text=text, time_stamp=stamp,
    )


def clamp_record(rec: RetryRecord, now: int, interval_max: int) -> RetryRecord:
    """`rec` with the clock rule applied (see the module docstring).

    A last try after `now` means the clock has been set back since the
    record was written: none of its times can be measured against the clock
    any more, so the destination is due at once, and its first failure
    counts from now.  The next try after an attempt with the new clock
    writes a record that makes sense again.  A next try further ahead than
    retry_interval_max is brought forward to that.
    """
    if rec.last_try > now or rec.first_failed > now or rec.time_stamp > now:
        return record.replace(
            rec,
            first_failed=min(rec.first_failed, now),
            last_try=min(rec.last_try, now),
            next_try=now if rec.last_try > now else min(rec.next_try, now + interval_max),
            time_stamp=min(rec.time_stamp, now),
        )
    if rec.next_try > now + interval_max:
        return record.replace(rec, next_try=now + interval_max)
    return rec


def key_bytes(key: str) -> bytes:
    return hints_key(key)


def key_text(key: bytes) -> str:
    """The key as Exim would show it (the %XX escapes of hints_key undone)."""
    return re.sub(rb"%([0-9A-F]{2})", lambda m: bytes([int(m.group(1), 16)]), key).decode("utf-8", "replace")


class RetryDb:
    """The retry database of one spool; see the module docstring."""

    def __init__(
        self,
        directory: str,
        *,
        panic: Callable[[str], None] | None = None,
        data_expire: int = 7 * 86400,
        interval_max: int = 86400,
    ) -> None:
        self.db = HintsDb(directory, RETRY_DB, panic=panic)
        self._panic = panic
        self.data_expire = data_expire
        self.interval_max = interval_max

    @classmethod
    def for_spool(cls, spool_directory: str, **kwargs: object) -> RetryDb:
        return cls(os.path.join(spool_directory, "db"), **kwargs)  # type: ignore[arg-type]

    def usable(self, rec: RetryRecord, now: int) -> RetryRecord | None:
        """`rec` as read at `now`: None when too old (retry_data_expire), else clamped."""
        rec = clamp_record(rec, now, self.interval_max)
        if now - rec.time_stamp > self.data_expire:
            return None
        return rec

    def read(self, keys: list[str], now: float) -> dict[str, RetryRecord]:
        """The usable records of `keys` (one read transaction); {} if the database is unusable."""
        if not keys:
            return {}
        wanted = {key_bytes(k): k for k in keys}
        try:
            raw = self.db.get_many(list(wanted))
        except HintsError as exc:
            self._report(f"retry database not available: {exc}")
            return {}
        found: dict[str, RetryRecord] = {}
        for kb, data in raw.items():
            rec = self._decode(kb, data)
            usable = self.usable(rec, int(now)) if rec is not None else None
            if usable is not None:
                found[wanted[kb]] = usable
        return found

    def update(
        self,
        keys: list[str],
        now: float,
        change: Callable[[dict[str, RetryRecord]], tuple[dict[str, RetryRecord | None], _R]],
    ) -> _R | None:
        """Read `keys`, let ``change(usable_records)`` decide, write its answer: one transaction.

        `change` returns ``(writes, result)``: a key mapped to a record is
        written (its time stamp set to `now`), to None deleted.  Records that
        do not decode are replaced or deleted too.  None when the database
        cannot be used (panic-logged): nothing is recorded, nothing times out.
        """
        wanted = {key_bytes(k): k for k in dict.fromkeys(keys)}
        stamp = int(now)
        bad: list[bytes] = []

        def transact(old_raw: dict[bytes, bytes]) -> tuple[dict[bytes, bytes | None], _R]:
            old: dict[str, RetryRecord] = {}
            bad.clear()  # this may run twice (a database recreated half-way): report once
            for kb, data in old_raw.items():
                try:
                    rec = decode_record(data)
                except ValueError:
                    bad.append(kb)
                    continue
                usable = self.usable(rec, stamp)
                if usable is not None:
                    old[wanted[kb]] = usable
            writes, result = change(old)
            raw_writes: dict[bytes, bytes | None] = dict.fromkeys(bad)
            for key, rec in writes.items():
                kb = key_bytes(key)
                if rec is None:
                    if kb in old_raw:
                        raw_writes[kb] = None
                else:
                    raw_writes[kb] = encode_record(record.replace(rec, time_stamp=stamp))
            return raw_writes, result

        try:
            result = self.db.update_many(list(wanted), transact)
        except HintsError as exc:
            self._report(f"retry database not available for updating: {exc}")
            return None
        for kb in bad:
            self._report(f"hints database {self.db.path}: invalid record for key {kb!r} replaced")
        return result

    def put(self, key: str, rec: RetryRecord) -> None:
        """Write `rec` as it is (time stamp included): for tools and tests."""
        self.db.put(key_bytes(key), encode_record(rec))

    def delete(self, key: str) -> bool:
        return self.db.delete(key_bytes(key))

    def dump(self) -> list[tuple[str, RetryRecord]]:
        """Every record that decodes, in key order (bad ones are left for `read` to remove)."""
        out = []
        for kb, data in self.db.items():
            try:
                out.append((key_text(kb), decode_record(data)))
            except ValueError:
                continue
        return out

    def _decode(self, kb: bytes, data: bytes) -> RetryRecord | None:
        try:
            return decode_record(data)
        except ValueError as exc:
            self._report(f"hints database {self.db.path}: invalid record for key {kb!r} deleted ({exc})")
            try:
                self.db.delete(kb)
            except HintsError:
                pass  # the next update replaces it anyway
            return None

    def _report(self, text: str) -> None:
        if self._panic is not None:
            self._panic(text)


def _dumpdb_time(when: int) -> str:
    return time.strftime("%d-%b-%Y %H:%M:%S", time.localtime(when))


def dumpdb_lines(key: str, rec: RetryRecord) -> list[str]:
    """The two lines exim_dumpdb prints for a retry record."""
    return [
        f"  {key} {rec.errno} {rec.more_errno} {rec.text}",
        f"{_dumpdb_time(rec.first_failed)}  {_dumpdb_time(rec.last_try)}  {_dumpdb_time(rec.next_try)}"
        + (" *" if rec.expired else " "),
    ]
