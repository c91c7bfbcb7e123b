"""What a listing of a big queue reads, on a few messages: mta.spool.listing's list_messages and read_listed
(one reading of each directory, split or not), read_header_file without headers, new_envelope,
the sort key arrival_order, and mta.printable's fast path for multi-line text."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mta.errors import SpoolFormatError
from mta.printable import printable
from mta.spool.envelope import Envelope, Recipient, SpoolHeader, new_envelope
from mta.spool.format import read_header_file, write_header_file
from mta.spool.ids import arrival_order, base62_encode, message_time, new_message_id
from mta.spool.listing import list_messages, read_listed
from mta.spool.store import NoSuchMessage, Spool
from spool_tools.queue_list import list_queue
from tests.spool.test_spool_store import BODY, RECEIVED_TIME, envelope_for, make_message


def _old_id(seconds: int, fraction: int) -> str:
    return f"{base62_encode(seconds, 6)}-{base62_encode(4242, 6)}-{base62_encode(fraction, 2)}"


@pytest.mark.parametrize("split", [False, True])
def test_list_messages_says_where_each_message_is_and_whether_it_has_a_journal(tmp_path: Path, split: bool) -> None:
    before = Spool(tmp_path / "spool", split=not split)
    before.ensure_directories()
    elsewhere = make_message(before)  # left in the other place when the setting changed
    spool = Spool(tmp_path / "spool", split=split)
    ids = [make_message(spool, BODY, "bob@example.org", "carol@example.org") for _ in range(3)]
    with spool.lock(ids[1]):
        spool.append_journal(ids[1], "carol@example.org")
    (spool.message_directory(ids[2]) / f"{ids[2]}-D").unlink()

    listing = list_messages(spool)
    assert [m[0] for m in listing] == spool.list_message_ids() == sorted([elsewhere, *ids], key=arrival_order)
    assert sorted(list_messages(spool, ordered=False)) == sorted(listing)
    where = {message_id: (directory, journal) for message_id, directory, journal in listing}
    input_dir = spool.directory / "input"
    assert where[elsewhere] == (str(input_dir / elsewhere[5] if not split else input_dir), False)
    assert where[ids[1]] == (str(input_dir / ids[1][5] if split else input_dir), True)

    envelope, size, journal = read_listed(spool, ids[1], *where[ids[1]])
    assert (size, journal) == (len(BODY), ["carol@example.org"])
    assert envelope.headers == [] and envelope.header_size() == spool.read_envelope(ids[1]).header_size()
    full, _, _ = read_listed(spool, ids[1], *where[ids[1]], headers=True)
    assert full == spool.read_envelope(ids[1])
    with pytest.raises(NoSuchMessage):
        read_listed(spool, ids[2], *where[ids[2]])  # its -D has gone


def test_read_without_headers_checks_them_and_cannot_be_written(tmp_path: Path) -> None:
    message_id = new_message_id()
    envelope = envelope_for(message_id)
    envelope.headers.append(SpoolHeader("*", "X-Old: not sent\n"))
    data = write_header_file(envelope)
    listed = read_header_file(data, message_id, headers=False)
    full = read_header_file(data, message_id)
    assert listed.headers == [] and listed.header_size() == full.header_size() == len(
        b"From: alice@example.com\nSubject: Friday\n"
    )
    listed.headers = full.headers
    assert listed == full  # everything else was read
    with pytest.raises(ValueError, match="without its headers"):
        write_header_file(listed)
    broken = data.replace(b"016  Subject: Friday\n", b"016  Subject:\0Friday\n")
    for headers in (True, False):
        with pytest.raises(SpoolFormatError, match="header 2 contains NUL"):
            read_header_file(broken, message_id, headers=headers)


def test_new_envelope_is_the_records_init() -> None:
    values = {
        "message_id": new_message_id(),
        "originator_login": "mta",
        "originator_uid": 1,
        "originator_gid": 2,
        "sender_address": "a@example.com",
        "received_time": 5,
    }
    made, constructed = new_envelope(**values), Envelope(**values)  # type: ignore[arg-type]
    assert made == constructed and repr(made) == repr(constructed)
    made.recipients.append(Recipient("b@example.com"))
    made.acl_variables["acl_m0"] = "x"
    assert new_envelope(**values) == constructed  # nothing mutable is shared  # type: ignore[arg-type]


def _new_id(seconds: int, fraction: int) -> str:
    return f"{base62_encode(seconds, 6)}-{base62_encode(4242, 11)}-{base62_encode(fraction, 4)}"


@pytest.mark.parametrize(
    "message_id",
    [
        _new_id(1_790_000_000, 999_999),
        _new_id(1_790_000_000, 16 * 500_000 + 499_999),  # made with localhost_number 16
        _old_id(1_790_000_000, 199),
        _old_id(1_790_000_000, 0),
    ],
)
def test_arrival_order_is_message_time_and_id(message_id: str) -> None:
    assert arrival_order(message_id) == (message_time(message_id), message_id)


def test_printable_multiline_text() -> None:
    text = "line one\n\tline two\n"
    assert printable(text, "\n\t") is text
    assert printable("a\n\x1b[2Jb\n", "\n") == "a\n\\033[2Jb\n"
    assert printable("a\nb", "") == "a\\nb"


@pytest.mark.parametrize("flags", ["", "u", "a", "r"])
def test_listing_in_two_processes_is_the_listing_in_one(spool: Spool, flags: str) -> None:
    """A big queue's -bp text, made half by a forked child, is exactly one process's."""
    ids = [make_message(spool, BODY, "bob@example.org", f"r{n}@example.org") for n in range(7)]
    with spool.lock(ids[2]):
        spool.append_journal(ids[2], "bob@example.org", "alias-target@example.net")
    (spool.message_directory(ids[4]) / f"{ids[4]}-D").unlink()  # shown with the fault
    (spool.message_directory(ids[5]) / f"{ids[5]}-H").write_bytes(b"not a header file\n")
    one, two = io.StringIO(), io.StringIO()
    list_queue(spool, flags, [], one, now=RECEIVED_TIME + 600)
    list_queue(spool, flags, [], two, now=RECEIVED_TIME + 600, parallel_from=2)
    assert two.getvalue() == one.getvalue()
    assert one.getvalue().count("\n\n") == 7 and "spool read error" in one.getvalue()
