"""Fixtures shared by the whole suite: a temporary mta world, an SMTP sink, a DNS server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fixtures_dns import dns_server
from tests.support.mta import MtaEnv
from tests.support.sink import sink

__all__ = ["dns_server", "mta_env", "sink"]


@pytest.fixture
def mta_env(tmp_path: Path) -> MtaEnv:
    env = MtaEnv(tmp_path)
    env.write_config()
    return env
