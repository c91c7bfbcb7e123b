"""Acting on a queued message by id: Exim's -Mf, -Mt, -Mrm, -Mar, -Mmd, -Mmad, -Mes.

Each action takes the message's lock first, as a delivery does, so that it
never changes a message while a delivery is working on it (ActionError
"is locked"); changes -H only through `Spool.rewrite_envelope` (a new file
fsynced and renamed over the old: a crash leaves the old -H or the new one);
then writes Exim's log line in the main log and in the message's own log,
and returns the line Exim prints on standard output ("is now frozen",
"has been modified" ...).  Exim's wording is from its queue.c
(queue_action) and test suite.

A -J left by a crashed delivery is left alone: it stays the record of what
was delivered, and the next delivery merges it into -H.  An action that
needs to know which recipients are delivered reads it too.

Who may do what is one rule, `refusal`, which mta -M... (mta.cli_messages)
and the web monitor (spool_tools.monitor) both ask: everything needs an
administrator, except that -M and -Mc follow prod_requires_admin, and that
the user who sent a message may remove it (`remove` checks the -H's uid
against the caller's).

Errors: ActionError, one line naming the message, for anything that stops
an action; nothing is changed then.  All the addresses given to -Mar and
-Mmd are checked before any is applied (Exim applies the good ones and
logs them even when it then refuses to save the message).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from mta import record
from mta.errors import AddressError, LockedError, MtaError, SpoolError, SpoolFormatError
from mta.log import log_timestamp
from mta.message.address import parse_envelope_address, parse_header_addresses, split_address
from mta.spool.envelope import Envelope, Recipient
from mta.spool.files import NoSuchMessage

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from mta.config.caller import Caller
    from mta.log import Logger
    from mta.spool.store import Spool


# What a refusal names, by the letters after -M.
DOING = {
    "f": "freeze messages", "t": "thaw messages", "g": "give up on messages", "mad": "mark messages delivered",
    "ar": "add recipients", "md": "mark recipients delivered", "es": "change a sender",
    "vh": "read queued messages", "vb": "read queued messages", "vl": "read queued messages",
    "vc": "read queued messages",
}


def refusal(flags: str, admin: bool, prod_requires_admin: bool) -> str | None:
    """Why a caller may not use -M`flags` ("" for -M, "f" for -Mf ...), or None when they may.
    A non-administrator's -Mrm is allowed here: `remove` refuses messages they did not send."""
    if flags in ("", "c"):
        return "permission denied: only administrators may do that" if prod_requires_admin and not admin else None
    if flags == "rm" or admin:
        return None
    return f"permission denied: only administrators may {DOING[flags]}"


class ActionError(MtaError):
    """An action on one message could not be done; `str()` is the line for standard error."""


@record.dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting, and on which spool and logs."""

    spool: Spool
    logger: Logger
    caller: Caller
    admin: bool
    message_logs: bool = True
    preserve_message_logs: bool = False
    # How the action came, when not from the command line: "mta-monitor, 127.0.0.1" gives
    # "frozen by alice (mta-monitor, 127.0.0.1)".
    via: str = ""

    @property
    def name(self) -> str:
        return f"{user_name(self.caller)} ({self.via})" if self.via else user_name(self.caller)

    def log(self, message_id: str, text: str) -> None:
        """One line in the main log and, unless message_logs is off, the message log."""
        self.logger.main(text, message_id)
        if self.message_logs:
            try:
                self.spool.append_msglog(message_id, f"{log_timestamp()} {text}")
            except SpoolError as exc:
                self.logger.main(f"cannot write message log: {exc}", message_id)


def user_name(caller: Caller) -> str:
    """The caller as Exim's log lines name them ("frozen by root"): the login, or "uid N"
    for a uid with no passwd entry."""
    return caller.login if caller.login != str(caller.uid) else f"uid {caller.uid}"


@contextmanager
def locked_envelope(actor: Actor, message_id: str) -> Iterator[Envelope]:
    """The message's -H, read under its lock; the lock is held until the block ends."""
    try:
        lock = actor.spool.lock(message_id)
    except LockedError:
        raise ActionError(f"message {message_id} is locked (being delivered by another process)") from None
    except NoSuchMessage:
        raise ActionError(f"message {message_id} is not on the spool") from None
    except SpoolError as exc:
        raise ActionError(f"message {message_id}: {exc}") from None
    with lock:
        try:
            envelope = actor.spool.read_envelope(message_id)
        except NoSuchMessage:
            raise ActionError(f"message {message_id} is not on the spool") from None
        except SpoolFormatError as exc:
            raise ActionError(f"message {message_id} cannot be changed: {exc}") from None
        except SpoolError as exc:
            raise ActionError(f"message {message_id}: {exc}") from None
        yield envelope


