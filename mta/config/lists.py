"""Exim list matching: domain, local part, address and host lists.

Public API::

    ctx = ListContext(primary_hostname="mail.example.com", named_list=config.named_list)
    match_domain(domain, list_text, ctx) -> ListMatch
    match_local_part(local_part, list_text, ctx, caseful=False) -> ListMatch
    match_address(address, list_text, ctx, caseful=False) -> ListMatch
    match_host(ip, host_name, list_text, ctx) -> ListMatch      # ip None = local submission
    match_list(kind, subject, list_text, ctx) -> ListMatch      # for ${if match_domain...}
    local_interface_addresses() -> set[str]
    default_resolve_host(name) -> list[str]                     # getaddrinfo, for ctx.resolve_host

A `ListMatch` is true when the subject is in the set the list defines;
`data` is what Exim puts in $domain_data / $local_part_data / $host_data /
$sender_data: the value of the lookup that matched, or for domain and local
part lists the matching list element (the primary host name for ``@``), so
that a router can use an untainted equivalent of the subject.  It is None on a
negative answer.  `item` is the list item that decided (None when the end of
the list was reached), for debug output and ``-bt``.

The rules (Exim spec, chapter "Domain, host, address, and local part lists",
and match.c; docs/lists.md describes every item type with examples):

- The list is expanded first when ``ctx.expand`` is given (a forced failure
  means "not in the list"), then split by `mta.values.split_list`.
- Items are tried left to right; the first item that matches decides: a
  positive item puts the subject in the set, a ``!``-negated one keeps it out.
  If no item matches, the subject is in the set **only if the last item was
  negative**: a list ending in a negative item behaves as if ``: *`` followed
  it (``!a.b.c`` matches every domain but a.b.c; ``!a.b.c : *.b.c`` only the
  other domains under b.c).
- ``+name`` is a named list of the same kind; its whole answer counts as one
  item (a negation inside it does not propagate out).  ``/path`` is a file of
  items read at each use (``!/path`` inverts every line).  ``TYPE;DATA`` is a
  lookup (``partial[N]-``, ``TYPE*`` and ``TYPE*@`` honoured); ``^...`` a
  regular expression, searched, caseless unless caseful (``^(?-i)``).
- Domains: ``*suffix``, ``@``, ``@[]``, regex, lookup, literal (caseless).
  Local parts: the same without the ``@`` items; ``+caseful``.
  Addresses: empty item = the null sender, ``^regex`` on the whole address,
  whole-address lookups, ``@@TYPE;FILE``, ``local@domain`` (``*`` local part
  prefix wildcard; the domain half is a one-item domain list, so
  ``*@+local_domains`` works), and a bare domain = ``*@domain``; ``+caseful``.
  Hosts: empty item = local (non-TCP) submission (``ip`` None), ``*`` = any
  host or none, IP, CIDR, ``@[]``, ``net[N]-TYPE;FILE`` (keyed by the IP),
  and by name ``*suffix``, ``^regex``, ``TYPE;FILE`` and plain names or ``@``
  (equal to ``host_name``, else resolved by ``ctx.resolve_host`` and compared
  by IP; without a resolver, names are compared with ``host_name`` only).
  A name that is needed but unknown makes the list answer "no" at that point
  (Exim), unless ``+ignore_unknown`` (skip the item) or ``+include_unknown``
  (answer "yes"); ``+ignore_defer``/``+include_defer`` likewise for a
  DeferError from ``ctx.resolve_host``.

Errors: ConfigError for an unknown named list, a named-list loop, a bad
regular expression or CIDR, an unreadable list file, an unsupported item
(``@mx_any``).  Lookup failures (LookupDeferError, an ExpansionError), other
expansion failures and DeferError propagate: the caller defers.
"""

from __future__ import annotations

