"""The lookuphost router: find a remote domain's hosts in the DNS (MX, then A/AAAA).

Exim 3's lookuphost (Exim 4's dnslookup).  The domain's MX records are
looked up and their hosts ordered by preference, randomly among equal
preferences (RFC 5321 §5.1); a domain without MX records is its own
(implicit) MX.  With `gethostbyname` the domain is instead looked up as a
host name (/etc/hosts, then address records), without MX processing.

Results:

* Accept with the hosts, for the generic `transport`.
* Redirect to ``local_part@qualified.domain`` when qualify_single,
  search_parents or widen_domains found the domain under a longer name:
  the new address is routed from the start, as Exim's "rerouted" child.
* Decline when the domain does not exist (or is syntactically invalid,
  or is an IP literal), when mx_domains requires an MX record and there is
  none, when every address was ignored (ignore_target_hosts), and with
  check_secondary_mx when this host is not a secondary MX.  Without a later
  router the address then fails as "Unrouteable address" (or
  cannot_route_message), as in Exim.
* Pass on a DNS timeout with pass_on_timeout, or with ``self = pass``.

Raises DeferError for a DNS timeout or server failure; FailError for a
null MX (RFC 7505) and when every MX record points to a host that does not
exist; FailError / DeferError / FreezeError when the best MX is this host
and ``self`` is fail / defer / freeze.
"""

from __future__ import annotations

from mta.config.lists import match_domain
from mta.drivers import DriverOptions, Kind, option, options_table
from mta.errors import ConfigError, DeferError, ExpansionError
from mta.message.address import is_ip_literal
from mta.route.base import Accept, Decline, Redirect, Router, RouteResult, RouterOptions
from mta.route.context import RoutingContext
from mta.route.dns import Host, HostList, UnknownDomainError, UnknownHostError
from mta.route.item import AddressItem
from mta.route.routers._common import (
    EXTRA_LOCAL_HOST_REMOVED,
    HostFinder,
    fallback_hosts,
    lookup_deferred,
    self_action,
)
from mta.taint import taint
from mta.values import split_list

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar


@options_table
class LookuphostOptions(RouterOptions):
    gethostbyname: bool = option(
        False,
        Kind.BOOL,
        "Look the domain up as a host name (/etc/hosts, then DNS address records) instead of by its MX records.",
    )
    mx_domains: str | None = option(
        None,
        Kind.LIST,
        "Domains that must have MX records: if such a domain has only address records, the router declines.",
        expand=True,
    )
    widen_domains: str | None = option(
        None,
        Kind.LIST,
        "Suffixes tried in turn when the domain is not found: with `cam.ac.uk : ac.uk`, x.y is tried as "
        "x.y.cam.ac.uk, then x.y.ac.uk. A domain found that way is routed again under its full name.",
    )
    qualify_single: bool = option(
        True, Kind.BOOL, "Extend a domain without dots with the resolver's search domains (RES_DEFNAMES)."
    )
    search_parents: bool = option(
        False, Kind.BOOL, "Also try a domain with dots with the resolver's search domains (RES_DNSRCH)."
    )
    check_secondary_mx: bool = option(
        False,
        Kind.BOOL,
        "Decline unless this host is one of the domain's MX hosts, at a lower priority than the best "
        "(for backup MX service: mail is held here only for domains we are a secondary MX for).",
    )


