"""Header blocks (mta.message.headers)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from mta.errors import MtaError
from mta.message.headers import (
    Header,
    HeaderSyntaxError,
    find,
    flag_for,
    is_header_line,
    make_header,
    mark_deleted,
    parse_header_block,
    rfc822_date,
)

BLOCK = (
    "Received: from a.example by b.example\n"
    "\twith esmtp id 1abc; Sun, 22 Nov 2026 12:43:03 +0000\n"
    "From: Bilbo <bb@hobbit.example>\n"
    "To: frodo@shire.example,\n"
    "    sam@shire.example\n"
    "Subject: There and back\n"
    "X-Empty:\n"
    "Message-ID: <1@hobbit.example>\n"
)


def test_parse_header_block_splits_and_keeps_raw_text() -> None:
    headers = parse_header_block(BLOCK)
    assert [h.name for h in headers] == ["Received", "From", "To", "Subject", "X-Empty", "Message-ID"]
    assert "".join(h.text for h in headers) == BLOCK  # writing them out reproduces the input
    assert all(h.text.endswith("\n") for h in headers)
    to = headers[2]
    assert to.text == "To: frodo@shire.example,\n    sam@shire.example\n"
    assert to.value() == " frodo@shire.example,\n    sam@shire.example"
    assert to.unfolded_value() == "frodo@shire.example,    sam@shire.example"
    assert headers[4].value() == "" and headers[4].unfolded_value() == ""


def test_parse_header_block_bytes_and_8bit() -> None:
    data = "Subject: caf\u00e9\n".encode() + b"X-Raw: \xff\xfe\n"
    headers = parse_header_block(data)
    assert headers[0].unfolded_value() == "caf\u00e9"
    assert headers[1].text.encode("utf-8", "surrogateescape") == b"X-Raw: \xff\xfe\n"


@pytest.mark.parametrize(
    ("block", "flags"),
    [
        (BLOCK, ["P", "F", "T", " ", " ", "I"]),
        ("Bcc: a@x\nCC: b@x\nreply-to: c@x\nSender: d@x\n", ["B", "C", "R", "S"]),
        ("Resent-To: a@x\nResent-From: b@x\nResent-Message-ID: <m@x>\n", ["T", "F", "I"]),
        ("X-To: a@x\nToo: b@x\nDate: now\n", [" ", " ", " "]),
    ],
    ids=["common", "case-insensitive", "resent", "others"],
)
def test_flags(block: str, flags: list[str]) -> None:
    assert [h.flag for h in parse_header_block(block)] == flags


@pytest.mark.parametrize(
    ("name", "flag"),
    [("To", "T"), ("to", "T"), ("Message-Id", "I"), ("Received", "P"), ("Resent-Cc", "C"), ("Subject", " ")],
    ids=["to", "lower", "msgid", "received", "resent", "other"],
)
def test_flag_for(name: str, flag: str) -> None:
    assert flag_for(name) == flag


def test_space_before_colon_is_a_header() -> None:
    (h,) = parse_header_block("Subject : spaced\n")
    assert h.name == "Subject"
    assert h.value() == " spaced"


def test_trailing_blank_line_and_missing_final_newline() -> None:
    assert len(parse_header_block("A: 1\nB: 2\n\n")) == 2
    assert parse_header_block("A: 1")[0].text == "A: 1\n"
    assert parse_header_block("") == []


def test_bare_cr_inside_a_header_is_data() -> None:
    """Exim and Postfix accept it; the smtp transport makes it safe on the way out."""
    (header,) = parse_header_block("Subject: a\rb\n")
    assert header.text == "Subject: a\rb\n"


BAD_BLOCKS = [
    ("no-colon", "Subject: ok\nthis is body text\n", 2, "not a header line"),
    ("space-in-name", "Bad Name: x\n", 1, "not a header line"),
    ("empty-name", ": x\n", 1, "not a header line"),
    ("leading-continuation", " folded: x\n", 1, "continuation line with no header"),
    ("blank-inside", "A: 1\n\nB: 2\n", 2, "empty line inside the header block"),
    ("nul", "A: 1\nB: x\0y\n", 2, "NUL"),
    ("control-in-name", "A\x01B: x\n", 1, "not a header line"),
]


@pytest.mark.parametrize(
    ("block", "line", "reason"), [c[1:] for c in BAD_BLOCKS], ids=[c[0] for c in BAD_BLOCKS]
)
def test_parse_header_block_errors(block: str, line: int, reason: str) -> None:
    with pytest.raises(HeaderSyntaxError) as info:
        parse_header_block(block)
    assert info.value.line == line
    assert reason in str(info.value)
    assert str(info.value).startswith(f"line {line}: ")
    assert isinstance(info.value, MtaError)


@pytest.mark.parametrize(
    ("line", "want"),
    [
        ("Subject: hi", True),
        ("Subject:", True),
        ("X-Weird_Name!#: v", True),
        ("Subject : spaced", True),
        ("Subject\t: tab", True),
        (b"From: bytes", True),
        ("From nobody Mon Jan  1 00:00:00 2024", False),
        ("no colon here", False),
        ("two words: x", False),
        (" continuation: x", False),
        ("", False),
        (": empty name", False),
        ("Sübject: non-ascii name", False),
    ],
    ids=[
        "plain",
        "empty-value",
        "odd-chars",
        "space-before-colon",
        "tab-before-colon",
        "bytes",
        "from-line",
        "no-colon",
        "space-in-name",
        "continuation",
        "empty",
        "empty-name",
        "non-ascii-name",
    ],
)
def test_is_header_line(line: str | bytes, want: bool) -> None:
    assert is_header_line(line) is want


def test_find_and_mark_deleted() -> None:
    headers = parse_header_block("To: a@x\nCc: b@x\nto: c@x\n")
    assert [h.text for h in find(headers, "TO")] == ["To: a@x\n", "to: c@x\n"]
    assert find(headers, "to:") == find(headers, "to")
    mark_deleted(headers[0])
    assert headers[0].flag == "*" and headers[0].deleted
    assert [h.text for h in find(headers, "to")] == ["to: c@x\n"]
    assert find(headers, "bcc") == []


def test_make_header() -> None:
    h = make_header("X-Test", "value")
    assert h == Header("X-Test", "X-Test: value\n", " ")
    assert make_header("To", "a@x").flag == "T"
    assert make_header("Received", "from x\n\tby y").text == "Received: from x\n\tby y\n"
    assert make_header("X-Trailing", "v\n").text == "X-Trailing: v\n"


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("Bad Name", "v", "bad header name"),
        ("Colon:", "v", "bad header name"),
        ("", "v", "bad header name"),
        ("X-Nl\n", "v", "bad header name"),
        ("X-Cr", "a\rb", "CR or NUL"),
        ("X-Nul", "a\0b", "CR or NUL"),
        ("X-Inject", "a\nBcc: victim@x", "newline that is not a fold"),
        ("X-Inject2", "a\n\nbody", "newline that is not a fold"),
    ],
    ids=["space", "colon", "empty", "lf-in-name", "cr", "nul", "header-injection", "body-injection"],
)
def test_make_header_refuses(name: str, value: str, reason: str) -> None:
    with pytest.raises(HeaderSyntaxError, match=reason):
        make_header(name, value)


@pytest.fixture
def timezone() -> Iterator[None]:
    saved = os.environ.get("TZ")
    yield
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


@pytest.mark.parametrize(
    ("tz", "ts", "want"),
    [
        ("UTC0", 0, "Thu, 01 Jan 1970 00:00:00 +0000"),
        ("UTC0", 1795351383, "Sun, 22 Nov 2026 12:43:03 +0000"),
        ("EST5", 1795351383, "Sun, 22 Nov 2026 07:43:03 -0500"),
        ("IST-5:30", 1795351383, "Sun, 22 Nov 2026 18:13:03 +0530"),
        ("NST3:30", 1795351383, "Sun, 22 Nov 2026 09:13:03 -0330"),
        ("UTC0", 1772323200, "Sun, 01 Mar 2026 00:00:00 +0000"),
    ],
    ids=["epoch", "utc", "negative-zone", "half-hour-zone", "negative-half-hour", "padded-day"],
)
def test_rfc822_date(timezone: None, tz: str, ts: float, want: str) -> None:
    os.environ["TZ"] = tz
    time.tzset()
    assert rfc822_date(ts) == want


def test_fold_message_data_keeps_data_inside_its_header() -> None:
    from mta.message.headers import fold_message_data
    from mta.taint import Tainted, concat

    data = Tainted("a\nX-Forged: 1\r\nY\0\n")
    folded = fold_message_data(concat(["X-A: ", data, "\nX-B: 2\n\tmore"]))
    assert folded == "X-A: a\n\tX-Forged: 1 \n\tY? \nX-B: 2\n\tmore"
    assert [h.name for h in parse_header_block(folded + "\n")] == ["X-A", "X-B"]
    # The configuration's own line breaks, and data that is already folded or has none, are left alone.
    for text in ("X-A: 1\nX-B: 2", Tainted("a\n b"), concat(["X-A: ", Tainted("plain"), "\nX-B: 2"])):
        assert fold_message_data(text) == text