from mta import record
from mta.config.hostaddrs import (
    default_resolve_host,
    ip_literal,
    local_interface_addresses,
    network,
    parse_ip,
)
from mta.errors import ConfigError, DeferError, ExpansionError
from mta.lazy_pattern import lazy_compile
from mta.memo import cache, lru_cache
from mta.taint import is_tainted, taint
from mta.values import split_list

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from collections.abc import Callable
    from types import ModuleType

    from mta.config.hostaddrs import IpAddress

__all__ = [
    "ListContext",
    "ListMatch",
    "default_resolve_host",
    "local_interface_addresses",
    "match_address",
    "match_domain",
    "match_host",
    "match_list",
    "match_local_part",
]

MAX_NAMED_LIST_DEPTH = 20
_MAX_AT_AT_CHAIN = 50

DOMAIN = "domain"
LOCAL_PART = "local_part"
ADDRESS = "address"
HOST = "host"
_LIST_TYPE = {DOMAIN: "domainlist", LOCAL_PART: "localpartlist", ADDRESS: "addresslist", HOST: "hostlist"}

_NET_LOOKUP = lazy_compile(r"net(\d*)-(.+)$", 16)  # re.S
_DIGITS_DOTS = lazy_compile(r"[0-9.]+$")
_ADDRESS_LOOKUP = lazy_compile(r"[A-Za-z0-9-]+\*?@?(?:,[^;]*)?;")


def _no_named_lists(list_type: str, name: str) -> str | None:
    return None


@record.dataclass(slots=True)
class ListContext:
    """What list matching needs from the configuration and the host."""

    primary_hostname: str
    # (list_type, name) -> list text or None; list_type is domainlist, hostlist, ...
    named_list: Callable[[str, str], str | None] = _no_named_lists
    # Addresses that @[] matches; None means local_interface_addresses().
    local_addresses: Callable[[], set[str]] | None = None
    # Forward lookup of a plain host name in a host list; None: compare names only.
    resolve_host: Callable[[str], list[str]] | None = None
    # Expansion of the list text before it is split; None: lists are used as written.
    expand: Callable[[str], str] | None = None


@record.dataclass(frozen=True, slots=True)
class ListMatch:
    """The answer of a list check (true when the subject is in the set)."""

    matched: bool
    data: str | None = None
    item: str | None = None

    def __bool__(self) -> bool:
        return self.matched


@record.dataclass(frozen=True, slots=True)
class _Hit:
    data: str | None
    from_lookup: bool = False


class _Unknown(Exception):
    """A host item needs a name or address that cannot be found."""


@record.dataclass(slots=True)
class _State:
    """The subject of one list check; +caseful changes it as the scan goes."""

    kind: str
    subject: str  # lower-cased unless caseful
    original: str
    caseless: bool
    tainted: bool = False
    ip: IpAddress | None = None
    host_name: str | None = None
    include_unknown: bool = False
    ignore_unknown: bool = False
    include_defer: bool = False
    ignore_defer: bool = False


# -- public entry points -----------------------------------------------------


def match_domain(domain: str, list_text: str | None, ctx: ListContext) -> ListMatch:
    """Is `domain` in the domain list?"""
    state = _State(DOMAIN, domain.lower(), domain, caseless=True)
    return _scan(list_text, state, ctx, ())


def match_local_part(local_part: str, list_text: str | None, ctx: ListContext, caseful: bool = False) -> ListMatch:
    """Is `local_part` in the local part list?  Caseless unless `caseful`."""
    subject = local_part if caseful else local_part.lower()
    state = _State(LOCAL_PART, subject, local_part, caseless=not caseful)
    return _scan(list_text, state, ctx, ())


def match_address(address: str, list_text: str | None, ctx: ListContext, caseful: bool = False) -> ListMatch:
    """Is `address` (``""`` for the null sender) in the address list?

    The domain is always lower-cased; the local part too unless `caseful`
    (or until a ``+caseful`` item is met).
    """
    at = address.rfind("@")
    if at < 0:
        subject = address if caseful else address.lower()
    else:
        lp = address[:at] if caseful else address[:at].lower()
        subject = lp + "@" + address[at + 1 :].lower()
    state = _State(ADDRESS, subject, address, caseless=not caseful)
    return _scan(list_text, state, ctx, ())


