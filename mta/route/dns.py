"""DNS lookups for routing: MX, A and AAAA, by Exim's and RFC 5321's rules.

Used by the lookuphost and domainlist routers to turn a mail domain or a host
name into an ordered list of hosts, and by the smtp transport to find the
addresses of hosts a router named but did not look up.

`DnsResolver` has two faces over one set of rules:

* the ``*_async`` methods use ``dns.asyncresolver`` and never block the event
  loop (the daemon);
* the plain methods use ``dns.resolver`` (short-lived command-line processes
  such as ``mta -bt``, delivery workers); calling them inside a running event
  loop is a programmer error and raises RuntimeError.

Each lookup is written once, here, as a *plan*: a generator that yields
batches of queries and receives their results.  mta.route.dns_query holds
the queries, their results and the runners: the sync runner asks one query
after the other, the async runner the queries of one batch concurrently.
The settings (`ResolverSettings`, `parse_dns_servers`, `ip_literal`) are
mta.route.dns_settings'; import all of these names from here.

Errors (dnspython's exceptions are mapped to results in dns_query, and
nowhere else; the plans turn those into these):

* NXDOMAIN, a syntactically invalid name -> FailError subclasses, 550 5.1.2
* timeout, SERVFAIL/REFUSED from every server, no server reachable
  -> DeferError (451 4.4.3, retry_error "lookup"), text such as
  "DNS lookup of mx for example.org timed out"
* NODATA for MX -> the domain's own A/AAAA records (implicit MX,
  RFC 5321 §5.1), unless require_mx
* a null MX (RFC 7505) -> NullMxError, 556 5.1.10

Security: every name and record here comes from the network and is tainted.
It may become the value of a variable, never part of an expanded string.
dnspython parses the wire format; names are kept in their text form.

Start-up cost: dnspython takes ~50 ms to import, so it is imported when the
first DnsResolver is made, not when this module is (the smtp transport
imports Host from here on every delivery path).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, TypedDict, Unpack

from mta.errors import DeferError, FailError
from mta.route.dns_query import Addresses, MXRecord, Plan, Querier, Query, Result, Status, absolute, combine
from mta.route.dns_settings import DEFAULT_PORT, ResolverSettings, ip_literal, parse_dns_servers
from mta.route.host import (
    ESC_BAD_DOMAIN,
    ESC_DNS_TROUBLE,
    ESC_NULL_MX,
    IMPLICIT_MX,
    RETRY_ERROR_LOOKUP,
    Host,
    HostList,
)

if TYPE_CHECKING:
    from mta.route.host import IpPredicate

# Typed failures, so that a router can tell them apart (Exim's dnslookup
# declines where these are raised; whether a decline becomes a bounce is the
# router's business).  All are permanent: FailError.


class UnknownDomainError(FailError):
    """The mail domain does not exist (NXDOMAIN), is not a valid name, or has
    neither MX nor address records."""


class UnknownHostError(FailError):
    """A host name (route list, smtp transport) does not exist or has no addresses."""


class NoMxError(FailError):
    """require_mx was given and the domain has no MX records."""


class NullMxError(FailError):
    """The domain publishes a null MX (RFC 7505): it accepts no mail."""


class MxHostsMissingError(FailError):
    """Every MX record of the domain points to a name without addresses."""


def _fail(cls: type[FailError], message: str, esc: str = ESC_BAD_DOMAIN, code: int = 550) -> FailError:
    return cls(message, code=code, esc=esc)


def _defer(message: str) -> DeferError:
    return DeferError(message, code=451, esc=ESC_DNS_TROUBLE, retry_error=RETRY_ERROR_LOOKUP)


def _uses_search(name: str, qualify_single: bool, search_parents: bool) -> bool:
    # glibc res_search: RES_DEFNAMES (qualify_single) extends a name without
    # dots, RES_DNSRCH (search_parents) one with dots; both walk the search
    # list.  A name with a final dot is never extended.
    if name.endswith("."):
        return False
    dotted = "." in name
    return (qualify_single and not dotted) or (search_parents and dotted)


class SearchOptions(TypedDict, total=False):
    """Whether a name without a final dot is extended by the search list (both off by default)."""

    qualify_single: bool  # a name without dots (glibc's RES_DEFNAMES)
    search_parents: bool  # a name with dots (RES_DNSRCH)


class HostOptions(SearchOptions, total=False):
    """The keywords of find_hosts_by_name."""

    ignore_target_hosts: IpPredicate | None  # addresses to leave out
    port: int | None  # the port of every row (None: the transport's)


class MxOptions(HostOptions, total=False):
    """The keywords of find_hosts_by_mx."""

    require_mx: bool  # no MX records is an error (NoMxError), not an implicit MX
    local_host_check: IpPredicate | None  # is an address this machine? (see HostList)


# ---------------------------------------------------------------------------
# The resolver
# ---------------------------------------------------------------------------


class DnsResolver:
    """MX/A/AAAA lookups with Exim's routing rules; sync and async.

    Make one at start-up (it reads /etc/resolv.conf) and keep it: it holds
    the optional cache.  Methods raise DeferError (temporary) or a FailError
    subclass (permanent); see the module docstring.
    """

    def __init__(self, settings: ResolverSettings | None = None, *, rng: random.Random | None = None) -> None:
        self.settings = settings if settings is not None else ResolverSettings()
        self._rng = rng if rng is not None else random.Random()
        self._querier = Querier(self.settings)

    # -- public sync API ----------------------------------------------------

    def lookup_mx(self, domain: str, **search: Unpack[SearchOptions]) -> list[MXRecord]:
        """The MX records of `domain`, by preference (no randomising); [] if it has none."""
        return self._querier.run(self._plan_lookup_mx(domain, **search))

    def lookup_addresses(self, name: str, **search: Unpack[SearchOptions]) -> list[str]:
        """The A then AAAA addresses of `name` (AAAA first with prefer_ipv6).

        [] if the name exists without addresses; UnknownHostError if it does not exist.
        """
        return self._querier.run(self._plan_lookup_addresses(name, **search))

    def find_hosts_by_mx(self, domain: str, **options: Unpack[MxOptions]) -> HostList:
        """The hosts to deliver mail for `domain` to, in order (RFC 5321 §5.1)."""
        return self._querier.run(self._plan_hosts_by_mx(domain, **options))

    def find_hosts_by_name(self, name: str, **options: Unpack[HostOptions]) -> list[Host]:
        """The addresses of host `name` (or the IP literal itself) as Host rows.

        [] means every address was ignored (ignore_target_hosts, or an IPv6
        literal with use_ipv6 off).  UnknownHostError if it has none.
        """
        return self._querier.run(self._plan_hosts_by_name(name, **options))

    def lookup_records(self, name: str, rdtype: str) -> Result:
        """One query for `name` as given (never extended by the search list): its Result,
        whatever the answer (never raises).  For DNS block lists (A and TXT)."""
        return self._querier.run(self._plan_records(name, rdtype))

    # -- public async API: the same, on the running event loop ----------------

    async def lookup_records_async(self, name: str, rdtype: str) -> Result:
        return await self._querier.run_async(self._plan_records(name, rdtype))

    async def lookup_mx_async(self, domain: str, **search: Unpack[SearchOptions]) -> list[MXRecord]:
        return await self._querier.run_async(self._plan_lookup_mx(domain, **search))

    async def lookup_addresses_async(self, name: str, **search: Unpack[SearchOptions]) -> list[str]:
        return await self._querier.run_async(self._plan_lookup_addresses(name, **search))

    async def find_hosts_by_mx_async(self, domain: str, **options: Unpack[MxOptions]) -> HostList:
        return await self._querier.run_async(self._plan_hosts_by_mx(domain, **options))

    async def find_hosts_by_name_async(self, name: str, **options: Unpack[HostOptions]) -> list[Host]:
        return await self._querier.run_async(self._plan_hosts_by_name(name, **options))

    # -- plans --------------------------------------------------------------

    def _address_queries(self, name: str, search: bool) -> list[Query]:
        queries = [Query(name, "A", search)]
        if self.settings.use_ipv6:
            queries.append(Query(name, "AAAA", search))
            if self.settings.prefer_ipv6:
                queries.reverse()
        return queries

    def _plan_records(self, name: str, rdtype: str) -> Plan[Result]:
        [result] = yield [Query(absolute(name), rdtype, False)]
        return result

    def _plan_lookup_mx(
        self, domain: str, *, qualify_single: bool = False, search_parents: bool = False
    ) -> Plan[list[MXRecord]]:
        search = _uses_search(domain, qualify_single, search_parents)
        [result] = yield [Query(domain, "MX", search)]
        _raise_for_domain(domain, result)
        return sorted(result.mx)

    def _plan_lookup_addresses(
        self, name: str, *, qualify_single: bool = False, search_parents: bool = False
    ) -> Plan[list[str]]:
        results = yield self._address_queries(name, _uses_search(name, qualify_single, search_parents))
        found = combine(results)
        if found.status in (Status.FOUND, Status.NODATA):
            return found.addresses
        raise _host_error(name, found)

    def _plan_hosts_by_name(
        self,
        name: str,
        *,
        ignore_target_hosts: IpPredicate | None = None,
        qualify_single: bool = False,
        search_parents: bool = False,
        port: int | None = None,
    ) -> Plan[list[Host]]:
        literal = ip_literal(name)
        if literal is not None:
            # An IP address stands for itself: no lookup.
            usable = self.settings.use_ipv6 or ":" not in literal
            if not usable or (ignore_target_hosts is not None and ignore_target_hosts(literal)):
                return []
            return [Host(literal, literal, port=port)]
        results = yield self._address_queries(name, _uses_search(name, qualify_single, search_parents))
        found = combine(results)
        if found.status is not Status.FOUND:
            raise _host_error(name, found)
        host_name = found.qualified or name.rstrip(".")
        return [
            Host(host_name, address, port=port)
            for address in found.addresses
            if ignore_target_hosts is None or not ignore_target_hosts(address)
        ]

    def _plan_hosts_by_mx(
        self,
        domain: str,
        *,
        require_mx: bool = False,
        ignore_target_hosts: IpPredicate | None = None,
        local_host_check: IpPredicate | None = None,
        qualify_single: bool = False,
        search_parents: bool = False,
        port: int | None = None,
    ) -> Plan[HostList]:
        search = _uses_search(domain, qualify_single, search_parents)
        [mx_result] = yield [Query(domain, "MX", search)]
        _raise_for_domain(domain, mx_result)
        qualified = mx_result.qualified or domain.rstrip(".")

        if mx_result.status is Status.NODATA:
            if require_mx:
                raise _fail(NoMxError, f'no MX records for mail domain "{domain}"')
            # RFC 5321 §5.1: no MX, so the domain is its own (implicit) MX.
            results = yield self._address_queries(absolute(qualified), False)
            found = combine(results)
            if found.status is Status.TEMPFAIL:
                assert found.failure is not None
                raise _defer(found.failure.describe())
            if found.status is not Status.FOUND:
                raise _fail(
                    UnknownDomainError, f'unrouteable mail domain "{domain}": no MX or address records'
                )
            rows = [
                Host(qualified, address, mx=IMPLICIT_MX, port=port, sort_key=IMPLICIT_MX * 1000)
                for address in found.addresses
            ]
            return _finish(
                HostList(qualified, rows, implicit_mx=True), [], ignore_target_hosts, local_host_check, domain
            )

        # RFC 7505: a domain whose only MX is "." accepts no mail.  Should a
        # "." appear beside real MX records (the RFC forbids it), it is
        # simply a target without addresses.
        records = [record for record in mx_result.mx if record.exchange != "."]
        if not records:
            raise _fail(
                NullMxError,
                f'domain "{domain}" does not accept mail: '
                "an MX or SRV record indicated no SMTP service (null MX)",
                esc=ESC_NULL_MX,
                code=556,
            )

        targets = self._order_mx(records)
        # MX targets must be host names; one that is an IP address is treated
        # as a name without addresses (Exim's allow_mx_to_ip unset).
        looked_up = [(record, key) for record, key in targets if ip_literal(record.exchange) is None]
        queries = [
            query
            for record, _ in looked_up
            for query in self._address_queries(absolute(record.exchange), False)
        ]
        results = (yield queries) if queries else []
        per_target = len(queries) // max(1, len(looked_up))

        rows: list[Host] = []
        deferred: list[MXRecord] = []
        first_defer: Result | None = None
        for index, (record, sort_key) in enumerate(looked_up):
            found = combine(results[index * per_target : (index + 1) * per_target])
            if found.status is Status.FOUND:
                rows.extend(
                    Host(record.exchange, address, mx=record.preference, port=port, sort_key=sort_key)
                    for address in found.addresses
                )
            elif found.status is Status.TEMPFAIL:
                deferred.append(record)
                first_defer = first_defer or found.failure

        if not rows:
            if first_defer is not None:
                raise _defer(
                    f"host lookup for MX hosts of {domain} did not complete: {first_defer.describe()}"
                )
            message = "all relevant MX records point to non-existent hosts"
            if len(looked_up) < len(targets):
                message += " or (invalidly) to IP addresses"
            raise _fail(MxHostsMissingError, message)

        hosts = HostList(qualified, rows, deferred=[record.exchange for record in deferred])
        return _finish(hosts, deferred, ignore_target_hosts, local_host_check, domain)

    def _order_mx(self, records: list[MXRecord]) -> list[tuple[MXRecord, int]]:
        """MX records by preference, randomly among equal preferences (RFC 5321
        §5.1), each with its sort key; a target listed twice keeps its best."""
        best: dict[str, MXRecord] = {}
        for record in sorted(records):
            best.setdefault(record.exchange.lower(), record)
        groups: dict[int, list[MXRecord]] = {}
        for record in best.values():
            groups.setdefault(record.preference, []).append(record)
        ordered: list[tuple[MXRecord, int]] = []
        for preference in sorted(groups):
            group = groups[preference]
            self._rng.shuffle(group)
            ordered.extend((record, preference * 1000 + min(rank, 999)) for rank, record in enumerate(group))
        return ordered


def _raise_for_domain(domain: str, result: Result) -> None:
    """Raise for a failed lookup of a mail domain's own records."""
    if result.status is Status.NXDOMAIN:
        raise _fail(UnknownDomainError, f'unrouteable mail domain "{domain}"')
    if result.status is Status.INVALID:
        raise _fail(UnknownDomainError, f'mail domain "{domain}" is syntactically invalid')
    if result.status is Status.TEMPFAIL:
        raise _defer(result.describe())


