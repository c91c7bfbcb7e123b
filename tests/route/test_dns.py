"""mta.route.dns against a real DNS server on loopback (tests/support/dnsserver.py)."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from mta.errors import DeferError, FailError
from mta.route.dns import (
    IMPLICIT_MX,
    DnsResolver,
    Host,
    HostList,
    MxHostsMissingError,
    MXRecord,
    NoMxError,
    NullMxError,
    ResolverSettings,
    UnknownDomainError,
    UnknownHostError,
    ip_literal,
    parse_dns_servers,
)
from tests.support.dnsserver import DnsTestServer, ZoneData

_T = TypeVar("_T")

# Loopback addresses stand for remote hosts; 127.0.0.9 plays "this machine".
LOCAL_IP = "127.0.0.9"


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coro, debug=True)


def resolver_for(server: DnsTestServer, **settings: Any) -> DnsResolver:
    settings.setdefault("timeout", 0.3)
    settings.setdefault("retries", 1)
    return DnsResolver(ResolverSettings(servers=[server.address], **settings))


def is_local(ip: str) -> bool:
    return ip == LOCAL_IP


def ignore_loopback_1(ip: str) -> bool:
    # The shape of Exim's default "ignore_target_hosts = 0.0.0.0 : 127.0.0.1"
    # narrowed to one address, since every test host lives on 127/8.
    return ip in ("0.0.0.0", "127.0.0.1")


def rows(hosts: HostList | list[Host]) -> list[tuple[str, str | None, int | None]]:
    items = hosts.hosts if isinstance(hosts, HostList) else hosts
    return [(host.name, host.address, host.mx) for host in items]


def by_family(addresses: list[str] | list[str | None]) -> list[frozenset[str]]:
    """Addresses as runs of one IP version, order inside a run ignored: DNS
    servers (dnspython too) return the records of an rrset in random order."""
    runs: list[set[str]] = []
    last_version = 0
    for address in addresses:
        assert address is not None
        version = ipaddress.ip_address(address).version
        if version != last_version:
            runs.append(set())
            last_version = version
        runs[-1].add(address)
    return [frozenset(run) for run in runs]


BASIC: ZoneData = {
    "example.org": {"MX": [(30, "mx3.example.org"), (10, "mx1.example.org"), (20, "mx2.example.org")]},
    "mx1.example.org": {"A": ["127.0.0.11"], "AAAA": ["::11"]},
    "mx2.example.org": {"A": ["127.0.0.12"]},
    "mx3.example.org": {"A": ["127.0.0.13"]},
    "plain.example.org": {"A": ["127.0.0.20", "127.0.0.21"], "AAAA": ["2001:db8::20"]},
    "v6only.example.org": {"AAAA": ["2001:db8::30"]},
    "nullmx.example.org": {"MX": [(0, ".")], "A": ["127.0.0.40"]},
    "noaddr.example.org": {"TXT": ["no addresses here"]},
}


# -- parse_dns_servers, settings, IP literals ----------------------------------


@pytest.mark.parametrize(
    ("item", "want"),
    [
        ("192.0.2.1", ("192.0.2.1", 53)),
        ("192.0.2.1.5353", ("192.0.2.1", 5353)),
        ("192.0.2.1:5353", ("192.0.2.1", 5353)),
        ("[2001:db8::1]:5353", ("2001:db8::1", 5353)),
        ("[2001:db8::1]", ("2001:db8::1", 53)),
        ("::1", ("::1", 53)),
        ("::1.5353", ("::1", 5353)),
        ("::ffff:192.0.2.1", ("::ffff:c000:201", 53)),
        ("  127.0.0.1  ", ("127.0.0.1", 53)),
    ],
    ids=lambda value: str(value),
)
def test_parse_dns_servers_forms(item: str, want: tuple[str, int]) -> None:
    got = parse_dns_servers([item])
    assert got == [want], f"got {got} want {[want]}"


@pytest.mark.parametrize(
    "item",
    [
        "ns1.example.org",
        "192.0.2",
        "192.0.2.1.99999",
        "192.0.2.1.0",
        "192.0.2.1:",
        "[2001:db8::1]5353",
        "[2001:db8::1",
        "[2001:db8::1]:",
        "[not-an-ip]:53",
        "2001:db8::1:x",
        "junk",
    ],
)
def test_parse_dns_servers_rejects_junk(item: str) -> None:
    with pytest.raises(ValueError, match="dns_servers"):
        parse_dns_servers([item])


def test_parse_dns_servers_list_and_blanks() -> None:
    assert parse_dns_servers(["192.0.2.1", "", "[::1]:53"]) == [("192.0.2.1", 53), ("::1", 53)]


@pytest.mark.parametrize(
    "settings",
    [
        {"timeout": 0},
        {"retries": -1},
        {"servers": [("ns.example.org", 53)]},
        {"servers": [("127.0.0.1", 0)]},
        {"cache_max_ttl": -1},
    ],
    ids=str,
)
def test_resolver_settings_refuse_bad_values(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ResolverSettings(**settings)


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("[192.0.2.1]", "192.0.2.1"),
        ("::1", "::1"),
        ("[IPv6:2001:DB8::1]", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("mx.example.org", None),
        ("[mx.example.org]", None),
        ("192.0.2.300", None),
    ],
)
def test_ip_literal(name: str, want: str | None) -> None:
    assert ip_literal(name) == want


# -- MX ordering ------------------------------------------------------------------


def test_mx_hosts_in_preference_order(dns_server: DnsTestServer) -> None:
    dns_server.set_records(BASIC)
    found = resolver_for(dns_server).find_hosts_by_mx("example.org")
    assert rows(found) == [
        ("mx1.example.org", "127.0.0.11", 10),
        ("mx1.example.org", "::11", 10),
        ("mx2.example.org", "127.0.0.12", 20),
        ("mx3.example.org", "127.0.0.13", 30),
    ]
    assert found.domain == "example.org"
    assert not found.implicit_mx and not found.self_reference and not found.local_host_removed
    keys = [host.sort_key for host in found.hosts]
    assert keys == sorted(keys)
    assert found.hosts[0].sort_key == found.hosts[1].sort_key  # two addresses, one host


def test_lookup_mx_sorted_records(dns_server: DnsTestServer) -> None:
    dns_server.set_records(BASIC)
    resolver = resolver_for(dns_server)
    assert resolver.lookup_mx("example.org") == [
        MXRecord(10, "mx1.example.org"),
        MXRecord(20, "mx2.example.org"),
        MXRecord(30, "mx3.example.org"),
    ]
    assert resolver.lookup_mx("plain.example.org") == []
    assert resolver.lookup_mx("nullmx.example.org") == [MXRecord(0, ".")]
    with pytest.raises(UnknownDomainError):
        resolver.lookup_mx("nowhere.example.org")


def test_equal_preferences_are_randomised(dns_server: DnsTestServer) -> None:
    dns_server.set_records(
        {
            "example.org": {
                "MX": [(5, "first.example.org"), (20, "last.example.org")]
                + [(10, f"eq{i}.example.org") for i in range(3)]
            },
            "first.example.org": {"A": ["127.0.0.5"]},
            "last.example.org": {"A": ["127.0.0.20"]},
            "eq0.example.org": {"A": ["127.0.0.100"]},
            "eq1.example.org": {"A": ["127.0.0.101"]},
            "eq2.example.org": {"A": ["127.0.0.102"]},
        }
    )
    resolver = resolver_for(dns_server, cache_max_ttl=60)
    orders: set[tuple[str, ...]] = set()
    firsts: set[str] = set()
    for _ in range(60):
        names = [host.name for host in resolver.find_hosts_by_mx("example.org").hosts]
        assert names[0] == "first.example.org" and names[-1] == "last.example.org", names
        middle = tuple(names[1:-1])
        assert sorted(middle) == ["eq0.example.org", "eq1.example.org", "eq2.example.org"]
        orders.add(middle)
        firsts.add(middle[0])
    # 60 draws of 3! orders: all three leading at some point is near certain
    # (the chance of missing one is about 1e-10) and impossible without shuffling.
    assert firsts == {"eq0.example.org", "eq1.example.org", "eq2.example.org"}
    assert len(orders) >= 3


def test_async_equal_preferences_are_randomised(dns_server: DnsTestServer) -> None:
    dns_server.set_records(
        {
            "example.org": {"MX": [(10, "a.example.org"), (10, "b.example.org")]},
            "a.example.org": {"A": ["127.0.0.1"]},
            "b.example.org": {"A": ["127.0.0.2"]},
        }
    )
    resolver = resolver_for(dns_server)

    async def firsts() -> set[str]:
        seen: set[str] = set()
        for _ in range(40):
            seen.add((await resolver.find_hosts_by_mx_async("example.org")).hosts[0].name)
        return seen

    assert run(firsts()) == {"a.example.org", "b.example.org"}


def test_same_target_twice_keeps_best_preference(dns_server: DnsTestServer) -> None:
    dns_server.set_records(
        {
            "example.org": {
                "MX": [(10, "mx1.example.org"), (30, "mx1.example.org"), (20, "mx2.example.org")]
            },
            "mx1.example.org": {"A": ["127.0.0.11"]},
            "mx2.example.org": {"A": ["127.0.0.11", "127.0.0.12"]},  # one address shared
        }
    )
    found = resolver_for(dns_server).find_hosts_by_mx("example.org")
    assert rows(found) == [("mx1.example.org", "127.0.0.11", 10), ("mx2.example.org", "127.0.0.12", 20)]


def test_mx_target_behind_cname(dns_server: DnsTestServer) -> None:
    dns_server.set_records(
        {
            "example.org": {"MX": [(10, "alias.example.org")]},
            "alias.example.org": {"CNAME": ["real.example.org"]},
            "real.example.org": {"A": ["127.0.0.50"]},
        }
    )
    assert rows(resolver_for(dns_server).find_hosts_by_mx("example.org")) == [
        ("alias.example.org", "127.0.0.50", 10)
    ]


# -- implicit MX, require_mx, null MX --------------------------------------------------


def test_implicit_mx_uses_address_records(dns_server: DnsTestServer) -> None:
    dns_server.set_records(BASIC)
    found = resolver_for(dns_server).find_hosts_by_mx("plain.example.org")
    assert found.implicit_mx
    assert {(host.name, host.mx) for host in found.hosts} == {("plain.example.org", IMPLICIT_MX)}
    assert by_family([host.address for host in found.hosts]) == [
        {"127.0.0.20", "127.0.0.21"},
        {"2001:db8::20"},
    ]
    assert dns_server.query_count("plain.example.org", "MX") == 1


def test_require_mx_refuses_implicit_mx(dns_server: DnsTestServer) -> None:
    dns_server.set_records(BASIC)
    with pytest.raises(NoMxError) as caught:
        resolver_for(dns_server).find_hosts_by_mx("plain.example.org", require_mx=True)
    assert isinstance(caught.value, FailError)
    assert dns_server.query_count("plain.example.org", "A") == 0


def test_require_mx_accepts_real_mx(dns_server: DnsTestServer) -> None:
    dns_server.set_records(BASIC)
    found = resolver_for(dns_server).find_hosts_by_mx("example.org", require_mx=True)
    assert [host.mx for host in found.hosts] == [10, 10, 20, 30]


def test_no_mx_and_no_address_is_unrouteable(dns_server: DnsTestServer) -> None:
    dns_server.set_records(BASIC)
    with pytest.raises(UnknownDomainError, match="no MX or address records"):
        resolver_for(dns_server).find_hosts_by_mx("noaddr.example.org")


def test_null_mx_fails_without_address_fallback(dns_server: DnsTestServer) -> None:
    dns_server.set_records(BASIC)
    with pytest.raises(NullMxError) as caught:
        resolver_for(dns_server).find_hosts_by_mx("nullmx.example.org")
    assert (caught.value.code, caught.value.esc) == (556, "5.1.10")
    assert "does not accept mail" in caught.value.message
    assert dns_server.query_count("nullmx.example.org", "A") == 0


# -- MX targets without addresses --------------------------------------------------------


def test_mx_to_nonexistent_host_is_dropped(dns_server: DnsTestServer) -> None:
    dns_server.set_records(
        {
            "example.org": {"MX": [(10, "gone.example.org"), (20, "mx2.example.org")]},
            "mx2.example.org": {"A": ["127.0.0.12"]},
        }
    )
    found = resolver_for(dns_server).find_hosts_by_mx("example.org")
    assert rows(found) == [("mx2.example.org", "127.0.0.12", 20)]
    assert found.deferred == []


def test_all_mx_to_nonexistent_hosts_fails(dns_server: DnsTestServer) -> None:
    dns_server.set_records(
        {
            "example.org": {"MX": [(10, "gone.example.org"), (20, "noaddr.example.org")]},
            "noaddr.example.org": {"TXT": ["nothing"]},
        }
    )
    with pytest.raises(MxHostsMissingError) as caught:
        resolver_for(dns_server).find_hosts_by_mx("example.org")
    assert caught.value.message == "all relevant MX records point to non-existent hosts"
    assert caught.value.code == 550


def test_mx_to_ip_address_is_not_a_host(dns_server: DnsTestServer) -> None:
    dns_server.set_records({"example.org": {"MX": [(10, "127.0.0.1")]}})
    with pytest.raises(MxHostsMissingError, match=r"or \(invalidly\) to IP addresses"):
        resolver_for(dns_server).find_hosts_by_mx("example.org")


def test_mx_target_lookup_timeout_defers(dns_server: DnsTestServer) -> None:
    dns_server.set_records(
        {
            "example.org": {"MX": [(10, "slow.example.org"), (20, "gone.example.org")]},
            "slow.example.org": {"A": ["127.0.0.3"]},
        }
    )
    dns_server.never_answer("slow.example.org")
    with pytest.raises(DeferError) as caught:
        resolver_for(dns_server, retries=0).find_hosts_by_mx("example.org")
    assert caught.value.message == (
        "host lookup for MX hosts of example.org did not complete: "
        "DNS lookup of a for slow.example.org timed out"
    )
    assert caught.value.retry_error == "lookup"


def test_mx_target_lookup_timeout_with_other_hosts(dns_server: DnsTestServer) -> None:
    dns_server.set_records(
        {
            "example.org": {"MX": [(10, "slow.example.org"), (20, "mx2.example.org")]},
            "slow.example.org": {"A": ["127.0.0.3"]},
            "mx2.example.org": {"A": ["127.0.0.12"]},
        }
    )
    dns_server.servfail("slow.example.org")
    found = resolver_for(dns_server).find_hosts_by_mx("example.org")
    assert rows(found) == [("mx2.example.org", "127.0.0.12", 20)]
    assert found.deferred == ["slow.example.org"]


# -- ignore_target_hosts ------------------------------------------------------------------


def test_ignore_target_hosts_drops_addresses(dns_server: DnsTestServer) -> None:
    dns_server.set_records(
        {
            "example.org": {"MX": [(10, "loop.example.org"), (20, "mx2.example.org")]},
            "loop.example.org": {"A": ["127.0.0.1"]},
            "mx2.example.org": {"A": ["0.0.0.0", "127.0.0.12"]},
        }
    )
    resolver = resolver_for(dns_server)
    found = resolver.find_hosts_by_mx("example.org", ignore_target_hosts=ignore_loopback_1)
    assert rows(found) == [("mx2.example.org", "127.0.0.12", 20)]
    assert [host.address for host in found.ignored] == ["127.0.0.1", "0.0.0.0"]
    assert not found.all_ignored
    # Without the option the same lookup keeps everything.
    assert len(resolver.find_hosts_by_mx("example.org").hosts) == 3


def test_all_targets_ignored(dns_server: DnsTestServer) -> None:
    dns_server.set_records(
        {
            "example.org": {"MX": [(10, "loop.example.org")]},
            "loop.example.org": {"A": ["127.0.0.1"]},
        }
    )
    found = resolver_for(dns_server).find_hosts_by_mx("example.org", ignore_target_hosts=ignore_loopback_1)
    assert found.hosts == [] and found.all_ignored


def test_ignore_applies_to_implicit_mx(dns_server: DnsTestServer) -> None:
    dns_server.set_records({"example.org": {"A": ["127.0.0.1"]}})
    found = resolver_for(dns_server).find_hosts_by_mx("example.org", ignore_target_hosts=ignore_loopback_1)
    assert found.implicit_mx and found.all_ignored


# -- MX records pointing at this machine -------------------------------------------------


def self_zone(*mx: tuple[int, str]) -> ZoneData:
    return {
        "example.org": {"MX": list(mx)},
        "me.example.org": {"A": [LOCAL_IP]},
        "mx1.example.org": {"A": ["127.0.0.11"]},
        "mx2.example.org": {"A": ["127.0.0.12"]},
        "mx3.example.org": {"A": ["127.0.0.13"]},
    }


def test_local_host_as_secondary_removes_it_and_worse(dns_server: DnsTestServer) -> None:
    dns_server.set_records(
        self_zone(
            (10, "mx1.example.org"), (20, "me.example.org"), (20, "mx2.example.org"), (30, "mx3.example.org")
        )
    )
    found = resolver_for(dns_server).find_hosts_by_mx("example.org", local_host_check=is_local)
    assert rows(found) == [("mx1.example.org", "127.0.0.11", 10)]
    assert found.local_host_removed and not found.self_reference


def test_local_host_as_lowest_mx_is_self_reference(dns_server: DnsTestServer) -> None:
    dns_server.set_records(self_zone((10, "me.example.org"), (20, "mx2.example.org")))
    found = resolver_for(dns_server).find_hosts_by_mx("example.org", local_host_check=is_local)
    assert found.self_reference and not found.local_host_removed
    assert [host.name for host in found.hosts] == ["me.example.org", "mx2.example.org"]


def test_local_host_sharing_lowest_preference_is_self_reference(dns_server: DnsTestServer) -> None:
    dns_server.set_records(
        self_zone((10, "mx1.example.org"), (10, "me.example.org"), (20, "mx2.example.org"))
    )
    for _ in range(10):  # whichever order the shuffle gives
        found = resolver_for(dns_server).find_hosts_by_mx("example.org", local_host_check=is_local)
        assert found.self_reference


def test_local_host_not_in_list(dns_server: DnsTestServer) -> None:
    dns_server.set_records(self_zone((10, "mx1.example.org"), (20, "mx2.example.org")))
    found = resolver_for(dns_server).find_hosts_by_mx("example.org", local_host_check=is_local)
    assert not found.self_reference and not found.local_host_removed
    assert len(found.hosts) == 2


def test_implicit_mx_to_local_host_is_self_reference(dns_server: DnsTestServer) -> None:
    dns_server.set_records({"example.org": {"A": [LOCAL_IP]}})
    found = resolver_for(dns_server).find_hosts_by_mx("example.org", local_host_check=is_local)
    assert found.implicit_mx and found.self_reference


def test_local_secondary_with_unresolved_primary_defers(dns_server: DnsTestServer) -> None:
    # We are MX 20; MX 10's address lookup fails for now.  The mail is not
    # ours and the better host may come back: defer, never act on "self".
    dns_server.set_records(self_zone((10, "mx1.example.org"), (20, "me.example.org")))
    dns_server.never_answer("mx1.example.org")
    with pytest.raises(DeferError, match="did not complete"):
        resolver_for(dns_server, retries=0).find_hosts_by_mx("example.org", local_host_check=is_local)


# -- failures of the domain lookup ------------------------------------------------------


def test_nxdomain_is_permanent(dns_server: DnsTestServer) -> None:
    dns_server.set_records(BASIC)
    with pytest.raises(FailError) as caught:
        resolver_for(dns_server).find_hosts_by_mx("nowhere.example.org")
    assert isinstance(caught.value, UnknownDomainError)
    assert caught.value.message == 'unrouteable mail domain "nowhere.example.org"'
    assert (caught.value.code, caught.value.esc) == (550, "5.1.2")


def test_invalid_domain_is_permanent(dns_server: DnsTestServer) -> None:
    resolver = resolver_for(dns_server)
    for domain in ("a..example.org", "x" * 64 + ".example.org", ""):
        with pytest.raises(UnknownDomainError, match="syntactically invalid"):
            resolver.find_hosts_by_mx(domain)


def test_timeout_defers_within_bounded_time(dns_server: DnsTestServer) -> None:
    dns_server.set_records(BASIC)
    dns_server.never_answer("example.org")
    resolver = resolver_for(dns_server, timeout=0.3, retries=1)
    started = time.monotonic()
    with pytest.raises(DeferError) as caught:
        resolver.find_hosts_by_mx("example.org")
    elapsed = time.monotonic() - started
    assert caught.value.message == "DNS lookup of mx for example.org timed out"
    assert caught.value.retry_error == "lookup"
    assert caught.value.code == 451
    assert elapsed >= 0.6, elapsed  # it waited for both tries (0.3 s each) ...
    assert elapsed < 5, elapsed  # ... and not for ever (a wide bound: the machine may be busy)
    assert dns_server.query_count("example.org", "MX") == 2  # one try, one retry


def test_servfail_defers(dns_server: DnsTestServer) -> None:
    dns_server.set_records(BASIC)
    dns_server.servfail("example.org", "MX")
    started = time.monotonic()
    with pytest.raises(DeferError) as caught:
        resolver_for(dns_server, timeout=10).find_hosts_by_mx("example.org")
    # An answer, not a timeout: far sooner than the 10 s a wait would take, even on a busy machine.
    assert time.monotonic() - started < 5
    assert caught.value.message.startswith("DNS lookup of mx for example.org failed: SERVFAIL from 127.0.0.1")
    assert caught.value.retry_error == "lookup"


def test_refused_defers(dns_server: DnsTestServer) -> None:
    dns_server.set_rcode("example.org", "REFUSED")
    with pytest.raises(DeferError, match="REFUSED"):
        resolver_for(dns_server).lookup_mx("example.org")


def test_second_server_answers_when_first_fails(dns_server: DnsTestServer) -> None:
    dns_server.set_records(BASIC)
    with DnsTestServer() as broken:
        broken.servfail("*")
        settings = ResolverSettings(servers=[broken.address, dns_server.address], timeout=0.3, retries=1)
        found = DnsResolver(settings).find_hosts_by_mx("example.org")
    assert found.hosts[0].name == "mx1.example.org"


# -- addresses: A and AAAA, IP literals ------------------------------------------------


def test_lookup_addresses_ipv4_first(dns_server: DnsTestServer) -> None:
    dns_server.set_records(BASIC)
    resolver = resolver_for(dns_server)
    assert by_family(resolver.lookup_addresses("plain.example.org")) == [
        {"127.0.0.20", "127.0.0.21"},
        {"2001:db8::20"},
    ]
    assert resolver.lookup_addresses("v6only.example.org") == ["2001:db8::30"]
    assert resolver.lookup_addresses("noaddr.example.org") == []
    with pytest.raises(UnknownHostError):
        resolver.lookup_addresses("nowhere.example.org")


def test_prefer_ipv6_puts_aaaa_first(dns_server: DnsTestServer) -> None:
    dns_server.set_records(BASIC)
    resolver = resolver_for(dns_server, prefer_ipv6=True)
    assert by_family(resolver.lookup_addresses("plain.example.org")) == [
        {"2001:db8::20"},
        {"127.0.0.20", "127.0.0.21"},
    ]


def test_use_ipv6_off_never_asks_aaaa(dns_server: DnsTestServer) -> None:
    dns_server.set_records(BASIC)
    resolver = resolver_for(dns_server, use_ipv6=False)
    assert rows(resolver.find_hosts_by_mx("example.org"))[:2] == [
        ("mx1.example.org", "127.0.0.11", 10),
        ("mx2.example.org", "127.0.0.12", 20),
    ]
    with pytest.raises(UnknownHostError, match="no address records"):
        resolver.find_hosts_by_name("v6only.example.org")
    assert resolver.find_hosts_by_name("[IPv6:2001:db8::1]") == []
    assert dns_server.query_count(rdtype="AAAA") == 0


def test_find_hosts_by_name(dns_server: DnsTestServer) -> None:
    dns_server.set_records(BASIC)
    resolver = resolver_for(dns_server)
    hosts = resolver.find_hosts_by_name("plain.example.org", port=2525)
    assert {(host.name, host.mx, host.port) for host in hosts} == {("plain.example.org", None, 2525)}
    assert by_family([host.address for host in hosts]) == [{"127.0.0.20", "127.0.0.21"}, {"2001:db8::20"}]
    assert resolver.find_hosts_by_name("v6only.example.org") == [Host("v6only.example.org", "2001:db8::30")]
    with pytest.raises(UnknownHostError, match="not found"):
        resolver.find_hosts_by_name("nowhere.example.org")
    with pytest.raises(UnknownHostError, match="no address records"):
        resolver.find_hosts_by_name("noaddr.example.org")
    dns_server.never_answer("slow.example.org")
    with pytest.raises(DeferError, match=r"^DNS lookup of a for slow\.example\.org timed out$"):
        resolver_for(dns_server, retries=0).find_hosts_by_name("slow.example.org")


def test_ip_literals_need_no_lookup(dns_server: DnsTestServer) -> None:
    resolver = resolver_for(dns_server)
    assert resolver.find_hosts_by_name("192.0.2.1") == [Host("192.0.2.1", "192.0.2.1")]
    assert resolver.find_hosts_by_name("[192.0.2.1]", port=26) == [Host("192.0.2.1", "192.0.2.1", port=26)]
    assert resolver.find_hosts_by_name("[IPv6:2001:db8::1]") == [Host("2001:db8::1", "2001:db8::1")]
    assert resolver.find_hosts_by_name("127.0.0.1", ignore_target_hosts=ignore_loopback_1) == []
    assert dns_server.queries() == []


def test_host_text_form() -> None:
    assert str(Host("mx1.example.org", "192.0.2.1", mx=10)) == "mx1.example.org [192.0.2.1] MX=10"
    assert str(Host("example.org", "192.0.2.1", mx=IMPLICIT_MX, port=26)) == "example.org [192.0.2.1]:26"


def test_large_answer_falls_back_to_tcp(dns_server: DnsTestServer) -> None:
    many = [str(ipaddress.ip_address("10.0.0.1") + i) for i in range(80)]
    dns_server.set_records({"big.example.org": {"A": many}})
    assert sorted(resolver_for(dns_server, use_ipv6=False).lookup_addresses("big.example.org")) == sorted(
        many
    )
    assert {entry.transport for entry in dns_server.queries()} == {"udp", "tcp"}


# -- qualification ------------------------------------------------------------------


def test_qualify_single_and_search_parents(dns_server: DnsTestServer) -> None:
    dns_server.set_records(
        {
            "mail.example.org": {"MX": [(10, "mx1.example.org")]},
            "a.sub.example.org": {"A": ["127.0.0.60"]},
            "mx1.example.org": {"A": ["127.0.0.11"]},
        }
    )
    resolver = resolver_for(dns_server, search_domains=["example.org"])
    found = resolver.find_hosts_by_mx("mail", qualify_single=True)
    assert found.domain == "mail.example.org"
    assert rows(found) == [("mx1.example.org", "127.0.0.11", 10)]
    with pytest.raises(UnknownDomainError):
        resolver.find_hosts_by_mx("mail")  # no qualification: "mail." does not exist
    # search_parents extends names with dots, qualify_single only those without.
    with pytest.raises(UnknownHostError):
        resolver.find_hosts_by_name("a.sub", qualify_single=True)
    assert resolver.find_hosts_by_name("a.sub", search_parents=True) == [
        Host("a.sub.example.org", "127.0.0.60")
    ]
    # A final dot means "already qualified".
    with pytest.raises(UnknownDomainError):
        resolver.find_hosts_by_mx("mail.", qualify_single=True)
    # An exact name is reported as asked (case preserved), not rewritten.
    assert resolver.find_hosts_by_mx("MAIL.example.org").domain == "MAIL.example.org"


# -- cache ---------------------------------------------------------------------------------


def test_cache_saves_repeated_queries(dns_server: DnsTestServer) -> None:
    dns_server.set_records(BASIC)
    cached = resolver_for(dns_server, cache_max_ttl=30)
    for _ in range(3):
        cached.find_hosts_by_mx("example.org")
        with pytest.raises(UnknownDomainError):
            cached.find_hosts_by_mx("nowhere.example.org")
    assert dns_server.query_count("example.org", "MX") == 1
    assert dns_server.query_count("nowhere.example.org", "MX") == 1
    uncached = resolver_for(dns_server)
    uncached.find_hosts_by_mx("example.org")
    uncached.find_hosts_by_mx("example.org")
    assert dns_server.query_count("example.org", "MX") == 3


def test_cache_keeps_answers_at_most_max_ttl(dns_server: DnsTestServer) -> None:
    dns_server.set_records(BASIC)  # TTL 60 on the server
    resolver = resolver_for(dns_server, cache_max_ttl=0.2)
    resolver.lookup_mx("example.org")
    time.sleep(0.3)
    resolver.lookup_mx("example.org")
    assert dns_server.query_count("example.org", "MX") == 2


# -- async API -----------------------------------------------------------------------------


def test_async_api_matches_sync(dns_server: DnsTestServer) -> None:
    dns_server.set_records(BASIC)
    resolver = resolver_for(dns_server)

    async def lookups() -> tuple[HostList, list[MXRecord], list[str], list[Host]]:
        return (
            await resolver.find_hosts_by_mx_async("example.org"),
            await resolver.lookup_mx_async("example.org"),
            await resolver.lookup_addresses_async("plain.example.org"),
            await resolver.find_hosts_by_name_async("[192.0.2.1]"),
        )

    found, mx, addresses, literal = run(lookups())
    sync_found = resolver.find_hosts_by_mx("example.org")
    assert [(h.name, h.mx) for h in found.hosts] == [(h.name, h.mx) for h in sync_found.hosts]
    assert mx == resolver.lookup_mx("example.org")
    assert by_family(addresses) == by_family(resolver.lookup_addresses("plain.example.org"))
    assert literal == [Host("192.0.2.1", "192.0.2.1")]


@pytest.mark.parametrize(
    ("setup", "domain", "error", "text"),
    [
        (lambda server: None, "nowhere.example.org", UnknownDomainError, "unrouteable mail domain"),
        (lambda server: server.servfail("example.org"), "example.org", DeferError, "SERVFAIL"),
        (lambda server: None, "nullmx.example.org", NullMxError, "does not accept mail"),
    ],
    ids=["nxdomain", "servfail", "null-mx"],
)
def test_async_errors(
    dns_server: DnsTestServer,
    setup: Callable[[DnsTestServer], None],
    domain: str,
    error: type[Exception],
    text: str,
) -> None:
    dns_server.set_records(BASIC)
    setup(dns_server)
    with pytest.raises(error, match=text):
        run(resolver_for(dns_server).find_hosts_by_mx_async(domain))


def test_async_timeout_does_not_block_the_loop(dns_server: DnsTestServer) -> None:
    dns_server.set_records(BASIC)
    dns_server.never_answer("example.org")
    resolver = resolver_for(dns_server, timeout=0.3, retries=1)

    async def lookup_while_ticking() -> tuple[BaseException | None, int, float]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        started = time.monotonic()
        failure: BaseException | None = None
        try:
            await resolver.find_hosts_by_mx_async("example.org")
        except DeferError as exc:
            failure = exc
        elapsed = time.monotonic() - started
        ticker.cancel()
        try:
            await ticker
        except asyncio.CancelledError:
            pass
        return failure, ticks, elapsed

    failure, ticks, elapsed = run(lookup_while_ticking())
    assert isinstance(failure, DeferError)
    assert failure.message == "DNS lookup of mx for example.org timed out"
    assert 0.6 <= elapsed < 5, elapsed
    # A blocking lookup would starve the ticker for the whole wait.
    assert ticks >= 20, ticks


def test_async_target_lookups_run_concurrently(dns_server: DnsTestServer) -> None:
    """The four MX targets are looked up at once: the server answers none of them until it has
    been asked for all four, so lookups made one after the other would time out on the first."""
    targets = [f"t{i}.example.org" for i in range(1, 5)]
    dns_server.set_records(
        {
            "example.org": {"MX": [(10 * i, name) for i, name in enumerate(targets, 1)]},
            **{name: {"A": [f"127.0.0.{10 + i}"]} for i, name in enumerate(targets, 1)},
        }
    )
    dns_server.answer_together(targets)
    resolver = resolver_for(dns_server, timeout=3, retries=0, use_ipv6=False)
    hosts = run(resolver.find_hosts_by_mx_async("example.org"))
    want = [(name, f"127.0.0.{10 + i}") for i, name in enumerate(targets, 1)]
    assert [(h.name, h.address) for h in hosts.hosts] == want
    assert [dns_server.query_count(name, "A") for name in targets] == [1, 1, 1, 1]


def test_sync_api_refused_inside_event_loop(dns_server: DnsTestServer) -> None:
    resolver = resolver_for(dns_server)

    async def misuse() -> None:
        resolver.lookup_mx("example.org")

    with pytest.raises(RuntimeError, match="_async"):
        run(misuse())
    assert dns_server.queries() == []
