"""Queue runs: which messages to try, in what order, and handing them to delivery (Exim's queue.c).

A run lists the spool in random order, as Exim does (so that one slow or
broken message cannot always go first), and leaves out:

- frozen messages, unless -qff (which thaws them for this attempt) or the
  freezing options would act on them;
- messages another process is delivering (their -D is locked);
- with -qi, messages that have been tried before;
- with -R/-S, messages without a pending recipient (or a sender) containing
  the text (``-Rr``/``-Sr``: a regular expression; ``-Rf``/``-Sf``: frozen
  ones too, as Exim's ``f``);
- with start and end ids (``mta -q ID1 ID2``), messages outside that range.

The rest are delivered: in this process for `mta -q` (one DeliveryLoop
for the whole run, so SMTP connections are reused from message to message),
or by the daemon's long-lived workers.  After each delivery, the messages
waiting for a host it reached follow it down the same connection
(mta.queue.wait).  Retry times are the delivery's business (the retry hints
say whether an address or a host may be tried yet); a queue run's attempts
wait for all of them, -qf makes them ignore them (but not a host that
failed since the run began).  A frozen message is handed over when its
attempt would thaw or cancel it (auto_thaw, timeout_frozen_after,
ignore_bounce_errors_after); the daemon's workers get the run's flags with
each id (dispatch_datagram).

Two runs at once never deliver one message twice: a delivery holds the
message's -D lock, and a locked message is skipped.

Diagnostics: ``Start queue run: pid=N`` and ``End queue run: pid=N`` in the
main log, with the flags (``-qf``) as Exim writes them.
"""

from __future__ import annotations

import array
import os
import random
import re
import socket
import time

from mta import process_info, record
from mta.deliver.aging import Frozen, frozen_action
from mta.errors import MtaError, SpoolError
from mta.spool.files import NoSuchMessage
from mta.spool.listing import input_directory_entries

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any

    from mta.config.main import MainOptions
    from mta.runtime import Runtime
    from mta.spool.envelope import Envelope
    from mta.spool.store import Spool


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

    @classmethod
    def from_flags(cls, flags: str) -> Selection:
        """The -q flags as given: -qf, -qff, -qi, -qfi (also those of -bd -qf30m)."""
        return cls(force="f" in flags, thaw=flags.count("f") >= 2, first_only="i" in flags)

    def matches(self, envelope: Envelope, now: float, main: MainOptions) -> bool:
        if envelope.frozen is not None and not self.thaw:
            # Frozen: handed over only when the attempt would do something with it (auto_thaw,
            # timeout_frozen_after, ignore_bounce_errors_after act in the attempt, as Exim's).
            if frozen_action(envelope, main, now, False).action is Frozen.SKIP:
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


def tidy_leftovers(runtime: Runtime) -> None:
    """Remove what crashes left on the spool (Spool.tidy_temporaries), once older than
    spool_tidy_age: without this a -D whose reception was killed stays for ever.  And the
    spare files a larger spool_spare_files left, once it is 0 (mta.spool.spare)."""
    spares = runtime.spool.spare.empty_if_unused()
    if spares:
        runtime.logger.main(f"removed {spares} spare spool file{'s' if spares != 1 else ''}: spool_spare_files is 0")
    age = runtime.config.main.spool_tidy_age
    if not age:
        return
    try:
        removed = runtime.spool.tidy_temporaries(age)
    except SpoolError as exc:
        runtime.logger.panic(f"queue run: cannot tidy the spool: {exc}")
        return
    for path in removed:
        runtime.logger.main(f"removed crash leftover {path.relative_to(runtime.spool.directory)}")


def eligible_messages(runtime: Runtime, selection: Selection) -> Iterator[str]:
    """Message ids the run should try, in random order, each decided when the run reaches it
    (its lock and its -H are looked at then, not all before the first delivery).

    The order is Exim's: input/ first, then the split_spool_directory sub-directories in a
    random order, each read when the run comes to it and its messages taken in a random
    order.  What is held is one directory's ids at a time, 23 bytes each (ShuffledIds):
    the run's memory does not grow with the queue.  A message that arrives in a directory
    after the run has read it waits for the next run, as in Exim."""
    spool = runtime.spool
    now, main = time.time(), runtime.config.main
    try:
        directories = spool.input_directories()
    except SpoolError as exc:
        runtime.logger.panic(f"queue run: cannot list the spool: {exc}")
        return
    if not directories:
        return
    top, *subdirectories = directories
    random.shuffle(subdirectories)
    for directory in (top, *subdirectories):
        try:
            ids = ShuffledIds(
                message_id
                for message_id, is_header in input_directory_entries(directory, directory is top)
                if is_header and selection.in_range(message_id)
            )
        except SpoolError as exc:
            runtime.logger.panic(f"queue run: cannot list the spool: {exc}")
            continue
        for message_id in ids:
            if _eligible(spool, selection, message_id, now, main):
                yield message_id


def _eligible(spool: Spool, selection: Selection, message_id: str, now: float, main: MainOptions) -> bool:
    try:
        if spool.is_locked(message_id):
            return False
        envelope = spool.read_envelope(message_id)
    except NoSuchMessage:
        return False
    except SpoolError:
        # Malformed: nothing can deliver it, but the attempt is what writes the panic-log
        # line that tells the administrator (each run, as Exim logs a format error each
        # time).  A -R/-S run cannot tell whether it would have matched: left alone.
        return selection.recipient is None and selection.sender is None
    return selection.matches(envelope, now, main)


