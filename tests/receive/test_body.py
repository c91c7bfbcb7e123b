"""The streaming body filter of local submission (mta/receive/body.py).

Every case is fed whole, split at every position into two chunks, and one
byte at a time: a CRLF or a terminating dot cut across reads must give the
same -D bytes and the same counts.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from mta.errors import SubmissionError
from mta.receive.body import BodyStats, LocalBodyWriter


def chunkings(data: bytes) -> Iterator[list[bytes]]:
    yield [data]
    for cut in range(1, len(data)):
        yield [data[:cut], data[cut:]]
    yield [data[i : i + 1] for i in range(len(data))]


def run(chunks: list[bytes], dot_ends: bool = True, size_limit: int = 0) -> tuple[bytes, BodyStats, bool]:
    out = io.BytesIO()
    writer = LocalBodyWriter(out, size_limit=size_limit, dot_ends=dot_ends)
    for chunk in chunks:
        writer.feed(chunk)
        if writer.ended:
            break
    stats = writer.finish()
    return out.getvalue(), stats, writer.ended


# (id, input, dot_ends, stored, linecount, max_line_length, ended by a dot)
CASES = [
    ("plain", b"a\nbb\n", True, b"a\nbb\n", 2, 2, False),
    ("crlf", b"a\r\nbb\r\n", True, b"a\nbb\n", 2, 2, False),
    ("lone cr kept", b"a\rb\r\n", True, b"a\rb\n", 1, 3, False),
    ("cr at the very end", b"a\r", True, b"a\r\n", 1, 2, False),
    ("no final newline", b"abc", True, b"abc\n", 1, 3, False),
    ("empty", b"", True, b"", 0, 0, False),
    ("dot ends", b"a\n.\nafter\n", True, b"a\n", 1, 1, True),
    ("dot crlf ends", b"a\r\n.\r\nafter\r\n", True, b"a\n", 1, 1, True),
    ("dot first line", b".\nafter\n", True, b"", 0, 0, True),
    ("dot at eof", b"a\n.", True, b"a\n", 1, 1, True),
    ("dot kept with -i", b"a\n.\nb\n", False, b"a\n.\nb\n", 3, 1, False),
    ("dot at eof with -i", b"a\n.", False, b"a\n.\n", 2, 1, False),
    ("dot dot kept", b"..\n.a\n", True, b"..\n.a\n", 2, 2, False),
    ("dot inside a line", b"a.\n.b\nc.\n", True, b"a.\n.b\nc.\n", 3, 2, False),
    ("8-bit", b"\xe9\xff\x00\n", True, b"\xe9\xff\x00\n", 1, 3, False),
    ("long line counted", b"x\n" + b"y" * 300 + b"\nz\n", True, b"x\n" + b"y" * 300 + b"\nz\n", 3, 300, False),
]


@pytest.mark.parametrize(
    ("data", "dot_ends", "stored", "lines", "longest", "ended"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_body_filter(data: bytes, dot_ends: bool, stored: bytes, lines: int, longest: int, ended: bool) -> None:
    for chunks in chunkings(data):
        got, stats, got_ended = run(chunks, dot_ends)
        where = f"chunks {chunks!r}"
        assert got == stored, f"{where}: got {got!r} want {stored!r}"
        assert (stats.size, stats.linecount, stats.max_line_length) == (len(stored), lines, longest), where
        assert got_ended == ended, where


def test_zero_count() -> None:
    for chunks in chunkings(b"a\0b\n\0\0\n"):
        _out, stats, _ended = run(chunks)
        assert stats.zero_count == 3


def test_nothing_after_the_dot_is_read_or_written() -> None:
    out = io.BytesIO()
    writer = LocalBodyWriter(out)
    writer.feed(b"one\n.\n")
    assert writer.ended
    writer.feed(b"never written\n")
    writer.finish()
    assert out.getvalue() == b"one\n"


def test_size_limit_refuses_as_the_body_grows() -> None:
    out = io.BytesIO()
    writer = LocalBodyWriter(out, size_limit=1000)
    writer.feed(b"x" * 999 + b"\n")
    with pytest.raises(SubmissionError) as info:
        writer.feed(b"y\n")
    assert info.value.message == "message too big (size limit is 1000 bytes)"
    # Refused before the whole input was stored: nothing beyond the limit was written.
    assert len(out.getvalue()) <= 1000


def test_size_limit_counts_header_size() -> None:
    writer = LocalBodyWriter(io.BytesIO(), size_limit=100, header_size=90)
    with pytest.raises(SubmissionError):
        writer.feed(b"z" * 20 + b"\n")


def test_no_limit_when_zero() -> None:
    out, stats, _ended = run([b"x" * 100_000 + b"\n"], size_limit=0)
    assert stats.size == 100_001 and len(out) == 100_001
