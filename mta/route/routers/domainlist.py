"""The domainlist router: route by domain pattern to configured hosts.

Exim 3's domainlist (Exim 4's manualroute).  A routing rule is

    domain-pattern  host-list  [options]

taken from `route_list` (rules separated by ``;``), from a lookup of the
domain in `route_file` (the value is ``host-list [options]``), or from the
expansion of `route_data` (also ``host-list [options]``), tried in that
order.  The first rule whose pattern matches the domain decides; if none
does, the router declines.  ``*`` matches every domain, which makes the
router a smart-host router::

    smarthost:
      driver = domainlist
      transport = remote_smtp
      route_list = * smarthost.example.com byname

Options after the host list: a lookup method (byname, bydns, bydns_a,
bydns_mx; none: DNS address records, then /etc/hosts), ``randomize`` /
``no_randomize``, and a transport name for this rule.

Results: Accept with the hosts found; Decline when no rule matches, the
host list expands to a forced failure, or by host_find_failed /
host_all_ignored; Pass likewise, or on a DNS timeout with pass_on_timeout.
Raises DeferError for DNS trouble, an expansion error or a bad rule, and
FailError / FreezeError as host_find_failed, host_all_ignored and ``self``
say.
"""

from __future__ import annotations

from mta import record
from mta.config.lists import match_domain
from mta.drivers import DriverOptions, Kind, option, options_table
from mta.errors import ConfigError, DeferError, ExpansionError
from mta.memo import lru_cache
from mta.route.base import Accept, Decline, Pass, Router, RouteResult, RouterOptions
from mta.route.context import RoutingContext
from mta.route.host import Host
from mta.route.item import AddressItem
from mta.route.routers._common import (
    HOST_ALL_IGNORED_ACTIONS,
    HOST_FIND_FAILED_ACTIONS,
    HostFinder,
    fallback_hosts,
    parse_host_list,
    parse_route_options,
    split_rule,
)
from mta.taint import taint
from mta.values import split_list

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from typing import Any, ClassVar


@options_table
class DomainlistOptions(RouterOptions):
    route_list: str | None = option(
        None,
        Kind.LIST,
        "Routing rules separated by `;`: `domain-pattern host-list [options]`. The pattern is a domain list item "
        "(`*`, `*.example.com`, `^regex`, `lsearch;file`, a name); the host list is expanded ($0, $1... hold "
        "what a regex matched) and is colon-separated: `mx.example.com::2525`, `[192.0.2.1]:2525`, "
        "`<; [2001:db8::1]:2525`. Options: byname, bydns, bydns_a, bydns_mx, randomize, no_randomize, "
        "or a transport name.",
    )
    route_file: str | None = option(
        None,
        Kind.STRING,
        "File in which the domain is looked up (with search_type) when no route_list rule matched; "
        "the value found is `host-list [options]`, the host list expanded with $0 = the domain.",
        expand=True,
    )
    search_type: str | None = option(
        None, Kind.STRING, "Lookup type for route_file: lsearch, wildlsearch, nwildlsearch, dsearch or lmdb."
    )
    route_data: str | None = option(
        None,
        Kind.STRING,
        "Expanded when neither route_list nor route_file gave a rule; the result is `host-list [options]` "
        "(not expanded again). Empty or a forced failure: decline.",
        expand=True,
    )
    host_find_failed: str = option(
        "freeze",
        Kind.STRING,
        "What to do when a host in the list does not exist: freeze (defer and freeze the message), defer, "
        "fail, decline, pass (to the next router, even with no_more), or ignore (drop that host).",
        choices=HOST_FIND_FAILED_ACTIONS,
    )
    host_all_ignored: str = option(
        "defer",
        Kind.STRING,
        "What to do when ignore_target_hosts (or host_find_failed = ignore) left no host at all: "
        "freeze, defer, fail, decline or pass.",
        choices=HOST_ALL_IGNORED_ACTIONS,
    )
    hosts_randomize: bool = option(
        False, Kind.BOOL, "Shuffle each host list (each `+`-separated group separately) every time it is used."
    )
    qualify_single: bool = option(
        True, Kind.BOOL, "bydns lookups: extend a host name without dots with the resolver's search domains."
    )
    search_parents: bool = option(
        False, Kind.BOOL, "bydns lookups: also try a dotted host name with the resolver's search domains."
    )


