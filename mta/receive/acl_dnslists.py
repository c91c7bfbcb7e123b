"""The ``dnslists`` ACL condition: DNS block lists, as Exim's dnsbl.c checks them.

``dnslists = zone1 : zone2=127.0.0.2 : zone3/$sender_address_domain`` looks up
the client's address, reversed (``4.3.2.1.zone`` for 1.2.3.4, nibble by
nibble for IPv6), or the keys after ``/`` (an IP address is reversed, a name
is not), in each zone in turn, and is true at the first that lists it.
Each item may restrict the answers it counts (``=a,b`` any of these, ``==``
all answers among these, ``&mask`` bit masks, ``!`` in front inverts), and
may name a second zone for the TXT record (``txtzone,zone=...``).  Answers
outside 127.0.0.0/8 are discarded with a log line (a list whose domain was
lost to someone else must not block the world).  A lookup that fails
counts as "not listed" unless ``+include_unknown`` or ``+defer_unknown``
came earlier in the list.

When it is true, ``$dnslist_domain`` (the zone), ``$dnslist_matched`` (the
key, unreversed), ``$dnslist_value`` (every address the zone gave, comma
separated) and ``$dnslist_text`` (the zone's TXT record) are set, for the
rest of the connection.  Answers are remembered for the connection.

Everything the DNS says is tainted data.  Lookups use dnspython's async
resolver on the session's event loop.
"""

from __future__ import annotations

import ipaddress

from mta import record
from mta.receive.acl_types import Rc
from mta.route.dns_query import Status
from mta.taint import taint
from mta.values import split_list

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from mta.route.dns_query import Result

    Lookup = Callable[[str, str], Awaitable[Result]]


@record.dataclass(frozen=True, slots=True)
class DnslistItem:
    domain: str  # the zone looked up
    txt_domain: str  # the zone of the TXT record and of $dnslist_domain
    iplist: tuple[str, ...] | None  # answers that count, or None for any
    bitmask: bool
    negated: bool  # "!=" / "!&"
    match_all: bool  # "==" / "=&"
    keys: str | None  # the text after "/", or None for the client's address


def parse_dnslist_item(text: str) -> DnslistItem:
    """One ``[txtzone,]zone[!][=|==|&|=&]iplist[/keys]`` item; ValueError if there is no zone."""
    head, slash, keys = text.partition("/")
    iplist: tuple[str, ...] | None = None
    bitmask = negated = match_all = False
    pos = head.find("=")
    if pos < 0:
        pos = head.find("&")
        bitmask = pos >= 0
    if pos >= 0:
        rest = head[pos + 1 :]
        if pos > 0 and head[pos - 1] == "!":
            negated = True
            head_domain = head[: pos - 1]
        else:
            head_domain = head[:pos]
        if not bitmask and rest[:1] in ("=", "&"):
            bitmask, match_all, rest = rest[0] == "&", True, rest[1:]
        iplist = tuple(x.strip() for x in rest.split(",") if x.strip())
    else:
        head_domain = head
    txt_domain, comma, domain = head_domain.partition(",")
    if not comma:
        domain = txt_domain
    domain, txt_domain = domain.strip().rstrip("."), txt_domain.strip().rstrip(".")
    if not domain or not txt_domain:
        raise ValueError(f'no DNS list domain in "{text}"')
    return DnslistItem(domain, txt_domain, iplist, bitmask, negated, match_all, keys if slash else None)


