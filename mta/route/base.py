"""Directors and routers: the contract between the routing engine and drivers.

An address whose domain is in `local_domains` is offered to the directors,
in order; any other address to the routers.  Before a driver is called the
engine checks its generic preconditions (domains, local_parts, senders,
verify/verify_only, require_files, condition), removes a matching
local_part_prefix/suffix, and skips the driver if an ancestor with the same
address was handled by it (loop safety).  Then:

    result = driver.direct(item, ctx)      # directors
    result = driver.route(item, ctx)       # routers

A driver returns one of:

  Accept(...)      the address is handled; it goes to `transport` (the
                   generic option if the result names none), with `hosts`
                   for remote transports.  With `unseen`, a copy goes on to
                   the next driver too.
  Redirect(items)  the address is replaced by new addresses (aliasing,
                   forwarding); they start again at the first driver.  An
                   empty list with `discard=True` is ``:blackhole:``.
  Decline()        not for this driver: the next one is tried, unless the
                   driver has ``no_more``, in which case the address fails.
  Pass()           like Decline, but ignores ``no_more``.

and raises:

  DeferError       temporary problem (a lookup timed out, a file is
                   unreadable): the address is kept and tried again later.
  FailError        permanent failure (``:fail:``, a queryprogram FAIL): the
                   address is bounced.

Fields a driver may set on the item: home, address_data, local_part_data,
domain_data, uid, gid, initgroups, errors_to, extra.  Drivers never touch
the spool or the log.
"""

from __future__ import annotations

from abc import abstractmethod

from mta import record
from mta.drivers import Driver, DriverOptions, Kind, option, options_table
from mta.route.item import AddressItem

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

if TYPE_CHECKING:
    from mta.route.context import RoutingContext
    from mta.route.dns import Host


@options_table
class RouteOptions(DriverOptions):
    """Generic options of directors and routers."""

    _generic: ClassVar[bool] = True

    domains: str | None = option(None, Kind.LIST, "Domain list the address's domain must match.", expand=True)
    local_parts: str | None = option(
        None, Kind.LIST, "Local-part list the local part (affixes removed) must match.", expand=True
    )
    senders: str | None = option(None, Kind.LIST, "Address list the envelope sender must match.", expand=True)
    condition: str | None = option(
        None, Kind.STRING, "Expanded; the driver is skipped unless the result is true (not empty, 0, no, false).",
        expand=True,
    )
    require_files: str | None = option(
        None, Kind.LIST, "Files that must exist (`!file`: must not exist) for the driver to run.", expand=True
    )
    verify: bool = option(True, Kind.BOOL, "Run this driver when verifying addresses (-bv, ACL verify).")
    verify_only: bool = option(False, Kind.BOOL, "Run this driver only when verifying.")
    verify_recipient: bool = option(True, Kind.BOOL, "Run this driver when verifying a recipient.")
    verify_sender: bool = option(True, Kind.BOOL, "Run this driver when verifying a sender.")
    expn: bool = option(True, Kind.BOOL, "Run this driver for SMTP EXPN.")
    more: bool = option(True, Kind.BOOL, "If false, an address this driver declines fails instead of going on.")
    unseen: bool = option(False, Kind.BOOL, "After accepting, let a copy of the address go on to the next driver.")
    errors_to: str | None = option(
        None, Kind.STRING, "Where bounces for addresses this driver handles go (`<>`: nowhere).", expand=True
    )
    headers_add: str | None = option(
        None, Kind.STRING, "Header lines added to the message for these addresses.", expand=True
    )
    headers_remove: str | None = option(
        None, Kind.LIST, "Names of headers removed from the message for these addresses.", expand=True
    )
    transport: str | None = option(None, Kind.STRING, "Transport for the addresses this driver accepts.", expand=True)
    address_data: str | None = option(
        None, Kind.STRING, "Expanded before the driver runs; the result is $address_data (forced fail: decline).",
        expand=True,
    )
    local_part_prefix: str | None = option(
        None, Kind.LIST, "Prefixes removed from the local part (`*-` matches any prefix ending in -)."
    )
    local_part_prefix_optional: bool = option(False, Kind.BOOL, "Run the driver also when no prefix matches.")
    local_part_suffix: str | None = option(
        None, Kind.LIST, "Suffixes removed from the local part (`-*` matches any suffix starting with -)."
    )
    local_part_suffix_optional: bool = option(False, Kind.BOOL, "Run the driver also when no suffix matches.")
    caseful_local_part: bool = option(False, Kind.BOOL, "Match the local part case-sensitively.")
    user: str | None = option(None, Kind.STRING, "User to run local deliveries as.", expand=True)
    group: str | None = option(None, Kind.STRING, "Group to run local deliveries as.", expand=True)
    initgroups: bool = option(False, Kind.BOOL, "Set the supplementary groups of `user` for local deliveries.")
    cannot_route_message: str | None = option(
        None, Kind.STRING, "Text of the failure when no driver accepts an address this driver was the last to see.",
        expand=True,
    )
    log_as_local: bool | None = option(
        None, Kind.BOOL, "Log deliveries with the local part only (default: when the transport is local)."
    )


