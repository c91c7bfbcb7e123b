"""Helpers for the router tests: a config in a tmp dir, the engine end to end, DNS on loopback.

Each test writes a configuration, loads it with the real loader, builds the
routers from the registry and routes one address with RoutingEngine against
a DNS server on loopback (tests/support/dnsserver.py).  Remote hosts live in
198.51.100.0/24 and 2001:db8::/32 (documentation ranges, never this
machine); 127.0.0.1 is "this host" because it is always a local interface
address.  A test module skips itself where that is not so:

    if DOCUMENTATION_ADDRESSES_ARE_LOCAL:
        pytest.skip(..., allow_module_level=True)
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mta.config.lists import local_interface_addresses
from mta.config.loader import Config, load_config
from mta.errors import DeferError, FailError
from mta.route.context import RoutingContext
from mta.route.dns import DnsResolver, ResolverSettings
from mta.route.engine import RoutingEngine, RoutingOutcome
from mta.route.item import AddressItem
from mta.runtime import build_driver
from tests.support.dnsserver import DnsTestServer, ZoneData

BASE = """\
spool_directory = {spool}
primary_hostname = mail.example.com
domainlist local_domains = example.com
dns_servers = {dns}
"""

DOCUMENTATION_ADDRESSES_ARE_LOCAL = any(
    ip.startswith(("198.51.100.", "2001:db8:")) for ip in local_interface_addresses()
)
SKIP_REASON = "this machine uses the documentation addresses the tests treat as remote"


def dns_fixture(zone: ZoneData) -> Callable[[DnsTestServer], DnsTestServer]:
    """A `dns` fixture: the loopback DNS server (conftest's dns_server) serving `zone`.

        dns = dns_fixture(ZONE)
    """

    @pytest.fixture
    def dns(dns_server: DnsTestServer) -> DnsTestServer:
        dns_server.set_records(zone)
        return dns_server

    return dns


def load(tmp_path: Path, dns: DnsTestServer, routers: str, main: str = "") -> tuple[Config, RoutingEngine]:
    """The configuration (BASE + `main`, then `routers`) and an engine with its routers."""
    path = tmp_path / "mta.conf"
    text = BASE.format(spool=tmp_path / "spool", dns=dns.server_spec) + main + "\nbegin routers\n"
    path.write_text(text + textwrap.dedent(routers))
    config = load_config(str(path))
    routers_built = [build_driver(spec)[0] for spec in config.drivers["routers"]]
    return config, RoutingEngine([], routers_built, config)


def fast_resolver(dns: DnsTestServer, **settings: Any) -> DnsResolver:
    """A resolver for the loopback server that gives up quickly."""
    settings.setdefault("timeout", 0.3)
    settings.setdefault("retries", 1)
    return DnsResolver(ResolverSettings(servers=[dns.address], **settings))


def route(
    tmp_path: Path,
    dns: DnsTestServer,
    routers: str,
    address: str,
    *,
    main: str = "",
    resolver: DnsResolver | None = None,
    **ctx_fields: Any,
) -> RoutingOutcome:
    """Route one address through the configured routers."""
    config, engine = load(tmp_path, dns, routers, main)
    ctx = RoutingContext(config, sender_address="sender@example.com", **ctx_fields)
    if resolver is not None:
        ctx.resolver_factory = lambda: resolver
    return engine.route([AddressItem(address)], ctx)


def accepted(outcome: RoutingOutcome) -> AddressItem:
    assert not outcome.failed and not outcome.deferred, (outcome.failed, outcome.deferred)
    assert len(outcome.accepted) == 1, outcome.accepted
    return outcome.accepted[0]


def failed(outcome: RoutingOutcome) -> FailError:
    assert not outcome.accepted and not outcome.deferred, (outcome.accepted, outcome.deferred)
    assert len(outcome.failed) == 1
    return outcome.failed[0][1]


def deferred(outcome: RoutingOutcome) -> DeferError:
    assert not outcome.accepted and not outcome.failed, (outcome.accepted, outcome.failed)
    assert len(outcome.deferred) == 1
    return outcome.deferred[0][1]
