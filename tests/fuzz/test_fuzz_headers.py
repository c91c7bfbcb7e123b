"""Fuzzing the header parser (mta.message.headers) as reception uses it.

Only HeaderSyntaxError may come out, within the time bound.  A block that parses is kept
exactly: the headers' texts put together are the block (less the empty line that ends it), and
every name is what precedes the colon of its first line.
"""

from __future__ import annotations

import pytest
from hypothesis import given

from mta.message.headers import HeaderSyntaxError, find, is_header_line, parse_header_block
from tests.fuzz.fuzzing import fuzz_settings, inputs, surrogate_bytes, tally

BLOCKS = [
    "Subject: hi\nFrom: Alice <a@example.com>\nTo: b@example.org\n",
    "Received: from client.example.org ([192.0.2.1])\n\tby mail.example.com with esmtp\n\tfor <b@example.com>;"
    " Mon, 23 Nov 2026 10:00:00 +0000\nMessage-ID: <1@example.com>\n\n",
    "X-Empty:\nX-Spaces   :  value\nResent-From: r@example.com\nContent-Type: text/plain;\n charset=utf-8\n",
    "Subject: =?utf-8?b?w6k=?=\nX-Bare-CR: a\rb\nX-Long: " + "x" * 300 + "\n",
]
WORDS = [":", "\n", "\n ", "\n\t", " :", "\r", "\0", "Subject", "Received", "X-"]

# A failing example may be a long input: let hypothesis print it.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")


@fuzz_settings(ci_examples=60)
@given(inputs(BLOCKS, WORDS))
def test_header_blocks(text: str) -> None:
    with tally("header blocks").example():
        for data in (text, surrogate_bytes(text)):
            try:
                headers = parse_header_block(data)
            except HeaderSyntaxError:
                continue
            block = text if isinstance(data, str) else data.decode("utf-8", "surrogateescape")
            joined = "".join(h.text for h in headers)
            assert joined == block or joined + "\n" == block or (joined == block + "\n" and not block.endswith("\n"))
            for header in headers:
                assert header.text.startswith(header.name) and is_header_line(header.text)
                header.value()
                header.unfolded_value()
            if headers:
                find(headers, headers[0].name)
