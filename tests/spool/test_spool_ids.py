"""Message ids: generation (unique, increasing), both forms parsed."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from mta.spool import ids as ids_module
from mta.spool.ids import (
    base62_decode,
    base62_encode,
    id_split_char,
    is_message_id,
    message_time,
    new_message_id,
    parse_message_id,
)

SAMPLE_OLD_IDS = ["1xV6uE-0005SY-29", "1xV6uN-0005TT-0O", "1xV6v0-0005WP-1f", "1xV6uq-0005Vj-1t"]


def test_new_id_shape() -> None:
    message_id = new_message_id()
    assert len(message_id) == 23
    assert message_id[6] == "-" and message_id[18] == "-"
    assert is_message_id(message_id)
    parts = parse_message_id(message_id)
    assert parts.pid == os.getpid()
    assert abs(parts.time - time.time()) < 5
    assert 0 <= parts.fraction < 1_000_000


def test_ten_thousand_ids_unique_and_increasing() -> None:
    ids = [new_message_id() for _ in range(10_000)]
    assert len(set(ids)) == 10_000
    times = [(parse_message_id(i).time, parse_message_id(i).fraction) for i in ids]
    assert all(a < b for a, b in itertools.pairwise(times)), "ids must go strictly forward in time"
    # Same length and alphabet ordered like the digits: the strings sort in time order too.
    assert ids == sorted(ids)


@pytest.fixture
def fake_clock_state() -> Iterator[None]:
    """Issue ids from a fake clock without disturbing what this process has
    issued from the real one (the record of the last id is process-wide)."""
    saved = (ids_module._state.pid, ids_module._state.last_us)
    ids_module._state.last_us = -1
    yield
    ids_module._state.pid, ids_module._state.last_us = saved


class StuckClock:
    """A clock (in ns) that repeats each reading `repeat` times, as a real
    clock does for calls closer together than its resolution."""

    def __init__(self, start_ns: int, repeat: int, step_ns: int = 1000) -> None:
        self.now_ns = start_ns
        self.repeat = repeat
        self.step_ns = step_ns
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.calls % self.repeat == 0:
            self.now_ns += self.step_ns
        return self.now_ns


@pytest.mark.usefixtures("fake_clock_state")
def test_same_microsecond_waits_for_the_clock() -> None:
    clock = StuckClock(start_ns=1_900_000_000 * 10**9, repeat=5)
    ids = [new_message_id(clock=clock) for _ in range(200)]
    assert len(set(ids)) == 200
    fractions = [parse_message_id(i).fraction for i in ids]
    assert fractions == sorted(fractions) and fractions[-1] - fractions[0] == 199
    # Never ahead of the clock: the last id is at most the clock's last reading.
    assert message_time(ids[-1]) <= clock.now_ns / 10**9


@pytest.mark.usefixtures("fake_clock_state")
def test_same_tick_with_localhost_number_waits_two_microseconds() -> None:
    clock = StuckClock(start_ns=1_900_000_001 * 10**9, repeat=3)
    ids = [new_message_id(localhost_number=1, clock=clock) for _ in range(100)]
    assert len(set(ids)) == 100


@pytest.mark.usefixtures("fake_clock_state")
def test_clock_stepped_back_does_not_repeat_or_stall() -> None:
    start = 1_900_000_002 * 10**9
    first = new_message_id(clock=lambda: start)
    later = [new_message_id(clock=lambda: start - 10 * 10**9) for _ in range(50)]  # NTP stepped back 10 s
    assert len({first, *later}) == 51
    assert all(message_time(i) > message_time(first) for i in later)


def test_ids_with_localhost_number_are_unique_and_carry_it() -> None:
    ids = [new_message_id(localhost_number=3) for _ in range(2_000)]
    assert len(set(ids)) == 2_000
    for message_id in ids[:50]:
        fraction = parse_message_id(message_id).fraction
        assert 3 * 500_000 <= fraction < 4 * 500_000
        assert abs(message_time(message_id, localhost_number=3) - time.time()) < 5


@pytest.mark.parametrize("number", [-1, 17])
def test_localhost_number_out_of_range(number: int) -> None:
    with pytest.raises(ValueError):
        new_message_id(localhost_number=number)


def test_ids_from_threads_are_unique() -> None:
    import threading

    results: list[str] = []
    lock = threading.Lock()

    def make() -> None:
        mine = [new_message_id() for _ in range(1_000)]
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 4_000


def test_child_process_ids_differ_by_pid() -> None:
    code = "from mta.spool.ids import new_message_id; print(new_message_id())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=_repo_root()
    ).stdout.strip()
    assert is_message_id(out)
    assert parse_message_id(out).pid != os.getpid()


def _repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_parse_old_form_from_exim_samples() -> None:
    parts = parse_message_id("1xV6uE-0005SY-29")
    assert parts.time == 1795351374  # the "1795351374 0" line of the same -H file
    assert parts.pid == base62_decode("0005SY")
    assert parts.fraction == base62_decode("29")


@pytest.mark.parametrize(
    ("message_id", "received_usec"),
    [("1xV6uE-0005SY-29", 669121), ("1xV6uN-0005TT-0O", 121795), ("1xV6v0-0005WP-1f", 518320)],
)
def test_old_form_fraction_is_in_two_hundredths(message_id: str, received_usec: int) -> None:
    # Exim 4.96's id and its -received_time_usec fall in the same 1/200 s.
    arrival = message_time(message_id)
    received = parse_message_id(message_id).time + received_usec / 1_000_000
    assert 0 <= received - arrival < 1 / 200


def test_new_form_round_trip() -> None:
    message_id = (
        base62_encode(1795351374, 6) + "-" + base62_encode(123456789, 11) + "-" + base62_encode(654321, 4)
    )
    assert parse_message_id(message_id) == (1795351374, 123456789, 654321)
    assert message_time(message_id) == pytest.approx(1795351374.654321)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1xV6uE-0005SY-2",  # 15
        "1xV6uE-0005SY-299",  # 17
        "1xV6uE_0005SY-29",
        "1xV6uE-0005SY_29",
        "1xV6uE-0005S-Y29",
        "1xV6u!-0005SY-29",
        "1xV6uE-0005SY-2/",
        "../../etc/passwd",
        "1xV6uE-00000005SY-D342",  # 22
        "1xV6uE-000000005SYD-342",  # dash in the wrong place
        "1xV6uE-000000005SY-D34é",
        "1xV6uE-000000005SY-D34 ",
    ],
)
def test_is_message_id_rejects(text: str) -> None:
    assert not is_message_id(text)
    with pytest.raises(ValueError):
        parse_message_id(text)


def test_is_message_id_accepts_both_forms_and_rejects_non_str() -> None:
    assert is_message_id("1xV6uE-0005SY-29")
    assert is_message_id("1xV6uE-000000005SY-D342")
    assert not is_message_id(None)
    assert not is_message_id(b"1xV6uE-0005SY-29")


def test_split_char_is_sixth_character() -> None:
    assert id_split_char("1xV6uE-0005SY-29") == "E"
    assert id_split_char("1xV6uq-000000005SY-D342") == "q"
    with pytest.raises(ValueError):
        id_split_char("nope")


def test_base62_limits() -> None:
    assert base62_encode(0, 4) == "0000"
    assert base62_encode(62**4 - 1, 4) == "zzzz"
    with pytest.raises(ValueError):
        base62_encode(62**4, 4)
    with pytest.raises(ValueError):
        base62_decode("ab-")