class LookuphostRouter(Router):
    """Find a remote domain's hosts in the DNS: its MX records by preference, or without MX records the
    domain's own addresses (Exim 3's lookuphost, Exim 4's dnslookup)."""

    options: LookuphostOptions
    options_class: ClassVar[type[DriverOptions]] = LookuphostOptions

    def check(self, config: object) -> None:
        super().check(config)
        if not self.options.transport and not self.options.verify_only:
            raise ConfigError(f"{self.name} router: a transport is required (or verify_only)", *self.source)

    def route(self, item: AddressItem, ctx: RoutingContext) -> RouteResult:
        domain = item.domain
        if domain.startswith("[") or is_ip_literal(domain) is not None:
            return Decline(f"{domain} is an IP literal (see the ipliteral router)")
        finder = HostFinder(
            self, item, ctx, qualify_single=self.options.qualify_single, search_parents=self.options.search_parents
        )
        mx_domains = None
        if self.options.mx_domains:
            mx_domains = ctx.expand_or_defer(self.options.mx_domains, item, f"mx_domains of {self.name}")

        found: HostList | None = None
        reason = f'unrouteable mail domain "{domain}"'
        for name in self._candidates(domain):
            try:
                found = self._lookup(finder, name)
            except DeferError as exc:
                return lookup_deferred(self, f"DNS lookup for {name}", exc)
            except (UnknownDomainError, UnknownHostError) as exc:
                if "syntactically invalid" in exc.message:
                    # Widening a malformed name cannot mend it.
                    return Decline(f'mail domain "{domain}" is syntactically invalid')
                continue
            if found.implicit_mx and mx_domains and self._in_list(found.domain, mx_domains, ctx):
                reason = f'no MX record for "{found.domain}" (the domain is in mx_domains)'
                found = None
                continue
            break
        if found is None:
            return Decline(reason)

        if found.domain.lower() != domain.lower().rstrip("."):
            # Found under a longer name: route that address from the start
            # (it may even be a local domain now).  The name came from DNS.
            local_part = item.address.rpartition("@")[0]
            return Redirect([AddressItem(taint(f"{local_part}@{found.domain}"))])
        if not found.hosts:
            return Decline(f"all hosts for {domain} are in ignore_target_hosts")
        if found.self_reference:
            passed = self_action(self, item, found.hosts[0])
            if passed is not None:
                return passed
        elif self.options.check_secondary_mx and not found.local_host_removed:
            return Decline(f"this host is not a secondary MX for {domain} (check_secondary_mx)")
        if found.local_host_removed:
            item.extra[EXTRA_LOCAL_HOST_REMOVED] = True
        item.fallback_hosts = fallback_hosts(self)
        return Accept(hosts=found.hosts)

    def _candidates(self, domain: str) -> list[str]:
        """The domain, then the domain widened by each widen_domains suffix."""
        names = [domain]
        if self.options.widen_domains and not domain.endswith("."):
            names += [f"{domain}.{suffix.strip('.')}" for suffix in split_list(self.options.widen_domains) if suffix]
        return names

    def _lookup(self, finder: HostFinder, name: str) -> HostList:
        if not self.options.gethostbyname:
            return finder.by_mx(name, None, require_mx=False)
        return self._by_name(finder, name)

    def _by_name(self, finder: HostFinder, name: str) -> HostList:
        """gethostbyname: the name's addresses, as a host list without MX.

        As Exim's host_scan_for_local_hosts: this host first in the list is a
        self reference; later, it and what follows it are dropped.
        """
        assert finder.local is not None
        rows = finder.by_name(name, None)
        found = HostList(rows[0].name if rows else name.rstrip("."), [], implicit_mx=False)
        if not rows:
            found.ignored = [Host(name, None)]  # every address was ignored
            return found
        local_at = next((i for i, h in enumerate(rows) if finder.local.is_local(h)), None)
        if local_at == 0:
            found.self_reference = True
        elif local_at is not None:
            rows = rows[:local_at]
            found.local_host_removed = True
        found.hosts = rows
        return found

    @staticmethod
    def _in_list(domain: str, domains: str, ctx: RoutingContext) -> bool:
        try:
            return bool(match_domain(domain, domains, ctx.list_context))
        except (ExpansionError, ConfigError) as exc:
            text = exc.message if isinstance(exc, ExpansionError) else str(exc)
            raise DeferError(f"lookup defer for mx_domains: {text}") from None