def _save(actor: Actor, envelope: Envelope) -> None:
    try:
        actor.spool.rewrite_envelope(envelope)
    except SpoolError as exc:
        raise ActionError(f"message {envelope.message_id} was not changed: {exc}") from None


# -- freezing ----------------------------------------------------------------------------


def freeze(actor: Actor, message_id: str, now: float | None = None) -> str:
    with locked_envelope(actor, message_id) as envelope:
        if envelope.frozen is not None:
            raise ActionError(f"message {message_id} is already frozen")
        envelope.frozen = int(time.time() if now is None else now)
        envelope.manual_thaw = False
        _save(actor, envelope)
        actor.log(message_id, f"frozen by {actor.name}")
    return f"Message {message_id} is now frozen"


def thaw(actor: Actor, message_id: str) -> str:
    with locked_envelope(actor, message_id) as envelope:
        if envelope.frozen is None:
            raise ActionError(f"message {message_id} is not frozen")
        envelope.frozen = None
        # As Exim: a message thawed by hand is not frozen again by auto_thaw's rules.
        envelope.manual_thaw = True
        _save(actor, envelope)
        actor.log(message_id, f"unfrozen by {actor.name}")
    return f"Message {message_id} is no longer frozen"


# -- removing ----------------------------------------------------------------------------


def remove(actor: Actor, message_id: str) -> str:
    """Remove every file of the message, with no bounce.  An administrator may remove a message
    whose -D is missing or whose -H is damaged (that is how such a message is got rid of);
    its sender only an intact one, since the -H is what says who sent it."""
    spool = actor.spool
    try:
        lock = spool.lock(message_id)
    except LockedError:
        raise ActionError(f"message {message_id} is locked (being delivered by another process)") from None
    except NoSuchMessage:
        if not spool.exists(message_id):
            raise ActionError(f"message {message_id} is not on the spool") from None
        if not actor.admin:
            raise ActionError(f"message {message_id} has no data file: only an administrator can remove it") from None
        lock = None  # an -H without its -D: nobody can be delivering it
    except SpoolError as exc:
        if not actor.admin:
            # The usual case on a real system: the spool is root's and mta_user's alone.
            raise ActionError(
                f"permission denied: message {message_id} cannot be opened by you ({exc}); "
                "ask an administrator to remove it"
            ) from None
        raise ActionError(f"message {message_id}: {exc}") from None
    try:
        if not actor.admin:
            _check_sender(actor, message_id)
        try:
            spool.remove_message(message_id, preserve_msglog=actor.preserve_message_logs)
        except SpoolError as exc:
            raise ActionError(f"message {message_id} was not completely removed: {exc}") from None
    finally:
        if lock is not None:
            lock.release()
    actor.logger.main(f"removed by {actor.name}", message_id)
    actor.logger.main("Completed", message_id)
    return f"Message {message_id} has been removed" + ("" if lock is not None else " or did not exist")


def _check_sender(actor: Actor, message_id: str) -> None:
    """Exim's rule: a user who is not an administrator may remove only a message whose -H
    records their own uid (the one that submitted it)."""
    try:
        envelope = actor.spool.read_envelope(message_id)
    except SpoolError as exc:
        raise ActionError(f"message {message_id} cannot be read ({exc}): only an administrator can remove it") from None
    if envelope.originator_uid != actor.caller.uid:
        raise ActionError(
            f"permission denied: message {message_id} was not sent by you "
            "(only its sender or an administrator may remove it)"
        )


# -- recipients and sender -----------------------------------------------------------------


