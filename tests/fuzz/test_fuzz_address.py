"""Fuzzing the address parsers: RFC 5321 envelope paths and RFC 5322 header address lists.

Only AddressError may come out, within the time bound.  Round trips: the internal form an
envelope address parses to parses to itself again, splits and rebuilds to itself, and holds no
CR, LF or NUL (the module's promise: it can go to the spool and to SMTP unchecked).
"""

from __future__ import annotations

import pytest
from hypothesis import example, given

from mta.errors import AddressError
from mta.message.address import (
    address_key,
    parse_envelope_address,
    parse_header_addresses,
    quote_local_part,
    split_address,
    strip_affix,
)
from tests.fuzz.fuzzing import fuzz_settings, inputs, tally

ENVELOPE = [
    "<alice@example.com>", "alice@example.com", "<>", "<@a.example,@b.example:u@c.example>",
    '<"john doe"@example.com>', '<"a\\"b"@example.com>', "<u%v@example.com>", "<u!v@example.com>",
    "<user@[192.0.2.1]>", "<user@[IPv6:2001:db8::1]>", "root", "<jörg@exämple.de>", "<u@example.com.>",
    '<"u@other"@example.com>', "<u@other@example.com>", "<a.b.c@d-e.f_g.example>",
]
HEADER = [
    "Alice <alice@example.com>", '"Doe, John" <john@example.com>, bob@example.org',
    "undisclosed-recipients:;", "team: a@example.com, b@example.com;, c@example.com",
    "a@example.com (comment (nested) here)", "=?utf-8?q?J=C3=B6rg?= <j@example.de>",
    "<@route.example:u@example.com>", "Alice\n <alice@example.com>,\n\tbob@example.org\n",
    '"quoted\\"name" <q@example.com>', "group: ;", "<>",
]
WORDS = ["<", ">", "@", ",", ":", ";", '"', "\\", "(", ")", "[", "]", ".", "%", "!", "IPv6:", "\n ", "\r\n\t"]

# A failing example may be a long input: let hypothesis print it.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")


@fuzz_settings(ci_examples=40)
@given(inputs(ENVELOPE + HEADER, WORDS))
@example("<" + "a." * 3000 + "@example.com>")
@example("<alice@\udcffexample.com>")  # a byte that is not UTF-8: was UnicodeEncodeError
def test_envelope_addresses(text: str) -> None:
    with tally("envelope addresses").example():
        for strip in (False, True):
            try:
                address = parse_envelope_address(text, strip_trailing_dot=strip)
            except AddressError:
                continue
            assert not any(c in address for c in "\r\n\0"), address
            if not address:
                continue
            assert parse_envelope_address(f"<{address}>", strip) == address
            local_part, domain = split_address(address)
            rebuilt = quote_local_part(local_part) + ("@" + domain if domain else "")
            assert rebuilt == address
            address_key(address)
            strip_affix(local_part, ["*-", "owner-"], ["+*", "-request"], True, True)


@fuzz_settings(ci_examples=40)
@given(inputs(HEADER + ENVELOPE, WORDS))
@example("group:;" * 8000)  # a colon looked back over the whole part: quadratic, was a Hang
def test_header_address_lists(text: str) -> None:
    with tally("header address lists").example():
        strict = None
        try:
            strict = parse_header_addresses(text)
        except AddressError:
            pass
        errors: list[AddressError] = []
        lenient = parse_header_addresses(text, errors)
        assert all(isinstance(e, AddressError) for e in errors)
        if strict is not None:
            assert lenient == strict and not errors
        for found in lenient:
            assert not any(c in found.address for c in "\r\n\0"), found
