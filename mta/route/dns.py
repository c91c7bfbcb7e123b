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

Each lookup is written once, as a *plan*: a generator that yields batches of
queries and receives their results.  A sync and an async runner execute the
plans; the async runner sends the queries of one batch concurrently.

Errors (dnspython's exceptions are mapped here, and nowhere else):

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

import enum
import ipaddress
import random
import sys
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from mta.errors import DeferError, FailError

if TYPE_CHECKING:
    import dns.asyncresolver
    import dns.exception
    import dns.resolver

DEFAULT_PORT = 53
# Host.mx of the hosts of a domain that has no MX records, whose own address
# records are used instead (RFC 5321 §5.1 "implicit MX"); Exim's MX_NONE.
IMPLICIT_MX = -1
# The retry-rule error name of every DNS deferral.
RETRY_ERROR_LOOKUP = "lookup"
ESC_BAD_DOMAIN = "5.1.2"  # RFC 3463: bad destination system address
ESC_NULL_MX = "5.1.10"  # RFC 7505 §4.2
ESC_DNS_TROUBLE = "4.4.3"  # RFC 3463: directory server failure

IpPredicate = Callable[[str], bool]

_T = TypeVar("_T")


# ---------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolverSettings:
    """How to reach DNS.

    `servers` empty means the system's (/etc/resolv.conf).  `timeout` is the
    wait for one answer from one server (Exim's dns_retrans) and `retries`
    the number of further rounds over all servers (dns_retry); a lookup gives
    up after about timeout * (retries + 1) * len(servers).  Exim's value 0 for
    dns_retrans/dns_retry means "the resolver's default": the caller turns
    that into these defaults (5 s, 1 retry, as glibc).

    `search_domains` overrides the search list used by qualify_single and
    search_parents (None: the system's ``search``/``domain``).
    `cache_max_ttl` > 0 keeps answers (positive and negative) in memory for
    at most that many seconds (and never longer than their TTL).
    """

    servers: list[tuple[str, int]] = field(default_factory=list)
    timeout: float = 5.0
    retries: int = 1
    use_ipv6: bool = True
    prefer_ipv6: bool = False
    search_domains: list[str] | None = None
    cache_max_ttl: float = 0.0

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError(f"DNS timeout must be positive, got {self.timeout}")
        if self.retries < 0:
            raise ValueError(f"DNS retries must not be negative, got {self.retries}")
        if self.cache_max_ttl < 0:
            raise ValueError(f"DNS cache_max_ttl must not be negative, got {self.cache_max_ttl}")
        for address, port in self.servers:
            ipaddress.ip_address(address)  # ValueError for a non-address
            if not 0 < port < 65536:
                raise ValueError(f"DNS server port out of range: {port}")

    def lifetime(self, server_count: int) -> float:
        """The longest one query may take, across `server_count` servers and retries."""
        rounds = self.retries + 1
        # dnspython sleeps 0.1 s, 0.2 s, ... (at most 2 s) between rounds.
        backoff = sum(min(0.1 * 2**i, 2.0) for i in range(self.retries))
        return self.timeout * rounds * max(1, server_count) + backoff


_SERVER_FORMS = "192.0.2.1, 192.0.2.1.5353, [2001:db8::1]:5353 or ::1"


def parse_dns_servers(items: Sequence[str]) -> list[tuple[str, int]]:
    """Parse the items of the dns_servers option into (address, port) pairs.

    Accepted: ``192.0.2.1``, ``192.0.2.1.5353`` (Exim's ip.port),
    ``192.0.2.1:5353``, ``[2001:db8::1]``, ``[2001:db8::1]:5353``, ``::1``,
    ``::1.5353``.  Blank items are skipped.  Raises ValueError naming the item.
    """
    servers: list[tuple[str, int]] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        servers.append(_parse_dns_server(item))
    return servers


def _parse_dns_server(item: str) -> tuple[str, int]:
    address_text, port_text = item, None
    if item.startswith("["):
        close = item.find("]")
        rest = item[close + 1 :] if close > 0 else "?"
        if close < 0 or (rest and not rest.startswith(":")):
            raise ValueError(f"dns_servers: bad item {item!r} (forms: {_SERVER_FORMS})")
        address_text = item[1:close]
        port_text = rest[1:] if rest else None
    elif _ip(item) is None:
        if item.count(":") == 1:  # 192.0.2.1:5353
            address_text, _, port_text = item.partition(":")
        elif "." in item:  # 192.0.2.1.5353, ::1.5353
            address_text, _, port_text = item.rpartition(".")
    address = _ip(address_text)
    if address is None:
        raise ValueError(f"dns_servers: {item!r} is not an IP address (forms: {_SERVER_FORMS})")
    if port_text is None:
        return str(address), DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"dns_servers: bad port in {item!r}")
    return str(address), int(port_text)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def ip_literal(name: str) -> str | None:
    """The address if `name` is an IP literal (``192.0.2.1``, ``[192.0.2.1]``,
    ``::1``, ``[IPv6:2001:db8::1]``), else None."""
    text = name.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
        if text[:5].lower() == "ipv6:":
            text = text[5:]
    address = _ip(text)
    return str(address) if address is not None else None


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class MXRecord:
    """One MX record; `exchange` has no final dot ("." for a null MX)."""

    preference: int
    exchange: str


