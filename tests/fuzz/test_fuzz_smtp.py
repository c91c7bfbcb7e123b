"""Fuzzing the SMTP command parser: verbs, MAIL and RCPT paths, ESMTP parameters, xtext, HELO
names, and the DATA stream (dot decoding, then the header/body split of reception).

Only CommandError (the reply the session sends; the session goes on), SubmissionError and
HeaderSyntaxError (the 5xx after DATA) may come out, and within the time bound (tests/fuzz/fuzzing.py).
"""

from __future__ import annotations

import io

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mta.errors import SubmissionError
from mta.message.headers import HeaderSyntaxError, parse_header_block
from mta.receive.smtp_commands import (
    CommandError,
    is_valid_helo,
    parse_bdat,
    parse_mail,
    parse_rcpt,
    split_verb,
    xtext_decode,
)
from mta.receive.smtp_data import DotDecoder, MessageText
from mta.receive.smtp_server import COMMAND_LINE_MAX
from tests.fuzz.fuzzing import fuzz_settings, inputs, surrogate_bytes, tally

ALL = {"SIZE", "8BITMIME", "SMTPUTF8", "DSN", "AUTH", "PIPELINING", "CHUNKING"}

COMMANDS = [
    "MAIL FROM:<alice@example.com>",
    "MAIL FROM:<> SIZE=1000 BODY=8BITMIME",
    "MAIL FROM:<bob@example.org> RET=HDRS ENVID=QQ314159+2B2B AUTH=<>",
    "MAIL FROM:<\"a b\\\"c\"@example.org> SMTPUTF8",
    "MAIL FROM:<@relay.example,@other.example:u@example.org>",
    "MAIL FROM:<u%other.example@example.com>",
    "MAIL FROM:<user@[192.0.2.1]> AUTH=alice+40example.com",
    "MAIL FROM:bare@example.com",
    "RCPT TO:<carol@example.com> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;carol+40example.com",
    "RCPT TO:<Postmaster>",
    "RCPT TO:<dave@example.com> NOTIFY=NEVER",
    "RCPT TO:<\"weird..local\"@example.com>",
    "RCPT TO:<jörg@exämple.de>",
    "RCPT TO:<u@[IPv6:2001:db8::1]>",
    "EHLO client.example.org",
    "HELO [192.0.2.7]",
    "BDAT 1000 LAST",
    "AUTH PLAIN AGFsaWNlAHNlY3JldA==",
]
WORDS = ["MAIL FROM:", "RCPT TO:", "<", ">", "SIZE=", "BODY=", "RET=", "ENVID=", "AUTH=", "NOTIFY=", "ORCPT=",
         "rfc822;", "SMTPUTF8", "+2B", "+", "@", "[IPv6:", "\"", "\\"]

# A failing example may be a long input: let hypothesis print it.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")


def parse(line: str) -> None:
    verb, argument = split_verb(line[:COMMAND_LINE_MAX])  # a longer line is refused when read
    smtputf8 = False
    for extensions in (ALL, set()):
        try:
            if verb == "MAIL" or verb != "RCPT":
                mail = parse_mail(argument, extensions)
                smtputf8 = mail.smtputf8
                assert not any(c in mail.sender for c in "\r\n\0"), mail.sender
            rcpt = parse_rcpt(argument, extensions, smtputf8)
            assert rcpt.recipient and not any(c in rcpt.recipient for c in "\r\n\0"), rcpt.recipient
        except CommandError as exc:
            assert 500 <= exc.code <= 599 and "\n" not in exc.text and "\r" not in exc.text
    try:
        size, _last = parse_bdat(argument)
        assert size >= 0
    except CommandError:
        pass
    is_valid_helo(argument)
    try:
        xtext_decode(argument)
    except CommandError:
        pass


@fuzz_settings(ci_examples=50)
@given(inputs(COMMANDS, WORDS))
@example("MAIL FROM:<\"a\rb\"@example.org>")
@example("RCPT TO:<alice@\udcffexample.com>")  # a byte that is not UTF-8: was UnicodeEncodeError
@example("MAIL FROM:<a@example.com> SIZE=\u00b2")  # "²".isdigit(), but int() refuses it: was ValueError
@example("BDAT \u00b2 LAST")
@example("BDAT " + "9" * 5000)  # int() of more than 4300 digits: was ValueError
def test_smtp_commands(line: str) -> None:
    with tally("smtp commands").example():
        parse(line)


MESSAGES = [
    b"Subject: hi\r\nFrom: a@example.org\r\n\r\nbody\r\n.\r\n",
    b"Received: from x\r\n\tby y\r\n\r\n..leading dot\r\nFrom me\r\n.\r\n",
    b"no header line\r\n\r\n.\r\n",
    b"Subject: bare\nLF\rCR\r\n.\n.\r.\r\n.\r\n",
]


@fuzz_settings(ci_examples=30)
@given(inputs([m.decode() for m in MESSAGES], ["\r\n", ".\r\n", "\r\n.\r\n", ":", " ", "\t", "\n", "\r"]),
       st.lists(st.integers(1, 64), max_size=8))
def test_data_stream(text: str, cuts: list[int]) -> None:
    """DATA's text, cut into reads anywhere: decoded, split into headers and body, headers parsed."""
    data = surrogate_bytes(text)
    with tally("smtp data stream").example():
        decoder = DotDecoder()
        body = io.BytesIO()
        message = MessageText(body, header_maxsize=64 * 1024, size_limit=1024 * 1024)
        pieces = []
        at = 0
        for cut in cuts:
            pieces.append(data[at:at + cut])
            at += cut
        pieces.append(data[at:])
        decoded = 0
        try:
            for piece in pieces:
                stored, _rest = decoder.feed(piece)
                decoded += len(stored)
                message.feed(stored)
                if decoder.ended:
                    break
            header_text, _stats = message.finish()
            parse_header_block(header_text)
        except (SubmissionError, HeaderSyntaxError):
            pass
        assert decoded <= len(data)  # dot-unstuffing and line ends never add text
