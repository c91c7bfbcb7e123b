"""The lookuphost and ipliteral routers, end to end through the routing engine.

Configurations, the engine and the DNS server on loopback as described in
tests/route/routers_support.py: remote hosts live in 198.51.100.0/24 and
2001:db8::/32; 127.0.0.1 is "this host".
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mta.route.context import RoutingContext
from mta.route.dns import IMPLICIT_MX
from mta.route.item import AddressItem
from mta.route.routers._common import EXTRA_LOCAL_HOST_REMOVED, EXTRA_SELF_HOSTNAME, FreezeError
from tests.route.routers_support import (
    DOCUMENTATION_ADDRESSES_ARE_LOCAL,
    SKIP_REASON,
    accepted,
    deferred,
    dns_fixture,
    failed,
    fast_resolver,
    load,
    route,
)
from tests.support.dnsserver import DnsTestServer, ZoneData

if DOCUMENTATION_ADDRESSES_ARE_LOCAL:
    pytest.skip(SKIP_REASON, allow_module_level=True)

ZONE: ZoneData = {
    "example.org": {"MX": [(30, "mx3.example.org"), (10, "mx1.example.org"), (20, "mx2.example.org")]},
    "mx1.example.org": {"A": ["198.51.100.11"], "AAAA": ["2001:db8::11"]},
    "mx2.example.org": {"A": ["198.51.100.12"]},
    "mx3.example.org": {"A": ["198.51.100.13"]},
    "equal.example.org": {"MX": [(10, "ea.example.org"), (10, "eb.example.org"), (10, "ec.example.org")]},
    "ea.example.org": {"A": ["198.51.100.21", "198.51.100.22"]},
    "eb.example.org": {"A": ["198.51.100.23"]},
    "ec.example.org": {"A": ["198.51.100.24"]},
    "aonly.example.org": {"A": ["198.51.100.30"], "AAAA": ["2001:db8::30"]},
    "nullmx.example.org": {"MX": [(0, ".")]},
    "dangling.example.org": {"MX": [(10, "gone.example.org"), (20, "alsogone.example.org")]},
    "loopmx.example.org": {"MX": [(10, "lo.example.org")]},
    "loopmix.example.org": {"MX": [(10, "lo.example.org"), (20, "mx2.example.org")]},
    "lo.example.org": {"A": ["127.0.0.1"]},
    "lo5.example.org": {"A": ["127.0.0.5"]},
    "allloop.example.org": {"MX": [(10, "lo.example.org"), (20, "lo5.example.org")]},
    "self.example.org": {"MX": [(10, "lo.example.org"), (20, "mx2.example.org")]},
    "secondary.example.org": {"MX": [(10, "mx1.example.org"), (20, "lo.example.org"), (30, "mx3.example.org")]},
    "selfa.example.org": {"A": ["127.0.0.1"]},
    "nat.example.org": {"MX": [(10, "mail.example.com"), (20, "mx2.example.org")]},
    "mail.example.com": {"A": ["203.0.113.5"]},
    "slow.example.org": {"MX": [(10, "mx1.example.org")]},
    "broken.example.org": {"MX": [(10, "mx1.example.org")]},
    "wide.example.net": {"MX": [(10, "mx1.example.org")]},
    "single.example.org": {"MX": [(10, "mx2.example.org")]},
    "a.b.example.org": {"MX": [(10, "mx3.example.org")]},
    "hostmx.example.org": {"MX": [(10, "mx1.example.org")], "A": ["198.51.100.40"]},
}


def rows(item: AddressItem) -> list[tuple[str, str | None, int | None]]:
    return [(host.name, host.address, host.mx) for host in item.hosts]


DNSLOOKUP = """\
dnslookup:
  driver = lookuphost
  transport = remote_smtp
"""

DNSLOOKUP_IGNORING = DNSLOOKUP + "  ignore_target_hosts = 0.0.0.0 : 127.0.0.0/8\n"

# A smart host after the DNS router, to see an address that was passed on.
FALLBACK = """\
smarthost:
  driver = domainlist
  transport = remote_smtp
  route_list = * 198.51.100.99