@dataclass(frozen=True, slots=True)
class Host:
    """One address of one host, in delivery order.

    A host name with several addresses becomes several Host rows, one after
    the other.  `mx` is the MX preference, IMPLICIT_MX (-1) for a domain used
    as its own MX, None for a host found by name.  `address` is None only for
    a host whose address is still to be looked up (built by a router from a
    route list).  `port` None means the transport's port.  Rows are in
    `sort_key` order: preference * 1000 plus a random rank among hosts of
    equal preference, the same for all addresses of one host.
    """

    name: str
    address: str | None
    mx: int | None = None
    port: int | None = None
    sort_key: int = 0

    def __str__(self) -> str:
        # The shape of Exim's -bt output: "mx1.example.org [192.0.2.1] MX=10"
        text = f"{self.name} [{self.address}]" if self.address else self.name
        if self.port is not None:
            text += f":{self.port}"
        if self.mx is not None and self.mx >= 0:
            text += f" MX={self.mx}"
        return text


@dataclass(slots=True)
class HostList:
    """What find_hosts_by_mx found for a mail domain.

    `domain`: the name that was found, fully qualified (differs from the
    domain asked for only when qualify_single/search_parents extended it).

    `self_reference`: this machine is among the lowest-preference MX hosts
    (or the implicit MX is this machine).  `hosts` is then the whole list,
    local host included, and the router's ``self`` option decides
    (freeze/defer/fail/pass/send/reroute).

    `local_host_removed`: this machine appeared at a higher preference; it
    and every host of its preference or higher were removed (RFC 5321 §5.1),
    which is what check_secondary_mx looks for.

    `ignored`: rows dropped by ignore_target_hosts.  An empty `hosts` with a
    non-empty `ignored` means every address was ignored: the router declines
    (dnslookup) or applies host_all_ignored (domainlist).  Never accept an
    address with an empty host list.

    `deferred`: MX target names whose address lookup failed temporarily and
    were left out; not empty only when other hosts were found.
    """

    domain: str
    hosts: list[Host]
    implicit_mx: bool = False
    self_reference: bool = False
    local_host_removed: bool = False
    ignored: list[Host] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)

    @property
    def all_ignored(self) -> bool:
        return not self.hosts and bool(self.ignored)


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


# ---------------------------------------------------------------------------
# Queries and their results, free of dnspython types
# ---------------------------------------------------------------------------


class _Status(enum.Enum):
    FOUND = "found"
    NODATA = "no data"
    NXDOMAIN = "no such domain"
    TEMPFAIL = "temporary failure"
    INVALID = "invalid name"


@dataclass(frozen=True, slots=True)
class _Query:
    name: str
    rdtype: str  # "MX", "A", "AAAA"
    search: bool = False


@dataclass(frozen=True, slots=True)
class _Result:
    query: _Query
    status: _Status
    addresses: tuple[str, ...] = ()
    mx: tuple[MXRecord, ...] = ()
    qualified: str | None = None  # the name that answered, when not the name asked
    reason: str = ""  # for TEMPFAIL: "timed out", "failed: ..."

    def describe(self) -> str:
        name = self.query.name.rstrip(".")
        return f"DNS lookup of {self.query.rdtype.lower()} for {name} {self.reason}"


@dataclass(frozen=True, slots=True)
class _Finished(Generic[_T]):
    value: _T


# A plan yields batches of queries, receives their results in the same order,
# and returns its value (or raises DeferError/FailError).
_Plan = Generator[list[_Query], list[_Result], _T]


