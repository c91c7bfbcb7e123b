"""The failed addresses of a delivery attempt, as the bounce reports them.

    failed_addresses(envelope, failed, log, as_local) -> [FailedAddress]
    with_duplicates(item) -> [item, *its folded duplicates]
    top_recipient(envelope, item) -> the -H recipient it descends from

Who is told: every top-level recipient that led to a failed address
(duplicates folded into it included), unless the director set
``errors_to = <>`` (the failure is logged as ignored) or the sender asked for
no failure report (RFC 3461 NOTIFY without FAILURE).  What: the final
address, the reason (with its bounce-only detail), the RFC 3463 status, the
remote host and its reply when a remote server refused.
"""

from __future__ import annotations

from collections.abc import Callable

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mta.deliver.bounce import FailedAddress
    from mta.errors import DeliveryError, FailError
    from mta.route.item import AddressItem
    from mta.spool.envelope import Envelope

def failed_addresses(
    envelope: Envelope,
    failed: list[tuple[AddressItem, FailError]],
    log: Callable[[str], None],
    as_local: Callable[[AddressItem], bool],
) -> list[FailedAddress]:
    # Loaded when something failed: the bounce machinery is not needed on the common path.
    from mta.deliver.bounce import FailedAddress

    failures = []
    for item, error in failed:
        if item.errors_to == "":
            # errors_to = <>: failures of this address are not reported.
            log(f"{item.log_name(as_local(item))}: error ignored")
            continue
        for copy in with_duplicates(item):
            recipient = top_recipient(envelope, copy)
            if recipient is not None and not recipient.wants_failure_report():
                log(f"{copy.top.address}: no failure report (DSN NOTIFY did not ask for one)")
                continue
            failures.append(FailedAddress(
                address=copy.top.address,
                final_address=item.pipe_command or item.file_path or item.address,
                message=error.message + (f"\n{error.detail.rstrip()}" if error.detail else ""),
                status=error.esc if error.esc.startswith("5") else "5.0.0",
                remote_mta=_remote_host_name(error),
                diagnostic_code=_remote_reply(error),
                errors_to=item.errors_to,
                original_recipient=recipient.orcpt if recipient is not None and recipient.orcpt else None,
            ))
    return failures


def with_duplicates(item: AddressItem) -> list[AddressItem]:
    """`item` and the duplicates the routing engine folded into it (delivered with it, once)."""
    return [item, *item.extra.get("duplicates", [])]


def top_recipient(envelope: Envelope, item: AddressItem) -> Any:
    """The -H recipient that `item` descends from, or None (a bounce's or a -Mar's own)."""
    index = item.top.original_index
    return envelope.recipients[index] if 0 <= index < len(envelope.recipients) else None


def _remote_host_name(error: DeliveryError) -> str | None:
    host = getattr(error, "host", None)
    return host.name if host is not None else None


def _remote_reply(error: DeliveryError) -> str | None:
    reply = getattr(error, "reply", None)
    return str(reply) if reply is not None else None
