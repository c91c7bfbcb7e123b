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


# The longest tests (a virtualenv built by pip, a daemon under log rotation, a scan of every
# source file), started first: pytest-xdist's worksteal gives each worker a contiguous share
# of the collection, and a long test left at the end of a share sets the pace of the whole run.
LONGEST_FIRST = (
    "tests/e2e/test_newcomer.py::test_readme_first_command_then_queue_submission_and_delivery",
    "tests/install/test_install.py::test_install_into_a_fresh_root_deliver_there_and_uninstall",
    "tests/spool_tools/test_mta_cyclog.py::test_no_line_lost_while_the_daemon_writes",
    "tests/test_no_splicing.py::test_no_text_is_spliced_into_an_expansion_template",
    "tests/spool/test_spool_format.py::test_generated_envelopes_round_trip",
    "tests/queue/test_queue_runs.py::test_selections",
)
WORKER_SHARES = 3  # scripts/test's default number of workers


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put each of LONGEST_FIRST at the start of a worker's share, in turn."""
    long_items = [item for name in LONGEST_FIRST for item in items if item.nodeid == name]
    if not long_items:
        return
    rest = [item for item in items if item not in long_items]
    share = max(1, len(rest) // WORKER_SHARES)
    heads: list[list[pytest.Item]] = [[] for _ in range(WORKER_SHARES)]
    for index, item in enumerate(long_items):
        heads[index % WORKER_SHARES].append(item)
    ordered: list[pytest.Item] = []
    for worker in range(WORKER_SHARES):
        ordered += heads[worker]
        ordered += rest[worker * share: (worker + 1) * share if worker < WORKER_SHARES - 1 else len(rest)]
    items[:] = ordered
