"""Grouping routed addresses into transport batches.

Local transports take one address at a time.  Remote ones take every
address that shares the transport, the host list, the bounce address and
the header edits: those can go in one SMTP transaction (the transport
splits at max_rcpt).
"""

from __future__ import annotations

from collections.abc import Hashable

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from mta.route.item import AddressItem


def batch_key(item: AddressItem) -> Hashable:
    hosts = tuple((h.name, h.address, h.port) for h in item.hosts)
    fallback = tuple((h.name, h.address, h.port) for h in item.fallback_hosts)
    return (
        item.transport_name,
        hosts,
        fallback,
        item.errors_to,
        tuple(item.headers_add),
        tuple(item.headers_remove),
    )


def group_remote(items: list[AddressItem]) -> list[list[AddressItem]]:
    """Batches in the order their first address was routed."""
    groups: dict[Hashable, list[AddressItem]] = {}
    for item in items:
        groups.setdefault(batch_key(item), []).append(item)
    return list(groups.values())
