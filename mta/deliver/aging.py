"""What a message's age decides: frozen messages (thaw, cancel) and delay warnings.

    frozen_action(envelope, main_options, now, forced) -> FrozenAction
    warnings_due(delay_warning, queue_time) -> (count, show_time)
    send_due_warning(runtime, envelope, deferred, expand, now) -> message id | None

Both run inside a delivery attempt (mta.deliver.delivery), as in Exim's
deliver_message: the freezing rules when an attempt starts on a frozen
message, the warning when an attempt ends with addresses still deferred.
A message that no attempt looks at is not aged: a queue run must hand
frozen messages to delivery for auto_thaw and timeout_frozen_after to work
(docs/retry.md).

Freezing rules, in Exim's order (message age counts from arrival):

1. timeout_frozen_after > 0 and the message is at least that old: the
   message is cancelled ("cancelled by timeout_frozen_after"); its
   recipients fail with "delivery cancelled; message timed out" and are
   bounced, or, for a bounce, dropped.
2. A bounce (sender <>) at least ignore_bounce_errors_after old: thawed
   ("Unfrozen by errmsg timer") and tried once more; the delivery code
   discards it if it fails again.
3. Otherwise a frozen message stays frozen ("Message is frozen") unless the
   attempt is forced ("Unfrozen by forced delivery"), or it is not a bounce
   and auto_thaw has passed since it was frozen ("Unfrozen by auto-thaw").

Delay warnings (Exim's arithmetic): with ``delay_warning = t1:t2:...:tn``,
the number of warnings due after a time q on the queue is the number of
``ti <= q``, plus, once q is past tn, one per further gap ``tn - t(n-1)``
(or tn for a single time).  The -H file's warning count says how many were
sent; one warning brings it up to date.  None is sent for a bounce, when
every deferral was a "retry time not reached" (nothing new was tried), when
delay_warning_condition says no, or for a recipient whose DSN NOTIFY left
out DELAY (RFC 3461).
"""

from __future__ import annotations

import enum

from mta import record
from mta.errors import ExpansionError, MtaError

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from mta.config.main import MainOptions
    from mta.errors import DeferError
    from mta.route.item import AddressItem
    from mta.runtime import Runtime
    from mta.spool.envelope import Envelope

# -H recipient DSN bits (mta.receive.smtp_commands): NOTIFY given at all, and DELAY in it.
_DSN_HAS_NOTIFY, _DSN_NOTIFY_DELAY = 0x10, 0x04
_RETRY_ERRNOS = (-53, -54)  # local and host "retry time not reached": nothing was tried


class Frozen(enum.Enum):
    SKIP = "skip"  # leave it frozen
    THAW = "thaw"  # deliver it now
    CANCEL = "cancel"  # fail (or drop) every recipient


@record.dataclass(frozen=True, slots=True)
class FrozenAction:
    action: Frozen
    log: str  # the main-log line
    manual: bool = False  # thawed by an administrator (-manual_thaw in -H)


def frozen_action(envelope: Envelope, main: MainOptions, now: float, forced: bool) -> FrozenAction:
    """What an attempt does with a frozen message (see the module docstring)."""
    age = now - envelope.received_time
    bounce = envelope.sender_address == ""
    if main.timeout_frozen_after > 0 and age >= main.timeout_frozen_after:
        return FrozenAction(Frozen.CANCEL, "cancelled by timeout_frozen_after")
    if bounce and age >= main.ignore_bounce_errors_after:
        return FrozenAction(Frozen.THAW, "Unfrozen by errmsg timer")
    frozen_at = envelope.frozen if envelope.frozen is not None else now
    if forced:
        return FrozenAction(Frozen.THAW, "Unfrozen by forced delivery", manual=True)
    if not bounce and main.auto_thaw > 0 and now > frozen_at + main.auto_thaw:
        return FrozenAction(Frozen.THAW, "Unfrozen by auto-thaw")
    return FrozenAction(Frozen.SKIP, "Message is frozen")


def ignore_bounce_errors(envelope: Envelope, main: MainOptions, now: float) -> bool:
    """A failing bounce this old is discarded rather than frozen."""
    return envelope.sender_address == "" and now - envelope.received_time >= main.ignore_bounce_errors_after


# -- delay warnings -------------------------------------------------------------


def warnings_due(delays: tuple[int, ...], queue_time: int) -> tuple[int, int]:
    """(how many warnings are due after `queue_time`, the delay the latest one reports)."""
    if not delays:
        return 0, 0
    count = sum(1 for t in delays if queue_time >= t)
    if count == 0:
        return 0, 0
    show = delays[count - 1]
    if count == len(delays):
        gap = delays[-1] - delays[-2] if len(delays) > 1 else delays[-1]
        extra = (queue_time - delays[-1]) // gap
        show += gap * extra
        count += extra
    return count, show


def _notify_delay(flags: int) -> bool:
    """RFC 3461: without NOTIFY the default applies (warnings allowed); with it, only if DELAY is listed."""
    return not flags & _DSN_HAS_NOTIFY or bool(flags & _DSN_NOTIFY_DELAY)


def send_due_warning(
    runtime: Runtime,
    envelope: Envelope,
    deferred: list[tuple[AddressItem, DeferError]],
    expand: Callable[[str], str],
    now: float,
    arrival: float | None = None,
) -> str | None:
    """Send the delay warning that is due at `now`, if any; count it in `envelope` and return its id.

    `arrival` is when the warning itself arrives (default `now`): the clock at
    the end of an attempt, which may have run for a while since `now`.
    """
    delays = runtime.config.main.delay_warning
    if not delays or not envelope.sender_address or not deferred:
        return None
    if all(error.errno in _RETRY_ERRNOS for _item, error in deferred):
        return None
    count, show = warnings_due(delays, int(now - envelope.received_time))
    if count <= envelope.warning_count:
        return None
    pending = []
    for item, _error in deferred:
        index = item.top.original_index
        recipient = envelope.recipients[index] if 0 <= index < len(envelope.recipients) else None
        if recipient is not None and not _notify_delay(recipient.dsn_flags):
            continue
        if item.top.address not in pending:
            pending.append(item.top.address)
    if not pending or not _condition(runtime, runtime.config.main.delay_warning_condition, expand):
        return None
    from mta.deliver.bounce import send_delay_warning

    try:
        warning_id = send_delay_warning(runtime, envelope, pending, delay=show, now=now if arrival is None else arrival)
    except MtaError as exc:
        # Not sent: the count stays, so the next attempt that defers tries again.
        runtime.logger.panic(f"delay warning not sent: {exc}", envelope.message_id)
        return None
    if warning_id is not None:
        envelope.warning_count = count
    return warning_id


def _condition(runtime: Runtime, text: str, expand: Callable[[str], str]) -> bool:
    if not text:
        return True
    try:
        value = expand(text)
    except ExpansionError as exc:
        if not exc.forced:
            runtime.logger.panic(f"failed to expand delay_warning_condition: {exc.message}")
        return False
    return value.strip().lower() not in ("", "0", "no", "false")
