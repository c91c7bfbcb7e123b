"""DNS queries for mta.route.dns: the questions, their answers, and dnspython.

mta.route.dns writes each lookup once, as a *plan*: a generator that yields
a batch of `Query`s, receives their `Result`s in the same order, and
returns its value (or raises DeferError/FailError).  `Querier` runs plans:

    querier = Querier(settings)     # reads /etc/resolv.conf
    querier.run(plan)               # blocking: one query after the other
    await querier.run_async(plan)   # the queries of one batch concurrently

This is the dnspython boundary: dnspython's answers and exceptions become a
Result here and nowhere else, so the plans see five statuses, never an
exception.  dnspython takes ~50 ms to import, so it is imported when the
first Querier is made, not with this module.
"""

from __future__ import annotations

import enum
import sys
import time
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

from mta.record import dataclass

if TYPE_CHECKING:
    import dns.asyncresolver
    import dns.exception
    import dns.resolver

    from mta.route.dns_settings import ResolverSettings

_T = TypeVar("_T")


# ---------------------------------------------------------------------------
# Queries and their results
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class MXRecord:
    """One MX record; `exchange` has no final dot ("." for a null MX)."""

    preference: int
    exchange: str


class Status(enum.Enum):
    """How one query ended."""

    FOUND = "found"
    NODATA = "no data"
    NXDOMAIN = "no such domain"
    TEMPFAIL = "temporary failure"
    INVALID = "invalid name"


@dataclass(frozen=True, slots=True)
class Query:
    """One question: `search` walks the search list (qualify_single, search_parents)."""

    name: str
    rdtype: str  # "MX", "A", "AAAA", "TXT"
    search: bool = False


@dataclass(frozen=True, slots=True)
class Result:
    """The answer to one Query, free of dnspython types."""

    query: Query
    status: Status
    addresses: tuple[str, ...] = ()
    mx: tuple[MXRecord, ...] = ()
    qualified: str | None = None  # the name that answered, when not the name asked
    reason: str = ""  # for TEMPFAIL: "timed out", "failed: ..."
    texts: tuple[str, ...] = ()  # TXT: each record's strings joined (DNS block lists)

    def describe(self) -> str:
        name = self.query.name.rstrip(".")
        return f"DNS lookup of {self.query.rdtype.lower()} for {name} {self.reason}"


# A plan yields batches of queries, receives their results in the same order,
# and returns its value (or raises DeferError/FailError).
Plan = Generator[list[Query], list[Result], _T]


def absolute(name: str) -> str:
    """`name` with its final dot (not searched, not extended)."""
    return name if name.endswith(".") else name + "."


@dataclass(slots=True)
class Addresses:
    """A and AAAA results for one name, combined."""

    status: Status
    addresses: list[str]
    qualified: str | None
    failure: Result | None  # the result that explains a TEMPFAIL/NXDOMAIN/INVALID


def combine(results: Sequence[Result]) -> Addresses:
    """The A and AAAA results of one name as one answer (addresses in the order of the results)."""
    addresses: list[str] = []
    qualified: str | None = None
    for result in results:
        for address in result.addresses:
            if address not in addresses:
                addresses.append(address)
        if result.status is Status.FOUND and qualified is None:
            qualified = result.qualified
    if addresses:
        return Addresses(Status.FOUND, addresses, qualified, None)
    # Nothing found: a temporary failure of either family wins (if in doubt,
    # defer), then a bad name, then NXDOMAIN; otherwise the name has no data.
    for status in (Status.TEMPFAIL, Status.INVALID, Status.NXDOMAIN):
        for result in results:
            if result.status is status:
                return Addresses(status, [], None, result)
    return Addresses(Status.NODATA, [], None, None)


# ---------------------------------------------------------------------------
# dnspython boundary
# ---------------------------------------------------------------------------