def _step(plan: _Plan[_T], results: list[_Result] | None) -> list[_Query] | _Finished[_T]:
    try:
        return next(plan) if results is None else plan.send(results)
    except StopIteration as stop:
        return _Finished(stop.value)


def _uses_search(name: str, qualify_single: bool, search_parents: bool) -> bool:
    # glibc res_search: RES_DEFNAMES (qualify_single) extends a name without
    # dots, RES_DNSRCH (search_parents) one with dots; both walk the search
    # list.  A name with a final dot is never extended.
    if name.endswith("."):
        return False
    dotted = "." in name
    return (qualify_single and not dotted) or (search_parents and dotted)


def _absolute(name: str) -> str:
    return name if name.endswith(".") else name + "."


@dataclass(slots=True)
class _Addresses:
    """A and AAAA results for one name, combined."""

    status: _Status
    addresses: list[str]
    qualified: str | None
    failure: _Result | None  # the result that explains a TEMPFAIL/NXDOMAIN/INVALID


def _combine(results: Sequence[_Result]) -> _Addresses:
    addresses: list[str] = []
    qualified: str | None = None
    for result in results:
        for address in result.addresses:
            if address not in addresses:
                addresses.append(address)
        if result.status is _Status.FOUND and qualified is None:
            qualified = result.qualified
    if addresses:
        return _Addresses(_Status.FOUND, addresses, qualified, None)
    # Nothing found: a temporary failure of either family wins (if in doubt,
    # defer), then a bad name, then NXDOMAIN; otherwise the name has no data.
    for status in (_Status.TEMPFAIL, _Status.INVALID, _Status.NXDOMAIN):
        for result in results:
            if result.status is status:
                return _Addresses(status, [], None, result)
    return _Addresses(_Status.NODATA, [], None, None)


# ---------------------------------------------------------------------------
# dnspython boundary
# ---------------------------------------------------------------------------


def _from_answer(query: _Query, answer: dns.resolver.Answer) -> _Result:
    import dns.name
    import dns.rdatatype

    qualified: str | None = None
    if answer.qname != dns.name.from_text(_absolute(query.name)):
        qualified = answer.qname.to_text(omit_final_dot=True)
    rrset = answer.rrset
    if rrset is None or len(rrset) == 0:
        return _Result(query, _Status.NODATA, qualified=qualified)
    if rrset.rdtype == dns.rdatatype.MX:
        records = tuple(MXRecord(int(r.preference), r.exchange.to_text(omit_final_dot=True)) for r in rrset)
        return _Result(query, _Status.FOUND, mx=records, qualified=qualified)
    addresses = tuple(str(r.address) for r in rrset)
    return _Result(query, _Status.FOUND, addresses=addresses, qualified=qualified)


def _from_error(query: _Query, exc: dns.exception.DNSException | UnicodeError) -> _Result:
    import dns.exception
    import dns.name
    import dns.resolver

    if isinstance(exc, dns.resolver.NXDOMAIN):
        return _Result(query, _Status.NXDOMAIN)
    if isinstance(exc, dns.resolver.NoAnswer):
        return _Result(query, _Status.NODATA)
    if isinstance(exc, dns.exception.Timeout):
        return _Result(query, _Status.TEMPFAIL, reason="timed out")
    if isinstance(exc, dns.resolver.NoNameservers):
        return _Result(query, _Status.TEMPFAIL, reason=_describe_server_errors(exc))
    invalid = (
        UnicodeError,
        dns.exception.SyntaxError,
        dns.name.NameTooLong,
        dns.name.IDNAException,
        dns.name.NoIDNA2008,
        dns.resolver.YXDOMAIN,
    )
    if isinstance(exc, invalid):
        return _Result(query, _Status.INVALID, reason=f"failed: invalid name ({exc})")
    # Any other dnspython trouble: if in doubt, defer.
    return _Result(query, _Status.TEMPFAIL, reason=f"failed: {exc}")


def _describe_server_errors(exc: dns.resolver.NoNameservers) -> str:
    errors = exc.kwargs.get("errors") or []
    if not errors:
        return "failed: no DNS servers configured"
    parts: list[str] = []
    for server, _tcp, port, error, _response in errors:
        # dnspython names a server "Do53:192.0.2.1@53"; keep the address.
        where = f"{str(server).removeprefix('Do53:').rpartition('@')[0] or server} port {port}"
        if isinstance(error, str):  # an rcode: "SERVFAIL", "REFUSED"
            text = f"{error} from {where}"
        elif isinstance(error, OSError):
            text = f"{where} unreachable ({error.strerror or error})"
        else:
            text = f"{where}: {error or type(error).__name__}"
        if text not in parts:
            parts.append(text)
    return "failed: " + "; ".join(parts)