def match_host(ip: str | None, host_name: str | None, list_text: str | None, ctx: ListContext) -> ListMatch:
    """Is the client host in the host list?

    `ip` is the client's address, None for a local (non-TCP) submission.
    `host_name` is its verified name when one was looked up, else None.
    """
    addr = parse_ip(ip) if ip else None
    if ip and addr is None:
        raise ValueError(f"match_host: {ip!r} is not an IP address")
    name = host_name.lower().rstrip(".") if host_name else None
    state = _State(HOST, str(addr) if addr else "", ip or "", caseless=True, ip=addr, host_name=name)
    return _scan(list_text, state, ctx, ())


def match_list(kind: str, subject: str, list_text: str | None, ctx: ListContext) -> ListMatch:
    """Dispatch on `kind` for the expander's match_* conditions.

    `kind` is ``domain``, ``local_part``, ``address`` or ``host``/``ip`` (the
    list names ``domainlist`` ... are accepted too).  For hosts the subject
    is an IP address; an empty subject means a local submission.
    """
    k = kind.lower().replace("match_", "")
    if k in ("domain", "domains", "domainlist"):
        return match_domain(subject, list_text, ctx)
    if k in ("local_part", "local_parts", "localpart", "localpartlist"):
        return match_local_part(subject, list_text, ctx)
    if k in ("address", "addresses", "addresslist"):
        return match_address(subject, list_text, ctx)
    if k in ("host", "hosts", "hostlist", "ip"):
        return match_host(subject or None, None, list_text, ctx)
    raise ValueError(f"match_list: unknown list kind {kind!r}")


# -- the scanner (Exim's match_check_list) -------------------------------------


def _scan(list_text: str | None, state: _State, ctx: ListContext, stack: tuple[str, ...]) -> ListMatch:
    if list_text is None:
        return ListMatch(False)
    text = list_text
    if ctx.expand is not None:
        try:
            text = ctx.expand(list_text)
        except ExpansionError as exc:
            if exc.forced:
                return ListMatch(False)
            raise
    saved_taint = state.tainted
    state.tainted = saved_taint or is_tainted(text)
    try:
        return _scan_items(split_list(text), state, ctx, stack)
    finally:
        state.tainted = saved_taint


def _scan_items(items: list[str], state: _State, ctx: ListContext, stack: tuple[str, ...]) -> ListMatch:
    last_negative = False
    for raw in items:
        if _special_item(raw, state):
            continue
        negated = raw.startswith("!")
        item = raw[1:].lstrip() if negated else raw
        last_negative = negated
        try:
            if item.startswith("/"):
                found, line, hit, last_negative = _scan_file(item, negated, state, ctx, stack)
                if found:
                    return _answer(hit is not None, state, hit, line)
                continue
            if item.startswith("+") and len(item) > 1:
                sub = _named(item[1:], state, ctx, stack)
                if sub.matched:
                    return ListMatch(not negated, sub.data if not negated else None, raw)
                continue
            hit = _match_item(item, state, ctx, stack)
        except _Unknown:
            if state.ignore_unknown:
                continue
            return ListMatch(state.include_unknown, None, raw)
        except DeferError:
            if state.ignore_defer:
                continue
            if state.include_defer:
                return ListMatch(True, None, raw)
            raise
        if hit is not None:
            return _answer(not negated, state, hit, raw)
    return ListMatch(last_negative)


def _answer(positive: bool, state: _State, hit: _Hit | None, item: str) -> ListMatch:
    if not positive or hit is None:
        return ListMatch(positive, None, item)
    data = hit.data
    if data is not None and state.tainted and not hit.from_lookup:
        data = taint(data)
    return ListMatch(True, data, item)


