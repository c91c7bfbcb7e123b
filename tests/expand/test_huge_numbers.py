"""Numbers longer than Python's 4,300-digit int() limit, wherever the language reads a number,
give what C's strtoll would (saturation) or a typed ExpansionError, never a ValueError
(found by tests/fuzz: `${<4301 digits>}`)."""

from __future__ import annotations

import pytest

from mta.errors import ExpansionError
from mta.expand import expand
from mta.values import bounded_int

HUGE = "9" * 5000


MAX = "9223372036854775807"  # strtoll's saturation


@pytest.mark.parametrize(("text", "want"), [
    ("${" + HUGE + "}", ""),  # a numeric variable that does not exist
    ("${eval:" + HUGE + "}", MAX),
    ("${eval:0x" + "f" * 5000 + "}", MAX),
    ("${eval:0" + "7" * 5000 + "}", MAX),
    ("${if eq{" + HUGE + "}{2}{y}{n}}", "n"),
    ("${if <{" + HUGE + "}{2}{y}{n}}", ExpansionError),
    ("${extract{" + HUGE + "}{ }{a b c}}", ""),
    ("${substr_" + HUGE + "_2:abc}", ""),
    ("${mask:1.2.3.4/" + HUGE + "}", ExpansionError),
    ("${if bool{" + HUGE + "}{y}{n}}", "y"),
    ("${base62:" + HUGE + "}", "16AHYF"),
    ("${if isip4{" + HUGE + ".1.1.1}{y}{n}}", "n"),
    ("${if isip{1.2.3.4/" + HUGE + "}{y}{n}}", "n"),
])  # fmt: skip
def test_a_huge_number_is_a_result_or_a_typed_error(text: str, want: str | type[ExpansionError]) -> None:
    if isinstance(want, str):
        assert expand(text) == want
    else:
        with pytest.raises(want):
            expand(text)


def test_bounded_int_keeps_small_values_and_sign() -> None:
    assert bounded_int(" 042 ") == 42 and bounded_int("-7") == -7 and bounded_int("ff", 16) == 255
    assert bounded_int("0" * 5000 + "5") == 5  # leading zeros are not magnitude
    assert bounded_int(HUGE) == 2**64 and bounded_int("-" + HUGE) == -(2**64)
