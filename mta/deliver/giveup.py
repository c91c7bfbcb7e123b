"""Giving up on a message (`mta -Mg`): every recipient not yet delivered fails, with a bounce.

Exim's deliver_message with give_up set, whose effect its test suite shows
(test 0176): the main log and msglog get ``cancelled by <user>``; no
routing or transport is tried; each pending recipient goes into one
bounce to the sender (or to its own errors address), in which the address
is listed without a reason -- Exim keeps "delivery cancelled by
administrator" out of the report -- and there is no ``**`` line for it; then
``Completed`` and the message is removed.  A message whose sender is empty
(a bounce or a warning) is simply discarded: a bounce never bounces.  A
recipient whose DSN NOTIFY did not ask for failures gets no report.

Recipients already delivered are those in the -H's non-recipients list or
in a -J left by a crashed attempt: they are never reported as failed.

Crash safety: the bounce is on the spool (fsynced) before the message is
removed, so a crash in between can at worst send a second bounce when an
administrator repeats the command, never lose the report.

Errors: LockedError when another process is working on the message,
NoSuchMessage when it is not there, SpoolFormatError when its files are
damaged (nothing is done: which recipients were delivered is unknown),
SpoolError/SubmissionError when the bounce cannot be spooled (the message
is left as it was).
"""

from __future__ import annotations

import time

from mta.deliver.bounce import FailedAddress, send_bounces
from mta.errors import MtaError, SpoolError
from mta.log import log_timestamp

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from mta.runtime import Runtime
    from mta.spool.envelope import Recipient


def give_up(runtime: Runtime, message_id: str, user_name: str, *, now: float | None = None) -> list[str]:
    """Fail every pending recipient of `message_id` and remove it; return the ids of the bounces
    spooled (not yet delivered: the caller delivers them, or leaves them for the queue)."""
    spool = runtime.spool
    with spool.lock(message_id):
        envelope = spool.read_envelope(message_id)
        done = set(envelope.non_recipients) | set(spool.read_journal(message_id))
        pending = [r for r in envelope.recipients if r.address not in done]
        _log(runtime, message_id, f"cancelled by {user_name}")
        failures = [_failure(r) for r in pending if r.wants_failure_report()]
        bounces: list[str] = []
        if failures and envelope.sender_address:
            stamp = time.time() if now is None else now
            try:
                bounces = send_bounces(runtime, envelope, failures, now=stamp)
            except MtaError as exc:
                # Said in the log too, or "cancelled by" would stand there without an outcome.
                _log(runtime, message_id, f"bounce not spooled ({exc}): message left on the queue")
                raise
        _log(runtime, message_id, "Completed")
        spool.remove_message(message_id, preserve_msglog=runtime.config.main.preserve_message_logs)
    return bounces


def _failure(recipient: Recipient) -> FailedAddress:
    return FailedAddress(
        address=recipient.address,
        final_address=recipient.address,
        message="",  # Exim: the reason is not given in the report
        errors_to=recipient.errors_to or None,
        original_recipient=recipient.orcpt or None,
    )


def _log(runtime: Runtime, message_id: str, text: str) -> None:
    """A line in the main log and, as for a delivery, in the message's own log."""
    runtime.logger.main(text, message_id)
    if runtime.config.main.message_logs:
        try:
            runtime.spool.append_msglog(message_id, f"{log_timestamp()} {text}")
        except SpoolError as exc:
            runtime.logger.main(f"cannot write message log: {exc}", message_id)