def _from_answer(query: Query, answer: dns.resolver.Answer) -> Result:
    import dns.name
    import dns.rdatatype

    qualified: str | None = None
    if answer.qname != dns.name.from_text(absolute(query.name)):
        qualified = answer.qname.to_text(omit_final_dot=True)
    rrset = answer.rrset
    if rrset is None or len(rrset) == 0:
        return Result(query, Status.NODATA, qualified=qualified)
    if rrset.rdtype == dns.rdatatype.MX:
        records = tuple(MXRecord(int(r.preference), r.exchange.to_text(omit_final_dot=True)) for r in rrset)
        return Result(query, Status.FOUND, mx=records, qualified=qualified)
    if rrset.rdtype == dns.rdatatype.TXT:
        # Record text is network data: undecodable bytes are kept as surrogates.
        texts = tuple(b"".join(r.strings).decode("utf-8", "surrogateescape") for r in rrset)
        return Result(query, Status.FOUND, texts=texts, qualified=qualified)
    addresses = tuple(str(r.address) for r in rrset)
    return Result(query, Status.FOUND, addresses=addresses, qualified=qualified)


def _from_error(query: Query, exc: dns.exception.DNSException | UnicodeError) -> Result:
    import dns.exception
    import dns.name
    import dns.resolver

    if isinstance(exc, dns.resolver.NXDOMAIN):
        return Result(query, Status.NXDOMAIN)
    if isinstance(exc, dns.resolver.NoAnswer):
        return Result(query, Status.NODATA)
    if isinstance(exc, dns.exception.Timeout):
        return Result(query, Status.TEMPFAIL, reason="timed out")
    if isinstance(exc, dns.resolver.NoNameservers):
        return Result(query, Status.TEMPFAIL, reason=_describe_server_errors(exc))
    invalid = (
        UnicodeError,
        dns.exception.SyntaxError,
        dns.name.NameTooLong,
        dns.name.IDNAException,
        dns.name.NoIDNA2008,
        dns.resolver.YXDOMAIN,
    )
    if isinstance(exc, invalid):
        return Result(query, Status.INVALID, reason=f"failed: invalid name ({exc})")
    # Any other dnspython trouble: if in doubt, defer.
    return Result(query, Status.TEMPFAIL, reason=f"failed: {exc}")


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


# ---------------------------------------------------------------------------
# Running plans
# ---------------------------------------------------------------------------


class Querier:
    """Sends queries with dnspython, blocking or on the running event loop."""

    def __init__(self, settings: ResolverSettings) -> None:
        self._sync = _build_resolver(settings)
        self._async: dns.asyncresolver.Resolver | None = None

    def run(self, plan: Plan[_T]) -> _T:
        """Run a plan with blocking queries; RuntimeError inside a running event loop."""
        _refuse_inside_event_loop()
        step = _step(plan, None)
        while not isinstance(step, _Finished):
            step = _step(plan, [self._query(query) for query in step])
        return step.value

    async def run_async(self, plan: Plan[_T]) -> _T:
        """Run a plan on the running event loop, the queries of each batch concurrently."""
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

    def _query(self, query: Query) -> Result:
        import dns.exception

        resolver = self._sync
        if resolver is None or not query.name.strip("."):
            return _unsent(query, resolver)
        try:
            answer = resolver.resolve(query.name, query.rdtype, search=query.search, raise_on_no_answer=False)
        except (dns.exception.DNSException, UnicodeError) as exc:
            return _from_error(query, exc)
        return _from_answer(query, answer)

    async def _query_async(self, query: Query) -> Result:
        import dns.exception

        resolver = self._async_resolver()
        if resolver is None or not query.name.strip("."):
            return _unsent(query, resolver)
        try:
            answer = await resolver.resolve(query.name, query.rdtype, search=query.search, raise_on_no_answer=False)
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


def _unsent(query: Query, resolver: object | None) -> Result:
    """The result of a query that cannot be sent: there are no DNS servers, or the name is empty."""
    if resolver is None:
        return Result(query, Status.TEMPFAIL, reason="failed: no DNS servers configured (/etc/resolv.conf)")
    return Result(query, Status.INVALID, reason="failed: empty name")


@dataclass(frozen=True, slots=True)
class _Finished(Generic[_T]):
    value: _T


def _step(plan: Plan[_T], results: list[Result] | None) -> list[Query] | _Finished[_T]:
    try:
        return next(plan) if results is None else plan.send(results)
    except StopIteration as stop:
        return _Finished(stop.value)


def _refuse_inside_event_loop() -> None:
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError("DnsResolver: blocking lookup inside a running event loop; use the *_async methods")