def _special_item(item: str, state: _State) -> bool:
    """Handle the +caseful / +include_unknown ... switches; True if it was one."""
    if state.kind in (ADDRESS, LOCAL_PART) and item == "+caseful":
        if state.kind == LOCAL_PART:
            state.subject = state.original
        else:
            at = state.subject.rfind("@")
            if at >= 0:
                state.subject = state.original[: state.original.rfind("@")] + state.subject[at:]
            else:
                state.subject = state.original
        state.caseless = False
        return True
    if state.kind == HOST:
        if item in ("+include_unknown", "+ignore_unknown"):
            state.include_unknown = item == "+include_unknown"
            state.ignore_unknown = not state.include_unknown
            return True
        if item in ("+include_defer", "+ignore_defer"):
            state.include_defer = item == "+include_defer"
            state.ignore_defer = not state.include_defer
            return True
    return False


def _named(name: str, state: _State, ctx: ListContext, stack: tuple[str, ...]) -> ListMatch:
    list_type = _LIST_TYPE[state.kind]
    key = f"{list_type} {name}"
    if key in stack:
        chain = " -> ".join("+" + entry.split()[1] for entry in (*stack, key))
        raise ConfigError(f"named list +{name} refers to itself ({chain})")
    if len(stack) >= MAX_NAMED_LIST_DEPTH:
        raise ConfigError(f"named list +{name}: lists nested more than {MAX_NAMED_LIST_DEPTH} deep")
    text = ctx.named_list(list_type, name)
    if text is None:
        raise ConfigError(f"unknown named list +{name} (no {list_type} {name} is defined)")
    # +include_unknown and friends hold for the list they are written in only.
    flags = (state.include_unknown, state.ignore_unknown, state.include_defer, state.ignore_defer)
    state.include_unknown = state.ignore_unknown = state.include_defer = state.ignore_defer = False
    try:
        return _scan(text, state, ctx, (*stack, key))
    finally:
        state.include_unknown, state.ignore_unknown, state.include_defer, state.ignore_defer = flags


def _scan_file(
    path: str, negated: bool, state: _State, ctx: ListContext, stack: tuple[str, ...]
) -> tuple[bool, str, _Hit | None, bool]:
    """Match the lines of a list file: (decided, line, hit or None if negative, last_negative).

    `last_negative` is the polarity of the file's last line, for the
    end-of-list rule (the file item's own polarity for an empty file).
    """
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read list file {path}: {exc.strerror}") from None
    hash_anywhere = state.kind in (DOMAIN, HOST)
    last_negative = negated
    for line in lines:
        text = _strip_comment(line, hash_anywhere).strip()
        if not text:
            continue
        line_negative = negated
        if text.startswith("!"):
            line_negative = not line_negative
            text = text[1:].lstrip()
        last_negative = line_negative
        try:
            hit = _match_item(text, state, ctx, stack)
        except _Unknown:
            if state.ignore_unknown:
                continue
            return True, text, (_Hit(None) if state.include_unknown else None), last_negative
        if hit is not None:
            return True, text, (None if line_negative else hit), last_negative
    return False, "", None, last_negative


def _strip_comment(line: str, hash_anywhere: bool) -> str:
    pos = line.find("#")
    while pos >= 0:
        if hash_anywhere or pos == 0 or line[pos - 1].isspace():
            return line[:pos]
        pos = line.find("#", pos + 1)
    return line


# -- one item ------------------------------------------------------------------


def _match_item(item: str, state: _State, ctx: ListContext, stack: tuple[str, ...]) -> _Hit | None:
    if state.kind == HOST:
        return _match_host_item(item, state, ctx)
    if state.kind == ADDRESS:
        return _match_address_item(item, state, ctx, stack)
    return _match_string(state.subject, item, ctx, caseless=state.caseless, at_special=state.kind == DOMAIN)