def delivered(actor: Actor, envelope: Envelope) -> set[str]:
    """What counts as delivered: the non-recipients list and a crashed attempt's -J."""
    return set(envelope.non_recipients) | set(actor.spool.read_journal(envelope.message_id))


def mark_all_delivered(actor: Actor, message_id: str) -> str:
    with locked_envelope(actor, message_id) as envelope:
        return _mark(actor, envelope, [r.address for r in envelope.recipients])


def mark_delivered(actor: Actor, message_id: str, addresses: list[str]) -> str:
    """Mark the given recipients delivered; they must match recipients exactly (case
    included, as Exim's -Mmd), either as typed or in the form a submission would store."""
    with locked_envelope(actor, message_id) as envelope:
        recipients = {r.address for r in envelope.recipients}
        marked: list[str] = []
        for text in addresses:
            match = next((a for a in _spellings(text) if a in recipients), None)
            if match is None:
                raise ActionError(f"message {message_id}: {text} is not a recipient: message not updated")
            marked.append(match)
        return _mark(actor, envelope, marked)


def _mark(actor: Actor, envelope: Envelope, addresses: list[str]) -> str:
    """Add `addresses` to the non-recipients list; log those that were not delivered yet."""
    done = delivered(actor, envelope)
    marked = [a for a in dict.fromkeys(addresses) if a not in done]
    envelope.non_recipients |= set(marked)
    _save(actor, envelope)
    for address in marked:
        actor.log(envelope.message_id, f"address <{address}> marked delivered by {actor.name}")
    return f"Message {envelope.message_id} has been modified"


def add_recipients(actor: Actor, message_id: str, addresses: list[str]) -> str:
    with locked_envelope(actor, message_id) as envelope:
        present = {r.address for r in envelope.recipients}
        done = delivered(actor, envelope)
        added: list[str] = []
        for text in addresses:
            address = _qualified_address(message_id, text, "adding recipient")
            if address in present or address in added:
                raise ActionError(f"message {message_id}: {address} is already a recipient: message not updated")
            if address in done:
                # It would be taken as delivered and never tried: say so rather than add nothing.
                raise ActionError(
                    f"message {message_id}: {address} is in its list of delivered addresses: message not updated"
                )
            added.append(address)
        envelope.recipients.extend(Recipient(address) for address in added)
        _save(actor, envelope)
        for address in added:
            actor.log(message_id, f"recipient <{address}> added by {actor.name}")
    return f"Message {message_id} has been modified"


def edit_sender(actor: Actor, message_id: str, text: str) -> str:
    with locked_envelope(actor, message_id) as envelope:
        address = _qualified_address(message_id, text, "editing sender", allow_null=True)
        envelope.sender_address = address
        _save(actor, envelope)
        actor.log(message_id, f"sender address changed to <{address}> by {actor.name}")
    return f"Message {message_id} has been modified"


def _parse(text: str) -> str:
    """A command-line address: an envelope path (``a@b``, ``<a@b>``, ``<>``) or, as Exim's
    parse_extract_address also takes, one RFC 5322 mailbox (``Carol <c@example.net>``)."""
    try:
        return parse_envelope_address(text)
    except AddressError as exc:
        try:
            mailboxes = parse_header_addresses(text)
        except AddressError:
            raise exc from None
        if len(mailboxes) != 1 or mailboxes[0].group is not None:
            raise exc from None
        return mailboxes[0].address


def _spellings(text: str) -> list[str]:
    """`text` as typed, then as an address parses it (without <>, canonical quoting)."""
    try:
        return [text, _parse(text)]
    except AddressError:
        return [text]


def _qualified_address(message_id: str, text: str, doing: str, allow_null: bool = False) -> str:
    """A command-line address as -H stores it.  Exim wants it fully qualified (a message on
    the queue has no qualify_domain of its own to lend it), or <> for a sender."""
    try:
        address = _parse(text)
    except AddressError as exc:
        raise ActionError(f"message {message_id}: error while {doing}: bad address {text}: {exc}") from None
    if address == "" and allow_null:
        return ""
    local_part, domain = split_address(address)
    if not address or not domain or not local_part:
        raise ActionError(f"message {message_id}: error while {doing}: bad address {text}: domain missing")
    return address
