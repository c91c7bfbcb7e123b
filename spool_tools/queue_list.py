"""`mta -bp` / `mailq`: list the queue in Exim's format.

    25m  2.9K 1xV6uq-000000005Vj-1t2a <alice@example.com> *** frozen ***
            D carol@example.org
              bob@example.net

Flags (the letters after -bp, in Exim's grammar: ``-bpc``, or
``-bp[r][u|a|i]``): ``c`` count only, ``i`` ids only, ``r`` unsorted (the
order the spool directories return: no sort on a large queue), ``u``
undelivered recipients only, ``a`` also the delivered addresses that are
not recipients (made by aliases and forwards: ``+D``).  Arguments restrict
the listing to those message ids.  With `json_lines` (``mailq --json``) each message is
one JSON object instead (spool_tools.queue_json).

A recipient is shown delivered (``D``) when it is in the -H's
non-recipients list or in the -J journal of an attempt still running or
cut short by a crash.  Both hold a delivered top-level recipient spelt
exactly as in the recipient list (the journal also has the routing key,
which may be lower-cased), and the comparison is exact, as Exim's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

from mta.errors import SpoolError
from mta.spool.files import write_all
from mta.spool.ids import is_message_id, message_time
from mta.spool.listing import list_messages, read_listed
from mta.spool.store import NoSuchMessage

if TYPE_CHECKING:
    from mta.spool.format import Envelope
    from mta.spool.store import Spool

USAGE = """\
usage: mailq [-C FILE | --spool DIR] [-bp|-bpa|-bpc|-bpi|-bpu|-bpr|-bpra|-bpri|-bpru] [--json] [ID ...]
  (the same as mta -bp...)
  -bp      every message, oldest first: age, size, id, sender, then each recipient
           ("D" when delivered) and a blank line, as Exim lists it
  -bpu     only the recipients still to be delivered
  -bpa     also the delivered addresses that are not recipients ("+D")
  -bpc     the number of messages;  -bpi: their ids
  -bpr...  unsorted (the order of the spool directory): -bpr, -bpra, -bpri, -bpru
  --json   one JSON object per message, as Postfix's postqueue -j
  ID ...   only these messages (23-character ids, or Exim 4.96's 16)
  -C FILE  the configuration;  --spool DIR: the spool, without a configuration
"""


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


_CHUNK = 500  # messages a write
_PARALLEL_FROM = 20_000  # messages: below this, one process is done before a second would help


def list_queue(
    spool: Spool,
    flags: str,
    ids: list[str],
    out: TextIO,
    now: float | None = None,
    json_lines: bool = False,
    parallel_from: int = _PARALLEL_FROM,
) -> int:
    """List the queue as -bp`flags` asks; `ids` restrict it (SpoolError for one that is not a message id).
    `parallel_from`: see _write_listing.

    Written in chunks of many messages: a queue of 100,000 is listed in a few seconds, and
    the output goes through mta.printable's stream as a few hundred writes, not 300,000."""
    for word in ids:
        if not is_message_id(word):
            raise SpoolError(
                f'"{word}" is not a message id (23 characters as mta makes them, '
                "or Exim 4.96's 16, such as 1xV6uq-0005Vj-1t)"
            )
    now = time.time() if now is None else now
    try:
        listing = list_messages(spool, ordered="r" not in flags)
    except SpoolError as exc:
        raise SpoolError(f"cannot list the queue: {exc}") from None
    if ids:
        wanted = set(ids)
        listing = [listed for listed in listing if listed[0] in wanted]
    if json_lines:
        return _list_json(spool, listing, "u" in flags, out)
    if "c" in flags:
        out.write(f"{len(listing)}\n")
        return 0
    if "i" in flags:
        for start in range(0, len(listing), _CHUNK):
            out.write("".join(listed[0] + "\n" for listed in listing[start : start + _CHUNK]))
        return 0
    _write_listing(spool, listing, out, now, "u" in flags, "a" in flags, parallel_from)
    return 0


def _listing_chunks(
    spool: Spool, listing: list[tuple[str, str, bool]], now: float, undelivered_only: bool, generated: bool
) -> Iterator[str]:
    """The -bp text of the messages, _CHUNK messages a piece."""
    chunk: list[str] = []
    for message_id, listed in read_messages(spool, listing):
        if isinstance(listed, str):
            age = format_age(now - message_time(message_id))
            chunk.append(f"{age}       {message_id} *** spool read error: {listed} ***\n\n")
        else:
            envelope, size, delivered = listed
            chunk.append(format_message(envelope, size, delivered, now, undelivered_only, generated))
        if len(chunk) >= _CHUNK:
            yield "".join(chunk)
            chunk.clear()
    yield "".join(chunk)


def _write_listing(
    spool: Spool,
    listing: list[tuple[str, str, bool]],
    out: TextIO,
    now: float,
    undelivered_only: bool,
    generated: bool,
    parallel_from: int,
) -> None:
    """Write the -bp text of the messages.  A big queue is read by two processes on a machine
    with two CPUs or more: reading and parsing 100,000 -H files is CPU work, and halving it
    is what lists such a queue in a few seconds.  A forked child does the first half into a
    memory file while this process does the second; the text is written in order, by this
    process only.  If the child fails, this process does its half itself (any error it meets
    is then reported as usual).  `parallel_from`: the number of messages from which it forks."""
    if len(listing) < parallel_from or not hasattr(os, "memfd_create") or len(os.sched_getaffinity(0)) < 2:
        for text in _listing_chunks(spool, listing, now, undelivered_only, generated):
            out.write(text)
        return
    half = len(listing) // 2
    first, second = listing[:half], listing[half:]
    memory = os.memfd_create("mta-bp", os.MFD_CLOEXEC)
    out.flush()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child leaves by os._exit, which coverage cannot follow
        status = 1
        try:
            for text in _listing_chunks(spool, first, now, undelivered_only, generated):
                write_all(memory, text.encode("utf-8", "surrogateescape"))
            status = 0
        finally:
            os._exit(status)  # neither tracebacks nor buffers: this process's output is the parent's
    try:
        mine = list(_listing_chunks(spool, second, now, undelivered_only, generated))
    finally:
        _, status = os.waitpid(child, 0)
    try:
        if status == 0:
            size = os.fstat(memory).st_size
            out.write(os.pread(memory, size, 0).decode("utf-8", "surrogateescape"))
        else:
            for text in _listing_chunks(spool, first, now, undelivered_only, generated):
                out.write(text)
    finally:
        os.close(memory)
    for text in mine:
        out.write(text)


def format_message(
    envelope: Envelope,
    size: int,
    delivered: set[str],
    now: float,
    undelivered_only: bool = False,
    generated: bool = False,
    extra_lines: list[str] | None = None,
) -> str:
    """One message as -bp shows it: the age, size, id and sender line, the recipients ("D" for
    delivered; left out with `undelivered_only`), with `generated` (-bpa) the delivered addresses
    that are not recipients ("+D": made by aliases and forwards), and a blank line."""
    line = (
        f"{format_age(now - envelope.received_time)} {format_size(size)} {envelope.message_id} "
        f"<{envelope.sender_address}>"
    )
    if envelope.sender_set_untrusted:
        line += f" ({envelope.originator_login})"
    if envelope.frozen is not None:
        line += " *** frozen ***"
    lines = [line, *(extra_lines or ())]
    for recipient in envelope.recipients:
        done = recipient.address in delivered
        if not (done and undelivered_only):
            lines.append(f"        {'D' if done else ' '} {recipient.address}")
    if generated:
        # Exim walks its tree of delivered addresses in order: byte order of the addresses.
        others = delivered - {r.address for r in envelope.recipients}
        lines.extend(f"       +D {address}" for address in sorted(others, key=_spool_bytes))
    return "\n".join(lines) + "\n\n"


def _spool_bytes(address: str) -> bytes:
    return address.encode("utf-8", "surrogateescape")


def read_messages(
    spool: Spool, listing: list[tuple[str, str, bool]], headers: bool = False
) -> Iterator[tuple[str, tuple[Envelope, int, set[str]] | str]]:
    """Each message's (envelope, size, delivered addresses), or what stops it being read, for
    the messages of a `list_messages(spool)`; the envelopes have their headers only if
    `headers` (-bp shows none: read without them, a big queue lists faster).  A message
    delivered and removed while we list is skipped; an -H without its -D is not deliverable
    but still there, so it is shown with the fault, never hidden."""
    for message_id, directory, has_journal in listing:
        try:
            envelope, body_size, journal = read_listed(spool, message_id, directory, has_journal, headers)
        except NoSuchMessage:
            if spool.exists(message_id):
                yield message_id, f"data file {message_id}-D is missing"
            continue
        except SpoolError as exc:
            yield message_id, str(exc)
            continue
        delivered = set(envelope.non_recipients)
        delivered.update(journal)
        yield message_id, (envelope, envelope.header_size() + body_size + 1, delivered)


def _list_json(spool: Spool, listing: list[tuple[str, str, bool]], undelivered_only: bool, out: TextIO) -> int:
    from spool_tools.queue_json import error_object, json_line, message_object

    for message_id, listed in read_messages(spool, listing):
        if isinstance(listed, str):
            out.write(json_line(error_object(message_id, listed)))
        else:
            out.write(json_line(message_object(spool, *listed, undelivered_only)))
    return 0


if __name__ == "__main__":
    # `python -m spool_tools.queue_list` is mailq.  Its command line is mta's, so the entry
    # point is mta's (an entry point, not a library import: the floors are not crossed).
    import sys

    from mta.cli import mailq_main

    sys.argv[0] = "mailq"
    sys.exit(mailq_main())
