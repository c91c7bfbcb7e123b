"""How routing reaches DNS: `ResolverSettings`, the dns_servers option, IP literals.

    settings = ResolverSettings(servers=parse_dns_servers(items), timeout=5.0, retries=1)
    ip_literal("[IPv6:2001:db8::1]")   # "2001:db8::1"; None for a name

Pure values and parsing: nothing here does I/O or imports dnspython.
mta.route.dns re-exports every name, and is where callers import them from.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from mta.memo import lru_cache
from mta.record import dataclass, field

DEFAULT_PORT = 53


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


@lru_cache(maxsize=4096)
def ip_literal(name: str) -> str | None:
    """The address if `name` is an IP literal (``192.0.2.1``, ``[192.0.2.1]``,
    ``::1``, ``[IPv6:2001:db8::1]``), else None.  Remembered: it is asked for every host of
    every routing (a route_list's hosts, each MX), and ipaddress parses in Python."""
    text = name.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
        if text[:5].lower() == "ipv6:":
            text = text[5:]
    address = _ip(text)
    return str(address) if address is not None else None
