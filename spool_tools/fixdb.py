"""mta-fixdb: look at and change single records of a hints database, as exim_fixdb does.

    mta-fixdb [SPOOL] DB        then, at the ``> `` prompt, one request a line:

    KEY               show the record, its fields numbered
    KEY d  (or d)     delete it
    KEY N VALUE       set field N (or ``N VALUE`` for the record shown last)
    q                 quit (so does the end of the input)

    $ printf 'T:mx.example.net:192.0.2.5\\n4 2611221300\\n' | mta-fixdb /var/spool/mta retry
    Modifying mta hints database /var/spool/mta/db/retry
    > 22-Nov-2026 12:43:53
    0 error number: 111 Connection refused
    1 extra data:   65
    2 first failed: 22-Nov-2026 12:43:32
    3 last try:     22-Nov-2026 12:43:53
    4 next try:     22-Nov-2026 12:58:53
    5 expired:      no
    > 22-Nov-2026 12:50:07
    ...
    4 next try:     22-Nov-2026 13:00:00

Fields that can be set: retry records 0-5 (error number, extra error number,
first failed, last try, next try, expired ``yes``/``no``); ratelimit records
0-2 (time, its microseconds, rate) and, with a Bloom filter, 3 (its epoch),
4 (test whether a value is in the filter) and 5 (add one).  Times are
Exim's ``[[[[yy]mm]dd]hh]mm`` digit pairs (colons allowed between them),
local time, the missing ones from now.  wait- and misc records can be shown
and deleted, not changed.  A changed record is stamped with the time now, as
exim_fixdb does.

Keys are typed as mta-dumpdb shows them.  Each request is one short
transaction (a change re-reads the record in its write transaction), so the
tool can sit at its prompt without holding anything up.  The exit status is
1 when any request failed (no such record, a bad value), so that a script
feeding requests on standard input can tell.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

from mta import record
from mta.hints import ratelimit
from mta.hints.db import HintsDb
from mta.hints.retry_db import RetryRecord, decode_record, encode_record
from spool_tools.admin_command import ToolParser
from spool_tools.hints_databases import (
    add_database_arguments,
    database_kind,
    open_database,
    run_tool,
    spool_and_database,
)
from spool_tools.hints_records import dump_time, misc_time, ratelimit_usec, stored_key, waiting_ids

PROG = "mta-fixdb"

# A change to a record's value: the old bytes to the new (ValueError if the old do not decode).
Change = Callable[[bytes], bytes]


class Refused(Exception):
    """A request that cannot be carried out; `str()` is the line to print."""

    def __init__(self, text: str, show_after: bool = True) -> None:
        super().__init__(text)
        self.show_after = show_after


def read_time(text: str, now: float) -> int:
    """Exim's fixdb time: digit pairs from the right are minute, hour, day, month, year.

    Fields not given are those of `now` (local time); seconds are 0.  A
    two-digit year below 90 is in this century.
    """
    digits = text.replace(":", "")
    if not digits.isdigit() or len(digits) > 10:
        raise Refused("bad time value")
    pairs = []
    while digits:
        pairs.append(int(digits[-2:]))
        digits = digits[:-2]
    tm = list(time.localtime(now))
    names = (4, 3, 2, 1, 0)  # struct_time indexes: minute, hour, day, month, year
    for index, value in zip(names, pairs, strict=False):
        tm[index] = value
    if len(pairs) > 4:
        tm[0] = tm[0] + 2000 if tm[0] < 90 else tm[0] + 1900
    tm[5], tm[8] = 0, -1  # seconds; let mktime decide about summer time
    if not (tm[4] < 60 and tm[3] < 24 and 1 <= tm[2] <= 31 and 1 <= tm[1] <= 12):
        raise Refused("bad time value")
    return int(time.mktime(time.struct_time(tm)))


def _number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise Refused("bad number") from None
    if not -(2**31) <= value < 2**31:
        raise Refused("bad number")
    return value


def retry_change(field: int, value: str, now: float) -> Change:
    """The change that sets `field` of a retry record (the numbers exim_fixdb uses)."""
    changes: dict[str, object]
    if field == 0:
        changes = {"errno": _number(value)}
    elif field == 1:
        changes = {"more_errno": _number(value)}
    elif field in (2, 3, 4):
        changes = {("first_failed", "last_try", "next_try")[field - 2]: read_time(value, now)}
    elif field == 5:
        if value not in ("yes", "no"):
            raise Refused('"yes" or "no" expected')
        changes = {"expired": value == "yes"}
    else:
        raise Refused("unknown field number", show_after=False)
    return lambda old: encode_record(record.replace(decode_record(old), time_stamp=int(now), **changes))


def ratelimit_change(field: int, value: str, now: float, out: list[str]) -> Change:
    """The change that sets `field` of a ratelimit record (4, testing the filter, leaves it as
    it is).  What a filter request found goes to `out`."""
    def replace(**changes: object) -> Change:
        return lambda old: ratelimit.encode(record.replace(ratelimit.decode(old), **changes))

    def with_time(old: bytes, seconds: int | None = None, usec: int | None = None) -> bytes:
        rec = ratelimit.decode(old)
        whole = int(rec.time) if seconds is None else seconds
        fraction = ratelimit_usec(rec) if usec is None else usec
        return ratelimit.encode(record.replace(rec, time=whole + fraction / 1_000_000))

    if field == 0:
        seconds = read_time(value, now)
        return lambda old: with_time(old, seconds=seconds)
    if field == 1:
        usec = _number(value)
        if not 0 <= usec <= 999_999:
            raise Refused("bad number")
        return lambda old: with_time(old, usec=usec)
    if field == 2:
        try:
            rate = float(value)
        except ValueError:
            raise Refused("bad number") from None
        if not math.isfinite(rate) or rate < 0:
            raise Refused("bad number")
        return replace(rate=rate)
    if field == 3:
        return replace(bloom_epoch=read_time(value, now))
    if field in (4, 5):
        def filter_change(old: bytes) -> bytes:
            rec = ratelimit.decode(old)
            bloom, seen = ratelimit.bloom_add(rec.bloom, value)
            out[:] = [f"{'seen' if seen else 'added' if field == 5 else 'unseen'} {value}"]
            return ratelimit.encode(record.replace(rec, bloom=bloom)) if field == 5 else old

        return filter_change
    raise Refused("unknown field number", show_after=False)


def shown_record(kind: str, key: str, value: bytes) -> list[str]:
    """exim_fixdb's display of a record: its time, then its fields, numbered where they can be set."""
    if kind == "retry":
        rec = decode_record(value)
        return [dump_time(rec.time_stamp), *retry_fields(rec)]
    if kind == "wait":
        return ["".join(f"{message_id} " for message_id in waiting_ids(value))]
    if kind == "misc":
        return [dump_time(misc_time(value))]
    rec = ratelimit.decode(value)
    lines = [dump_time(int(rec.time)), f"0 time stamp:  {dump_time(int(rec.time))}",
             f"1 fract. time: .{ratelimit_usec(rec):06d}", f"2 sender rate: {rec.rate: .3f}"]
    if rec.bloom_epoch is not None:
        lines += [f"3 filter epoch: {dump_time(rec.bloom_epoch)}", "4 test filter membership",
                  "5 add element to filter"]
    return lines


