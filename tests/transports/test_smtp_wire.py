"""The smtp transport's protocol pieces without a network: replies, EHLO, MAIL parameters, DATA framing."""

from __future__ import annotations

import pytest

from mta.transports.smtp import SmtpDeferError, SmtpFailError, failure_message, remote_error
from mta.transports.smtp_wire import Capabilities, Reply, ReplyError, ReplyParser, data_chunks, xtext
from mta.transports.write import WriteSpec, message_chunks
from tests.support.fakesmtp import TEST_HEADERS, outgoing, wire_message

# -- replies --------------------------------------------------------------------

PARSES = [
    ("single", [b"250 OK\r\n"], [(250, ("OK",))]),
    ("multi-line joined", [b"250-first\r\n250-second\r\n250 last\r\n"], [(250, ("first", "second", "last"))]),
    ("split across reads", [b"25", b"0-a\r", b"\n250 b\r\n"], [(250, ("a", "b"))]),
    ("two replies in one read", [b"250 one\r\n550 5.1.1 two\r\n"], [(250, ("one",)), (550, ("5.1.1 two",))]),
    ("bare LF tolerated", [b"220 hi\n"], [(220, ("hi",))]),
    ("code without text", [b"354\r\n"], [(354, ("",))]),
]


@pytest.mark.parametrize(("reads", "want"), [c[1:] for c in PARSES], ids=[c[0] for c in PARSES])
def test_reply_parser(reads: list[bytes], want: list[tuple[int, tuple[str, ...]]]) -> None:
    parser = ReplyParser()
    got = [reply for data in reads for reply in parser.feed(data)]
    assert [(r.code, r.lines) for r in got] == want, f"got {got} want {want}"
    assert not parser.pending


BAD_REPLIES = [
    ("not a code", b"hello there\r\n"),
    ("1xx code", b"100 continue\r\n"),
    ("code changes mid reply", b"250-a\r\n550 b\r\n"),
    ("bad separator", b"250+x\r\n"),
    ("line too long", b"250 " + b"x" * 5000 + b"\r\n"),
    ("endless line", b"250 " + b"x" * 5000),
    ("endless continuation", b"250-x\r\n" * 300),
]


@pytest.mark.parametrize("data", [c[1] for c in BAD_REPLIES], ids=[c[0] for c in BAD_REPLIES])
def test_reply_parser_refuses_malformed(data: bytes) -> None:
    with pytest.raises(ReplyError):
        ReplyParser().feed(data)


def test_partial_reply_is_pending() -> None:
    parser = ReplyParser()
    assert parser.feed(b"250-first\r\n") == []
    assert parser.pending


def test_reply_text_and_enhanced_code() -> None:
    reply = Reply(550, ("5.1.1 <bob@x>: no such user", "5.1.1 try again never"))
    assert reply.text == "550-5.1.1 <bob@x>: no such user\n550 5.1.1 try again never"
    assert reply.esc == "5.1.1"
    assert Reply(451, ("5.1.1 class disagrees",)).esc is None
    assert Reply(250, ("OK",)).esc is None


def test_capabilities_from_ehlo() -> None:
    reply = Reply(
        250,
        ("mx.example", "SIZE 10240000", "PIPELINING", "STARTTLS", "AUTH PLAIN login", "AUTH=CRAM-MD5", "8BITMIME",
         "SMTPUTF8", "ENHANCEDSTATUSCODES"),
    )
    caps = Capabilities.from_ehlo(reply)
    assert caps.esmtp and caps.pipelining and caps.starttls and caps.eightbitmime and caps.smtputf8
    assert caps.size == 10240000
    assert caps.auth == {"PLAIN", "LOGIN", "CRAM-MD5"}
    bare = Capabilities.from_ehlo(Reply(250, ("mx.example", "SIZE")))
    assert bare.size == 0 and not bare.pipelining and not bare.auth


def test_xtext() -> None:
    assert xtext("alice@example.com") == "alice@example.com"
    assert xtext("a+b=c d@x") == "a+2Bb+3Dc+20d@x"


# -- DATA framing ------------------------------------------------------------------

FRAMES = [
    ("ends with newline", b"line\n", b"line\r\n.\r\n"),
    ("no final newline", b"line", b"line\r\n.\r\n"),
    ("empty body", b"", b".\r\n"),
]


@pytest.mark.parametrize(("chunks", "want"), [([c[1]], c[2]) for c in FRAMES], ids=[c[0] for c in FRAMES])
def test_data_chunks_terminator(chunks: list[bytes], want: bytes) -> None:
    shaped = [c.replace(b"\n", b"\r\n") for c in chunks]
    assert b"".join(data_chunks(shaped)) == want


def test_data_chunks_gathers_small_pieces_and_bounds_writes() -> None:
    pieces = [b"a" * 1000] * 200 + [b"end\r\n"]
    writes = list(data_chunks(pieces))
    assert b"".join(writes) == b"".join(pieces) + b".\r\n"
    assert all(len(w) <= 65536 + 1000 for w in writes)
    assert len(writes) < 10
    assert writes[-1].endswith(b"end\r\n.\r\n")  # the dot is never a write of its own


def test_message_is_dot_stuffed_and_crlf() -> None:
    body = b"first\n.hidden\n..two dots\n.\nlast"
    message = outgoing(body)
    data = b"".join(data_chunks(message_chunks(message, WriteSpec(crlf=True, dot_stuff=True))))
    want = wire_message(body).replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n"
    assert data == want
    assert b"\r\n..hidden\r\n" in data and b"\r\n...two dots\r\n" in data and b"\r\n..\r\n" in data


def test_headers_are_what_the_message_has() -> None:
    data = b"".join(data_chunks(message_chunks(outgoing(b"x\n"), WriteSpec(crlf=True, dot_stuff=True))))
    assert data.startswith("".join(TEST_HEADERS).replace("\n", "\r\n").encode() + b"\r\nx\r\n")


# -- errors -----------------------------------------------------------------------


def test_failure_message_names_the_host() -> None:
    from mta.route.dns import Host

    reply = Reply(550, ("5.1.1 no such user",))
    error = remote_error(
        SmtpFailError,
        "SMTP error from remote mail server after RCPT TO:<bob@x>: 550 5.1.1 no such user",
        Host("127.0.0.1", "127.0.0.1", port=25),
        reply,
    )
    assert error.code == 550 and error.esc == "5.1.1"
    assert failure_message("bob@x", error) == (
        "delivery to bob@x failed: SMTP error from remote mail server after RCPT TO:<bob@x>: "
        "550 5.1.1 no such user (host 127.0.0.1 [127.0.0.1])"
    )
    plain = remote_error(SmtpDeferError, "Connection refused", None)
    assert failure_message("bob@x", plain) == "delivery to bob@x failed: Connection refused"