@options_table
class DirectorOptions(RouteOptions):
    """Generic options of directors (local domains)."""

    _generic: ClassVar[bool] = True


SELF_ACTIONS = ("freeze", "defer", "fail", "send", "pass")


@options_table
class RouterOptions(RouteOptions):
    """Generic options of routers (remote domains)."""

    _generic: ClassVar[bool] = True

    self: str = option(
        "freeze",
        Kind.STRING,
        "What to do when the lowest MX points at this host: freeze, defer, fail, send, or pass (to the next router).",
        choices=SELF_ACTIONS,
    )
    ignore_target_hosts: str | None = option(
        None, Kind.LIST, "Host list of IP addresses never to deliver to (e.g. 0.0.0.0 : 127.0.0.0/8).", expand=True
    )
    fallback_hosts: str | None = option(
        None, Kind.LIST, "Hosts tried when all routed hosts have failed temporarily."
    )
    pass_on_timeout: bool = option(False, Kind.BOOL, "Pass instead of deferring when a DNS lookup times out.")


# -- results -------------------------------------------------------------


@record.dataclass(slots=True)
class Accept:
    transport: str | None = None
    hosts: list[Host] = record.field(default_factory=list)
    # True when `hosts` still need their addresses looked up (byname/bydns).
    hosts_unresolved: bool = False


@record.dataclass(slots=True)
class Redirect:
    children: list[AddressItem]
    discard: bool = False  # :blackhole:


@record.dataclass(slots=True)
class Decline:
    reason: str | None = None


@record.dataclass(slots=True)
class Pass:
    reason: str | None = None


RouteResult = Accept | Redirect | Decline | Pass


class RoutingDriver(Driver):
    """Common base of Director and Router."""

    options: RouteOptions
    options_class: ClassVar[type[DriverOptions]] = RouteOptions
    # True when the driver decides for itself which transport it uses
    # (e.g. a redirect never needs one).
    needs_transport: ClassVar[bool] = False

    def check(self, config: Any) -> None:
        """Check that a named transport exists (runtime passes `transports`)."""
        transports = getattr(config, "transports", None)
        name = self.options.transport
        if transports is not None and name and "$" not in name and name not in transports:
            from mta.errors import ConfigError

            raise ConfigError(f'{self.kind_name} {self.name}: transport "{name}" is not defined', *self.source)


class Director(RoutingDriver):
    kind_name: ClassVar[str] = "director"
    options: DirectorOptions
    options_class: ClassVar[type[DriverOptions]] = DirectorOptions

    @abstractmethod
    def direct(self, item: AddressItem, ctx: RoutingContext) -> RouteResult:
        """Handle a local address; see the module docstring for results and errors."""


class Router(RoutingDriver):
    kind_name: ClassVar[str] = "router"
    options: RouterOptions
    options_class: ClassVar[type[DriverOptions]] = RouterOptions

    @abstractmethod
    def route(self, item: AddressItem, ctx: RoutingContext) -> RouteResult:
        """Handle a remote address; see the module docstring for results and errors."""