def _make_cache(max_ttl: float) -> dns.resolver.Cache:
    import dns.resolver

    class _ShortCache(dns.resolver.Cache):
        """dnspython's cache, with every entry kept at most `max_ttl` seconds."""

        def put(self, key: dns.resolver.CacheKey, value: dns.resolver.Answer) -> None:
            value.expiration = min(value.expiration, time.time() + max_ttl)
            super().put(key, value)

    return _ShortCache(cleaning_interval=max(max_ttl, 1.0))


# Resolver attributes copied from the sync resolver to the async one.
_COPIED_ATTRIBUTES = (
    "domain",
    "search",
    "ndots",
    "use_search_by_default",
    "port",
    "nameserver_ports",
    "timeout",
    "lifetime",
    "edns",
    "ednsflags",
    "ednsoptions",
    "payload",
    "flags",
    "retry_servfail",
    "rotate",
    "cache",
)


def _build_resolver(settings: ResolverSettings) -> dns.resolver.Resolver | None:
    """A configured dnspython resolver, or None when the system has no DNS servers."""
    import dns.exception
    import dns.name
    import dns.nameserver
    import dns.resolver

    try:
        # Read /etc/resolv.conf even with explicit servers: Exim's dns
        # settings replace the servers, not the search list.
        resolver = dns.resolver.Resolver(configure=True)
    except dns.resolver.NoResolverConfiguration:
        if not settings.servers:
            return None
        resolver = dns.resolver.Resolver(configure=False)
    if settings.servers:
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(address, port) for address, port in settings.servers
        ]
    if settings.search_domains is not None:
        try:
            search = [dns.name.from_text(domain) for domain in settings.search_domains]
        except dns.exception.DNSException as exc:
            raise ValueError(f"bad DNS search domain in {settings.search_domains!r}: {exc}") from exc
        resolver.search = search
        resolver.domain = search[0] if search else dns.name.root
    resolver.timeout = settings.timeout
    resolver.lifetime = settings.lifetime(len(resolver.nameservers))
    resolver.retry_servfail = False  # SERVFAIL: next server, then defer
    if settings.cache_max_ttl > 0:
        resolver.cache = _make_cache(settings.cache_max_ttl)
    return resolver


