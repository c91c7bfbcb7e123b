"""The domainlist router, end to end through the routing engine.

Configurations are written to a temporary file and loaded with the real
loader; routers come from the registry; host names are looked up in a DNS
server on loopback.  Remote hosts live in 198.51.100.0/24 and 2001:db8::/32;
127.0.0.1 is "this host".
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from mta.errors import ConfigError
from mta.route.context import RoutingContext
from mta.route.dns import IMPLICIT_MX
from mta.route.engine import RoutingEngine
from mta.route.item import AddressItem
from mta.route.routers._common import (
    EXTRA_LOCAL_HOST_REMOVED,
    FreezeError,
    HostSpec,
    hosts_file_addresses,
    parse_host_item,
    parse_host_list,
)
from mta.runtime import Runtime, build_runtime
from mta.transports import TRANSPORTS
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
    "smart.example.net": {"A": ["198.51.100.25"]},
    "relay.example.org": {"A": ["198.51.100.26"], "AAAA": ["2001:db8::26"]},
    "hubmx.example.org": {"MX": [(20, "hub2.example.org"), (10, "hub1.example.org")], "A": ["198.51.100.50"]},
    "hub1.example.org": {"A": ["198.51.100.51"]},
    "hub2.example.org": {"A": ["198.51.100.52"]},
    "aonly.example.org": {"A": ["198.51.100.30"]},
    "lo.example.org": {"A": ["127.0.0.1"]},
    "r1.example.org": {"A": ["198.51.100.61"]},
    "r2.example.org": {"A": ["198.51.100.62"]},
    "r3.example.org": {"A": ["198.51.100.63"]},
    "r4.example.org": {"A": ["198.51.100.64"]},
    "slow.example.org": {"A": ["198.51.100.70"]},
}


def rows(item: AddressItem) -> list[tuple[str, str | None, int | None]]:
    return [(host.name, host.address, host.port) for host in item.hosts]


def router(route_list: str, extra: str = "") -> str:
    return f"smart:\n  driver = domainlist\n  transport = remote_smtp\n  route_list = {route_list}\n{extra}"


FALLBACK = """\
fallback:
  driver = domainlist
  transport = remote_smtp
  route_list = * 198.51.100.99
