"""Lookup items in lists (mta.config.lists): ``TYPE;DATA`` and the keys it is tried with.

    lookup_item("partial-lsearch;/etc/relay_domains", "a.b.example", partial_ok=True)
    ip_key(ip, 24, colons=False)       # the key of a net24-TYPE;FILE host item

Failures of the lookup itself (LookupDeferError, ExpansionError) propagate;
a malformed item is a ConfigError.
"""

from __future__ import annotations

from mta.errors import ConfigError
from mta.lazy_pattern import lazy_compile

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress

# TYPE;DATA with optional partial[N]- prefix, * or *@ suffix and ,options.
_LOOKUP_ITEM = lazy_compile(r"(?:partial(\d*)-)?([A-Za-z0-9_]+)(\*@|\*)?(?:,[^;]*)?;\s*(.*)$", 16)  # re.S
_QUERY_STYLE = frozenset({"dnsdb"})


def lookup_item(item: str, key: str, *, partial_ok: bool) -> str | None:
    """The value a ``TYPE;DATA`` item finds for `key`, or None.

    A query-style lookup (dnsdb) runs DATA as its query and ignores `key`;
    a single-key lookup tries `key`, then with `partial_ok` the
    ``partial[N]-`` keys, then ``*@domain`` and ``*`` for ``TYPE*@`` /
    ``TYPE*``.  An empty key finds nothing.
    """
    m = _LOOKUP_ITEM.match(item)
    if m is None:
        raise ConfigError(f'bad lookup item "{item}" in list (expected TYPE;FILE)')
    partial, search_type, star, data = m.group(1), m.group(2).lower(), m.group(3), m.group(4).strip()
    if search_type in _QUERY_STYLE:
        return _lookup(search_type, "", data)
    if not key:
        return None  # empty keys are not supported for single-key lookups
    keys = [key]
    if partial is not None and partial_ok:
        keys += _partial_keys(key, int(partial) if partial else 2)
    if star == "*@" and "@" in key:
        keys.append("*@" + key[key.rfind("@") + 1 :])
    if star:
        keys.append("*")
    for k in keys:
        value = _lookup(search_type, data, k)
        if value is not None:
            return value
    return None


def _partial_keys(key: str, minimum: int) -> list[str]:
    """``partialN-``: *.key, then *.parent ... keeping at least N components."""
    parts = key.split(".")
    out = ["*." + ".".join(parts[i:]) for i in range(0, len(parts) - minimum + 1) if parts[i:]]
    if minimum == 0:
        out.append("*")
    return out


def lookup_keys(domain: str, minimum: int) -> list[tuple[str, int, int]]:
    """The keys a ``partialN-`` lookup tries for `domain`, in Exim's order (search_find), each with
    the lengths of the wild and the fixed part of the domain it stands for: the domain itself,
    ``*.domain``, then ``*.parent`` ... while N components are left, and ``*`` for partial0."""
    keys = [(domain, 0, len(domain)), ("*." + domain, 0, len(domain))]
    dots = domain.count(".")
    pos = 0
    while dots >= minimum:
        dots -= 1
        pos = domain.find(".", pos)
        if pos < 0:
            keys.append(("*", len(domain), 0))
            break
        rest = domain[pos + 1 :]
        keys.append(("*." + rest, len(domain) - len(rest) - 1, len(rest)))
        pos += 1
    return keys


def _lookup(search_type: str, filename: str, key: str) -> str | None:
    # Imported here: mta.expand must not be needed just to import this module.
    from mta.expand.lookups import lookup

    return lookup(search_type, filename, key)


def ip_key(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, bits: int | None, *, colons: bool) -> str:
    """Exim's key for net-/netN- lookups: dotted IPv4, IPv6 unabbreviated."""
    import ipaddress

    if bits is not None:
        if bits > ip.max_prefixlen:
            raise ConfigError(f"net{bits}- mask is longer than an IPv{ip.version} address")
        ip = ipaddress.ip_network(f"{ip}/{bits}", strict=False).network_address
    if ip.version == 4:
        text = str(ip)
    else:
        text = ip.exploded if colons else ip.exploded.replace(":", ".")
    return text if bits is None else f"{text}/{bits}"
