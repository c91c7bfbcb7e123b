"""Queue runs: which messages to try, and handing them to delivery (Exim's queue.c).

A run lists the spool (in random order, as Exim does, so that one slow
message cannot always go first), leaves out frozen messages (unless -qff)
and those another process is delivering (their -D is locked), and
delivers the rest: in this process for `mta -q`, or through the daemon's
worker pool for the daemon's -q interval.  ``-R``/``-S`` keep only messages
with a recipient (or sender) containing the text (``-Rr``/``-Sr``: a
regular expression).

Diagnostics: ``Start queue run: pid=N`` and ``End queue run: pid=N`` in the
main log, with the flags (``-qf``) as Exim writes them.
"""

from __future__ import annotations

import os
import random
import re
import socket

from mta import record
from mta.errors import MtaError, SpoolError
from mta.spool.files import NoSuchMessage

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from mta.runtime import Runtime
    from mta.spool.envelope import Envelope


@record.dataclass(slots=True)
class Selection:
    """What a queue run takes: the -q flags and -R/-S."""

    force: bool = False  # -qf: ignore retry times
    thaw: bool = False  # -qff: frozen messages too
    first_only: bool = False  # -qi: only messages never tried
    recipient: str | None = None  # -R
    sender: str | None = None  # -S
    regex: bool = False  # -Rr / -Sr

    def matches(self, envelope: Envelope) -> bool:
        if envelope.frozen is not None and not self.thaw:
            return False
        if self.first_only and not envelope.deliver_firsttime:
            return False
        if self.recipient is not None:
            pending = [r.address for r in envelope.pending_recipients()]
            if not any(self._test(self.recipient, address) for address in pending):
                return False
        return self.sender is None or self._test(self.sender, envelope.sender_address)

    def _test(self, pattern: str, text: str) -> bool:
        if self.regex:
            return re.search(pattern, text, re.IGNORECASE) is not None
        return pattern.lower() in text.lower()


def eligible_messages(runtime: Runtime, selection: Selection) -> list[str]:
    """Message ids the run should try, in random order."""
    spool = runtime.spool
    try:
        ids = spool.list_message_ids()
    except SpoolError as exc:
        runtime.logger.panic(f"queue run: cannot list the spool: {exc}")
        return []
    random.shuffle(ids)
    chosen = []
    for message_id in ids:
        try:
            if spool.is_locked(message_id):
                continue
            envelope = spool.read_envelope(message_id)
        except NoSuchMessage:
            continue
        except SpoolError:
            continue  # malformed: frozen in effect; -bp shows it, delivery would refuse it
        if selection.matches(envelope):
            chosen.append(message_id)
    return chosen


def _flags_text(selection: Selection) -> str:
    flags = "f" * (int(selection.force) + int(selection.thaw)) + ("i" if selection.first_only else "")
    return f" -q{flags}" if flags else ""


def run_queue(runtime: Runtime, selection: Selection) -> int:
    """`mta -q...` / `-R` / `-S`: one run in this process; the exit status."""
    from mta.deliver.delivery import deliver_messages

    logger = runtime.logger
    logger.main(f"Start queue run: pid={os.getpid()}{_flags_text(selection)}")
    ids = eligible_messages(runtime, selection)
    try:
        deliver_messages(runtime, ids, forced=selection.thaw)
    except MtaError as exc:
        logger.panic(f"queue run stopped: {exc}")
        return 1
    finally:
        logger.main(f"End queue run: pid={os.getpid()}{_flags_text(selection)}")
    return 0


def daemon_queue_run(runtime: Runtime, dispatch: socket.socket, selection: Selection | None = None) -> None:
    """The daemon's run: the chosen ids go to the delivery workers (one datagram each)."""
    selection = selection or Selection()
    logger = runtime.logger
    logger.main(f"Start queue run: pid={os.getpid()}{_flags_text(selection)}")
    dispatch.setblocking(True)
    try:
        for message_id in eligible_messages(runtime, selection):
            dispatch.send(message_id.encode("ascii"))
    finally:
        logger.main(f"End queue run: pid={os.getpid()}{_flags_text(selection)}")