"""


dns = dns_fixture(ZONE)


# -- the smart host ---------------------------------------------------------------


def test_star_routes_everything_to_the_smart_host(tmp_path: Path, dns: DnsTestServer) -> None:
    for address in ("bob@example.org", "alice@anything.example", "carol@[198.51.100.9]"):
        item = accepted(route(tmp_path, dns, router("* smart.example.net byname"), address))
        assert item.router_name == "smart" and item.transport_name == "remote_smtp"
        assert rows(item) == [("smart.example.net", "198.51.100.25", None)]


def test_byname_reads_etc_hosts_before_dns(tmp_path: Path, dns: DnsTestServer) -> None:
    if "127.0.0.1" not in hosts_file_addresses("localhost"):
        pytest.skip("/etc/hosts has no 127.0.0.1 localhost line")
    item = accepted(route(tmp_path, dns, router("* localhost byname", "  self = send\n"), "bob@example.org"))
    assert ("localhost", "127.0.0.1", None) in rows(item)
    assert dns.queries() == []


@pytest.mark.parametrize(
    ("lines", "name", "want"),
    [
        ("198.51.100.1 a.example a\n", "a", ["198.51.100.1"]),
        ("198.51.100.1 a.example a\n", "A.EXAMPLE.", ["198.51.100.1"]),
        ("# 198.51.100.1 a\n198.51.100.2 b # a\n", "a", []),
        ("198.51.100.1 a\n2001:db8::1 a\n198.51.100.1 a\n", "a", ["198.51.100.1", "2001:db8::1"]),
        ("fe80::1%eth0 a\n", "a", ["fe80::1"]),
        ("junk a\n198.51.100.3\n", "a", []),
    ],
    ids=["name", "caseless-dot", "comments", "v6-dedup", "scope", "junk"],
)
def test_hosts_file_addresses(tmp_path: Path, lines: str, name: str, want: list[str]) -> None:
    path = tmp_path / "hosts"
    path.write_text(lines)
    assert hosts_file_addresses(name, str(path)) == want


def test_hosts_file_missing_is_no_entry(tmp_path: Path) -> None:
    assert hosts_file_addresses("a", str(tmp_path / "none")) == []


# -- host lists: ports, IP literals, separators -----------------------------------


@pytest.mark.parametrize(
    ("route_list", "want"),
    [
        ("* 198.51.100.1", [("198.51.100.1", "198.51.100.1", None)]),
        ("* [198.51.100.1]::2525", [("198.51.100.1", "198.51.100.1", 2525)]),
        ("* smart.example.net::2525 byname", [("smart.example.net", "198.51.100.25", 2525)]),
        (
            # ";" separates rules, so a host list with IPv6 addresses uses another separator.
            '* "</ [2001:db8::1]:2525 / 198.51.100.2 / 2001:db8::3"',
            [("2001:db8::1", "2001:db8::1", 2525), ("198.51.100.2", "198.51.100.2", None),
             ("2001:db8::3", "2001:db8::3", None)],
        ),
        ("* </[IPv6:2001:db8::4]:587", [("2001:db8::4", "2001:db8::4", 587)]),
        (
            "* smart.example.net:[198.51.100.5]::26:relay.example.org",
            [("smart.example.net", "198.51.100.25", None), ("198.51.100.5", "198.51.100.5", 26),
             ("relay.example.org", "198.51.100.26", None), ("relay.example.org", "2001:db8::26", None)],
        ),
        ("* 198.51.100.1:198.51.100.1:[198.51.100.1]::25", [("198.51.100.1", "198.51.100.1", None),
                                                             ("198.51.100.1", "198.51.100.1", 25)]),
    ],
    ids=["ip", "ip-port", "name-port", "ipv6-list", "ipv6-tag", "mixed", "dedup"],
)
def test_host_list_forms(tmp_path: Path, dns: DnsTestServer, route_list: str, want: list[Any]) -> None:
    assert rows(accepted(route(tmp_path, dns, router(route_list), "bob@example.org"))) == want


@pytest.mark.parametrize(
    ("item", "want"),
    [
        ("mx.example.com", HostSpec("mx.example.com")),
        ("mx.example.com.", HostSpec("mx.example.com")),
        ("mx.example.com:2525", HostSpec("mx.example.com", 2525)),
        ("[192.0.2.1]", HostSpec("192.0.2.1", None, "192.0.2.1")),
        ("[192.0.2.1]:25", HostSpec("192.0.2.1", 25, "192.0.2.1")),
        ("[::1]:2525", HostSpec("::1", 2525, "::1")),
        ("2001:db8::1", HostSpec("2001:db8::1", None, "2001:db8::1")),
        ("hub.example.org/MX", HostSpec("hub.example.org", None, None, True)),
        ("hub.example.org/mx:2525", HostSpec("hub.example.org", 2525, None, True)),
    ],
)
def test_parse_host_item(item: str, want: HostSpec) -> None:
    assert parse_host_item(item) == want


@pytest.mark.parametrize(
    "item",
    ["mx.example.com:0", "mx.example.com:65536", "mx.example.com:smtp", "[192.0.2.1", "[mx.example.com]",
     "[192.0.2.1]x", "a:b:c", ".example.com", "a b", "/MX", "x/y"],
)
def test_parse_host_item_refuses(item: str) -> None:
    with pytest.raises(ValueError):
        parse_host_item(item)


def test_parse_host_list_plus_groups_are_shuffled_separately() -> None:
    seen_first, seen_second = set(), set()
    for _ in range(40):
        names = [spec.name for spec in parse_host_list("a : b : + : c : d", randomize=True)]
        assert set(names[:2]) == {"a", "b"} and set(names[2:]) == {"c", "d"}
        seen_first.add(tuple(names[:2]))
        seen_second.add(tuple(names[2:]))
    assert len(seen_first) == 2 and len(seen_second) == 2
    assert [spec.name for spec in parse_host_list("a : b : + : c")] == ["a", "b", "c"]


# -- domain patterns -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "want"),
    [
        ("bob@example.net", [("198.51.100.1", "198.51.100.1", None)]),
        ("bob@EXAMPLE.NET", [("198.51.100.1", "198.51.100.1", None)]),
        ("bob@sub.example.net", [("198.51.100.2", "198.51.100.2", None)]),
        ("bob@relay.regex.example", [("relay.example.org", "198.51.100.26", None),
                                     ("relay.example.org", "2001:db8::26", None)]),
        ("bob@listed.example", [("198.51.100.3", "198.51.100.3", None)]),
        ("bob@aonly.example.org", [("aonly.example.org", "198.51.100.30", None)]),
        ("bob@[198.51.100.8]", [("198.51.100.8", "198.51.100.8", None)]),
        ("bob@[IPv6:2001:db8::8]", [("198.51.100.4", "198.51.100.4", None)]),
        ("bob@other.example", None),
    ],
)
def test_domain_patterns(tmp_path: Path, dns: DnsTestServer, address: str, want: Any) -> None:
    (tmp_path / "listed").write_text("listed.example: yes\n")
    route_list = (
        "example.net 198.51.100.1 ; *.example.net 198.51.100.2 ; "
        "^(.+)\\.regex\\.example$ $1.example.org byname ; "
        f"lsearch;;{tmp_path}/listed 198.51.100.3 ; aonly.example.org $domain bydns_a ; "
        "[198.51.100.8] 198.51.100.8 ; [IPv6:2001:db8::8] 198.51.100.4"
    )
    outcome = route(tmp_path, dns, router(route_list), address)
    if want is None:
        assert failed(outcome).message == "Unrouteable address"
    else:
        assert rows(accepted(outcome)) == want


def test_unreadable_pattern_lookup_defers(tmp_path: Path, dns: DnsTestServer) -> None:
    error = deferred(route(tmp_path, dns, router(f"lsearch;;{tmp_path}/missing 198.51.100.3"), "bob@x.example"))
    assert "lookup defer in route_list" in error.message


def test_forced_failure_of_host_list_declines(tmp_path: Path, dns: DnsTestServer) -> None:
    route_list = '* "${if eq{$domain}{example.net}{198.51.100.1}fail}"'
    assert accepted(route(tmp_path, dns, router(route_list) + FALLBACK, "bob@example.net")).router_name == "smart"
    assert accepted(route(tmp_path, dns, router(route_list) + FALLBACK, "bob@other.example")).router_name == (
        "fallback"
    )


def test_bad_expansion_of_host_list_defers(tmp_path: Path, dns: DnsTestServer) -> None:
    error = deferred(route(tmp_path, dns, router("* ${lookup{$domain}lsearch{/nonexistent/file}}"), "bob@x.example"))
    assert "failed to expand" in error.message


# -- lookup methods -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "method", "want"),
    [
        ("hubmx.example.org", "byname", [("hubmx.example.org", "198.51.100.50", None)]),
        ("hubmx.example.org", "bydns_a", [("hubmx.example.org", "198.51.100.50", None)]),
        ("hubmx.example.org", "", [("hubmx.example.org", "198.51.100.50", None)]),
        ("hubmx.example.org", "bydns", [("hub1.example.org", "198.51.100.51", 10),
                                        ("hub2.example.org", "198.51.100.52", 20)]),
        ("hubmx.example.org", "bydns_mx", [("hub1.example.org", "198.51.100.51", 10),
                                           ("hub2.example.org", "198.51.100.52", 20)]),
        ("hubmx.example.org/MX", "", [("hub1.example.org", "198.51.100.51", 10),
                                      ("hub2.example.org", "198.51.100.52", 20)]),
        ("aonly.example.org", "bydns", [("aonly.example.org", "198.51.100.30", IMPLICIT_MX)]),
    ],
    ids=["byname", "bydns_a", "default", "bydns", "bydns_mx", "slash-MX", "bydns-implicit"],
)
def test_lookup_methods(tmp_path: Path, dns: DnsTestServer, host: str, method: str, want: Any) -> None:
    item = accepted(route(tmp_path, dns, router(f"* {host} {method}"), "bob@example.org"))
    assert [(h.name, h.address, h.mx) for h in item.hosts] == want


def test_bydns_mx_needs_mx_records(tmp_path: Path, dns: DnsTestServer) -> None:
    routers = router("* aonly.example.org bydns_mx", "  host_find_failed = fail\n")
    error = failed(route(tmp_path, dns, routers, "bob@example.org"))
    assert error.message == 'lookup of host "aonly.example.org" failed in smart router'


def test_mx_port_applies_to_every_mx_host(tmp_path: Path, dns: DnsTestServer) -> None:
    item = accepted(route(tmp_path, dns, router("* hubmx.example.org/MX::2525"), "bob@example.org"))
    assert [(h.name, h.port) for h in item.hosts] == [("hub1.example.org", 2525), ("hub2.example.org", 2525)]


# -- route_file and route_data -----------------------------------------------------------


def file_router(tmp_path: Path, extra: str = "") -> str:
    (tmp_path / "routes").write_text(
        "# domain: hosts [options]\n"
        "example.net: relay.example.org byname\n"
        "hubmx.example.org: $0 bydns_a\n"
        "dialup.example: 198.51.100.7 special_smtp\n"
    )
    return f"smart:\n  driver = domainlist\n  transport = remote_smtp\n  route_file = {tmp_path}/routes\n" \
        f"  search_type = lsearch\n{extra}"


@pytest.mark.parametrize(
    ("address", "want", "transport"),
    [
        ("bob@example.net", [("relay.example.org", "198.51.100.26", None),
                             ("relay.example.org", "2001:db8::26", None)], "remote_smtp"),
        ("bob@hubmx.example.org", [("hubmx.example.org", "198.51.100.50", None)], "remote_smtp"),
        ("bob@dialup.example", [("198.51.100.7", "198.51.100.7", None)], "special_smtp"),
        ("bob@unlisted.example", None, None),
    ],
)
def test_route_file(tmp_path: Path, dns: DnsTestServer, address: str, want: Any, transport: str | None) -> None:
    outcome = route(tmp_path, dns, file_router(tmp_path), address)
    if want is None:
        assert failed(outcome).message == "Unrouteable address"
    else:
        item = accepted(outcome)
        assert rows(item) == want and item.transport_name == transport


def test_route_list_is_tried_before_route_file(tmp_path: Path, dns: DnsTestServer) -> None:
    routers = file_router(tmp_path, "  route_list = example.net 198.51.100.1\n")
    assert rows(accepted(route(tmp_path, dns, routers, "bob@example.net"))) == [
        ("198.51.100.1", "198.51.100.1", None)
    ]


def test_missing_route_file_defers(tmp_path: Path, dns: DnsTestServer) -> None:
    routers = "smart:\n  driver = domainlist\n  route_file = /nonexistent/routes\n  search_type = lsearch\n"
    assert "route_file lookup deferred" in deferred(route(tmp_path, dns, routers, "bob@example.net")).message


def test_route_data(tmp_path: Path, dns: DnsTestServer) -> None:
    routers = (
        "smart:\n  driver = domainlist\n  transport = remote_smtp\n"
        "  route_data = ${if eq{$domain}{example.net}{smart.example.net::2525 byname}fail}\n"
    )
    assert rows(accepted(route(tmp_path, dns, routers, "bob@example.net"))) == [
        ("smart.example.net", "198.51.100.25", 2525)
    ]
    assert failed(route(tmp_path, dns, routers, "bob@other.example")).message == "Unrouteable address"


# -- host_find_failed and host_all_ignored --------------------------------------------------


@pytest.mark.parametrize(
    ("action", "outcome_kind"),
    [
        ("freeze", "frozen"),
        ("defer", "deferred"),
        ("fail", "failed"),
        ("decline", "unrouteable"),  # decline respects no_more
        ("pass", "passed"),  # pass does not
    ],
)
def test_host_find_failed(tmp_path: Path, dns: DnsTestServer, action: str, outcome_kind: str) -> None:
    routers = router("* nowhere.example.org byname", f"  host_find_failed = {action}\n  no_more\n") + FALLBACK
    outcome = route(tmp_path, dns, routers, "bob@example.org")
    message = 'lookup of host "nowhere.example.org" failed in smart router'
    if outcome_kind == "failed":
        assert failed(outcome).message == message
    elif outcome_kind in ("frozen", "deferred"):
        error = deferred(outcome)
        assert error.message == message
        assert isinstance(error, FreezeError) == (outcome_kind == "frozen")
    elif outcome_kind == "unrouteable":
        assert failed(outcome).message == "Unrouteable address"
    else:
        assert accepted(outcome).router_name == "fallback"


def test_host_find_failed_defaults_to_freeze(tmp_path: Path, dns: DnsTestServer) -> None:
    assert isinstance(deferred(route(tmp_path, dns, router("* nowhere.example.org"), "bob@x.example")), FreezeError)


def test_host_find_failed_ignore_drops_only_the_missing_host(tmp_path: Path, dns: DnsTestServer) -> None:
    routers = router("* nowhere.example.org:smart.example.net", "  host_find_failed = ignore\n")
    assert rows(accepted(route(tmp_path, dns, routers, "bob@example.org"))) == [
        ("smart.example.net", "198.51.100.25", None)
    ]
    routers = router("* nowhere.example.org", "  host_find_failed = ignore\n  host_all_ignored = fail\n")
    assert "have been failed or ignored" in failed(route(tmp_path, dns, routers, "bob@example.org")).message


@pytest.mark.parametrize(
    ("action", "outcome_kind"),
    [
        (None, "deferred"),  # the default is defer
        ("defer", "deferred"),
        ("freeze", "frozen"),
        ("fail", "failed"),
        ("decline", "unrouteable"),
        ("pass", "passed"),
    ],
)
def test_host_all_ignored(tmp_path: Path, dns: DnsTestServer, action: str | None, outcome_kind: str) -> None:
    extra = "  ignore_target_hosts = <; 198.51.100.0/24 ; 2001:db8::/32\n  no_more\n"
    if action:
        extra += f"  host_all_ignored = {action}\n"
    routers = router("* relay.example.org:smart.example.net byname", extra) + FALLBACK.replace(
        "198.51.100.99", "[192.0.2.99]"
    )
    outcome = route(tmp_path, dns, routers, "bob@example.org")
    if outcome_kind == "failed":
        assert "have been failed or ignored" in failed(outcome).message
    elif outcome_kind in ("deferred", "frozen"):
        error = deferred(outcome)
        assert "have been failed or ignored" in error.message
        assert isinstance(error, FreezeError) == (outcome_kind == "frozen")
    elif outcome_kind == "unrouteable":
        assert failed(outcome).message == "Unrouteable address"
    else:
        assert accepted(outcome).router_name == "fallback"


def test_ignore_target_hosts_keeps_the_others(tmp_path: Path, dns: DnsTestServer) -> None:
    extra = "  ignore_target_hosts = <; 2001:db8::/32 ; 127.0.0.0/8\n"
    routers = router("* relay.example.org:127.0.0.1:smart.example.net", extra)
    assert rows(accepted(route(tmp_path, dns, routers, "bob@example.org"))) == [
        ("relay.example.org", "198.51.100.26", None),
        ("smart.example.net", "198.51.100.25", None),
    ]


# -- randomize -------------------------------------------------------------------------------


def orders(tmp_path: Path, dns: DnsTestServer, routers: str, runs: int = 30) -> set[tuple[str, ...]]:
    config, engine = load(tmp_path, dns, routers)
    found = set()
    for _ in range(runs):
        outcome = engine.route([AddressItem("bob@example.org")], RoutingContext(config, sender_address=""))
        found.add(tuple(h.name for h in accepted(outcome).hosts))
    return found


HOSTS4 = "r1.example.org:r2.example.org:r3.example.org:r4.example.org"


@pytest.mark.parametrize(
    ("route_list", "extra", "shuffled"),
    [
        (f"* {HOSTS4}", "", False),
        (f"* {HOSTS4}", "  hosts_randomize\n", True),
        (f"* {HOSTS4} randomize", "", True),
        (f"* {HOSTS4} no_randomize", "  hosts_randomize\n", False),
    ],
    ids=["plain", "hosts_randomize", "rule-randomize", "rule-no_randomize"],
)
def test_hosts_randomize(tmp_path: Path, dns: DnsTestServer, route_list: str, extra: str, shuffled: bool) -> None:
    found = orders(tmp_path, dns, router(route_list, extra))
    if shuffled:
        assert len(found) > 1
    else:
        assert found == {("r1.example.org", "r2.example.org", "r3.example.org", "r4.example.org")}


# -- self, transports, empty host lists, DNS trouble --------------------------------------------


def test_first_host_being_this_host_applies_self(tmp_path: Path, dns: DnsTestServer) -> None:
    error = failed(route(tmp_path, dns, router("* lo.example.org:smart.example.net", "  self = fail\n"), "bob@x.ex"))
    assert error.message == "remote host address is the local host"
    item = accepted(route(tmp_path, dns, router("* 127.0.0.1:smart.example.net", "  self = send\n"), "bob@x.ex"))
    assert rows(item) == [("127.0.0.1", "127.0.0.1", None), ("smart.example.net", "198.51.100.25", None)]


def test_this_host_later_in_the_list_ends_it(tmp_path: Path, dns: DnsTestServer) -> None:
    routers = router("* smart.example.net:mail.example.com:relay.example.org", "  self = fail\n")
    item = accepted(route(tmp_path, dns, routers, "bob@x.example"))
    assert rows(item) == [("smart.example.net", "198.51.100.25", None)]
    assert item.extra[EXTRA_LOCAL_HOST_REMOVED] is True
    assert dns.query_count("relay.example.org") == 0


def test_rule_transport_overrides_the_generic_one(tmp_path: Path, dns: DnsTestServer) -> None:
    item = accepted(route(tmp_path, dns, router("* 198.51.100.1 special_smtp byname"), "bob@x.example"))
    assert item.transport_name == "special_smtp"


def test_unknown_rule_option_defers_when_transports_are_known(tmp_path: Path, dns: DnsTestServer) -> None:
    transports = {"remote_smtp": None}
    error = deferred(route(tmp_path, dns, router("* 198.51.100.1 bynmae"), "bob@x.example", transports=transports))
    assert 'unknown routing option or transport name "bynmae"' in error.message


def test_empty_host_list_defers_but_verifies(tmp_path: Path, dns: DnsTestServer) -> None:
    error = deferred(route(tmp_path, dns, router("example.net"), "bob@example.net"))
    assert error.message == "error in smart router: no host(s) specified for domain example.net"
    item = accepted(route(tmp_path, dns, router("example.net"), "bob@example.net", verify="recipient"))
    assert item.hosts == []


def test_dns_timeout_defers(tmp_path: Path, dns: DnsTestServer) -> None:
    dns.never_answer("slow.example.org")
    started = time.monotonic()
    routers = router("* slow.example.org bydns_a")
    error = deferred(route(tmp_path, dns, routers, "bob@x.ex", resolver=fast_resolver(dns)))
    assert time.monotonic() - started < 3
    assert error.message.startswith("host lookup for slow.example.org did not complete")
    assert not isinstance(error, FreezeError)


def test_dns_timeout_with_pass_on_timeout(tmp_path: Path, dns: DnsTestServer) -> None:
    dns.never_answer("slow.example.org")
    routers = router("* slow.example.org", "  pass_on_timeout\n  no_more\n") + FALLBACK
    item = accepted(route(tmp_path, dns, routers, "bob@x.example", resolver=fast_resolver(dns)))
    assert item.router_name == "fallback"


def test_fallback_hosts(tmp_path: Path, dns: DnsTestServer) -> None:
    item = accepted(route(tmp_path, dns, router("* 198.51.100.1", "  fallback_hosts = r1.example.org\n"), "b@x.ex"))
    assert [(h.name, h.address) for h in item.fallback_hosts] == [("r1.example.org", None)]


# -- start-up checks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("", "route_list, route_file or route_data is required"),
        ("  route_file = /etc/routes\n", "route_file needs a search_type"),
        ("  route_file = /etc/routes\n  search_type = nosuch\n", "unknown lookup type"),
        ("  route_list = * mx.example.net::99999\n", "bad port"),
        ("  route_list = ^(unclosed 198.51.100.1\n", "bad regular expression"),
        ("  route_list = * \"198.51.100.1\n", "unterminated quote"),
        ("  route_list = * 198.51.100.1 bynmae\n", 'unknown routing option or transport name "bynmae"'),
    ],
)
def test_check_reports_bad_rules(tmp_path: Path, dns: DnsTestServer, options: str, message: str) -> None:
    config, engine = load(tmp_path, dns, f"smart:\n  driver = domainlist\n  transport = remote_smtp\n{options}")
    runtime = Runtime(config, [], engine.routers, {"remote_smtp": None}, [], frozenset())
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as info:
        engine.routers[0].check(runtime)
    assert info.value.line is not None


def test_check_accepts_a_good_router(tmp_path: Path, dns: DnsTestServer) -> None:
    config, engine = load(tmp_path, dns, router("* $domain byname remote_smtp ; ^(.*)$ 198.51.100.1"))
    engine.routers[0].check(Runtime(config, [], [], {"remote_smtp": None}, [], frozenset()))


# -- with the real runtime and transports ----------------------------------------------------------


RUNTIME_CONFIG = """\
smart:
  driver = domainlist
  transport = remote_smtp
  route_list = dialup.example  dialup-7.example.net  dialup_file ; \\
               * smart.example.net byname