class ShuffledIds:
    """Message ids in a random order, held as one bytearray of 23 bytes an id (an Exim 4.96
    id, of 16, is padded with spaces) and an array of 4-byte indexes: 100,000 ids take
    2.7 MB, where a list of str takes 8 MB."""

    _WIDTH = 23

    def __init__(self, ids: Iterable[str]) -> None:
        self._ids = bytearray()
        for message_id in ids:
            self._ids += message_id.encode("ascii").ljust(self._WIDTH)
        self._order = array.array("I", range(len(self._ids) // self._WIDTH))
        random.shuffle(self._order)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[str]:
        width, ids = self._WIDTH, self._ids
        for index in self._order:
            yield ids[index * width : (index + 1) * width].decode("ascii").rstrip(" ")


def delivery_options(selection: Selection, run_started: float) -> dict[str, Any]:
    """Keyword arguments of Delivery for a message of a run with these flags: a queue run's
    attempt waits for every retry time (routing, addresses, local deliveries, hosts); -qf and
    -qff ignore them, except that a host that failed since the run began is not tried again
    by the same run (one connection per dead host, not one per message)."""
    force = selection.force or selection.thaw
    return {
        "forced": selection.thaw,
        "queue_run": True,
        "ignore_retry": force,
        "run_started": run_started if force else None,
    }


def dispatch_datagram(message_id: str, selection: Selection, run_started: float) -> bytes:
    """What the daemon's run sends a delivery worker: the id, then the run's flags and start."""
    flags = "f" * (int(selection.force) + int(selection.thaw)) or "-"
    return f"{message_id} q{flags} {run_started!r}".encode("ascii")


def parse_dispatch_datagram(data: bytes) -> tuple[str, dict[str, Any]]:
    """(message id, Delivery keyword arguments) from a dispatch datagram: a bare id is a new
    arrival's immediate delivery (not a queue run), and after a newline may come the first line
    of its message log; otherwise dispatch_datagram's form.  The
    sender is the daemon itself (a socketpair), but a malformed datagram still only yields a
    bare id, which delivery checks like any other."""
    head, newline, msglog_first = data.partition(b"\n")
    words = head.decode("ascii", "replace").split()
    if not words:
        return "", {}
    if newline and len(words) == 1:
        # A new arrival whose message log the worker writes, starting with this line, if the
        # attempt leaves anything to log (mta.daemon.receiver, Dispatcher.send).
        first = msglog_first.decode("utf-8", "surrogateescape")
        return words[0], ({"msglog_first": first} if first and not any(c in first for c in "\r\n\0") else {})
    if len(words) == 3 and words[1] in ("q-", "qf", "qff"):
        try:
            started = float(words[2])
        except ValueError:
            return words[0], {}
        flags = words[1][1:].strip("-")
        return words[0], delivery_options(Selection.from_flags(flags), started)
    return words[0], {}


def run_queue(runtime: Runtime, selection: Selection) -> int:
    """`mta -q...` / `-R` / `-S`: one run in this process; the exit status."""
    from mta.deliver.delivery import Delivery
    from mta.deliver.loop import DeliveryLoop
    from mta.queue.wait import deliver_with_followers

    logger = runtime.logger
    logger.main(f"Start queue run: pid={os.getpid()}{selection.flags_text()}")
    options = delivery_options(selection, time.time())
    status = 0
    running = f"running queue{selection.flags_text()}"
    process_info.set_activity(running)
    tidy_leftovers(runtime)
    with DeliveryLoop(runtime) as runner:
        # A message that went as a follower is not tried again when the run reaches it.  The
        # run reaches each id once, so an id is dropped from the set then: what the set holds
        # is the followers still ahead, not every message of the run.
        attempted: set[str] = set()
        try:
            for message_id in eligible_messages(runtime, selection):
                if message_id in attempted:
                    attempted.discard(message_id)
                    continue
                deliver_with_followers(
                    runtime,
                    message_id,
                    lambda i: Delivery(runtime, i, loop_runner=runner, **options).run(),
                    attempted=attempted,
                )
                attempted.discard(message_id)
                process_info.set_activity(running)  # the delivery said what it was doing
        except MtaError as exc:
            logger.panic(f"queue run stopped: {exc}")
            status = 1
        finally:
            runner.close()
            logger.main(f"End queue run: pid={os.getpid()}{selection.flags_text()}")
    return status


def daemon_queue_run(runtime: Runtime, dispatch: socket.socket, selection: Selection | None = None) -> None:
    """The daemon's run: the chosen ids go to the delivery workers (one datagram each)."""
    selection = selection or Selection()
    process_info.set_activity(f"running queue{selection.flags_text()}: handing messages to the delivery workers")
    logger = runtime.logger
    logger.main(f"Start queue run: pid={os.getpid()}{selection.flags_text()}")
    dispatch.setblocking(True)
    started = time.time()
    try:
        tidy_leftovers(runtime)
        for message_id in eligible_messages(runtime, selection):
            dispatch.send(dispatch_datagram(message_id, selection, started))
    finally:
        logger.main(f"End queue run: pid={os.getpid()}{selection.flags_text()}")
