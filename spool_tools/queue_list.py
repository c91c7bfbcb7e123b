"""`mta -bp` / `mailq`: list the queue in Exim's format.

    25m  2.9K 1xV6uq-000000005Vj-1t2a <alice@example.com> *** frozen ***
            D carol@example.org
              bob@example.net

Flags (the letters after -bp): ``c`` count only, ``i`` ids only, ``r``
unsorted (the order the spool directories return, as Exim's -bpr: no sort
on a large queue), ``u`` undelivered recipients only, ``a`` also generated
addresses (accepted; we keep none in -H).  Arguments restrict the listing
to those message ids.  With `json_lines` (``mailq --json``) each message is
one JSON object instead (spool_tools.queue_json).

A recipient is shown delivered (``D``) when it is in the -H's
non-recipients list or in the -J journal of an attempt still running or
cut short by a crash.  Both hold a delivered top-level recipient spelt
exactly as in the recipient list (the journal also has the routing key,
which may be lower-cased), and the comparison is exact, as Exim's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

from mta.errors import SpoolError
from mta.spool.ids import message_time
from mta.spool.store import NoSuchMessage, Spool

if TYPE_CHECKING:
    from mta.config.loader import Config
    from mta.spool.format import Envelope


def format_age(seconds: float) -> str:
    """Exim's age column: minutes up to 90, then hours up to 72, then days."""
    minutes = int(max(seconds, 0) // 60)
    if minutes <= 90:
        return f"{minutes:2d}m"
    hours = (minutes + 30) // 60
    if hours <= 72:
        return f"{hours:2d}h"
    return f"{(hours + 12) // 24:2d}d"


def format_size(size: int) -> str:
    """Exim's 5-character size column (string_format_size: whole K and M are rounded, not cut)."""
    if size <= 0:
        return "     "
    if size < 1024:
        return f"{size:5d}"
    if size < 10 * 1024:
        return f"{size / 1024:4.1f}K"
    if size < 1024 * 1024:
        return f"{(size + 512) // 1024:4d}K"
    if size < 10 * 1024 * 1024:
        return f"{size / (1024 * 1024):4.1f}M"
    return f"{(size + 512 * 1024) // (1024 * 1024):4d}M"


def message_size(spool: Spool, envelope: Envelope) -> int:
    """Live headers + the blank line + the body: the S= of the arrival log line."""
    return envelope.header_size() + spool.body_size(envelope.message_id) + 1


def delivered_addresses(spool: Spool, envelope: Envelope) -> set[str]:
    """Delivered recipients: the -H non-recipients tree plus any -J journal of a crashed attempt."""
    return set(envelope.non_recipients) | set(spool.read_journal(envelope.message_id))


def list_queue(
    config: Config, flags: str, ids: list[str], out: TextIO, now: float | None = None, json_lines: bool = False
) -> int:
    spool = Spool(config.main.spool_directory, split=config.main.split_spool_directory)
    now = time.time() if now is None else now
    try:
        all_ids = spool.list_message_ids(ordered="r" not in flags)
    except SpoolError as exc:
        raise SpoolError(f"cannot list the queue: {exc}") from None
    if ids:
        wanted = set(ids)
        all_ids = [i for i in all_ids if i in wanted]
    if json_lines:
        return _list_json(spool, all_ids, "u" in flags, out)
    if "c" in flags:
        out.write(f"{len(all_ids)}\n")
        return 0
    if "i" in flags:
        for message_id in all_ids:
            out.write(message_id + "\n")
        return 0
    for message_id, listed in _read_all(spool, all_ids):
        if isinstance(listed, str):
            age = format_age(now - message_time(message_id))
            out.write(f"{age}       {message_id} *** spool read error: {listed} ***\n\n")
            continue
        envelope, size, delivered = listed
        age = format_age(now - envelope.received_time)
        line = f"{age} {format_size(size)} {message_id} <{envelope.sender_address}>"
        if envelope.sender_set_untrusted:
            line += f" ({envelope.originator_login})"
        if envelope.frozen is not None:
            line += " *** frozen ***"
        out.write(line + "\n")
        for recipient in envelope.recipients:
            done = recipient.address in delivered
            if done and "u" in flags:
                continue
            out.write(f"        {'D' if done else ' '} {recipient.address}\n")
        out.write("\n")
    return 0


def _read_all(spool: Spool, message_ids: list[str]) -> Iterator[tuple[str, tuple[Envelope, int, set[str]] | str]]:
    """Each message's (envelope, size, delivered addresses), or what stops it being read.  A
    message delivered and removed while we list is skipped; an -H without its -D is not
    deliverable but still there, so it is shown with the fault, never hidden."""
    for message_id in message_ids:
        try:
            envelope = spool.read_envelope(message_id)
            yield message_id, (envelope, message_size(spool, envelope), delivered_addresses(spool, envelope))
        except NoSuchMessage:
            if spool.exists(message_id):
                yield message_id, f"data file {message_id}-D is missing"
        except SpoolError as exc:
            yield message_id, str(exc)


def _list_json(spool: Spool, message_ids: list[str], undelivered_only: bool, out: TextIO) -> int:
    from spool_tools.queue_json import error_object, json_line, message_object

    for message_id, listed in _read_all(spool, message_ids):
        if isinstance(listed, str):
            out.write(json_line(error_object(message_id, listed)))
        else:
            out.write(json_line(message_object(spool, *listed, undelivered_only)))
    return 0
