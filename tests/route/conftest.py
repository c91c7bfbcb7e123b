"""Fixtures for the routing tests."""

from tests.support.fixtures_dns import dns_server

__all__ = ["dns_server"]
