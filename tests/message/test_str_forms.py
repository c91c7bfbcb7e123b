"""The str versions of patterns on a short command's path (mta.lazy_pattern's `without_re`, and
code that replaced a pattern outright): they must accept, refuse and split exactly what the
patterns do, as tests/config/test_line_forms.py checks for the configuration loader."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from mta.message.address import _PLAIN, _plain_fullmatch, parse_header_addresses, unfold
from mta.message.headers import _NAME_COLON, _name_colon_match
from mta.receive.local import is_mbox_from_line


def texts(pieces: list[str], size: int = 10) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(pieces), max_size=size).map("".join)


HEADER_PIECES = ["Subject", "X-A", "a", "9", ":", " ", "\t", "\n", ";", "~", "!", "\x7f", "\x1f", "é", "\xa0", "(", "="]
ADDRESS_PIECES = [
    "a", "Z", "0", "_", "-", "+", "!", "~", "{", ".", "..", "@", "<", ">", " ", '"', "(", ")", ",", ":", "[",
    "é", "\u212a", "\x00", "example", "x" * 63, "y" * 64,
]  # fmt: skip
# The modules' own patterns, compiled here (pytest has `re`: they would compile anyway).
NAME_COLON = re.compile(_NAME_COLON.pattern)
PLAIN = re.compile(_PLAIN.pattern)


@settings(max_examples=300, deadline=None)
@given(texts(HEADER_PIECES))
def test_header_name_agrees_with_the_pattern(line: str) -> None:
    m = NAME_COLON.match(line)
    got = _name_colon_match(line)
    assert (got and (got[0], got[1], got.end(1))) == (m and (m[0], m[1], m.end(1)))


@settings(max_examples=400, deadline=None)
@given(texts(ADDRESS_PIECES, 12))
def test_plain_address_agrees_with_the_pattern(text: str) -> None:
    m = PLAIN.fullmatch(text)
    got = _plain_fullmatch(text)
    assert (got and got[1:]) == (m and m.groups())


def test_plain_address_examples() -> None:
    for text in ("bob@example.org", "<a.b+c@x-y.example>", "<a@b", "a@b>", f"a@{'x' * 63}.org"):
        assert _plain_fullmatch(text) is not None and PLAIN.fullmatch(text) is not None
    for text in ("<>", "a..b@c", ".a@b", "a@b..c", "a@.b", "a@b@c", '"a"@b', f"a@{'x' * 64}", "a@", "@b"):
        assert _plain_fullmatch(text) is None and PLAIN.fullmatch(text) is None


FOLD = re.compile(r"\n(?=[ \t])")


@settings(max_examples=300, deadline=None)
@given(texts(["\n", " ", "\t", "a", ",", "\r"]))
def test_unfold_agrees_with_the_pattern(text: str) -> None:
    assert unfold(text) == FOLD.sub(" ", text)


def test_folded_address_header() -> None:
    [a, b] = parse_header_addresses("Alice <alice@example.com>,\n\tBob\n <bob@example.org>\n")
    assert (a.address, b.address, b.display_name) == ("alice@example.com", "bob@example.org", "Bob")


FROM_LINE = re.compile(rb"From \S")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"From", b" ", b"\t", b"\x0b", b"\x0c", b"\r", b"\n", b"x", b"\xa0", b"\x1c"]),
                max_size=5).map(b"".join))  # fmt: skip
def test_mbox_from_line_agrees_with_the_pattern(line: bytes) -> None:
    assert is_mbox_from_line(line) == (FROM_LINE.match(line) is not None)
