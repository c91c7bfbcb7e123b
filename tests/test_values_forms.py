"""mta.values reads times and sizes with str methods (start-up time: no `re` for a short command);
they must accept and value exactly what the patterns they replaced did."""

from __future__ import annotations

import re
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from mta.values import parse_size, parse_time

TIME_PART = re.compile(r"(\d+)([smhdw])")
SIZE = re.compile(r"(\d+)\s*([KkMmGg]?)")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
PIECES = ["1", "30", "007", "\u0663", "\xb2", "s", "m", "h", "d", "w", "K", "k", "M", "g", "x", " ", "\t", "\xa0", "-"]


def old_time(text: str) -> int | None:
    s = text.strip()
    if not s:
        return None
    if s.isdigit():
        return int(s) if s.isdecimal() else None  # int() refuses superscripts either way
    pos = total = 0
    while pos < len(s):
        m = TIME_PART.match(s, pos)
        if m is None:
            return None
        total += int(m.group(1)) * UNITS[m.group(2)]
        pos = m.end()
    return total


def outcome(parse: Callable[[str], int], text: str) -> int | None:
    try:
        return parse(text)
    except ValueError:
        return None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=8).map("".join))
def test_times_and_sizes_agree_with_the_patterns(text: str) -> None:
    assert outcome(parse_time, text) == old_time(text)
    m = SIZE.fullmatch(text.strip())
    assert outcome(parse_size, text) == (int(m.group(1)) * SIZE_UNITS[m.group(2).lower()] if m else None)


def test_examples() -> None:
    assert [parse_time(t) for t in ("30s", "1h30m", " 45 ", "1w2d")] == [30, 5400, 45, 777600]
    assert [parse_size(t) for t in ("1024", "64K", "50 M", "1g")] == [1024, 65536, 50 * 1024**2, 1024**3]