def _refuse_inside_event_loop() -> None:
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError("DnsResolver: blocking lookup inside a running event loop; use the *_async methods")


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
        self._sync = _build_resolver(self.settings)
        self._async: dns.asyncresolver.Resolver | None = None

    # -- public sync API ----------------------------------------------------

    def lookup_mx(
        self, domain: str, *, qualify_single: bool = False, search_parents: bool = False
    ) -> list[MXRecord]:
        """The MX records of `domain`, by preference (no randomising); [] if it has none."""
        return self._run(self._plan_lookup_mx(domain, _uses_search(domain, qualify_single, search_parents)))

    def lookup_addresses(
        self, name: str, *, qualify_single: bool = False, search_parents: bool = False
    ) -> list[str]:
        """The A then AAAA addresses of `name` (AAAA first with prefer_ipv6).

        [] if the name exists without addresses; UnknownHostError if it does not exist.
        """
        return self._run(
            self._plan_lookup_addresses(name, _uses_search(name, qualify_single, search_parents))
        )

    def find_hosts_by_mx(
        self,
        domain: str,
        *,
        require_mx: bool = False,
        ignore_target_hosts: IpPredicate | None = None,
        local_host_check: IpPredicate | None = None,
        qualify_single: bool = False,
        search_parents: bool = False,
        port: int | None = None,
    ) -> HostList:
        """The hosts to deliver mail for `domain` to, in order (RFC 5321 §5.1)."""
        return self._run(
            self._plan_hosts_by_mx(
                domain,
                require_mx=require_mx,
                ignore_target_hosts=ignore_target_hosts,
                local_host_check=local_host_check,
                search=_uses_search(domain, qualify_single, search_parents),
                port=port,
            )
        )

    def find_hosts_by_name(
        self,
        name: str,
        *,
        ignore_target_hosts: IpPredicate | None = None,
        qualify_single: bool = False,
        search_parents: bool = False,
        port: int | None = None,
    ) -> list[Host]:
        """The addresses of host `name` (or the IP literal itself) as Host rows.

        [] means every address was ignored (ignore_target_hosts, or an IPv6
        literal with use_ipv6 off).  UnknownHostError if it has none.
        """
        return self._run(
            self._plan_hosts_by_name(
                name,
                ignore_target_hosts=ignore_target_hosts,
                search=_uses_search(name, qualify_single, search_parents),
                port=port,
            )
        )

    # -- public async API ---------------------------------------------------

    async def lookup_mx_async(
        self, domain: str, *, qualify_single: bool = False, search_parents: bool = False
    ) -> list[MXRecord]:
        return await self._run_async(
            self._plan_lookup_mx(domain, _uses_search(domain, qualify_single, search_parents))
        )

    async def lookup_addresses_async(
        self, name: str, *, qualify_single: bool = False, search_parents: bool = False
    ) -> list[str]:
        return await self._run_async(
            self._plan_lookup_addresses(name, _uses_search(name, qualify_single, search_parents))
        )

    async def find_hosts_by_mx_async(
        self,
        domain: str,
        *,
        require_mx: bool = False,
        ignore_target_hosts: IpPredicate | None = None,
        local_host_check: IpPredicate | None = None,
        qualify_single: bool = False,
        search_parents: bool = False,
        port: int | None = None,
    ) -> HostList:
        return await self._run_async(
            self._plan_hosts_by_mx(
                domain,
                require_mx=require_mx,
                ignore_target_hosts=ignore_target_hosts,
                local_host_check=local_host_check,
                search=_uses_search(domain, qualify_single, search_parents),
                port=port,
            )
        )

    async def find_hosts_by_name_async(
        self,
        name: str,
        *,
        ignore_target_hosts: IpPredicate | None = None,
        qualify_single: bool = False,
        search_parents: bool = False,
        port: int | None = None,
    ) -> list[Host]:
        return await self._run_async(
            self._plan_hosts_by_name(
                name,
                ignore_target_hosts=ignore_target_hosts,
                search=_uses_search(name, qualify_single, search_parents),
                port=port,
            )
        )

    # -- runners ------------------------------------------------------------

    def _run(self, plan: _Plan[_T]) -> _T:
        _refuse_inside_event_loop()
        step = _step(plan, None)
        while not isinstance(step, _Finished):
            step = _step(plan, [self._query(query) for query in step])
        return step.value

    async def _run_async(self, plan: _Plan[_T]) -> _T:
        import asyncio

        step = _step(plan, None)
        while not isinstance(step, _Finished):
            if len(step) == 1:
                results = [await self._query_async(step[0])]
            else:
                async with asyncio.TaskGroup() as group:
                    tasks = [group.create_task(self._query_async(query)) for query in step]
                results = [task.result() for task in tasks]
            step = _step(plan, results)
        return step.value

    def _query(self, query: _Query) -> _Result:
        import dns.exception

        if self._sync is None:
            return _Result(
                query, _Status.TEMPFAIL, reason="failed: no DNS servers configured (/etc/resolv.conf)"
            )
        if query.name.strip(".") == "":
            return _Result(query, _Status.INVALID, reason="failed: empty name")
        try:
            answer = self._sync.resolve(
                query.name, query.rdtype, search=query.search, raise_on_no_answer=False
            )
        except (dns.exception.DNSException, UnicodeError) as exc:
            return _from_error(query, exc)
        return _from_answer(query, answer)

    async def _query_async(self, query: _Query) -> _Result:
        import dns.exception

        resolver = self._async_resolver()
        if resolver is None:
            return _Result(
                query, _Status.TEMPFAIL, reason="failed: no DNS servers configured (/etc/resolv.conf)"
            )
        if query.name.strip(".") == "":
            return _Result(query, _Status.INVALID, reason="failed: empty name")
        try:
            answer = await resolver.resolve(
                query.name, query.rdtype, search=query.search, raise_on_no_answer=False
            )
        except (dns.exception.DNSException, UnicodeError) as exc:
            return _from_error(query, exc)
        return _from_answer(query, answer)

    def _async_resolver(self) -> dns.asyncresolver.Resolver | None:
        # Made from the sync resolver's settings, so no file is read here
        # (this runs inside the event loop).
        if self._sync is None:
            return None
        if self._async is None:
            import dns.asyncresolver

            resolver = dns.asyncresolver.Resolver(configure=False)
            for attribute in _COPIED_ATTRIBUTES:
                setattr(resolver, attribute, getattr(self._sync, attribute))
            resolver.nameservers = self._sync.nameservers
            self._async = resolver
        return self._async

    # -- plans --------------------------------------------------------------

    def _address_queries(self, name: str, search: bool) -> list[_Query]:
        queries = [_Query(name, "A", search)]
        if self.settings.use_ipv6:
            queries.append(_Query(name, "AAAA", search))
            if self.settings.prefer_ipv6:
                queries.reverse()
        return queries

    def _plan_lookup_mx(self, domain: str, search: bool) -> _Plan[list[MXRecord]]:
        [result] = yield [_Query(domain, "MX", search)]
        _raise_for_domain(domain, result)
        return sorted(result.mx)

    def _plan_lookup_addresses(self, name: str, search: bool) -> _Plan[list[str]]:
        results = yield self._address_queries(name, search)
        found = _combine(results)
        if found.status in (_Status.FOUND, _Status.NODATA):
            return found.addresses
        raise _host_error(name, found)

    def _plan_hosts_by_name(
        self,
        name: str,
        *,
        ignore_target_hosts: IpPredicate | None,
        search: bool,
        port: int | None,
    ) -> _Plan[list[Host]]:
        literal = ip_literal(name)
        if literal is not None:
            # An IP address stands for itself: no lookup.
            usable = self.settings.use_ipv6 or ":" not in literal
            if not usable or (ignore_target_hosts is not None and ignore_target_hosts(literal)):
                return []
            return [Host(literal, literal, port=port)]
        results = yield self._address_queries(name, search)
        found = _combine(results)
        if found.status is not _Status.FOUND:
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
        require_mx: bool,
        ignore_target_hosts: IpPredicate | None,
        local_host_check: IpPredicate | None,
        search: bool,
        port: int | None,
    ) -> _Plan[HostList]:
        [mx_result] = yield [_Query(domain, "MX", search)]
        _raise_for_domain(domain, mx_result)
        qualified = mx_result.qualified or domain.rstrip(".")

        if mx_result.status is _Status.NODATA:
            if require_mx:
                raise _fail(NoMxError, f'no MX records for mail domain "{domain}"')
            # RFC 5321 §5.1: no MX, so the domain is its own (implicit) MX.
            results = yield self._address_queries(_absolute(qualified), False)
            found = _combine(results)
            if found.status is _Status.TEMPFAIL:
                assert found.failure is not None
                raise _defer(found.failure.describe())
            if found.status is not _Status.FOUND:
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
            for query in self._address_queries(_absolute(record.exchange), False)
        ]
        results = (yield queries) if queries else []
        per_target = len(queries) // max(1, len(looked_up))

        rows: list[Host] = []
        deferred: list[MXRecord] = []
        first_defer: _Result | None = None
        for index, (record, sort_key) in enumerate(looked_up):
            found = _combine(results[index * per_target : (index + 1) * per_target])
            if found.status is _Status.FOUND:
                rows.extend(
                    Host(record.exchange, address, mx=record.preference, port=port, sort_key=sort_key)
                    for address in found.addresses
                )
            elif found.status is _Status.TEMPFAIL:
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


def _raise_for_domain(domain: str, result: _Result) -> None:
    """Raise for a failed lookup of a mail domain's own records."""
    if result.status is _Status.NXDOMAIN:
        raise _fail(UnknownDomainError, f'unrouteable mail domain "{domain}"')
    if result.status is _Status.INVALID:
        raise _fail(UnknownDomainError, f'mail domain "{domain}" is syntactically invalid')
    if result.status is _Status.TEMPFAIL:
        raise _defer(result.describe())


def _host_error(name: str, found: _Addresses) -> DeferError | FailError:
    if found.status is _Status.TEMPFAIL:
        assert found.failure is not None
        return _defer(found.failure.describe())
    if found.status is _Status.NODATA:
        return _fail(UnknownHostError, f'host "{name}" has no address records')
    if found.status is _Status.INVALID:
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
    "IpPredicate",
    "MXRecord",
    "MxHostsMissingError",
    "NoMxError",
    "NullMxError",
    "ResolverSettings",
    "UnknownDomainError",
    "UnknownHostError",
    "ip_literal",
    "parse_dns_servers",
]
