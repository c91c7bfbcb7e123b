"""The delivery workers' pool (mta.daemon.pool): stalled workers do not hold up new mail.

With one worker, a message whose delivery hangs (a host that never greets,
a pipe command that takes its time) would keep every later message waiting.
The daemon starts another worker once the first has been busy on one message
for `delivery_worker_stall`, and asks the extra one to end once it has been
idle for `delivery_worker_max_idle`.  Real daemons on 127.0.0.1, a real
stalled host (a socket nobody accepts on), a real pipe command.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta.daemon.pool import PoolLimits, WorkerBoard, should_start, stalled, to_retire
from tests.support.daemon import BASE, DaemonWorld, submit

POOL = """\
delivery_worker_stall = 1s
delivery_worker_max_idle = 2s
"""

# slow@example.com goes to a pipe that takes three seconds; everyone else to the mailbox.
SLOW_PIPE_BASE = BASE.replace("begin directors\n", """begin directors

slow:
  driver = smartuser
  local_parts = slow
  transport = three_seconds
  user = nobody
""").replace("begin transports\n", """begin transports

three_seconds:
  driver = pipe
  command = /bin/sleep 3
""")


def stalled_host_base(port: int) -> str:
    """example.net goes to the stalled host, from 127.0.0.1 (allowed to relay); example.com stays local."""
    return BASE.replace("relay_from_hosts = 127.0.0.2", "relay_from_hosts = 127.0.0.1").replace(
        "begin directors\n", f"""begin routers

stalled:
  driver = domainlist
  transport = remote_smtp
  route_list = example.net 127.0.0.1::{port} byname
  self = send

begin directors
""").replace("begin transports\n", """begin transports

remote_smtp:
  driver = smtp
  allow_localhost
  hosts_avoid_tls = *