begin transports
remote_smtp:
  driver = smtp
dialup_file:
  driver = appendfile
  file = {tmp}/dialup/$domain
"""


def test_real_runtime_remote_and_local_transports(tmp_path: Path, dns: DnsTestServer) -> None:
    assert {"smtp", "appendfile"} <= set(TRANSPORTS), "smtp and appendfile must be registered transports"
    config, _ = load(tmp_path, dns, RUNTIME_CONFIG.format(tmp=tmp_path))
    runtime = build_runtime(config)  # runs every check(): the rule's transport exists
    engine = RoutingEngine([], runtime.routers, config)

    def one(address: str) -> AddressItem:
        ctx = RoutingContext(config, sender_address="s@example.com", transports=runtime.transports)
        return accepted(engine.route([AddressItem(address)], ctx))

    remote = one("bob@example.org")
    assert (remote.transport_name, rows(remote)) == ("remote_smtp", [("smart.example.net", "198.51.100.25", None)])
    # A local transport is given the host list as text ($host), not looked up.
    local = one("bob@dialup.example")
    assert (local.transport_name, rows(local)) == ("dialup_file", [("dialup-7.example.net", None, None)])
    assert dns.query_count("dialup-7.example.net") == 0


def test_real_runtime_refuses_an_unknown_rule_word(tmp_path: Path, dns: DnsTestServer) -> None:
    assert "smtp" in TRANSPORTS, "smtp must be a registered transport"
    text = RUNTIME_CONFIG.format(tmp=tmp_path).replace("dialup_file ;", "dialup_fiel ;")
    config, _ = load(tmp_path, dns, text)
    with pytest.raises(ConfigError, match='unknown routing option or transport name "dialup_fiel"'):
        build_runtime(config)
