"""pytest fixture for a loopback DNS server (tests/support/dnsserver.py).

Wire it in with ``from tests.support.fixtures_dns import dns_server`` in a
conftest.py.  The fixture starts an empty server; a test loads its data with
``dns_server.set_records({...})`` and points the resolver at
``dns_server.address`` (or ``dns_server.server_spec`` for a config file).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.dnsserver import DnsTestServer


@pytest.fixture
def dns_server() -> Iterator[DnsTestServer]:
    with DnsTestServer() as server:
        yield server