def reverse_address(address: str) -> str | None:
    """4.3.2.1 for 1.2.3.4; the 32 nibbles of an IPv6 address, last first; None if not an address."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.version == 4:
        return ".".join(reversed(str(ip).split(".")))
    return ".".join(reversed(ip.exploded.replace(":", "")))


def _in_loopback_net(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.version == 4 and ip in ipaddress.IPv4Network("127.0.0.0/8")


def _answer_matches(address: str, iplist: tuple[str, ...], bitmask: bool) -> bool:
    if not bitmask:
        return address in iplist
    # Only IPv4 answers in 127/8 carry bits; anything else has mask 0 (and a log line
    # from the caller), which every listed value contains, as in Exim.
    mask = int(ipaddress.IPv4Address(address)) if _in_loopback_net(address) else 0
    for entry in iplist:
        try:
            value = int(ipaddress.IPv4Address(entry))
        except ValueError:
            continue
        if value & mask == value:
            return True
    return False


@record.dataclass(slots=True)
class DnslistCheck:
    """One evaluation of a dnslists condition."""

    lookup: Lookup  # (name, rdtype) -> Result, remembered for the connection by the caller
    log: Callable[[str], None]  # main log
    trace: Callable[[str], None]
    defer_return: Rc = Rc.FAIL
    variables: dict[str, str | None] = record.field(default_factory=dict)

    async def run(self, expanded: str, host_address: str | None, not_smtp: bool) -> tuple[Rc, str | None]:
        """(OK / FAIL / DEFER / ERROR, log message for ERROR) for the expanded list."""
        for entry in split_list(expanded):
            if not entry:
                continue
            if entry.startswith("+"):
                mode = {"+include_unknown": Rc.OK, "+exclude_unknown": Rc.FAIL, "+defer_unknown": Rc.DEFER}
                if entry.lower() in mode:
                    self.defer_return = mode[entry.lower()]
                else:
                    self.log(f"unknown item in dnslist (ignored): {entry}")
                continue
            try:
                item = parse_dnslist_item(entry)
            except ValueError as exc:
                self.log(f"{exc} (ignored)")
                continue
            for zone in {item.domain, item.txt_domain}:
                if not all(c.isalnum() or c in "-._" for c in zone):
                    self.log(f'dnslists domain "{zone}" contains strange characters - is this right?')
            if item.keys is None:
                if not_smtp:
                    return Rc.ERROR, "cannot test auto-keyed dnslists condition in non-SMTP ACL"
                if not host_address:
                    return Rc.FAIL, None  # a local submission can never be listed
                reversed_ip = reverse_address(host_address) or host_address
                rc = await self._one(item, item.domain, host_address, reversed_ip, item.iplist)
                if rc is Rc.OK:
                    self._found(item, host_address)
                if rc is not Rc.FAIL:
                    return rc, None
                continue
            deferred = False
            for key in split_list(item.keys):
                if not key:
                    continue
                prepend = reverse_address(key) or key
                rc = await self._one(item, item.domain, key, prepend, item.iplist)
                if rc is Rc.OK:
                    self._found(item, key)
                    return Rc.OK, None
                deferred |= rc is Rc.DEFER
            if deferred:
                return Rc.DEFER, None
        return Rc.FAIL, None

    def _found(self, item: DnslistItem, key: str) -> None:
        self.variables["dnslist_domain"] = item.txt_domain
        self.variables["dnslist_matched"] = taint(key)
        self.trace(f"=> that means {key} is listed at {item.txt_domain}")

    async def _one(self, item: DnslistItem, domain: str, key: str, prepend: str, iplist: tuple[str, ...] | None) -> Rc:
        query = f"{prepend}.{domain}"
        if len(query) >= 256:
            self.log(f"dnslist query is too long (ignored): {query[:200]}...")
            return Rc.FAIL
        result = await self.lookup(query, "A")
        if result.status in (Status.NXDOMAIN, Status.NODATA) or (
            result.status is Status.FOUND and not result.addresses
        ):
            self.trace(f"DNS lookup for {query} failed")
            self.trace(f"=> that means {key} is not listed at {domain}")
            return Rc.FAIL
        if result.status is not Status.FOUND:
            verdict = {Rc.OK: "assumed in list", Rc.FAIL: "assumed not in list"}.get(
                self.defer_return, "returned DEFER"
            )
            self.log(f"DNS list lookup defer (probably timeout) for {query}: {verdict}")
            return self.defer_return
        answers = list(result.addresses)
        self.trace(f"DNS lookup for {query} succeeded (yielding {', '.join(answers)})")
        for address in answers:
            if not _in_loopback_net(address):
                self.log(f"DNS list lookup for {key} at {domain} returned {address}; not in 127.0/8 and discarded")
        if iplist is not None:
            matched = [_answer_matches(a, iplist, item.bitmask) for a in answers]
            found = all(matched) if item.match_all else any(matched)
            if found == item.negated:
                self.trace("=> but we are not accepting this block class")
                return Rc.FAIL
        elif not any(_in_loopback_net(a) for a in answers):
            return Rc.FAIL
        if item.txt_domain != domain:
            # The TXT record comes from the other zone, which must list the key too.
            return await self._one(item, item.txt_domain, key, prepend, None)
        text_result = await self.lookup(query, "TXT")
        text = text_result.texts[0] if text_result.status is Status.FOUND and text_result.texts else None
        self.variables["dnslist_value"] = taint(", ".join(answers))
        self.variables["dnslist_text"] = taint(text) if text is not None else None
        return Rc.OK