@record.dataclass(slots=True)
class _Rule:
    hostlist: str
    options: str
    expand: bool  # the host list still needs expanding (route_list, route_file)
    variables: dict[str, Any]  # $0, $1 ... for that expansion


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    import re  # (not at the top: most route lists hold no regular expression)

    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ConfigError(f'bad regular expression "{pattern}" in route_list: {exc}') from None


def match_pattern(pattern: str, domain: str, ctx: RoutingContext) -> dict[str, Any] | None:
    """Match one route_list pattern; the $0..$9 it sets, or None for no match.

    A ``^`` pattern is a regular expression whose groups become $1...; any
    other pattern is one domain-list item (``*``, ``*.suffix``, ``@``,
    ``+named``, ``lsearch;file`` ...).
    """
    if pattern.startswith("^"):
        found = _regex(pattern).search(domain.lower())
        if found is None:
            return None
        # The captures are parts of the domain: message data, so tainted.
        groups = [found.group(0), *found.groups()]
        return {str(n): taint(value or "") for n, value in enumerate(groups[:10])}
    # One item: a colon inside (an IPv6 domain literal) must not split it.
    if match_domain(domain, pattern.replace(":", "::"), ctx.list_context):
        return {"0": taint(domain)}
    return None


class DomainlistRouter(Router):
    """Route by domain pattern to the hosts a routing rule names: Exim 3's domainlist, Exim 4's manualroute.
    `route_list = * smarthost.example.com byname` makes it a smart-host router."""

    options: DomainlistOptions
    options_class: ClassVar[type[DriverOptions]] = DomainlistOptions

    # -- start-up -----------------------------------------------------------

    def check(self, config: Any) -> None:
        """The routing rules that need no expansion are checked now, with file and line."""
        super().check(config)
        opts = self.options
        if not (opts.route_list or opts.route_file or opts.route_data):
            raise ConfigError(f"{self.name} router: route_list, route_file or route_data is required", *self.source)
        if opts.route_file and not opts.search_type:
            raise ConfigError(f"{self.name} router: route_file needs a search_type", *self.source)
        if opts.search_type:
            from mta.expand.lookups import parse_search_type  # here: only route_file needs lookups

            try:
                parse_search_type(opts.search_type)
            except ExpansionError as exc:
                raise ConfigError(f"{self.name} router: search_type: {exc.message}", *self.source) from None
        transports = getattr(config, "transports", None) or {}
        for entry in split_list(opts.route_list or "", ";"):
            try:
                rule = split_rule(entry, with_domain=True)
                if rule is None:
                    continue
                pattern, hostlist, words = rule
                if pattern.startswith("^"):
                    _regex(pattern)
                if "$" not in hostlist:
                    parse_host_list(hostlist)
                parse_route_options(words, transports)
            except (ValueError, ConfigError) as exc:
                raise ConfigError(f"{self.name} router: route_list: {_text(exc)}", *self.source) from None

    # -- routing ------------------------------------------------------------

    def route(self, item: AddressItem, ctx: RoutingContext) -> RouteResult:
        rule = self._find_rule(item, ctx)
        if rule is None:
            return Decline()
        hostlist = rule.hostlist
        if rule.expand and ("$" in hostlist or "\\" in hostlist):
            try:
                hostlist = ctx.expand(hostlist, item, extra=rule.variables)
            except ExpansionError as exc:
                if exc.forced:
                    return Decline()
                raise DeferError(f'{self.name} router: failed to expand "{rule.hostlist}": {exc.message}') from None
        try:
            words = parse_route_options(rule.options, ctx.transports)
        except ValueError as exc:
            raise DeferError(f"error in {self.name} router: {exc}") from None

        if self._transport_is_local(words.transport, item, ctx):
            # A local transport (saving mail for a dial-up host in a file,
            # say) gets the host list as text, in $host.
            hosts = [Host(hostlist.strip(), None)] if hostlist.strip() else []
            return Accept(transport=words.transport, hosts=hosts)

        randomize = self.options.hosts_randomize if words.randomize is None else words.randomize
        try:
            specs = parse_host_list(hostlist, randomize=randomize)
        except ValueError as exc:
            raise DeferError(f"error in {self.name} router: {exc}") from None
        if not specs:
            if ctx.verify is not None or ctx.address_test:
                return Accept(transport=words.transport)
            raise DeferError(f"error in {self.name} router: no host(s) specified for domain {item.domain}")

        finder = HostFinder(
            self, item, ctx, qualify_single=self.options.qualify_single, search_parents=self.options.search_parents
        )
        found = finder.find_all(specs, words.method, self.options.host_find_failed, self.options.host_all_ignored)
        if isinstance(found, Decline | Pass):
            return found
        item.fallback_hosts = fallback_hosts(self)
        return Accept(transport=words.transport, hosts=found)

    def _find_rule(self, item: AddressItem, ctx: RoutingContext) -> _Rule | None:
        opts = self.options
        domain = item.domain
        for rule in _route_list_rules(opts.route_list or ""):
            if isinstance(rule, ValueError):
                raise DeferError(f"error in {self.name} router: {rule}") from None
            if rule is None:
                continue
            pattern, hostlist, words = rule
            try:
                captures = match_pattern(pattern, domain, ctx)
            except (ExpansionError, ConfigError, DeferError) as exc:
                # A lookup file that cannot be read, a bad pattern: not this
                # address's fault, so keep it and try again later.
                raise DeferError(f"{self.name} router: lookup defer in route_list: {_text(exc)}") from None
            if captures is not None:
                return _Rule(hostlist, words, True, captures)

        if opts.route_file and opts.search_type:
            filename = ctx.expand_or_defer(opts.route_file, item, f"route_file of {self.name}")
            if filename:
                from mta.expand.lookups import lookup

                try:
                    value = lookup(opts.search_type, filename, domain.lower())
                except ExpansionError as exc:
                    raise DeferError(f"{self.name} router: route_file lookup deferred: {exc.message}") from None
                if value is not None:
                    return self._rule_from_data(value, True, {"0": taint(domain)})

        if opts.route_data:
            value = ctx.expand_or_defer(opts.route_data, item, f"route_data of {self.name}")
            if value and value.strip():
                return self._rule_from_data(value, False, {})
        return None

    def _rule_from_data(self, value: str, expand: bool, variables: dict[str, Any]) -> _Rule | None:
        try:
            rule = split_rule(value, with_domain=False)
        except ValueError as exc:
            raise DeferError(f"error in {self.name} router: {exc}") from None
        if rule is None:
            # An empty value is a rule with no hosts (accepted when verifying).
            return _Rule("", "", False, variables)
        _, hostlist, words = rule
        return _Rule(hostlist, words, expand, variables)

    def _transport_is_local(self, name: str | None, item: AddressItem, ctx: RoutingContext) -> bool:
        if name is None and self.options.transport:
            name = ctx.expand_or_defer(self.options.transport, item, f"transport of {self.name}")
        transport = ctx.transports.get(name) if name else None
        return bool(getattr(transport, "is_local", False))


@lru_cache(maxsize=64)
def _route_list_rules(route_list: str) -> tuple[tuple[str, str, str] | ValueError | None, ...]:
    """route_list split into its rules (or each rule's error), once per text: a delivery asks at
    every message, and the text is the configuration's."""
    rules: list[tuple[str, str, str] | ValueError | None] = []
    for entry in split_list(route_list, ";"):
        try:
            rules.append(split_rule(entry, with_domain=True))
        except ValueError as exc:
            rules.append(exc)
    return tuple(rules)


def _text(exc: Exception) -> str:
    if isinstance(exc, ExpansionError | DeferError):
        return exc.message
    return exc.reason if isinstance(exc, ConfigError) else str(exc)
