"""The ipliteral router: deliver to the host an IP-literal domain names.

``user@[192.0.2.1]`` and ``user@[IPv6:2001:db8::1]`` name their host
directly (RFC 5321 §4.1.3); Exim's ipliteral router routes them there with
no lookup.  Any other domain is declined.

Results: Accept with the one host; Decline for a domain that is not an IP
literal, or whose address is in ignore_target_hosts ("IP literal host
explicitly ignored").  When the address is one of this host's, the generic
``self`` option decides (Pass, or FailError / DeferError / FreezeError).

Security: the address comes from the message's envelope.  It is parsed as
an IP address and used as one, nothing else; relaying to IP literals is a
matter for the ACLs, which see the address before it is accepted.
"""

from __future__ import annotations

from mta.drivers import DriverOptions, options_table
from mta.message.address import is_ip_literal
from mta.route.base import Accept, Decline, Router, RouteResult, RouterOptions
from mta.route.context import RoutingContext
from mta.route.host import Host
from mta.route.item import AddressItem
from mta.route.routers._common import LocalHost, fallback_hosts, ignore_predicate, self_action

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar


@options_table
class IpliteralOptions(RouterOptions):
    """ipliteral has only the generic router options."""


class IpliteralRouter(Router):
    """Deliver `user@[192.0.2.1]` and `user@[IPv6:2001:db8::1]` to that address, with no lookup."""

    options: IpliteralOptions
    options_class: ClassVar[type[DriverOptions]] = IpliteralOptions

    def route(self, item: AddressItem, ctx: RoutingContext) -> RouteResult:
        address = is_ip_literal(item.domain)
        if address is None:
            return Decline()
        ignored = ignore_predicate(self, item, ctx)
        if ignored is not None and ignored(address):
            return Decline("IP literal host explicitly ignored")
        host = Host(item.domain, address)
        if LocalHost(ctx).is_local_address(address):
            passed = self_action(self, item, host)
            if passed is not None:
                return passed
        item.fallback_hosts = fallback_hosts(self)
        return Accept(hosts=[host])
