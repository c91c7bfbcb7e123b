"""A down host and a live one for retry tests: the configuration and the two servers.

A "down" host is a FakeSmtpServer that answers every connection with ``421``
(so connections can be counted); everything else goes to an aiosmtpd sink
(`SmtpSink`).  Domain example.net routes to the down one.  The retry rule is
``F,2h,15m; G,16h,1h,1.5; F,4d,6h``: the first retry comes 15 minutes on.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fakesmtp import FakeSmtpServer
from tests.support.mta import MtaEnv
from tests.support.sink import SmtpSink

CONFIG = """
{main}
begin routers
down:
  driver = domainlist
  domains = example.net
  transport = remote_smtp
  route_list = * "127.0.0.1::{down}" byname
  self = send
up:
  driver = domainlist
  transport = remote_smtp
  route_list = * "127.0.0.1::{up}" byname
  self = send
begin transports
remote_smtp:
  driver = smtp
  allow_localhost
  hosts_avoid_tls = *
  connect_timeout = 2s
  command_timeout = 2s
{transport}
begin retry
*   *   F,2h,15m; G,16h,1h,1.5; F,4d,6h
"""


@pytest.fixture
def down() -> Iterator[FakeSmtpServer]:
    with FakeSmtpServer(greeting="421 4.3.2 Service not available, closing channel") as server:
        yield server


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


def configure(env: MtaEnv, down_port: int, sink: SmtpSink, main: str = "", transport: str = "") -> None:
    env.write_config(CONFIG.format(main=main, down=down_port, up=sink.port, transport=transport))