def _host_error(name: str, found: Addresses) -> DeferError | FailError:
    if found.status is Status.TEMPFAIL:
        assert found.failure is not None
        return _defer(found.failure.describe())
    if found.status is Status.NODATA:
        return _fail(UnknownHostError, f'host "{name}" has no address records')
    if found.status is Status.INVALID:
        return _fail(UnknownHostError, f'host name "{name}" is syntactically invalid')
    return _fail(UnknownHostError, f'host "{name}" not found in DNS')


def _finish(
    hosts: HostList,
    deferred: list[MXRecord],
    ignore_target_hosts: IpPredicate | None,
    local_host_check: IpPredicate | None,
    domain: str,
) -> HostList:
    """Drop duplicate and ignored addresses, then apply the local-host rule."""
    seen: set[str] = set()
    kept: list[Host] = []
    for host in hosts.hosts:
        assert host.address is not None
        if host.address in seen:
            continue  # the same address under a better preference is kept
        seen.add(host.address)
        if ignore_target_hosts is not None and ignore_target_hosts(host.address):
            hosts.ignored.append(host)
        else:
            kept.append(host)

    if local_host_check is not None:
        local = next(
            (host for host in kept if host.address is not None and local_host_check(host.address)), None
        )
        if local is not None:
            local_preference = local.mx if local.mx is not None else IMPLICIT_MX
            better = [host for host in kept if host.mx is not None and host.mx < local_preference]
            if better:
                # RFC 5321 §5.1: never deliver to an MX of our own preference or higher.
                kept = better
                hosts.local_host_removed = True
            elif any(record.preference < local_preference for record in deferred):
                # A better MX exists but its address is not known yet: it is
                # not this machine's mail, so wait rather than act on "self".
                raise _defer(f"host lookup for MX hosts of {domain} did not complete")
            else:
                hosts.self_reference = True

    if not kept and deferred:
        raise _defer(f"host lookup for MX hosts of {domain} did not complete")
    hosts.hosts = kept
    return hosts


__all__ = [
    "DEFAULT_PORT",
    "IMPLICIT_MX",
    "RETRY_ERROR_LOOKUP",
    "DnsResolver",
    "Host",
    "HostList",
    "HostOptions",
    "IpPredicate",
    "MXRecord",
    "MxHostsMissingError",
    "MxOptions",
    "NoMxError",
    "NullMxError",
    "ResolverSettings",
    "SearchOptions",
    "UnknownDomainError",
    "UnknownHostError",
    "ip_literal",
    "parse_dns_servers",
]
