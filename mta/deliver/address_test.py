"""`mta -bt` (address testing) and `mta -bv` (verification), in Exim's output format.

Both run the same routing engine as a delivery: -bt as if delivering and
reports every step; -bv in verify mode (drivers with ``no_verify`` are
skipped, ``verify_only`` ones run).  Exit status: 0 when every address
routes, 1 when one could not be routed now (deferred), 2 when one fails.
"""

from __future__ import annotations

from mta.errors import AddressError
from mta.message.address import parse_envelope_address, qualify
from mta.route.context import RoutingContext
from mta.route.engine import RoutingEngine
from mta.route.item import AddressItem

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

if TYPE_CHECKING:
    from mta.runtime import Runtime


def _parse(text: str, qualify_domain: str) -> str:
    address = parse_envelope_address(text.strip())
    if not address:
        raise AddressError("an empty address cannot be tested")
    return qualify(address, qualify_domain)


def _shown(item: AddressItem) -> str:
    if item.pipe_command is not None:
        return item.pipe_command
    if item.file_path is not None:
        return item.file_path
    return item.address


def run_address_test(
    runtime: Runtime,
    addresses: list[str],
    out: TextIO,
    sender: str = "",
    verify: str | None = None,
    trace: TextIO | None = None,
) -> int:
    """Route each address and print the result; `trace` (-v, -d) gets every driver considered."""
    config = runtime.config
    engine = RoutingEngine(runtime.directors, runtime.routers, config)
    status = 0
    for text in addresses:
        try:
            address = _parse(text, config.qualify_recipient)
        except AddressError as exc:
            out.write(f"{text} failed to verify: {exc.message}\n" if verify else f"{text}: {exc.message}\n")
            status = 2
            continue
        ctx = RoutingContext(
            config,
            sender,
            verify=verify,
            address_test=verify is None,
            transports=runtime.transports,
            debug=(lambda line: trace.write(line + "\n")) if trace is not None else None,
        )
        outcome = engine.route([AddressItem(address, original_index=0)], ctx)
        if outcome.failed:
            status = 2
            for item, error in outcome.failed:
                if verify:
                    out.write(f"{address} failed to verify: {error.message}\n")
                else:
                    out.write(f"{_shown(item)} is undeliverable: {error.message}\n")
                    _parents(item, out)
            continue
        if outcome.deferred:
            status = max(status, 1)
            for item, error in outcome.deferred:
                out.write(f"{_shown(item)} cannot be resolved at this time: {error.message}\n")
            continue
        if verify:
            out.write(f"{address} verified\n")
            continue
        for item in outcome.discarded:
            out.write(f"{_shown(item)} is discarded\n")
        for item in outcome.accepted:
            out.write(_shown(item) + "\n")
            _parents(item, out)
            transport = item.transport_name or "unset"
            out.write(f"  router = {item.router_name}, transport = {transport}\n")
            for host in item.hosts:
                line = f"  host {host.name}"
                if host.address:
                    line += f" [{host.address}]"
                if host.port:
                    line += f":{host.port}"
                if host.mx is not None and host.mx >= 0:
                    line += f" MX={host.mx}"
                out.write(line + "\n")
    return status


def _parents(item: AddressItem, out: TextIO) -> None:
    for ancestor in item.ancestors():
        out.write(f"    <-- {ancestor.address}\n")
