"""Delivery log lines in Exim's format (=>, ->, **, ==, *>).

One place builds the text of each line, so the main log and the message
log (msglog/ID) always agree, and exigrep/eximstats can parse both.
"""

from __future__ import annotations

from mta.errors import DeliveryError
from mta.log import DEFERRAL, DELIVERY, DELIVERY_MORE, FAILURE, FAKE_DELIVERY, escape

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from mta.route.item import AddressItem
    from mta.transports.base import Delivered


def _route_fields(item: AddressItem) -> list[str]:
    fields = []
    if item.router_name:
        fields.append(f"R={item.router_name}")
    if item.transport_name:
        fields.append(f"T={item.transport_name}")
    return fields


def delivery_line(
    item: AddressItem,
    as_local: bool,
    info: Delivered | None = None,
    first_in_transaction: bool = True,
    selectors: frozenset[str] = frozenset(),
    fake: bool = False,
    leading: tuple[str, ...] = (),
    size: int | None = None,
    trailing: tuple[str, ...] = (),
) -> str:
    """The ``=>`` line; `leading` (F=, P=) go before R=, `size` (S=) after T=, `trailing` (QT=, DT=)
    at the end, as Exim orders its optional log_selector items."""
    flag = FAKE_DELIVERY if fake else (DELIVERY if first_in_transaction else DELIVERY_MORE)
    fields = [flag, escape(item.log_name(as_local)), *leading, *_route_fields(item)]
    if size is not None:
        fields.append(f"S={size}")
    if info is not None and info.host is not None:
        host = info.host
        text = f"H={host.name} [{host.address}]" if host.address else f"H={host.name}"
        if "outgoing_port" in selectors and host.port:
            text += f":{host.port}"
        if info.reused_connection:
            text += "*"
        fields.append(text)
        if info.cipher and "tls_cipher" in selectors:
            fields.append(f"X={info.cipher}")
            if info.tls_verified is not None and "tls_certificate_verified" in selectors:
                fields.append(f"CV={'yes' if info.tls_verified else 'no'}")
        if info.confirmation and "smtp_confirmation" in selectors:
            confirmation = info.confirmation.replace('"', '\\"')
            fields.append(f'C="{escape(confirmation)}"')
    fields.extend(trailing)
    return " ".join(fields)


def failure_line(item: AddressItem, error: DeliveryError, as_local: bool) -> str:
    route = " ".join(_route_fields(item))
    name = escape(item.log_name(as_local))
    return f"{FAILURE} {name}{' ' + route if route else ''}: {escape(error.message)}"


def deferral_line(item: AddressItem, error: DeliveryError, as_local: bool) -> str:
    # An address deferred before any router saw it (its routing retry time had not come) says
    # "routing" where the router would be named, as Exim's "routing defer (-52)".
    route = " ".join(_route_fields(item)) or getattr(error, "log_kind", None) or ""
    name = escape(item.log_name(as_local))
    return f"{DEFERRAL} {name}{' ' + route if route else ''} defer ({error.errno}): {escape(error.message)}"


def msglog_success(item: AddressItem) -> str:
    return f"{item.log_name(False)}: {item.transport_name} transport succeeded"
