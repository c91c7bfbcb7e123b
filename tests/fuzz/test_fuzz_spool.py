"""Fuzzing the -H reader (mta.spool.format_read) with Exim's own spool files, mutated.

Only SpoolFormatError may come out (the message is frozen, never half-read), within the time
bound.  Whatever the reader accepts, the writer writes back, and that reads back the same:
read -> write -> read is the identity, and write -> read -> write gives the same bytes.  (Generated
envelopes, write -> read, are tests/spool/test_spool_format.py's.)
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mta.errors import SpoolFormatError
from mta.spool.format import read_journal, write_header_file
from mta.spool.format_read import read_header_file
from mta.spool.ids import is_message_id
from tests.fuzz.fuzzing import fuzz_settings, header_file_seeds, mutated, surrogate_bytes, tally

SAMPLES = header_file_seeds()
IDS = sorted({message_id for message_id, _data in SAMPLES})
TEXTS = [data.decode("utf-8", "surrogateescape") for _id, data in SAMPLES]
WORDS = ["\n", "-", "--", " ", "<", ">", "@", "#1", ",", "YY ", "NN ", "000 ", "P ", "* ", "-local\n", "-frozen ",
         "-acl c0 ", "-host_address ", "-aclm_x 3\n", "(quoter)", "0", "99999999999", "-1", "\r", "\0", "\n\n"]

# A failing example may be a long input: let hypothesis print it.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")


@fuzz_settings(ci_examples=50)
@given(mutated(TEXTS, WORDS))
@example(TEXTS[0].replace("\n-", "\n-acl c0 99999999999999\n-", 1))
@example(TEXTS[0].replace("-auth_id root\n-auth_sender", "-auth_sender")  # known options out of the writer's
          .replace("-ident root\n", "-auth_id root\n-unknown_a 1\n-ident root\n-unknown_b 1\n"))  # order
@example(TEXTS[1].replace("-host_address [127.0.0.1]:", "-host_address [127.0.0.1]:" + "6" * 4400))  # was ValueError
def test_header_files(text: str) -> None:
    data = surrogate_bytes(text)
    first = text.split("\n", 1)[0][:-2]
    message_id = first if is_message_id(first) else IDS[0]  # the id the file names, if it still does
    with tally("-H reader").example():
        try:
            env = read_header_file(data, message_id)
        except SpoolFormatError:
            return
        written = write_header_file(env)
        again = read_header_file(written, message_id)
        # Options the reader does not know are kept and written back, each after the known option
        # it followed; the writer puts known options in its own order, so such a line may come
        # back after another one.  The lines themselves must all come back.
        assert sorted(o.line for o in again.extra) == sorted(o.line for o in env.extra)
        again.extra, extra = env.extra, again.extra
        assert again == env
        again.extra = extra
        assert write_header_file(again) == written


@fuzz_settings(ci_examples=30)
@given(st.binary(max_size=200))
def test_journals(data: bytes) -> None:
    with tally("-J reader").example():
        try:
            addresses = read_journal(data)
        except SpoolFormatError:
            return
        # One address per line: none spans a line end, and none comes from nothing.
        assert all("\n" not in a for a in addresses) and len(addresses) <= data.count(b"\n")
