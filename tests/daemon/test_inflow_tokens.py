"""Inflow control's tokens (mta.daemon.flow) on a real pipe, and a receiver's gate on a real event loop.

The daemon tests (test_inflow_daemon.py) show what a client sees; these pin
down the bookkeeping the daemon's processes share: the pipe never holds more
than the backlog, a worker gives tokens back in batches and all of them
before it waits, a waiting session wakes for a token or at the delay, and no
token is lost to a session that stopped waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator

import pytest

from mta.daemon.flow import InflowGate, InflowTokens


@contextlib.contextmanager
def token_pipe(backlog: int) -> Iterator[InflowTokens]:
    made = InflowTokens(backlog)
    try:
        yield made
    finally:
        for fd in made.fds():
            os.close(fd)


@pytest.fixture
def tokens() -> Iterator[InflowTokens]:
    with token_pipe(40) as made:
        yield made


def test_the_pipe_starts_with_the_backlog(tokens: InflowTokens) -> None:
    assert tokens.count() == 40
    assert tokens.take()
    assert tokens.count() == 39


def test_a_worker_gives_tokens_back_in_batches_and_all_before_it_waits(tokens: InflowTokens) -> None:
    assert tokens.batch == 10  # a quarter of the backlog, at most 16
    for _ in range(25):
        assert tokens.take()
    assert tokens.count() == 15
    for _ in range(9):
        tokens.replace()
    assert tokens.count() == 15  # owed, not yet put back
    tokens.replace()
    assert tokens.count() == 25  # the tenth: the batch goes back at once
    tokens.replace()
    tokens.replace()
    tokens.settle()  # nothing more to take: what is owed goes back
    assert (tokens.count(), tokens.owed) == (27, 0)


def test_tokens_given_back_never_take_the_pipe_past_the_backlog(tokens: InflowTokens) -> None:
    # A queue run's ids are taken by workers too, and no receiver spent a token on them.
    for _ in range(35):
        tokens.replace()
    tokens.settle()
    assert tokens.count() == 40


def test_an_idle_worker_tops_up_what_was_lost_and_drains_what_is_too_much(tokens: InflowTokens) -> None:
    for _ in range(30):
        tokens.take()  # as if a killed receiver had taken them with it
    tokens.top_up()
    assert tokens.count() == 40
    tokens.put(25)
    assert tokens.count() == 65
    tokens.top_up()
    assert tokens.count() == 40


def test_a_full_pipe_keeps_what_fits() -> None:
    with token_pipe(10) as made:
        made.put(200_000)  # more than any pipe holds: no error, no block
        assert made.count() > 60_000  # what fits in whole writes of a page


def test_a_small_backlog_gives_back_one_at_a_time() -> None:
    with token_pipe(2) as made:
        assert made.batch == 1
        made.take()
        made.replace()
        assert made.count() == 2


def test_tokens_cross_processes() -> None:
    with token_pipe(3) as made:
        for _ in range(3):
            made.take()
        pid = os.fork()
        if pid == 0:  # a worker's side, in another process
            made.replace()
            made.settle()
            os._exit(0)
        os.waitpid(pid, 0)
        assert made.count() == 1 and made.take()


def _drain(tokens: InflowTokens) -> None:
    while tokens.take():
        pass


def test_a_session_takes_a_token_at_once_when_there_is_one(tokens: InflowTokens) -> None:
    async def main() -> tuple[bool, float]:
        gate = InflowGate(tokens, 5.0, asyncio.get_running_loop())
        started = asyncio.get_running_loop().time()
        got = await gate.take()
        return got, asyncio.get_running_loop().time() - started

    got, waited = asyncio.run(main())
    assert got and waited < 0.5
    assert tokens.count() == 39


def test_waiting_sessions_wake_in_order_as_tokens_come(tokens: InflowTokens) -> None:
    _drain(tokens)

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        gate = InflowGate(tokens, 10.0, loop)
        woke: list[str] = []

        async def session(name: str) -> None:
            assert await gate.take()
            woke.append(name)

        tasks = [loop.create_task(session(name)) for name in ("first", "second", "third")]
        await asyncio.sleep(0.1)
        assert woke == []
        tokens.put(2)  # as a worker in another process would
        await asyncio.sleep(0.2)
        assert woke == ["first", "second"]
        tokens.put(1)
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        return woke

    assert asyncio.run(main()) == ["first", "second", "third"]
    assert tokens.count() == 0


def test_with_no_token_a_session_goes_on_after_the_delay(tokens: InflowTokens) -> None:
    _drain(tokens)

    async def main() -> tuple[bool, float]:
        loop = asyncio.get_running_loop()
        gate = InflowGate(tokens, 0.3, loop)
        started = loop.time()
        got = await gate.take()
        return got, loop.time() - started

    got, waited = asyncio.run(main())
    assert not got
    assert 0.25 <= waited < 2.0


def test_no_token_is_lost_to_a_session_that_stopped_waiting(tokens: InflowTokens) -> None:
    _drain(tokens)

    async def main() -> bool:
        loop = asyncio.get_running_loop()
        gate = InflowGate(tokens, 10.0, loop)
        gone = loop.create_task(gate.take())  # its connection will be lost while it waits
        late = loop.create_task(gate.take())
        await asyncio.sleep(0.05)
        gone.cancel()
        await asyncio.sleep(0.05)
        tokens.put(1)
        return await asyncio.wait_for(late, 5)

    assert asyncio.run(main())
    assert tokens.count() == 0


def test_a_token_given_back_is_there_for_the_next_message(tokens: InflowTokens) -> None:
    _drain(tokens)

    async def main() -> bool:
        gate = InflowGate(tokens, 10.0, asyncio.get_running_loop())
        gate.give_back()
        return await asyncio.wait_for(gate.take(), 1)

    assert asyncio.run(main())


def test_sessions_that_went_on_without_a_token_are_not_kept(tokens: InflowTokens) -> None:
    _drain(tokens)  # the workers are stalled: no token comes for a long time

    async def main() -> int:
        gate = InflowGate(tokens, 0.01, asyncio.get_running_loop())
        for _ in range(50):
            assert not await gate.take()
        return len(gate._waiters)

    assert asyncio.run(main()) <= 1