def _match_string(subject: str, item: str, ctx: ListContext, *, caseless: bool, at_special: bool) -> _Hit | None:
    """Exim's check_string: regex, ``*suffix``, ``@`` specials, lookup, literal."""
    if item.startswith("^"):
        return _Hit(item) if _regex(item, caseless).search(subject) else None
    if item.startswith("*"):
        suffix = item[1:]
        if caseless:
            return _Hit(item) if subject.lower().endswith(suffix.lower()) else None
        return _Hit(item) if subject.endswith(suffix) else None
    if at_special and item.startswith("@"):
        if item == "@":
            return _Hit(ctx.primary_hostname) if subject.lower() == ctx.primary_hostname.lower() else None
        if item == "@[]":
            literal = ip_literal(subject)
            return _Hit(item) if literal is not None and literal in _local_ips(ctx) else None
        if item.lower().startswith("@mx_"):
            raise ConfigError(f'list item "{item}" is not supported (no MX checks in lists)')
    if ";" in item:
        return _lookup_item(item, subject, partial_ok=True)
    if caseless:
        return _Hit(item) if subject.lower() == item.lower() else None
    return _Hit(item) if subject == item else None


def _match_address_item(item: str, state: _State, ctx: ListContext, stack: tuple[str, ...]) -> _Hit | None:
    """Exim's check_address."""
    subject = state.subject
    if item.startswith("^"):
        return _Hit(None) if _regex(item, state.caseless).search(subject) else None
    if not subject:
        return _Hit(None) if not item else None
    if not item:
        return None
    at = subject.rfind("@")
    s_local, s_domain = (subject[:at], subject[at + 1 :]) if at >= 0 else (subject, "")
    # A whole-address lookup: letters, digits, hyphens, then * or *@, then ;.
    if _ADDRESS_LOOKUP.match(item) is not None:
        return _lookup_item(item, subject, partial_ok=False)
    if item.startswith("@@"):
        return _at_at_lookup(item[2:], s_local, s_domain, state, ctx)
    pat_at = item.rfind("@")
    if pat_at < 0:
        return _match_domain_part(s_domain, item, ctx, stack, state.tainted)
    p_local, p_domain = item[:pat_at], item[pat_at + 1 :]
    # local@@ , local@@[] : the domain pattern is the @ special itself.
    if p_local.endswith("@") and (p_domain in ("", "[]") or p_domain.lower().startswith("mx_")):
        p_local, p_domain = p_local[:-1], "@" + p_domain
    if at < 0:
        return None
    if not _local_part_equal(s_local, p_local, state.caseless):
        return None
    return _match_domain_part(s_domain, p_domain, ctx, stack, state.tainted)


def _local_part_equal(subject: str, pattern: str, caseless: bool) -> bool:
    if caseless:
        subject, pattern = subject.lower(), pattern.lower()
    if pattern.startswith("*"):
        return subject.endswith(pattern[1:])
    return subject == pattern


def _match_domain_part(
    domain: str, pattern: str, ctx: ListContext, stack: tuple[str, ...], tainted: bool = False
) -> _Hit | None:
    """The domain half of an address item: a one-item domain list."""
    state = _State(DOMAIN, domain.lower(), domain, caseless=True, tainted=tainted)
    result = _scan_items([pattern], state, ctx, stack)
    return _Hit(result.data) if result.matched else None


def _at_at_lookup(lookup_spec: str, s_local: str, s_domain: str, state: _State, ctx: ListContext) -> _Hit | None:
    """``@@TYPE;FILE``: look the domain up; the value lists local part patterns."""
    if not s_domain or s_local == "*":
        return None
    key: str | None = s_domain
    for _ in range(_MAX_AT_AT_CHAIN):
        if key is None:
            return None
        hit = _lookup_item(lookup_spec, key, partial_ok=True)
        if hit is None or hit.data is None:
            return None
        patterns = split_list(hit.data)
        key = None
        if patterns and patterns[-1].startswith(">"):
            key = patterns.pop()[1:].strip()
        for pat in patterns:
            negative = pat.startswith("!")
            if negative:
                pat = pat[1:].lstrip()
            if _match_string(s_local, pat, ctx, caseless=state.caseless, at_special=False) is not None:
                return None if negative else _Hit(hit.data, from_lookup=True)
    raise ConfigError(f'loop in "@@{lookup_spec}" chain for {s_local}@{s_domain} (more than {_MAX_AT_AT_CHAIN} links)')