"""


dns = dns_fixture(ZONE)


# -- MX order -------------------------------------------------------------------


def test_mx_hosts_in_preference_order(tmp_path: Path, dns: DnsTestServer) -> None:
    item = accepted(route(tmp_path, dns, DNSLOOKUP, "bob@example.org"))
    assert item.router_name == "dnslookup"
    assert item.transport_name == "remote_smtp"
    assert rows(item) == [
        ("mx1.example.org", "198.51.100.11", 10),
        ("mx1.example.org", "2001:db8::11", 10),
        ("mx2.example.org", "198.51.100.12", 20),
        ("mx3.example.org", "198.51.100.13", 30),
    ]


def test_equal_preference_mx_hosts_are_shuffled_but_kept_together(tmp_path: Path, dns: DnsTestServer) -> None:
    config, engine = load(tmp_path, dns, DNSLOOKUP)
    orders = set()
    for _ in range(30):
        outcome = engine.route([AddressItem("bob@equal.example.org")], RoutingContext(config, sender_address=""))
        names = [host.name for host in accepted(outcome).hosts]
        # Both addresses of ea.example.org stay next to each other.
        first = names.index("ea.example.org")
        assert names[first + 1] == "ea.example.org"
        orders.add(tuple(dict.fromkeys(names)))
    assert len(orders) > 1, "equal-preference MX hosts were never reordered"
    assert all(set(order) == {"ea.example.org", "eb.example.org", "ec.example.org"} for order in orders)


def test_domain_without_mx_is_its_own_implicit_mx(tmp_path: Path, dns: DnsTestServer) -> None:
    item = accepted(route(tmp_path, dns, DNSLOOKUP, "bob@aonly.example.org"))
    assert rows(item) == [
        ("aonly.example.org", "198.51.100.30", IMPLICIT_MX),
        ("aonly.example.org", "2001:db8::30", IMPLICIT_MX),
    ]


# -- mx_domains, widen_domains, qualify_single, search_parents -------------------


@pytest.mark.parametrize(
    ("address", "routed"),
    [
        ("bob@aonly.example.org", False),  # in mx_domains, only address records
        ("bob@example.org", True),  # in mx_domains, has MX records
        ("bob@hostmx.example.org", True),
    ],
)
def test_mx_domains_require_an_mx_record(tmp_path: Path, dns: DnsTestServer, address: str, routed: bool) -> None:
    outcome = route(tmp_path, dns, DNSLOOKUP + "  mx_domains = *.example.org : example.org\n", address)
    if routed:
        accepted(outcome)
    else:
        assert failed(outcome).message == "Unrouteable address"


def test_mx_domains_does_not_touch_other_domains(tmp_path: Path, dns: DnsTestServer) -> None:
    item = accepted(route(tmp_path, dns, DNSLOOKUP + "  mx_domains = example.org\n", "bob@aonly.example.org"))
    assert rows(item)[0][2] == IMPLICIT_MX


def test_widen_domains_reroutes_under_the_wider_name(tmp_path: Path, dns: DnsTestServer) -> None:
    # No search list: only widening can find the domain.
    resolver = fast_resolver(dns, search_domains=[])
    routers = DNSLOOKUP + "  widen_domains = example.com : example.net\n"
    outcome = route(tmp_path, dns, routers, "bob@wide", resolver=resolver)
    item = accepted(outcome)
    assert item.address == "bob@wide.example.net"
    assert item.parent is not None and item.parent.address == "bob@wide"
    assert rows(item) == [("mx1.example.org", "198.51.100.11", 10), ("mx1.example.org", "2001:db8::11", 10)]
    # The suffixes were tried in order.
    assert dns.query_count("wide.example.com", "MX") == 1


def test_without_widen_domains_an_unknown_domain_is_unrouteable(tmp_path: Path, dns: DnsTestServer) -> None:
    resolver = fast_resolver(dns, search_domains=[])
    assert failed(route(tmp_path, dns, DNSLOOKUP, "bob@wide", resolver=resolver)).message == "Unrouteable address"


@pytest.mark.parametrize(
    ("options", "address", "want"),
    [
        ("", "bob@single", "bob@single.example.org"),  # qualify_single is on by default
        ("  no_qualify_single\n", "bob@single", None),
        ("  search_parents\n", "bob@a.b", "bob@a.b.example.org"),
        ("", "bob@a.b", None),  # a dotted name is not searched by default
    ],
    ids=["qualify_single", "no_qualify_single", "search_parents", "no_search_parents"],
)
def test_search_list_options(
    tmp_path: Path, dns: DnsTestServer, options: str, address: str, want: str | None
) -> None:
    resolver = fast_resolver(dns, search_domains=["example.org"])
    outcome = route(tmp_path, dns, DNSLOOKUP + options, address, resolver=resolver)
    if want is None:
        assert failed(outcome).message == "Unrouteable address"
    else:
        item = accepted(outcome)
        assert item.address == want
        assert item.parent is not None and item.parent.address == address


# -- ignore_target_hosts ------------------------------------------------------------


def test_ignore_target_hosts_drops_loopback_mx(tmp_path: Path, dns: DnsTestServer) -> None:
    item = accepted(route(tmp_path, dns, DNSLOOKUP_IGNORING, "bob@loopmix.example.org"))
    assert rows(item) == [("mx2.example.org", "198.51.100.12", 20)]


@pytest.mark.parametrize("domain", ["loopmx.example.org", "allloop.example.org", "selfa.example.org"])
def test_all_hosts_ignored_declines_so_the_address_is_unrouteable(
    tmp_path: Path, dns: DnsTestServer, domain: str
) -> None:
    assert failed(route(tmp_path, dns, DNSLOOKUP_IGNORING, f"bob@{domain}")).message == "Unrouteable address"


def test_all_hosts_ignored_lets_the_next_router_try(tmp_path: Path, dns: DnsTestServer) -> None:
    item = accepted(route(tmp_path, dns, DNSLOOKUP_IGNORING + FALLBACK, "bob@loopmx.example.org"))
    assert item.router_name == "smarthost"


def test_ignore_target_hosts_is_expanded(tmp_path: Path, dns: DnsTestServer) -> None:
    routers = DNSLOOKUP + "  ignore_target_hosts = ${if eq{$domain}{example.org}{<; 198.51.100.11 ; 2001:db8::11}}\n"
    item = accepted(route(tmp_path, dns, routers, "bob@example.org"))
    assert [r[0] for r in rows(item)] == ["mx2.example.org", "mx3.example.org"]


# -- failures of the domain ---------------------------------------------------------


def test_mx_to_non_existent_hosts_fails(tmp_path: Path, dns: DnsTestServer) -> None:
    error = failed(route(tmp_path, dns, DNSLOOKUP + FALLBACK, "bob@dangling.example.org"))
    assert error.message == "all relevant MX records point to non-existent hosts"
    assert error.code == 550


def test_null_mx_fails_with_556(tmp_path: Path, dns: DnsTestServer) -> None:
    error = failed(route(tmp_path, dns, DNSLOOKUP, "bob@nullmx.example.org"))
    assert error.code == 556 and error.esc == "5.1.10"
    assert "does not accept mail" in error.message


def test_unknown_domain_is_unrouteable(tmp_path: Path, dns: DnsTestServer) -> None:
    assert failed(route(tmp_path, dns, DNSLOOKUP, "bob@nowhere.example.org")).message == "Unrouteable address"


def test_unknown_domain_uses_cannot_route_message(tmp_path: Path, dns: DnsTestServer) -> None:
    routers = DNSLOOKUP + "  cannot_route_message = unknown mail domain $domain\n"
    error = failed(route(tmp_path, dns, routers, "bob@nowhere.example.org"))
    assert error.message == "unknown mail domain nowhere.example.org"


def test_unknown_domain_goes_on_to_the_next_router(tmp_path: Path, dns: DnsTestServer) -> None:
    assert accepted(route(tmp_path, dns, DNSLOOKUP + FALLBACK, "bob@nowhere.example.org")).router_name == "smarthost"


def test_syntactically_invalid_domain_is_declined(tmp_path: Path, dns: DnsTestServer) -> None:
    assert failed(route(tmp_path, dns, DNSLOOKUP, "bob@bad..example.org")).message == "Unrouteable address"


# -- DNS trouble --------------------------------------------------------------------


def test_dns_timeout_defers_in_bounded_time(tmp_path: Path, dns: DnsTestServer) -> None:
    dns.never_answer("slow.example.org")
    started = time.monotonic()
    error = deferred(route(tmp_path, dns, DNSLOOKUP + FALLBACK, "bob@slow.example.org", resolver=fast_resolver(dns)))
    assert time.monotonic() - started < 3
    assert "timed out" in error.message
    assert error.retry_error == "lookup"
    assert not isinstance(error, FreezeError)


def test_dns_timeout_with_pass_on_timeout_passes(tmp_path: Path, dns: DnsTestServer) -> None:
    dns.never_answer("slow.example.org")
    routers = DNSLOOKUP + "  pass_on_timeout\n  no_more\n" + FALLBACK
    item = accepted(route(tmp_path, dns, routers, "bob@slow.example.org", resolver=fast_resolver(dns)))
    assert item.router_name == "smarthost"


def test_servfail_defers(tmp_path: Path, dns: DnsTestServer) -> None:
    dns.servfail("broken.example.org")
    error = deferred(route(tmp_path, dns, DNSLOOKUP, "bob@broken.example.org", resolver=fast_resolver(dns)))
    assert "SERVFAIL" in error.message


def test_dns_servers_from_the_configuration_are_used(tmp_path: Path, dns: DnsTestServer) -> None:
    accepted(route(tmp_path, dns, DNSLOOKUP, "bob@example.org"))
    assert dns.query_count("example.org", "MX") == 1


# -- self: the best MX is this host ---------------------------------------------------


def test_self_fail(tmp_path: Path, dns: DnsTestServer) -> None:
    error = failed(route(tmp_path, dns, DNSLOOKUP + "  self = fail\n", "bob@self.example.org"))
    assert error.message == "lowest numbered MX record points to local host"


def test_self_defer(tmp_path: Path, dns: DnsTestServer) -> None:
    error = deferred(route(tmp_path, dns, DNSLOOKUP + "  self = defer\n", "bob@self.example.org"))
    assert error.message == "lowest numbered MX record points to local host"
    assert not isinstance(error, FreezeError)


def test_self_freeze_is_the_default(tmp_path: Path, dns: DnsTestServer) -> None:
    error = deferred(route(tmp_path, dns, DNSLOOKUP, "bob@self.example.org"))
    assert isinstance(error, FreezeError) and error.freeze
    assert error.message == "lowest numbered MX record points to local host"


def test_self_send_accepts_with_this_host(tmp_path: Path, dns: DnsTestServer) -> None:
    item = accepted(route(tmp_path, dns, DNSLOOKUP + "  self = send\n", "bob@self.example.org"))
    assert rows(item) == [("lo.example.org", "127.0.0.1", 10), ("mx2.example.org", "198.51.100.12", 20)]


def test_self_pass_goes_to_the_next_router_despite_no_more(tmp_path: Path, dns: DnsTestServer) -> None:
    routers = DNSLOOKUP + "  self = pass\n  no_more\n" + FALLBACK
    item = accepted(route(tmp_path, dns, routers, "bob@self.example.org"))
    assert item.router_name == "smarthost"
    assert item.extra[EXTRA_SELF_HOSTNAME] == "lo.example.org"


def test_self_pass_without_a_next_router_is_unrouteable(tmp_path: Path, dns: DnsTestServer) -> None:
    assert failed(route(tmp_path, dns, DNSLOOKUP + "  self = pass\n", "bob@self.example.org")).message == (
        "Unrouteable address"
    )


def test_address_record_of_this_host_is_a_self_reference(tmp_path: Path, dns: DnsTestServer) -> None:
    error = failed(route(tmp_path, dns, DNSLOOKUP + "  self = fail\n", "bob@selfa.example.org"))
    assert error.message == "remote host address is the local host"


def test_mx_named_as_this_host_is_a_self_reference(tmp_path: Path, dns: DnsTestServer) -> None:
    # mail.example.com is the primary host name, at an address on no local
    # interface (this host behind NAT).
    error = failed(route(tmp_path, dns, DNSLOOKUP + "  self = fail\n", "bob@nat.example.org"))
    assert error.message == "lowest numbered MX record points to local host"


def test_this_host_as_secondary_mx_keeps_only_better_hosts(tmp_path: Path, dns: DnsTestServer) -> None:
    item = accepted(route(tmp_path, dns, DNSLOOKUP + "  self = fail\n", "bob@secondary.example.org"))
    assert rows(item) == [("mx1.example.org", "198.51.100.11", 10), ("mx1.example.org", "2001:db8::11", 10)]
    assert item.extra[EXTRA_LOCAL_HOST_REMOVED] is True


@pytest.mark.parametrize(
    ("domain", "routed"),
    [("secondary.example.org", True), ("example.org", False)],
    ids=["secondary", "not-an-mx"],
)
def test_check_secondary_mx(tmp_path: Path, dns: DnsTestServer, domain: str, routed: bool) -> None:
    outcome = route(tmp_path, dns, DNSLOOKUP + "  check_secondary_mx\n", f"bob@{domain}")
    if routed:
        accepted(outcome)
    else:
        assert failed(outcome).message == "Unrouteable address"


# -- gethostbyname, IP literals, fallback hosts --------------------------------------


def test_gethostbyname_ignores_mx_records(tmp_path: Path, dns: DnsTestServer) -> None:
    item = accepted(route(tmp_path, dns, DNSLOOKUP + "  gethostbyname\n", "bob@hostmx.example.org"))
    assert rows(item) == [("hostmx.example.org", "198.51.100.40", None)]
    assert dns.query_count("hostmx.example.org", "MX") == 0


def test_gethostbyname_unknown_host_is_unrouteable(tmp_path: Path, dns: DnsTestServer) -> None:
    outcome = route(tmp_path, dns, DNSLOOKUP + "  gethostbyname\n", "bob@nowhere.example.org")
    assert failed(outcome).message == "Unrouteable address"


def test_lookuphost_declines_ip_literal_domains(tmp_path: Path, dns: DnsTestServer) -> None:
    assert failed(route(tmp_path, dns, DNSLOOKUP, "bob@[198.51.100.7]")).message == "Unrouteable address"
    assert dns.queries() == []


IPLITERAL = """\
literal:
  driver = ipliteral
  transport = remote_smtp
