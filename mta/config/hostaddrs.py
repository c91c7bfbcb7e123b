"""IP addresses for host lists (mta.config.lists): parsing, this machine's interfaces, forward lookups.

    parse_ip("2001:db8::1%eth0")       # IPv6Address('2001:db8::1'); None for a name
    network("192.0.2.0/24")            # ConfigError for a bad item
    ip_literal("[192.0.2.1]")          # "192.0.2.1" (the @[] item)
    local_interface_addresses()        # what @[] matches
    default_resolve_host(name)         # getaddrinfo, for ListContext.resolve_host

mta.config.lists re-exports the last two, and callers import them from there.
"""

from __future__ import annotations

import _socket as socket  # not socket: its enum classes cost a `sendmail -t` 3 ms; the functions are the same
import time

from mta.errors import ConfigError, DeferError
from mta.memo import lru_cache

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False

if TYPE_CHECKING:
    # ipaddress is imported where it is used: domain lists, which every
    # submission matches, never need it, and it costs a millisecond to import.
    import ipaddress

    IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SIOCGIFADDR = 0x8915


def parse_ip(text: str) -> IpAddress | None:
    """The address in `text` (an IPv6 scope dropped, an IPv4-mapped IPv6 address as IPv4); None if it is none."""
    import ipaddress

    try:
        addr = ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@lru_cache(maxsize=512)
def network(item: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The network of an address or CIDR item; ConfigError when it is neither."""
    import ipaddress

    try:
        return ipaddress.ip_network(item, strict=False)
    except ValueError as exc:
        raise ConfigError(f'bad IP address or CIDR network "{item}" in host list: {exc}') from None


def ip_literal(domain: str) -> str | None:
    """The address of a domain literal (``[192.0.2.1]``, ``[IPv6:2001:db8::1]``), else None."""
    if len(domain) < 3 or domain[0] != "[" or domain[-1] != "]":
        return None
    inner = domain[1:-1]
    if inner[:5].lower() == "ipv6:":
        inner = inner[5:]
    addr = parse_ip(inner)
    return str(addr) if addr is not None else None


# (when read, by time.monotonic(); the addresses): a delivery worker asks at every message.
_interfaces: tuple[float, frozenset[str]] | None = None
INTERFACES_TTL = 5.0  # seconds an answer is reused


def local_interface_addresses() -> set[str]:
    """The IPv4 and IPv6 addresses of this machine's interfaces (Linux).

    IPv6 from /proc/net/if_inet6, IPv4 by SIOCGIFADDR on each interface;
    127.0.0.1 and ::1 are always included.  Read again when the last answer
    is more than INTERFACES_TTL seconds old: a long-lived process (a daemon's
    delivery worker) would otherwise list every interface for every message.
    """
    global _interfaces
    now = time.monotonic()
    cached = _interfaces
    if cached is None or not 0 <= now - cached[0] < INTERFACES_TTL:
        cached = _interfaces = (now, frozenset(_read_interface_addresses()))
    return set(cached[1])


LOOPBACK_ADDRESSES = frozenset({"127.0.0.1", "::1"})  # always among the answers


def _read_interface_addresses() -> set[str]:
    found = set(LOOPBACK_ADDRESSES)
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as f:
            for line in f:
                fields = line.split()
                if fields and len(fields[0]) == 32:
                    # inet_ntop, not ipaddress (2 ms to import): the same canonical text.
                    found.add(socket.inet_ntop(socket.AF_INET6, bytes.fromhex(fields[0])))
    except (OSError, ValueError):
        pass
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        names = []
    if names:
        import fcntl

        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for name in names:
                try:
                    # struct ifreq: the name in 16 bytes, then room for the answer.
                    req = name.encode()[:15].ljust(256, b"\0")
                    res = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, req)
                except OSError:
                    continue  # no IPv4 address on this interface
                found.add(socket.inet_ntoa(res[20:24]))
        finally:
            sock.close()
    return found


def default_resolve_host(name: str) -> list[str]:
    """Forward lookup through the system resolver, for ListContext.resolve_host.

    A name that does not exist gives []; a temporary failure raises DeferError.
    """
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:
            raise DeferError(f"temporary failure looking up host {name}") from None
        return []
    return sorted({str(info[4][0]) for info in infos})
