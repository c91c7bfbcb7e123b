"""Stream boundaries: the output shaper gives the same bytes however the body is cut into chunks.

A transport reads -D in 64 KiB pieces; a line that starts with ``.`` (SMTP)
or ``From `` (mbox) may begin right after a cut, or be cut in the middle.
These properties split a body at every offset (and at random sets of
offsets) and compare with a line-by-line reference: the shaping must not
depend on where the cuts fall.  tests/e2e/test_chunk_boundaries.py sends a
real message over 64 KiB with such lines on the boundaries.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mta.transports.smtp_wire import data_chunks
from mta.transports.write import WriteSpec, _Shaper

SPECS = {
    "smtp": WriteSpec(crlf=True, dot_stuff=True),
    "mbox": WriteSpec(check_string=b"From ", escape_string=b">From "),
    "mbox-crlf": WriteSpec(crlf=True, check_string=b"From ", escape_string=b">From "),
    "bsmtp": WriteSpec(crlf=True, dot_stuff=True, check_string=b"From ", escape_string=b">From "),
    "crlf-only": WriteSpec(crlf=True),
    "as-is": WriteSpec(),
}

# Small alphabets make the interesting patterns (".", "From ", CR LF) frequent.
PIECES = st.sampled_from([b"\n", b"\r", b".", b"From ", b"Fro", b"m ", b"F", b"x", b" ", b">"])
BODY = st.lists(PIECES, max_size=16).map(b"".join)


def reference(body: bytes, spec: WriteSpec) -> bytes:
    """What the shaper promises, one LF-ended line at a time: the escapes at the start of a
    line, then (crlf) LF made CRLF unless a CR is already there; any other CR is data."""
    out = []
    for line in body.split(b"\n"):
        if spec.check_string and line.startswith(spec.check_string):
            line = spec.escape_string + line[len(spec.check_string) :]
        if spec.dot_stuff and line.startswith(b"."):
            line = b"." + line
        out.append(line)
    if not spec.crlf:
        return b"\n".join(out)
    return b"".join(line + (b"\n" if line.endswith(b"\r") else b"\r\n") for line in out[:-1]) + out[-1]


def shaped(chunks: list[bytes], spec: WriteSpec) -> bytes:
    shaper = _Shaper(spec)
    out = b"".join(shaper.feed(chunk) for chunk in chunks)
    return out + shaper.flush()


def cut(body: bytes, offsets: list[int]) -> list[bytes]:
    points = sorted({min(o, len(body)) for o in offsets})
    edges = [0, *points, len(body)]
    return [body[a:b] for a, b in itertools.pairwise(edges)]


@pytest.mark.parametrize("name", list(SPECS))
@settings(max_examples=150, deadline=None)
@given(body=BODY)
@example(body=b"a\n.b\n")
@example(body=b"x\nFrom y\n")
@example(body=b"\n.\n")
def test_every_single_cut_gives_the_same_bytes(name: str, body: bytes) -> None:
    spec = SPECS[name]
    whole = shaped([body], spec)
    for offset in range(len(body) + 1):
        got = shaped([body[:offset], body[offset:]], spec)
        assert got == whole, f"cut at {offset} of {body!r}: got {got!r} want {whole!r}"


@pytest.mark.parametrize("name", list(SPECS))
@settings(max_examples=150, deadline=None)
@given(body=BODY, offsets=st.lists(st.integers(min_value=0, max_value=40), max_size=8))
def test_any_set_of_cuts_gives_the_line_by_line_result(name: str, body: bytes, offsets: list[int]) -> None:
    spec = SPECS[name]
    assert shaped(cut(body, offsets), spec) == reference(body, spec)


@pytest.mark.parametrize("name", list(SPECS))
@settings(max_examples=150, deadline=None)
@given(body=BODY)
def test_whole_body_matches_the_line_by_line_reference(name: str, body: bytes) -> None:
    assert shaped([body], SPECS[name]) == reference(body, SPECS[name])


@pytest.mark.parametrize(
    ("chunks", "want"),
    [
        ([b"a\n", b".b\n"], b"a\r\n..b\r\n"),
        ([b"a\n", b".", b"\n"], b"a\r\n..\r\n"),
        ([b"a\n.", b"b\n"], b"a\r\n..b\r\n"),
        ([b"", b".a\n"], b"..a\r\n"),
    ],
    ids=["dot-after-cut", "lone-dot-split", "dot-before-cut", "empty-first-chunk"],
)
def test_dot_on_a_boundary_is_stuffed(chunks: list[bytes], want: bytes) -> None:
    assert shaped(chunks, SPECS["smtp"]) == want


@pytest.mark.parametrize(
    "chunks",
    [[b"x\n", b"From me\n"], [b"x\nFr", b"om me\n"], [b"x\nFrom", b" me\n"], [b"x\n", b"F", b"r", b"om me\n"]],
    ids=["after-cut", "cut-inside", "cut-before-space", "byte-by-byte"],
)
def test_from_on_a_boundary_is_escaped(chunks: list[bytes]) -> None:
    assert shaped(chunks, SPECS["mbox"]) == b"x\n>From me\n"


# -- DATA framing over any chunking ---------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(body=BODY, offsets=st.lists(st.integers(min_value=-6, max_value=80), max_size=8))
@example(body=b"a\n", offsets=[])
@example(body=b"a", offsets=[])
def test_data_framing_ends_with_one_crlf_dot_crlf_however_cut(body: bytes, offsets: list[int]) -> None:
    """What goes after DATA: the shaped message, a CRLF only if its last line lacks one, then
    ``.CRLF``; the same bytes whatever pieces the shaped stream arrives in: cut once at every
    offset, and at random sets of offsets (negative ones count from the end)."""
    wire = shaped([body], SPECS["smtp"])
    ending = b"" if wire == b"" or wire.endswith(b"\r\n") else b"\r\n"
    want = wire + ending + b".\r\n"
    for offset in range(len(wire) + 1):
        framed = b"".join(data_chunks([wire[:offset], wire[offset:]]))
        assert framed == want, f"cut at {offset} of {wire!r}: got {framed!r}"
    points = [o if o >= 0 else max(0, len(wire) + o) for o in offsets]
    assert b"".join(data_chunks(cut(wire, points))) == want


@pytest.mark.parametrize(
    ("chunks", "want"),
    [
        ([b"a\r", b"\n"], b"a\r\n.\r\n"),
        ([b"a", b"\r", b"\n"], b"a\r\n.\r\n"),
        ([b"a\r\n", b"b"], b"a\r\nb\r\n.\r\n"),
        ([b"a\r\n", b"\r"], b"a\r\n\r\r\n.\r\n"),
    ],
    ids=["crlf-cut", "byte-by-byte", "last-line-open", "lone-cr-last"],
)
def test_data_framing_remembers_the_line_end_across_chunks(chunks: list[bytes], want: bytes) -> None:
    assert b"".join(data_chunks(chunks)) == want