"""


@pytest.mark.parametrize(
    ("domain", "host"),
    [
        ("[198.51.100.7]", ("[198.51.100.7]", "198.51.100.7", None)),
        ("[IPv6:2001:DB8::7]", ("[IPv6:2001:DB8::7]", "2001:db8::7", None)),
    ],
)
def test_ipliteral_routes_to_the_address(
    tmp_path: Path, dns: DnsTestServer, domain: str, host: tuple[str, str, None]
) -> None:
    item = accepted(route(tmp_path, dns, IPLITERAL + DNSLOOKUP, f"bob@{domain}"))
    assert item.router_name == "literal"
    assert rows(item) == [host]
    assert dns.queries() == []


def test_ipliteral_declines_other_domains(tmp_path: Path, dns: DnsTestServer) -> None:
    item = accepted(route(tmp_path, dns, IPLITERAL + DNSLOOKUP, "bob@example.org"))
    assert item.router_name == "dnslookup"


def test_ipliteral_ignored_address_declines(tmp_path: Path, dns: DnsTestServer) -> None:
    routers = IPLITERAL + "  ignore_target_hosts = 198.51.100.0/24\n" + FALLBACK
    assert accepted(route(tmp_path, dns, routers, "bob@[198.51.100.7]")).router_name == "smarthost"


@pytest.mark.parametrize(
    ("self_option", "outcome_kind"),
    [("fail", "failed"), ("defer", "deferred"), ("freeze", "frozen"), ("send", "accepted"), ("pass", "passed")],
)
def test_ipliteral_of_this_host_applies_self(
    tmp_path: Path, dns: DnsTestServer, self_option: str, outcome_kind: str
) -> None:
    routers = IPLITERAL + f"  self = {self_option}\n" + FALLBACK
    outcome = route(tmp_path, dns, routers, "bob@[127.0.0.1]")
    if outcome_kind == "failed":
        assert failed(outcome).message == "remote host address is the local host"
    elif outcome_kind in ("deferred", "frozen"):
        error = deferred(outcome)
        assert error.message == "remote host address is the local host"
        assert isinstance(error, FreezeError) == (outcome_kind == "frozen")
    elif outcome_kind == "accepted":
        item = accepted(outcome)
        assert item.router_name == "literal" and rows(item) == [("[127.0.0.1]", "127.0.0.1", None)]
    else:
        assert accepted(outcome).router_name == "smarthost"


def test_fallback_hosts_are_attached(tmp_path: Path, dns: DnsTestServer) -> None:
    routers = DNSLOOKUP + "  fallback_hosts = fb.example.net : [198.51.100.77]::2525\n"
    item = accepted(route(tmp_path, dns, routers, "bob@example.org"))
    assert [(h.name, h.address, h.port) for h in item.fallback_hosts] == [
        ("fb.example.net", None, None),
        ("198.51.100.77", "198.51.100.77", 2525),
    ]


def test_lookuphost_needs_a_transport(tmp_path: Path, dns: DnsTestServer) -> None:
    from mta.errors import ConfigError

    config, engine = load(tmp_path, dns, "dnslookup:\n  driver = lookuphost\n")
    with pytest.raises(ConfigError, match="transport is required"):
        engine.routers[0].check(config)
    config, engine = load(tmp_path, dns, "dnslookup:\n  driver = lookuphost\n  verify_only\n")
    engine.routers[0].check(config)