def retry_fields(rec: RetryRecord) -> list[str]:
    return [
        f"0 error number: {rec.errno} {rec.text}",
        f"1 extra data:   {rec.more_errno}",
        f"2 first failed: {dump_time(rec.first_failed)}",
        f"3 last try:     {dump_time(rec.last_try)}",
        f"4 next try:     {dump_time(rec.next_try)}",
        f"5 expired:      {'yes' if rec.expired else 'no'}",
    ]


class FixSession:
    """One run of the prompt over one database."""

    def __init__(self, db: HintsDb, kind: str) -> None:
        self.db = db
        self.kind = kind
        self.name = ""  # the record named last, for "d" and "N value" on their own
        self.failures = 0

    def say(self, line: str) -> None:
        sys.stdout.write(line + "\n")

    def fail(self, line: str) -> None:
        self.failures += 1
        self.say(line)

    def request(self, line: str) -> bool:
        """Carry out one request; False for ``q``."""
        words = line.split()
        if not words:
            return True
        if (len(words[0]) == 1 and words[0].isdigit()) or words == ["d"]:
            if not self.name:
                self.fail("No previous record name is set")
                return True
            field, value = words[0], " ".join(words[1:])
        else:
            self.name, field, value = words[0], (words[1] if len(words) > 1 else ""), " ".join(words[2:])
        if not field:
            if self.name == "q":
                return False
            self.show()
        elif field == "d":
            self.delete(value)
        elif field.isdigit():
            self.change(int(field), value)
        else:
            self.fail("field number or d expected")
        return True

    def show(self) -> None:
        value = self.db.get(stored_key(self.name))
        if value is None:
            self.fail(f"record {self.name} not found")
            self.name = ""
            return
        try:
            lines = shown_record(self.kind, self.name, value)
        except ValueError as exc:
            self.fail(f"**** Data for {self.name} corrupted: {exc}")
            return
        for line in lines:
            self.say(line)

    def delete(self, value: str) -> None:
        if value:
            self.fail('unexpected value after "d"')
        elif self.db.delete(stored_key(self.name)):
            self.say("deleted")
        else:
            self.fail("not found")

    def change(self, field: int, value: str) -> None:
        if not value:
            self.fail("value missing")
            return
        if self.kind in ("wait", "misc"):
            self.fail(f"Can't change contents of {self.kind} database record")
            self.show()
            return
        found: list[str] = []
        try:
            if self.kind == "retry":
                change = retry_change(field, value, time.time())
            else:
                is_unique = self._has_filter()
                if field >= 3 and not is_unique:
                    raise Refused("unknown field number", show_after=False)
                change = ratelimit_change(field, value, time.time(), found)
        except Refused as exc:
            self.fail(str(exc))
            if exc.show_after:
                self.show()
            return
        if not self._write(change):
            return
        for line in found:
            self.say(line)
        self.show()

    def _has_filter(self) -> bool:
        value = self.db.get(stored_key(self.name))
        try:
            return value is not None and ratelimit.decode(value).bloom_epoch is not None
        except ValueError:
            return False

    def _write(self, change: Change) -> bool:
        """Apply `change` to the current record in one write transaction; False if it is gone."""
        def transact(old: bytes | None) -> tuple[bytes | None, str]:
            if old is None:
                return None, "not found"
            try:
                return change(old), ""
            except ValueError as exc:
                return None, f"**** Data for {self.name} corrupted: {exc}"

        problem = self.db.update(stored_key(self.name), transact)
        if problem:
            self.fail(problem)
            return False
        return True


def build_parser() -> ToolParser:
    parser = ToolParser(PROG, "Show and change single records of one of mta's hints databases, "
                        "as exim_fixdb does.", epilog=__doc__.split("\n\n")[1],
                        usage="%(prog)s [-C FILE] [--spool DIR] [SPOOL] DB")
    add_database_arguments(parser)
    return parser


def fix(spool: str, name: str) -> int:
    session = FixSession(open_database(spool, name), database_kind(name))
    print(f"Modifying mta hints database {session.db.path}")
    while True:
        sys.stdout.write("> ")
        sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:
            sys.stdout.write("\n")
            break
        if not session.request(line):
            break
    return 1 if session.failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def body() -> int:
        args = parser.parse_args(argv)
        return fix(*spool_and_database(args))

    return run_tool(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
