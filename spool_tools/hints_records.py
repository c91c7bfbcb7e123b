"""The records of each hints database, as the hints tools read and show them.

    shown_key(raw) -> str                      # the key as Exim would print it
    stored_key(text) -> bytes                  # the key an administrator typed, as stored
    dump_lines(kind, key, value) -> [line]     # exim_dumpdb's lines for one record
    record_time(kind, value) -> int | None     # when the record was last written (tidying)
    waiting_ids(value) -> [message id]         # a wait-<transport> record
    misc_time(value) -> int                    # a misc (serialisation) record
    HostKey.parse(key) -> HostKey | None       # T:<host>:<ip>[:<port>][:<id>]
    dump_time(seconds) -> str                  # Exim's time format in its tools

The formats are the writers' (mta.hints.retry_db, mta.hints.ratelimit,
mta.hints.misc, mta.deliver.waiting); a value that is not one of them raises
ValueError, which the tools report as a damaged record instead of showing
garbage.  Message ids are accepted in both lengths (our 23 characters,
Exim 4.96's 16) wherever they appear.
"""

from __future__ import annotations

import ipaddress
import os
import re
import time

from mta import record
from mta.hints import ratelimit
from mta.hints.db import hints_key
from mta.hints.retry_db import decode_record, dumpdb_lines, key_text
from mta.spool.ids import is_message_id


def dump_time(when: float) -> str:
    """Exim's time format in its tools: ``22-Nov-2026 12:43:32``, local time (or UTC, see use_utc)."""
    return time.strftime("%d-%b-%Y %H:%M:%S", time.localtime(when))


def use_utc() -> None:
    """Show every time in UTC (exim_dumpdb's -z): the process's own time zone, nothing else."""
    os.environ["TZ"] = "UTC"
    time.tzset()


def shown_key(raw: bytes) -> str:
    """The key as written before `hints_key` escaped it (``%40`` back to ``@``)."""
    return key_text(raw)


def stored_key(text: str) -> bytes:
    """The key of the record an administrator names by its shown form."""
    return hints_key(text)


def waiting_ids(value: bytes) -> list[str]:
    """The message ids of a wait-<transport> record, oldest first (mta.deliver.waiting's format:
    one id per line).  Read here rather than imported: the tools sit below mta.deliver."""
    if not value:
        return []
    ids = value.decode("ascii", "replace").split("\n")
    for message_id in ids:
        if not is_message_id(message_id):
            raise ValueError(f"{message_id!r} is not a message id")
    return ids


def encode_waiting(ids: list[str]) -> bytes:
    return "\n".join(ids).encode("ascii")


def misc_time(value: bytes) -> int:
    """The time a misc (serialisation) record was made (mta.hints.misc's format: the number)."""
    text = value.decode("ascii", "replace")
    if not text.isdigit() or len(text) > 12:
        raise ValueError(f"{text[:40]!r} is not a time")
    return int(text)


def record_time(kind: str, value: bytes) -> int | None:
    """When the record was last written, for tidying by age; None where the format keeps no time
    (a wait- record: its messages' presence on the spool decides instead)."""
    if kind == "retry":
        return decode_record(value).time_stamp
    if kind == "misc":
        return misc_time(value)
    if kind == "ratelimit":
        return int(ratelimit.decode(value).time)
    return None


def dump_lines(kind: str, key: str, value: bytes) -> list[str]:
    """What exim_dumpdb prints for one record of a database of `kind`; ValueError if damaged."""
    if kind == "retry":
        return dumpdb_lines(key, decode_record(value))
    if kind == "wait":
        # Exim: the host, then each id followed by a space.
        return [f"{key} " + "".join(f"{message_id} " for message_id in waiting_ids(value))]
    if kind == "misc":
        return [f"{dump_time(misc_time(value))} {key}"]
    rec = ratelimit.decode(value)
    head = f"{dump_time(int(rec.time))}.{ratelimit_usec(rec):06d} rate: {rec.rate:10.3f}"
    if rec.bloom_epoch is not None:
        return [f"{head} epoch: {dump_time(rec.bloom_epoch)} size: {len(rec.bloom)} key: {key}"]
    return [f"{head} key: {key}"]


def ratelimit_usec(rec: ratelimit.RatelimitRecord) -> int:
    """The microseconds of the record's time (Exim keeps them in a field of their own)."""
    return min(round((rec.time - int(rec.time)) * 1_000_000), 999_999)


_HOST_PART = re.compile(r"\[[^\]]*\]|[^:\[\]]+")


@record.dataclass(frozen=True, slots=True)
class HostKey:
    """A host retry key, ``T:<host>:<ip>[:<port>][:<message id>]``, in parts.

    `host` and `ip` without the brackets that IP literals and IPv6 addresses
    wear in keys; `ip` is None when the transport has retry_include_ip_address
    off (``T:<host>[:<port>]``).
    """

    host: str
    ip: str | None
    port: int | None
    message_id: str | None

    @classmethod
    def parse(cls, key: str) -> HostKey | None:
        """The parts of `key`, or None when it is not a host key (R: keys, T:<local>@<domain>)."""
        if not key.startswith("T:") or "@" in key.split(":", 2)[1]:
            return None
        parts = _split_key(key[2:])
        if parts is None or not parts:
            return None
        host, rest = _unbracketed(parts[0]), parts[1:]
        ip = None
        if rest and _is_ip(_unbracketed(rest[0])):
            ip = _unbracketed(rest.pop(0))
        port = None
        if rest and rest[0].isdigit() and len(rest[0]) <= 5:
            port = int(rest.pop(0))
        message_id = None
        if rest and is_message_id(rest[0]):
            message_id = rest.pop(0)
        if rest:
            return None
        return cls(host, ip, port, message_id)


def _split_key(body: str) -> list[str] | None:
    """`body` split at the colons outside brackets (an IPv6 address keeps its own)."""
    parts = []
    pos = 0
    while pos < len(body):
        m = _HOST_PART.match(body, pos)
        if m is None:
            return None
        parts.append(m.group())
        pos = m.end()
        if pos < len(body):
            if body[pos] != ":":
                return None
            pos += 1
            if pos == len(body):
                return None  # a trailing colon
    return parts


def _unbracketed(text: str) -> str:
    return text[1:-1] if text.startswith("[") and text.endswith("]") else text


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
