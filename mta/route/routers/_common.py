"""Helpers shared by the routers (Exim's rf_*.c): host lists, host lookups, ``self``.

A router that sends mail to remote hosts does the same few things whatever
decides *which* hosts: parse a host list (``mx1.example.com::2525 :
[192.0.2.1]``), find the addresses of its hosts (``byname``, ``bydns``,
``bydns_a``, ``bydns_mx``), drop the addresses ignore_target_hosts names,
and act on the generic ``self`` option when the first host turns out to be
this machine.  Those steps live here so that domainlist, lookuphost,
queryprogram and ipliteral behave alike.

Results follow mta.route.base: a helper returns the hosts, or a Decline/Pass
the router should return as it is, and raises DeferError/FailError.
`FreezeError` is the deferral that asks the delivery code to freeze the
message (Exim's SPECIAL_FREEZE): routing itself cannot freeze.

Security: host names and addresses come from the configuration, a lookup
file, a program's output or the DNS.  They are only ever data: a host name
is looked up, never expanded or passed to a shell.
"""

from __future__ import annotations

import _socket as socket  # the functions of socket without its enum classes (start-up)

from mta import record
from mta.config.hostaddrs import LOOPBACK_ADDRESSES
from mta.config.lists import local_interface_addresses, match_host
from mta.errors import ConfigError, DeferError, FailError
from mta.route.base import Decline, Pass
from mta.route.host import IMPLICIT_MX, RETRY_ERROR_LOOKUP, Host, HostList
from mta.values import split_list

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from mta.route.base import Router
    from mta.route.context import RoutingContext
    from mta.route.item import AddressItem

HOSTS_FILE = "/etc/hosts"

# How the addresses of a host named in a host list are found.
BYNAME = "byname"  # /etc/hosts, then DNS address records (gethostbyname)
BYDNS = "bydns"  # MX records, or the name's own address records (implicit MX)
BYDNS_A = "bydns_a"  # DNS address records only
BYDNS_MX = "bydns_mx"  # MX records only
DEFAULT_LOOKUP = "default"  # DNS address records, then /etc/hosts (Exim 4's manualroute)
LOOKUP_METHODS = (BYNAME, BYDNS, BYDNS_A, BYDNS_MX)

HOST_FIND_FAILED_ACTIONS = ("freeze", "defer", "fail", "decline", "pass", "ignore")
HOST_ALL_IGNORED_ACTIONS = ("freeze", "defer", "fail", "decline", "pass")

SELF_MX_MESSAGE = "lowest numbered MX record points to local host"
SELF_HOST_MESSAGE = "remote host address is the local host"

# Keys of AddressItem.extra set by the routers.
EXTRA_LOCAL_HOST_REMOVED = "local_host_removed"  # this host was a lower-priority MX and was dropped
EXTRA_SELF_HOSTNAME = "self_hostname"  # Exim's $self_hostname after self = pass


def _shuffle(items: list[Host]) -> None:
    import random  # only routing with randomised hosts needs it

    random.SystemRandom().shuffle(items)


class FreezeError(DeferError):
    """A temporary failure after which the message should be frozen.

    Exim freezes a message when, for example, the lowest MX record points to
    this host (``self = freeze``) or a configured host does not exist
    (``host_find_failed = freeze``): both need an administrator, and retrying
    every queue run would only repeat the problem.  Routing cannot freeze, so
    it raises this DeferError subclass; the delivery code freezes on it.
    """

    freeze = True


# ---------------------------------------------------------------------------
# Host lists
# ---------------------------------------------------------------------------


@record.dataclass(frozen=True, slots=True)
class HostSpec:
    """One item of a host list.

    `name` is the host name, or the address for an IP literal (then
    `literal` is that address too).  `mx` is set for Exim's ``name/MX``
    items: "the hosts of name's MX records".
    """

    name: str
    port: int | None = None
    literal: str | None = None
    mx: bool = False