""")


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.add(int(entry.name))
            except (OSError, IndexError):
                continue
    return found


def wait_for_children(world: DaemonWorld, count: int, timeout: float = 15) -> set[int]:
    assert world.process is not None
    deadline = time.monotonic() + timeout
    while len(kids := children(world.process.pid)) != count:
        assert time.monotonic() < deadline, (kids, world.log_lines()[-10:])
        time.sleep(0.05)
    return kids


@pytest.fixture
def stalled_host() -> Iterator[int]:
    """A host that never greets: the kernel completes each connection, nobody accepts it."""
    stall = socket.socket()
    stall.bind(("127.0.0.1", 0))
    stall.listen(16)
    try:
        yield stall.getsockname()[1]
    finally:
        stall.close()  # resets the waiting connections: the stalled delivery ends in a deferral


def test_a_message_is_delivered_while_the_only_worker_waits_for_a_host_that_never_greets(
        daemon_world: DaemonWorld, stalled_host: int) -> None:
    daemon_world.write_config(main=POOL, base=stalled_host_base(stalled_host))
    daemon_world.start()
    submit(daemon_world.port, "bob@example.net", "to the stalled host")
    started = time.monotonic()
    submit(daemon_world.port, "carol@example.com", "local while the worker waits")
    daemon_world.wait_for_mail("carol", "local while the worker waits", timeout=10)
    assert time.monotonic() - started < 8
    grown = daemon_world.wait_for_log("started another")
    assert "1 of 1 busy on one message for 1s or more, messages waiting: started another (2 in all)" in grown
    assert not (daemon_world.spool / "log" / "paniclog").exists()


def test_the_pool_grows_while_a_pipe_runs_and_shrinks_once_it_is_idle(daemon_world: DaemonWorld) -> None:
    daemon_world.write_config(main=POOL, base=SLOW_PIPE_BASE)
    daemon_world.start()
    assert daemon_world.process is not None
    first = wait_for_children(daemon_world, 2)  # one receiver, one worker
    submit(daemon_world.port, "slow@example.com", "three seconds")
    started = time.monotonic()
    submit(daemon_world.port, "bob@example.com", "not held up")
    daemon_world.wait_for_mail("bob", "not held up", timeout=10)
    assert time.monotonic() - started < 3, "delivered only once the pipe had finished"
    (extra,) = wait_for_children(daemon_world, 3) - first
    daemon_world.wait_for_log("R=slow T=three_seconds")  # the pipe's delivery ended
    retired = daemon_world.wait_for_log("asked to end", timeout=15)
    assert f"delivery workers: pid {extra} idle for 2s or more, asked to end (1 left)" in retired
    assert wait_for_children(daemon_world, 2) == first
    time.sleep(1.5)  # not restarted: a retired worker is not a worker that died
    assert children(daemon_world.process.pid) == first
    assert not (daemon_world.spool / "log" / "paniclog").exists()
    assert daemon_world.stop() == 0


def test_delivery_workers_max_at_the_base_count_keeps_the_pool_as_it_is(daemon_world: DaemonWorld) -> None:
    daemon_world.write_config(main=POOL + "delivery_workers_max = 1\n", base=SLOW_PIPE_BASE)
    daemon_world.start()
    submit(daemon_world.port, "slow@example.com", "three seconds")
    started = time.monotonic()
    submit(daemon_world.port, "bob@example.com", "waits its turn")
    daemon_world.wait_for_mail("bob", "waits its turn", timeout=15)
    assert time.monotonic() - started >= 2, "a second worker delivered it"
    assert not any("started another" in line for line in daemon_world.log_lines())


def test_the_pool_options_are_shown_and_checked(daemon_world: DaemonWorld) -> None:
    daemon_world.write_config(main=POOL)
    shown = daemon_world.run("-bP", "delivery_workers_max", "delivery_worker_stall", "delivery_worker_max_idle")
    assert shown.stdout.splitlines() == ["delivery_workers_max = 0", "delivery_worker_stall = 1s",
                                         "delivery_worker_max_idle = 2s"], shown.stderr
    daemon_world.write_config(main="delivery_worker_stall = 0s\n")
    refused = daemon_world.run("-bV")
    assert refused.returncode != 0
    assert "delivery_worker_stall" in refused.stderr and str(daemon_world.config) in refused.stderr


# -- the pool's rules and its board, without a daemon ------------------------------------------------

LIMITS = PoolLimits(base=2, maximum=4, stall=5.0, max_idle=60.0)
NOW = 1000.0


def busy_for(seconds: float) -> float:
    return NOW - seconds


def idle_for(seconds: float) -> float:
    return -(NOW - seconds)


def test_a_worker_counts_as_stalled_only_past_the_stall_time() -> None:
    assert stalled([busy_for(5.0), busy_for(4.9), idle_for(100)], NOW, 5.0) == 1


@pytest.mark.parametrize(("states", "backlog", "expected"), [
    ([busy_for(6), busy_for(1)], True, True),  # one of two stalled, messages wait
    ([busy_for(6), busy_for(1)], False, False),  # nothing waits: no need
    ([busy_for(1), busy_for(2)], True, False),  # busy, but not stalled: more would not deliver faster
    ([busy_for(6), busy_for(9), idle_for(1), busy_for(1)], True, False),  # at the maximum
    ([busy_for(6), busy_for(9), busy_for(7)], True, True),  # the third stalled too
])
def test_when_another_worker_is_started(states: list[float], backlog: bool, expected: bool) -> None:
    assert should_start(states, NOW, LIMITS, backlog) is expected


def test_a_maximum_at_or_below_the_base_never_grows() -> None:
    limits = PoolLimits(base=2, maximum=1, stall=5.0, max_idle=60.0)
    assert limits.maximum == 2
    assert not should_start([busy_for(60), busy_for(60)], NOW, limits, True)


@pytest.mark.parametrize(("states", "expected"), [
    ({1: idle_for(61), 2: idle_for(70)}, None),  # at the base count
    ({1: idle_for(61), 2: idle_for(70), 3: idle_for(65)}, 2),  # the one idle longest
    ({1: idle_for(61), 2: idle_for(59), 3: busy_for(1)}, 1),
    ({1: idle_for(30), 2: idle_for(59), 3: busy_for(1)}, None),  # none idle long enough
    ({1: busy_for(600), 2: idle_for(61), 3: busy_for(1)}, None),  # 1 is stalled: 2 and 3 make the base count
    ({1: busy_for(600), 2: idle_for(61), 3: idle_for(62), 4: busy_for(1)}, 3),
])
def test_which_worker_is_asked_to_end(states: dict[int, float], expected: int | None) -> None:
    assert to_retire(states, NOW, LIMITS) == expected


def test_the_board_is_shared_with_a_forked_worker() -> None:
    board = WorkerBoard(3)
    first, second = board.claim(), board.claim()
    assert (first, second) == (0, 1)
    assert board.state(0) < 0 and board.state(2) == 0.0
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        board.busy(1)
        os._exit(0)
    os.waitpid(pid, 0)
    assert board.state(1) > 0 and time.monotonic() - board.state(1) < 5
    board.release(0)
    assert board.claim() == 0
    assert board.has_free_slot()
    assert board.claim() == 2
    assert not board.has_free_slot()
    assert board.claim() is None
