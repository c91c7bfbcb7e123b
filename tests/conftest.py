"""Fixtures shared by the whole suite: a temporary mta world, an SMTP sink, a DNS server,
and a recorder of the file-system calls that make a message durable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support.coverage_budget import budgeted_popen
from tests.support.durability import SyscallTrace
from tests.support.fixtures_dns import dns_server
from tests.support.mta import MtaEnv
from tests.support.sink import sink

__all__ = ["dns_server", "mta_env", "sink", "syscall_trace"]

# No wall-clock deadline for any property test: on a loaded 2-core machine (or under coverage)
# an example may take long, and that is not a failure of the property.
settings.register_profile("mta", deadline=None)
settings.load_profile("mta")


@pytest.fixture(autouse=True)
def _coverage_budget(request: pytest.FixtureRequest) -> Iterator[None]:
    """Under coverage, CLI runs that repeat a mode a test module has measured run unmeasured
    (tests/support/coverage_budget.py)."""
    yield from budgeted_popen(request.module.__name__)


@pytest.fixture
def mta_env(tmp_path: Path) -> MtaEnv:
    env = MtaEnv(tmp_path)
    env.write_config()
    return env


@pytest.fixture
def syscall_trace(tmp_path: Path) -> SyscallTrace:
    """Pass `syscall_trace.env()` to a process to record its writes, fsyncs and renames under
    tmp_path (add directories to `.roots` for files elsewhere); see tests/support/durability.py."""
    return SyscallTrace(tmp_path / "syscall-trace.jsonl", roots=[tmp_path])