def _ip(text: str) -> str | None:
    """The address in canonical form, or None.  socket, not ipaddress: this runs on
    every sendmail in mua_wrapper mode, and ipaddress costs a millisecond to import."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_ntop(family, socket.inet_pton(family, text))
        except (OSError, ValueError):
            continue
    return None


def _port(text: str, item: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f'bad port in host list item "{item}"')
    return int(text)


def parse_host_item(item: str) -> HostSpec:
    """Parse ``name``, ``name:port``, ``ip``, ``[ip]``, ``[ip]:port`` or ``name/MX``.

    In a colon-separated host list the colon before a port is doubled
    (``mx.example.com::2525``); the list splitter has undone that by now.
    An IPv6 address with a port must be bracketed (``[::1]:2525``), and one
    without a port is best written in a list with another separator
    (``<; ::1 ; 192.0.2.1``).  Raises ValueError naming the item.
    """
    text = item.strip()
    if not text or any(c.isspace() for c in text):
        raise ValueError(f'bad host list item "{item}"')
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f'missing ] in host list item "{item}"')
        inner, rest = text[1:close], text[close + 1 :]
        if inner[:5].lower() == "ipv6:":
            inner = inner[5:]
        address = _ip(inner)
        if address is None:
            raise ValueError(f'"{inner}" is not an IP address (host list item "{item}")')
        if rest and not rest.startswith(":"):
            raise ValueError(f'unexpected text after ] in host list item "{item}"')
        return HostSpec(address, _port(rest[1:], item) if rest else None, literal=address)
    address = _ip(text)
    if address is not None:
        return HostSpec(address, None, literal=address)
    port: int | None = None
    if ":" in text:
        # As Exim: the port comes last, after any /MX (mx.example.com/MX:2525).
        name, _, port_text = text.rpartition(":")
        if not name or ":" in name:
            raise ValueError(f'bad host list item "{item}" (write an IPv6 address with a port as [address]:port)')
        text, port = name, _port(port_text, item)
        address = _ip(text)
        if address is not None:
            # 127.0.0.1::2525 in a colon list: an address with a port needs no lookup.
            return HostSpec(address, port, literal=address)
    mx = text[-3:].lower() == "/mx"
    if mx:
        text = text[:-3]
    if not text or "/" in text or text.startswith("."):
        raise ValueError(f'bad host name in host list item "{item}"')
    return HostSpec(text.rstrip("."), port, mx=mx)


def parse_host_list(text: str, randomize: bool = False) -> list[HostSpec]:
    """The hosts of a host list, in order; shuffled if `randomize`.

    A ``+`` item splits the list into groups that are shuffled separately
    (Exim: ``a : b : + : c : d`` tries a and b in either order, then c and d).
    Empty items are skipped.  Raises ValueError for a malformed item.
    """
    groups: list[list[HostSpec]] = [[]]
    for item in split_list(text):
        if not item:
            continue
        if item == "+":
            groups.append([])
            continue
        groups[-1].append(parse_host_item(item))
    if randomize:
        for group in groups:
            _shuffle(group)
    return [spec for group in groups for spec in group]


# ---------------------------------------------------------------------------
# Which hosts to ignore, which are this machine
# ---------------------------------------------------------------------------

if TYPE_CHECKING:
    IpPredicate = Callable[[str], bool]


def ignore_predicate(router: Router, item: AddressItem, ctx: RoutingContext) -> IpPredicate | None:
    """The generic ignore_target_hosts option as a test of one IP address; None if unset.

    A forced expansion failure means "no list".  A bad item in the list (a
    malformed CIDR, say) defers the address: the check runs deep inside a
    DNS lookup, so it is reported as a DeferError without the DNS retry
    class, which pass_on_timeout does not turn into a pass.
    """
    text = router.options.ignore_target_hosts
    if not text:
        return None
    expanded = ctx.expand_or_defer(text, item, f"ignore_target_hosts of {router.name}")
    if not expanded:
        return None
    lists = ctx.list_context

    def ignored(address: str) -> bool:
        try:
            return bool(match_host(address, None, expanded, lists))
        except ConfigError as exc:
            raise DeferError(f"{router.name} router: ignore_target_hosts: {exc}") from None

    return ignored


class LocalHost:
    """What counts as "this machine": an address of a local interface, or
    a host whose name is the primary host name (whatever its address: a
    host behind NAT knows its public name, not its public address)."""

    def __init__(self, ctx: RoutingContext) -> None:
        self.primary_hostname = ctx.config.primary_hostname.lower().rstrip(".")
        self._addresses: set[str] | None = None

    @property
    def addresses(self) -> set[str]:
        """Read when first needed: a smart host on loopback (mua_wrapper to a local relay)
        is known to be this machine without listing the interfaces."""
        if self._addresses is None:
            self._addresses = {a for a in map(_ip, local_interface_addresses()) if a is not None}
        return self._addresses

    @addresses.setter
    def addresses(self, value: set[str]) -> None:
        self._addresses = value

    def is_local_address(self, address: str | None) -> bool:
        if address is None:
            return False
        normal = _ip(address)
        return normal is not None and (normal in LOOPBACK_ADDRESSES or normal in self.addresses)

    def is_local_name(self, name: str) -> bool:
        return name.lower().rstrip(".") == self.primary_hostname

    def is_local(self, host: Host) -> bool:
        return self.is_local_name(host.name) or self.is_local_address(host.address)

    def learn(self, hosts: list[Host]) -> bool:
        """Add the addresses of hosts named as this machine; True if any was new."""
        new = {h.address for h in hosts if h.address and self.is_local_name(h.name)} - self.addresses
        self.addresses |= {a for a in new if a}
        return bool(new)


def self_action(router: Router, item: AddressItem, host: Host) -> Pass | None:
    """Apply the generic ``self`` option: the first host is this machine.

    Returns None for ``send`` (deliver anyway) or Pass for ``pass`` (the
    next router gets the address, whatever no_more says); raises FailError
    for ``fail``, DeferError for ``defer`` and FreezeError for ``freeze``.
    The text is Exim's.
    """
    message = SELF_MX_MESSAGE if host.mx is not None and host.mx != IMPLICIT_MX else SELF_HOST_MESSAGE
    action = router.options.self
    if action == "send":
        return None
    if action == "pass":
        item.extra[EXTRA_SELF_HOSTNAME] = host.name
        return Pass(message)
    if action == "fail":
        raise FailError(message)
    if action == "defer":
        raise DeferError(message)
    raise FreezeError(message)


def lookup_deferred(router: Router, what: str, exc: DeferError) -> Pass:
    """A DNS lookup did not complete: Pass with pass_on_timeout, else re-raise with context.

    Only DNS trouble (the resolver's retry class "lookup") may pass; any
    other deferral (an unreadable list file, say) is re-raised as it is.
    """
    if exc.retry_error != RETRY_ERROR_LOOKUP:
        raise exc
    if router.options.pass_on_timeout:
        return Pass(f"{what} did not complete and pass_on_timeout is set")
    raise DeferError(
        f"{what} did not complete: {exc.message}", code=exc.code, esc=exc.esc, retry_error=exc.retry_error
    ) from None


# ---------------------------------------------------------------------------
# Finding the addresses of a host list
# ---------------------------------------------------------------------------


def hosts_file_addresses(name: str, path: str = HOSTS_FILE, use_ipv6: bool = True) -> list[str]:
    """The addresses /etc/hosts gives `name` (gethostbyname's "files" source).

    A missing file is no entry; any other read error defers.
    """
    wanted = name.lower().rstrip(".")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise DeferError(f"cannot read {path}: {exc.strerror}") from None
    found: list[str] = []
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2 or wanted not in (n.lower().rstrip(".") for n in fields[1:]):
            continue
        address = _ip(fields[0].split("%", 1)[0])
        if address is not None and address not in found and (use_ipv6 or ":" not in address):
            found.append(address)
    return found


@record.dataclass(slots=True)
class _Found:
    hosts: list[Host]
    ignored: bool = False  # some (or all) addresses were dropped by ignore_target_hosts
    self_reference: bool = False  # an MX lookup says: this machine is the best MX
    local_host_removed: bool = False


@record.dataclass(slots=True)
class HostFinder:
    """Finds the addresses of the hosts of one host list for one address."""

    router: Router
    item: AddressItem
    ctx: RoutingContext
    qualify_single: bool = True
    search_parents: bool = False
    ignore: IpPredicate | None = None
    local: LocalHost | None = None

    def __post_init__(self) -> None:
        if self.ignore is None:
            self.ignore = ignore_predicate(self.router, self.item, self.ctx)
        if self.local is None:
            self.local = LocalHost(self.ctx)

    # -- one host -------------------------------------------------------

    def by_name(self, name: str, port: int | None) -> list[Host]:
        """/etc/hosts, then DNS address records: what gethostbyname() would give."""
        rows = self.by_hosts_file(name, port)
        if rows is not None:
            return rows
        return self.ctx.resolver.find_hosts_by_name(
            name, ignore_target_hosts=self.ignore, qualify_single=True, port=port
        )

    def by_hosts_file(self, name: str, port: int | None) -> list[Host] | None:
        """The rows /etc/hosts gives for `name`, ignored addresses left out; None when it has none."""
        # The resolver is not asked for its settings here: building it imports
        # dnspython, which a smart host found in /etc/hosts never needs.
        addresses = hosts_file_addresses(name, use_ipv6=True)
        if not addresses:
            return None
        return [Host(name, a, port=port) for a in addresses if self.ignore is None or not self.ignore(a)]

    def by_dns_a(self, name: str, port: int | None) -> list[Host]:
        return self.ctx.resolver.find_hosts_by_name(
            name,
            ignore_target_hosts=self.ignore,
            qualify_single=self.qualify_single,
            search_parents=self.search_parents,
            port=port,
        )

    def by_mx(self, name: str, port: int | None, require_mx: bool) -> HostList:
        local = self.local
        assert local is not None

        def lookup() -> HostList:
            return self.ctx.resolver.find_hosts_by_mx(
                name,
                require_mx=require_mx,
                ignore_target_hosts=self.ignore,
                local_host_check=local.is_local_address,
                qualify_single=self.qualify_single,
                search_parents=self.search_parents,
                port=port,
            )

        found = lookup()
        if local.learn(found.hosts + found.ignored):
            # An MX host carries our primary host name under an address that
            # is not on an interface (NAT): look again, knowing it is us.
            found = lookup()
        return found

    def find_one(self, spec: HostSpec, method: str) -> _Found:
        """The rows for one host list item.  Raises the resolver's errors."""
        if spec.literal is not None:
            if self.ignore is not None and self.ignore(spec.literal):
                return _Found([], ignored=True)
            return _Found([Host(spec.name, spec.literal, port=spec.port)])
        if spec.mx or method in (BYDNS, BYDNS_MX):
            found = self.by_mx(spec.name, spec.port, require_mx=spec.mx or method == BYDNS_MX)
            return _Found(found.hosts, bool(found.ignored), found.self_reference, found.local_host_removed)
        if method == BYNAME:
            rows = self.by_name(spec.name, spec.port)
        elif method == BYDNS_A:
            rows = self.by_dns_a(spec.name, spec.port)
        else:
            # Exim 4's default: DNS first, and if the name is unknown there,
            # what gethostbyname() knows (/etc/hosts).
            try:
                rows = self.by_dns_a(spec.name, spec.port)
            except FailError:
                from_file = self.by_hosts_file(spec.name, spec.port)
                if from_file is None:
                    raise
                rows = from_file
        return _Found(rows, ignored=not rows)

    # -- a whole list -----------------------------------------------------

    def find_all(
        self,
        specs: list[HostSpec],
        method: str,
        host_find_failed: str,
        host_all_ignored: str = "decline",
    ) -> list[Host] | Decline | Pass:
        """The hosts of a host list with their addresses, in order.

        As Exim's rf_lookup_hostlist: a host that is this machine ends the
        list there (hosts after it are never better), unless it is the first,
        when the ``self`` option decides.  A host that does not exist is
        handled by `host_find_failed`; a list whose every address was ignored
        by `host_all_ignored`.  A DNS deferral defers (or passes, with
        pass_on_timeout).
        """
        assert self.local is not None
        hosts: list[Host] = []
        any_ignored = False
        any_failed = False
        self_send = False
        for spec in specs:
            if hosts and not self_send and self.local.is_local_name(spec.name):
                # This host by name, after better hosts: the list ends here,
                # and there is no need to look it up.
                self.item.extra[EXTRA_LOCAL_HOST_REMOVED] = True
                break
            try:
                found = self.find_one(spec, method)
            except DeferError as exc:
                return lookup_deferred(self.router, f"host lookup for {spec.name}", exc)
            except FailError as exc:
                outcome = self._host_find_failed(spec, exc, host_find_failed)
                if outcome is not None:
                    return outcome
                any_failed = True
                continue
            any_ignored = any_ignored or found.ignored
            if found.local_host_removed:
                self.item.extra[EXTRA_LOCAL_HOST_REMOVED] = True
            local = found.self_reference or any(self.local.is_local(h) for h in found.hosts)
            if local and not self_send:
                if hosts:
                    # RFC 5321 §5.1 by analogy: hosts from here on are no better than us.
                    self.item.extra[EXTRA_LOCAL_HOST_REMOVED] = True
                    break
                first = found.hosts[0] if found.hosts else Host(spec.name, spec.literal)
                passed = self_action(self.router, self.item, first)
                if passed is not None:
                    return passed
                self_send = True
            hosts.extend(found.hosts)
        hosts = _unique(hosts)
        if not hosts and (any_ignored or any_failed):
            return self._all_ignored(host_all_ignored)
        return hosts

    def _host_find_failed(self, spec: HostSpec, exc: FailError, action: str) -> Decline | Pass | None:
        syntax = ": syntax error in name" if "syntactically invalid" in exc.message else ""
        message = f'lookup of host "{spec.name}" failed in {self.router.name} router{syntax}'
        if action == "ignore":
            return None
        if action == "pass":
            return Pass(message)
        if action == "decline":
            return Decline(message)
        if action == "fail":
            raise FailError(message, code=exc.code, esc=exc.esc)
        if action == "defer":
            raise DeferError(message)
        raise FreezeError(message)

    def _all_ignored(self, action: str) -> Decline | Pass:
        message = f"all hosts for {self.item.domain} have been failed or ignored"
        if action == "pass":
            return Pass(message)
        if action == "decline":
            return Decline(message)
        if action == "fail":
            raise FailError(message)
        if action == "defer":
            raise DeferError(message)
        raise FreezeError(message)


def _unique(hosts: list[Host]) -> list[Host]:
    """Drop repeated (address, port) rows, keeping the first (the better) one."""
    seen: set[tuple[str | None, int | None]] = set()
    kept: list[Host] = []
    for host in hosts:
        key = (host.address, host.port)
        if host.address is not None and key in seen:
            continue
        seen.add(key)
        kept.append(host)
    return kept


def fallback_hosts(router: Router) -> list[Host]:
    """The generic fallback_hosts option as Host rows (addresses found at delivery).

    Raises DeferError for a malformed list: the address cannot be routed
    correctly until the configuration is mended.
    """
    text = router.options.fallback_hosts
    if not text:
        return []
    try:
        specs = parse_host_list(text)
    except ValueError as exc:
        raise DeferError(f"{router.name} router: fallback_hosts: {exc}") from None
    return [Host(spec.name, spec.literal, port=spec.port) for spec in specs]


# ---------------------------------------------------------------------------
# Routing rules: ``[pattern] host-list [options]``
# ---------------------------------------------------------------------------


def dequote(text: str) -> tuple[str, str]:
    """The first word of `text` (or quoted string) and the rest.

    Double quotes allow backslash escapes; single quotes are literal, as in
    Exim 3's route lists.  Raises ValueError for an unterminated quote.
    """
    s = text.lstrip()
    if s[:1] not in ('"', "'"):
        end = next((i for i, c in enumerate(s) if c.isspace()), len(s))
        return s[:end], s[end:]
    quote, out, i = s[0], [], 1
    while i < len(s) and s[i] != quote:
        if quote == '"' and s[i] == "\\" and i + 1 < len(s):
            i += 1
        out.append(s[i])
        i += 1
    if i >= len(s):
        raise ValueError(f"unterminated quote in: {text.strip()}")
    return "".join(out), s[i + 1 :]


def split_rule(text: str, with_domain: bool) -> tuple[str, str, str] | None:
    """(pattern, host list, options) of a routing rule; None for a blank one.

    A rule from route_file or route_data has no pattern (it is "").
    """
    if not text.strip():
        return None
    pattern, rest = dequote(text) if with_domain else ("", text)
    hostlist, rest = dequote(rest) if rest.strip() else ("", "")
    return pattern, hostlist, rest.strip()


@record.dataclass(slots=True)
class RouteOptionWords:
    """The words after a host list in a routing rule: ``byname randomize remote_smtp``."""

    method: str = DEFAULT_LOOKUP
    randomize: bool | None = None  # None: the router's hosts_randomize
    transport: str | None = None


def parse_route_options(text: str, transports: Collection[str] = ()) -> RouteOptionWords:
    """Parse the option words of a routing rule.

    A word that is not a lookup method, ``randomize`` or ``no_randomize``
    names the transport for the rule.  When the defined transports are known
    (`transports` not empty) an unknown word is an error, so that a typo
    such as ``bynmae`` is reported as what it is.  Raises ValueError.
    """
    words = RouteOptionWords()
    for word in text.split():
        if word in LOOKUP_METHODS:
            words.method = word
        elif word in ("randomize", "no_randomize"):
            words.randomize = word == "randomize"
        elif transports and word not in transports:
            raise ValueError(f'unknown routing option or transport name "{word}"')
        elif words.transport is not None:
            raise ValueError(f'two transports ("{words.transport}", "{word}") in one routing rule')
        else:
            words.transport = word
    return words