def _match_host_item(item: str, state: _State, ctx: ListContext) -> _Hit | None:
    """Exim's check_host."""
    if not item:
        return _Hit(None) if state.ip is None else None
    if item == "*":
        return _Hit(None)
    ip = state.ip
    if ip is None:
        return None
    if item == "@[]":
        return _Hit(None) if str(ip) in _local_ips(ctx) else None
    if item.startswith("^"):
        name = _need_name(state, item)
        return _Hit(None) if _regex(item, True).search(name) else None
    if item.startswith("*"):
        name = _need_name(state, item)
        return _Hit(None) if name.endswith(item[1:].lower()) else None
    net = _NET_LOOKUP.match(item)
    if net is not None and ";" in item:
        bits = int(net.group(1)) if net.group(1) else None
        spec = net.group(2)
        search_type = spec.split(";", 1)[0].rstrip("*@")
        key = _list_lookups().ip_key(ip, bits, colons=search_type == "iplsearch")
        return _lookup_item(spec, key, partial_ok=False)
    if ";" in item:
        name = _need_name(state, item)
        return _lookup_item(item, name, partial_ok=True)
    literal = parse_ip(item)
    if literal is not None:
        return _Hit(None) if ip == literal else None
    if "/" in item or ":" in item or _DIGITS_DOTS.match(item):
        return _Hit(None) if ip in network(item) else None
    name = ctx.primary_hostname if item == "@" else item
    return _match_host_name(name.lower().rstrip("."), state, ctx)


def _match_host_name(name: str, state: _State, ctx: ListContext) -> _Hit | None:
    if state.host_name is not None and state.host_name == name:
        return _Hit(None)
    if ctx.resolve_host is None:
        return None
    addresses = [a for a in (parse_ip(x) for x in ctx.resolve_host(name)) if a is not None]
    if not addresses:
        raise _Unknown(f"no IP address found for host {name}")
    return _Hit(None) if state.ip in addresses else None


def _need_name(state: _State, item: str) -> str:
    if state.host_name is None:
        raise _Unknown(f'host name of {state.ip} unknown, needed for "{item}"')
    return state.host_name


# -- lookups -------------------------------------------------------------------


@cache
def _list_lookups() -> ModuleType:
    """mta.config.list_lookups, imported at the first lookup item: most lists (a sendmail's
    local_domains) have none.  Remembered: an import statement in a function costs each call
    nearly a microsecond, and a daemon matches lists for every message."""
    import mta.config.list_lookups as list_lookups

    return list_lookups


def _lookup_item(item: str, key: str, *, partial_ok: bool) -> _Hit | None:
    value = _list_lookups().lookup_item(item, key, partial_ok=partial_ok)
    return None if value is None else _Hit(value, from_lookup=True)


# -- this machine ----------------------------------------------------------------


def _local_ips(ctx: ListContext) -> set[str]:
    raw = ctx.local_addresses() if ctx.local_addresses is not None else local_interface_addresses()
    return {str(a) for a in (parse_ip(x) for x in raw) if a is not None}


# -- regular expressions ---------------------------------------------------------


@lru_cache(maxsize=512)
def _regex(pattern: str, caseless: bool) -> re.Pattern[str]:
    import re  # (not at the top: most runs match no regular expression in a list)

    flags = re.IGNORECASE if caseless else 0
    if pattern.startswith("^(?-i)"):
        pattern, flags = "^" + pattern[6:], 0
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise ConfigError(f'bad regular expression "{pattern}" in list: {exc}') from None
