"""Queue runs: which messages to try, in what order, and handing them to delivery (Exim's queue.c).

A run lists the spool in random order, as Exim does (so that one slow or
broken message cannot always go first), and leaves out:

- frozen messages, unless -qff (which thaws them for this attempt);
- messages another process is delivering (their -D is locked);
- with -qi, messages that have been tried before;
- with -R/-S, messages without a pending recipient (or a sender) containing
  the text (``-Rr``/``-Sr``: a regular expression; ``-Rf``/``-Sf``: frozen
  ones too, as Exim's ``f``);
- with start and end ids (``mta -q ID1 ID2``), messages outside that range.

The rest are delivered: in this process for `mta -q` (one asyncio.Runner
for the whole run, so SMTP connections are reused from message to message),
or by the daemon's long-lived workers.  After each delivery, the messages
waiting for a host it reached follow it down the same connection
(mta.queue.wait).  Retry times are the delivery's business (the retry hints
say whether an address or a host may be tried yet); -qf makes the
deliveries ignore them.

Two runs at once never deliver one message twice: a delivery holds the
message's -D lock, and a locked message is skipped.

Diagnostics: ``Start queue run: pid=N`` and ``End queue run: pid=N`` in the
main log, with the flags (``-qf``) as Exim writes them.
"""

from __future__ import annotations

import os
import random
import re
import socket

from mta import process_info, record
from mta.errors import MtaError, SpoolError
from mta.spool.files import NoSuchMessage

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mta.runtime import Runtime
    from mta.spool.envelope import Envelope


@record.dataclass(slots=True)
class Selection:
    """What a queue run takes: the -q flags, -R/-S, and an id range."""

    force: bool = False  # -qf: ignore retry times
    thaw: bool = False  # -qff / -Rf: frozen messages too
    first_only: bool = False  # -qi: only messages never tried
    recipient: str | None = None  # -R
    sender: str | None = None  # -S
    regex: bool = False  # -Rr / -Sr
    start_id: str | None = None  # mta -q START [END]
    end_id: str | None = None

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

    def in_range(self, message_id: str) -> bool:
        if self.start_id is not None and message_id < self.start_id:
            return False
        return self.end_id is None or message_id <= self.end_id

    def _test(self, pattern: str, text: str) -> bool:
        if self.regex:
            try:
                return re.search(pattern, text, re.IGNORECASE) is not None
            except re.error:
                return False
        return pattern.lower() in text.lower()

    def flags_text(self) -> str:
        flags = "f" * (int(self.force) + int(self.thaw)) + ("i" if self.first_only else "")
        text = f" -q{flags}" if flags else ""
        if self.recipient is not None:
            text += f" -R {self.recipient}"
        if self.sender is not None:
            text += f" -S {self.sender}"
        return text


def eligible_messages(runtime: Runtime, selection: Selection) -> list[str]:
    """Message ids the run should try, in random order."""
    spool = runtime.spool
    try:
        ids = [i for i in spool.list_message_ids() if selection.in_range(i)]
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
            # Malformed: nothing can deliver it, but the attempt is what writes the panic-log
            # line that tells the administrator (each run, as Exim logs a format error each
            # time).  A -R/-S run cannot tell whether it would have matched: left alone.
            if selection.recipient is None and selection.sender is None:
                chosen.append(message_id)
            continue
        if selection.matches(envelope):
            chosen.append(message_id)
    return chosen


def delivery_options(selection: Selection) -> dict[str, Any]:
    """Keyword arguments of Delivery for a run with these flags."""
    options: dict[str, Any] = {"forced": selection.thaw}
    from mta.deliver.delivery import Delivery

    if "ignore_retry" in Delivery.__init__.__code__.co_varnames:
        options["ignore_retry"] = selection.force or selection.thaw
    return options


def run_queue(runtime: Runtime, selection: Selection) -> int:
    """`mta -q...` / `-R` / `-S`: one run in this process; the exit status."""
    import asyncio

    from mta.deliver.delivery import Delivery, close_connections
    from mta.queue.wait import deliver_with_followers

    logger = runtime.logger
    logger.main(f"Start queue run: pid={os.getpid()}{selection.flags_text()}")
    options = delivery_options(selection)
    status = 0
    running = f"running queue{selection.flags_text()}"
    process_info.set_activity(running)
    with asyncio.Runner() as runner:
        try:
            for message_id in eligible_messages(runtime, selection):
                deliver_with_followers(
                    runtime, message_id, lambda i: Delivery(runtime, i, loop_runner=runner, **options).run()
                )
                process_info.set_activity(running)  # the delivery said what it was doing
        except MtaError as exc:
            logger.panic(f"queue run stopped: {exc}")
            status = 1
        finally:
            runner.run(close_connections(runtime))
            logger.main(f"End queue run: pid={os.getpid()}{selection.flags_text()}")
    return status


def daemon_queue_run(runtime: Runtime, dispatch: socket.socket, selection: Selection | None = None) -> None:
    """The daemon's run: the chosen ids go to the delivery workers (one datagram each)."""
    selection = selection or Selection()
    process_info.set_activity(f"running queue{selection.flags_text()}: handing messages to the delivery workers")
    logger = runtime.logger
    logger.main(f"Start queue run: pid={os.getpid()}{selection.flags_text()}")
    dispatch.setblocking(True)
    try:
        for message_id in eligible_messages(runtime, selection):
            dispatch.send(message_id.encode("ascii"))
    finally:
        logger.main(f"End queue run: pid={os.getpid()}{selection.flags_text()}")
