"""Grouping routed addresses into transport batches.

Remote transports take every address that shares the transport, the host
list, the bounce address and the header edits: those can go in one SMTP
transaction (the transport splits at max_rcpt).

Local transports take one address at a time, unless the transport's
batch_max is above 1 (appendfile, pipe): then, as Exim's
do_local_deliveries, addresses that go to the same transport share one
delivery when they also share the kind of item (address, file or pipe, and
the same file or command), the errors address, the header edits, the
delivery user, group and home, the first host, the batch_id expansion, and
the local part (domain) if an option of the transport refers to
$local_part ($domain).  Batches keep the order of their first address.
"""

from __future__ import annotations

from mta.errors import DeferError, ExpansionError
from mta.lazy_pattern import lazy_compile

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Mapping

    from mta.route.item import AddressItem
    from mta.transports.base import DeliveryEnv, Transport

# Exim's readconf_depends: "$name" or "{name" not followed by a letter or digit (so $local_part_data
# counts as a use of $local_part too: it differs from address to address just the same).
_USES = {name: lazy_compile(r"[${]" + name + r"(?![A-Za-z0-9])") for name in ("local_part", "domain")}


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


def uses_variable(transport: Transport, name: str) -> bool:
    """Does an option of `transport` refer to $name (Exim's readconf_depends)?"""
    pattern = _USES[name]
    options = transport.options
    return any(isinstance(value, str) and pattern.search(value) for value in vars(options).values())


def group_local(
    items: list[AddressItem],
    transports: Mapping[str, Transport],
    shared: Callable[[Transport, AddressItem], Hashable | None],
) -> list[list[AddressItem]]:
    """Local deliveries: each a list of addresses for one run of their transport (see the module
    docstring).  `shared(transport, item)` is what else must agree (user, group, home, batch_id),
    None when the item cannot be batched (an expansion failed: it is delivered on its own)."""
    batches: list[list[AddressItem]] = []
    pending = list(items)
    while pending:
        first = pending.pop(0)
        batch = [first]
        transport = transports.get(first.transport_name or "")
        limit = int(getattr(transport.options, "batch_max", 1)) if transport is not None else 1
        if transport is not None and limit > 1 and pending:
            uses = (uses_variable(transport, "local_part"), uses_variable(transport, "domain"))
            key = _local_key(first, transport, uses, shared)
            rest = []
            for other in pending:
                if (
                    len(batch) < limit
                    and key is not None
                    and other.transport_name == first.transport_name
                    and _local_key(other, transport, uses, shared) == key
                ):
                    batch.append(other)
                else:
                    rest.append(other)
            pending = rest
        batches.append(batch)
    return batches


def _local_key(
    item: AddressItem,
    transport: Transport,
    uses: tuple[bool, bool],
    shared: Callable[[Transport, AddressItem], Hashable | None],
) -> Hashable | None:
    extra = shared(transport, item)
    if extra is None:
        return None
    uses_local_part, uses_domain = uses
    return (
        item.pipe_command,
        item.file_path,
        item.local_part if uses_local_part else None,
        item.domain if uses_domain else None,
        item.errors_to,
        tuple(item.headers_add),
        tuple(item.headers_remove),
        item.hosts[0].name if item.hosts else None,
        extra,
    )


def local_batch_shared(
    transport: Transport, item: AddressItem, env: DeliveryEnv, panic: Callable[[str], None]
) -> Hashable | None:
    """What addresses in one local batch must share besides routing: the delivery identity and the
    batch_id expansion.  None (deliver alone) when either cannot be worked out; a failed batch_id
    goes to the panic log, as in Exim."""
    from mta.deliver.local_exec import resolve_delivery_identity

    try:
        identity = resolve_delivery_identity(transport, item, env)  # type: ignore[arg-type]
    except DeferError:
        return None  # the delivery will say why
    text = getattr(transport.options, "batch_id", None)
    batch_id = None
    if text is not None:
        try:
            batch_id = env.expand(text, item)
        except ExpansionError as exc:
            panic(f"Failed to expand batch_id option in {transport.name} transport ({item.address}): {exc.message}")
            return None
    return (identity.uid, identity.gid, identity.initgroups, identity.home, identity.current_directory, batch_id)
