"""mta-tidydb: remove stale records from a hints database, as exim_tidydb does.

    mta-tidydb [-t TIME] [-f] [SPOOL] DB

    $ mta-tidydb /var/spool/mta wait-remote_smtp
    Tidying mta hints database /var/spool/mta/db/wait-remote_smtp
    updated mx.example.net: removed 1xV6uq-000000005Vj-1t2a
    deleted 127.0.0.1:2525 (empty)
    Tidying complete

What goes:
- any record not written for TIME (``-t``, default 30 days as Exim; a
  ``wait-`` record keeps no time and is judged by its messages instead);
- from a ``wait-`` record, the ids of messages no longer on the spool (a
  message is on the spool while its -H or -D is); a record left empty;
- a ``retry`` record whose key ends in a message id that is no longer on the
  spool (a host's error for that one message), and one not written for
  longer than retry_data_expire (from the configuration with ``-C``, else
  Exim's default of 7 days): delivery ignores those already;
- a record that does not decode (delivery would delete it when it met it).

``-f`` is accepted and ignored, as by Exim (it once asked for a "full" tidy).

Locks: the database is read in one read transaction, the spool is looked at
with no transaction open, and the changes are made in write transactions of
at most BATCH records each, so a delivery never waits more than a moment.
Each change is checked again inside its transaction: a record that a
delivery rewrote since it was read is left alone (it is fresh), and from a
wait- record only the vanished ids are taken, never one added meanwhile.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from mta import record
from mta.hints.db import HintsDb
from mta.spool.files import NoSuchMessage
from mta.spool.ids import is_message_id
from mta.spool.store import Spool
from mta.values import parse_time
from spool_tools.admin_command import ToolParser, UsageError, load_configuration
from spool_tools.hints_databases import (
    add_database_arguments,
    database_kind,
    open_database,
    run_tool,
    spool_and_database,
)
from spool_tools.hints_records import encode_waiting, record_time, shown_key, waiting_ids

PROG = "mta-tidydb"
DEFAULT_MAX_AGE = 30 * 86400
DEFAULT_RETRY_DATA_EXPIRE = 7 * 86400
BATCH = 100  # records per write transaction: a few milliseconds of the writers' lock


@record.dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with one record, decided from the snapshot.

    `seen` is the value the decision was made on: a delete happens only if
    the record still holds it.  `gone_ids` (wait- records) are taken out of
    whatever the record holds by then.
    """

    key: bytes
    seen: bytes
    reason: str = ""  # a delete's reason, shown in brackets
    gone_ids: tuple[str, ...] = ()


def build_parser() -> ToolParser:
    parser = ToolParser(PROG, "Remove stale records from one of mta's hints databases, as exim_tidydb does.",
                        epilog=__doc__.split("\n\n")[2],
                        usage="%(prog)s [-t TIME] [-f] [-C FILE] [--spool DIR] [SPOOL] DB")
    parser.add_argument("-t", dest="max_age", metavar="TIME", default=None,
                        help="remove records not written for this long (Exim time: 30d, 1w, 12h; default 30d)")
    parser.add_argument("-f", dest="full", action="store_true", help="accepted and ignored, as by Exim")
    add_database_arguments(parser)
    return parser


def on_spool(spool: Spool) -> Callable[[str], bool]:
    """Whether a message is still on the spool (its -H or -D, in either split place)."""
    def present(message_id: str) -> bool:
        try:
            spool.message_directory(message_id)
        except NoSuchMessage:
            return False
        return True

    return present


def judge(kind: str, key: bytes, value: bytes, oldest: int, retry_oldest: int,
          present: Callable[[str], bool]) -> Verdict | None:
    """What tidying does to one record (None: nothing)."""
    try:
        written = record_time(kind, value)
        ids = waiting_ids(value) if kind == "wait" else []
    except ValueError:
        return Verdict(key, value, "not a valid record")
    if written is not None and written < oldest:
        return Verdict(key, value, "too old")
    if kind == "wait":
        gone = tuple(i for i in ids if not present(i))
        if gone:
            return Verdict(key, value, "empty" if len(gone) == len(ids) else "", gone)
        return None if ids else Verdict(key, value, "empty")
    if kind == "retry":
        if written is not None and written < retry_oldest:
            return Verdict(key, value, "past retry_data_expire")
        last = shown_key(key).rsplit(":", 1)[-1]
        if is_message_id(last) and not present(last):
            return Verdict(key, value, "no message")
    return None


def apply(db: HintsDb, verdicts: list[Verdict]) -> list[str]:
    """Carry out `verdicts` in write transactions of BATCH records; the lines to print."""
    report: list[str] = []
    for start in range(0, len(verdicts), BATCH):
        batch = verdicts[start:start + BATCH]

        def change(old: dict[bytes, bytes], batch: list[Verdict] = batch
                   ) -> tuple[dict[bytes, bytes | None], list[str]]:
            # No side effects here: update_many may call this twice.
            writes: dict[bytes, bytes | None] = {}
            lines = []
            for verdict in batch:
                current = old.get(verdict.key)
                name = shown_key(verdict.key)
                if current is None:
                    continue  # gone meanwhile (a delivery took the last waiting id)
                if verdict.gone_ids:
                    left = [i for i in waiting_ids_or_none(current) if i not in verdict.gone_ids]
                    if not left:
                        writes[verdict.key] = None
                        lines.append(f"deleted {name} (empty)")
                    else:
                        writes[verdict.key] = encode_waiting(left)
                        lines.append(f"updated {name}: removed {' '.join(verdict.gone_ids)}")
                elif current == verdict.seen:
                    writes[verdict.key] = None
                    lines.append(f"deleted {name} ({verdict.reason})")
            return writes, lines

        report += db.update_many([v.key for v in batch], change)
    return report


def waiting_ids_or_none(value: bytes) -> list[str]:
    try:
        return waiting_ids(value)
    except ValueError:
        return []  # damaged since the scan: emptied, so deleted


def tidy(spool_directory: str, name: str, max_age: int, retry_data_expire: int, now: float | None = None) -> int:
    kind = database_kind(name)
    now = int(time.time() if now is None else now)
    db = open_database(spool_directory, name)
    print(f"Tidying mta hints database {db.path}")
    sys.stdout.flush()
    present = on_spool(Spool(spool_directory))
    verdicts = []
    for key, value in db.items():  # one read transaction: the snapshot
        verdict = judge(kind, key, value, now - max_age, now - retry_data_expire, present)
        if verdict is not None:
            verdicts.append(verdict)
    for line in apply(db, verdicts):
        print(line)
    print("Tidying complete")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def body() -> int:
        args = parser.parse_args(argv)
        max_age = DEFAULT_MAX_AGE
        if args.max_age is not None:
            try:
                max_age = parse_time(args.max_age)
            except ValueError:
                raise UsageError(f"-t {args.max_age}: not a time (such as 30d, 1w or 12h)") from None
        spool, name = spool_and_database(args)
        retry_data_expire = DEFAULT_RETRY_DATA_EXPIRE
        if args.config is not None:
            retry_data_expire = load_configuration(args.config).main.retry_data_expire
        return tidy(spool, name, max_age, retry_data_expire)

    return run_tool(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
