"""Hosts as routing finds them: the Host row and the HostList of a mail domain.

Kept apart from mta.route.dns so that code which only carries hosts (the
transports, routers that were given an address) does not import the DNS
machinery (start-up time of sendmail in mua_wrapper mode).
"""

from __future__ import annotations

from mta.record import dataclass, field

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    IpPredicate = Callable[[str], bool]

# Host.mx of the hosts of a domain that has no MX records, whose own address
# records are used instead (RFC 5321 §5.1 "implicit MX"); Exim's MX_NONE.
IMPLICIT_MX = -1
# The retry-rule error name of every DNS deferral.
RETRY_ERROR_LOOKUP = "lookup"
ESC_BAD_DOMAIN = "5.1.2"  # RFC 3463: bad destination system address
ESC_NULL_MX = "5.1.10"  # RFC 7505 §4.2
ESC_DNS_TROUBLE = "4.4.3"  # RFC 3463: directory server failure


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


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


def wait_name(host: Host) -> str:
    """How a host is named in the wait-<transport> hints: its name, as in Exim, and the port when
    the route gave one (the same name on another port is another server, whose connection a
    waiting message must not follow)."""
    name = host.name.lower()
    return f"{name}:{host.port}" if host.port is not None else name


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
