"""The -H and -J formats: Exim's samples byte for byte, the non-recipients
tree, the strict reader, the writer's refusals, generated round trips."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mta.errors import SpoolFormatError
from mta.spool.envelope import HEADER_FLAGS
from mta.spool.format import (
    Envelope,
    ExtraOption,
    HostAddress,
    Recipient,
    SpoolHeader,
    encode_non_recipients,
    format_journal_line,
    read_header_file,
    read_journal,
    write_header_file,
)
from mta.taint import Tainted
from tests.spool.spool_helpers import header_samples, sample_bytes, sample_id

ID = "1xV6uN-000000005TT-0O42"


def minimal(**changes: object) -> Envelope:
    env = Envelope(
        message_id=ID,
        originator_login="mta",
        originator_uid=102,
        originator_gid=105,
        sender_address="carol@example.org",
        received_time=1795351383,
        received_time_usec=121795,
        received_time_complete=(1795351383, 122194),
        body_linecount=3,
        max_received_linelength=73,
        recipients=[Recipient("alice@example.com")],
        headers=[SpoolHeader(" ", "Subject: hi\n")],
    )
    for name, value in changes.items():
        setattr(env, name, value)
    return env


def round_trip(data: bytes, message_id: str = ID) -> Envelope:
    env = read_header_file(data, message_id)
    assert write_header_file(env) == data
    return env


# ---------------------------------------------------------------------------
# Exim's own files


@pytest.mark.parametrize("name", header_samples())
def test_exim_sample_round_trips_byte_for_byte(name: str) -> None:
    data = sample_bytes(name)
    assert write_header_file(round_trip(data, sample_id(data))) == data


def test_there_are_samples() -> None:
    assert len(header_samples()) >= 6


def test_sample_smtp_values() -> None:
    data = sample_bytes("spool-b-smtp-H.txt")
    env = read_header_file(data, "1xV6uN-0005TT-0O")
    assert (env.originator_login, env.originator_uid, env.originator_gid) == ("Debian-exim", 102, 105)
    assert env.sender_address == "carol@example.org"
    assert (env.received_time, env.warning_count, env.received_time_usec) == (1795351383, 0, 121795)
    assert env.received_time_complete == (1795351383, 122194)
    assert env.helo_name == "client.example.org" and isinstance(env.helo_name, Tainted)
    assert env.host_address == HostAddress("127.0.0.1", 60896) and not isinstance(
        env.host_address.ip, Tainted
    )
    assert env.interface_address == HostAddress("127.0.0.1", 2525)
    assert env.received_protocol == "esmtp" and not isinstance(env.received_protocol, Tainted)
    assert (env.body_linecount, env.max_received_linelength) == (3, 73)
    assert env.deliver_firsttime and not env.local
    assert env.tls_resumption == "A"
    assert [r.address for r in env.recipients] == ["alice@example.com", "bob@example.com"]
    assert env.non_recipients == set()
    assert [h.flag for h in env.headers] == ["P", " ", "T", "F", " ", "I", " "]
    assert env.headers[0].text.count("\n") == 5
    assert env.header_size() == sum(len(h.text) for h in env.headers)


def test_sample_local_bcc_is_flagged_old_and_not_counted() -> None:
    env = read_header_file(sample_bytes("spool-a-local-H.txt"), "1xV6uE-0005SY-29")
    bcc = [h for h in env.headers if h.text.startswith("Bcc:")]
    assert bcc == [SpoolHeader("*", "Bcc: sales@example.com\n")]
    assert env.header_size() == sum(len(h.text) for h in env.headers) - len(bcc[0].text)
    assert env.auth_id == "root" and env.auth_sender == "root@example.com"
    assert env.allow_unqualified_recipient and env.allow_unqualified_sender and env.local


def test_sample_frozen_bounce() -> None:
    env = read_header_file(sample_bytes("spool-c-bounce-frozen-H.txt"), "1xV6v0-0005WP-1f")
    assert env.sender_address == ""
    assert env.frozen == 1795351422 and env.localerror


def test_sample_partial_delivery_tree() -> None:
    env = read_header_file(sample_bytes("spool-d-partial-H.txt"), "1xV6uq-0005Vj-1t")
    assert env.non_recipients == {"carol@example.org", "dave@example.org"}
    assert [r.address for r in env.pending_recipients()] == ["bob@example.net"]
    after = read_header_file(sample_bytes("spool-d-after-warning-H.txt"), "1xV6uq-0005Vj-1t")
    assert after.warning_count == 2


# ---------------------------------------------------------------------------
# The non-recipients tree


def _parse_tree(data: bytes) -> tuple[list[str], bool]:
    """(in-order addresses, balanced?) of a tree dump."""
    lines = data.decode().splitlines()
    position = 0

    def node() -> tuple[list[str], int, bool]:  # (in-order, height, balanced)
        nonlocal position
        flags, address = lines[position][:2], lines[position][3:]
        position += 1
        left: tuple[list[str], int, bool] = ([], 0, True)
        right: tuple[list[str], int, bool] = ([], 0, True)
        if flags[0] == "Y":
            left = node()
        if flags[1] == "Y":
            right = node()
        balanced = left[2] and right[2] and abs(left[1] - right[1]) <= 1
        return left[0] + [address] + right[0], 1 + max(left[1], right[1]), balanced

    order, _, balanced = node()
    assert position == len(lines)
    return order, balanced


@pytest.mark.parametrize("count", range(21))
def test_tree_is_balanced_search_tree(count: int) -> None:
    addresses = [f"user{i:02d}@example.com" for i in range(count)]
    random.Random(count).shuffle(addresses)
    encoded = encode_non_recipients(addresses)
    if count == 0:
        assert encoded == b"XX\n"
    else:
        order, balanced = _parse_tree(encoded)
        assert order == sorted(addresses)
        assert balanced
    env = round_trip(write_header_file(minimal(non_recipients=set(addresses))))
    assert env.non_recipients == set(addresses)


def test_two_node_tree_matches_exim() -> None:
    assert encode_non_recipients({"dave@example.org", "carol@example.org"}) == (
        b"NY carol@example.org\nNN dave@example.org\n"
    )


def test_tree_sorts_by_bytes_like_strcmp() -> None:
    encoded = encode_non_recipients({"b@x", "B@x", "\u00e9@x"})
    assert _parse_tree(encoded)[0] == ["B@x", "b@x", "\u00e9@x"]


def test_exim_tree_of_another_shape_is_kept_until_changed() -> None:
    # Exim's AVL shape depends on insertion order: dave, then carol.
    exim = write_header_file(minimal()).replace(b"XX\n", b"YN dave@example.org\nNN carol@example.org\n")
    env = round_trip(exim)
    env.non_recipients.add("alice@example.org")
    assert b"YY carol@example.org\nNN alice@example.org\nNN dave@example.org\n" in write_header_file(env)


# ---------------------------------------------------------------------------
# Recipients


@pytest.mark.parametrize(
    "recipient",
    [
        Recipient("alice@example.com"),
        Recipient('"john smith"@example.com'),
        Recipient("child@example.com", errors_to="owner@example.com", pno=0),
        Recipient("alice@example.com", orcpt="rfc822;Alice@Example.COM", dsn_flags=6),
        Recipient("a b@example.com", errors_to="x y@z", pno=12, orcpt="rfc822; a b", dsn_flags=1),
        Recipient("weird#3"),  # would read as an extended form if written plain
        Recipient("a@b 5"),  # would read as an early Exim 4 parent number
        Recipient("a@b,7"),
        Recipient("trailing@space "),
        Recipient("caf\u00e9@example.com"),  # lengths are bytes, not characters
        Recipient("x@y", errors_to="caf\u00e9@example.com"),
    ],
)
def test_recipient_forms_round_trip(recipient: Recipient) -> None:
    env = round_trip(write_header_file(minimal(recipients=[recipient, Recipient("last@example.com")])))
    assert env.recipients == [recipient, Recipient("last@example.com")]


def test_recipient_extended_form_is_exims() -> None:
    data = write_header_file(
        minimal(recipients=[Recipient("c@x", errors_to="e@y", pno=0, orcpt="", dsn_flags=2)])
    )
    assert b"\n1\nc@x  0,2 e@y 3,0#3\n\n" in data


def test_recipient_legacy_form_one_is_read() -> None:
    data = write_header_file(minimal()).replace(b"\nalice@example.com\n", b"\nchild@x errors@y 8,0#1\n")
    env = read_header_file(data, ID)
    assert env.recipients == [Recipient("child@x", errors_to="errors@y", pno=0)]


# ---------------------------------------------------------------------------
# Options, taint, ACL variables, unknown lines


def test_taint_is_written_and_restored() -> None:
    env = minimal(
        helo_name=Tainted("client.example"), ident="plain", host_address=HostAddress(Tainted("::1"), 25)
    )
    data = write_header_file(env)
    assert b"\n--helo_name client.example\n" in data
    assert b"\n--host_address [::1]:25\n" in data
    assert b"\n-ident plain\n" in data
    back = round_trip(data)
    assert isinstance(back.helo_name, Tainted)
    assert isinstance(back.host_address and back.host_address.ip, Tainted)
    assert not isinstance(back.ident, Tainted)


def test_quoted_taint_round_trips() -> None:
    data = write_header_file(minimal()).replace(b"XX\n", b"--(lsearch)auth_id x y\nXX\n")
    env = round_trip(data)
    assert env.auth_id == "x y" and isinstance(env.auth_id, Tainted)
    assert env.quoters == {"auth_id": "lsearch"}


def test_acl_variables_multiline_and_tainted() -> None:
    env = minimal(
        acl_variables={"acl_m_note": Tainted("line one\nline two\r\n"), "acl_c0": "", "acl_c_x": "v"}
    )
    data = write_header_file(env)
    assert b"\n-aclc 0 0\n\n-aclc _x 1\nv\n--aclm _note 19\nline one\nline two\r\n\n" in data
    back = round_trip(data)
    assert back.acl_variables == env.acl_variables
    assert isinstance(back.acl_variables["acl_m_note"], Tainted)
    assert not isinstance(back.acl_variables["acl_c_x"], Tainted)


def test_old_acl_form_is_read() -> None:
    data = write_header_file(minimal()).replace(
        b"-body_linecount", b"-acl 12 3\nabc\n-acl 1 0\n\n-body_linecount"
    )
    env = read_header_file(data, ID)
    assert env.acl_variables == {"acl_m2": "abc", "acl_c1": ""}


def test_unknown_options_are_kept_in_place() -> None:
    base = write_header_file(minimal(helo_name="h"))
    data = base.replace(b"-received_time_usec", b"-first_thing\n-received_time_usec")
    data = data.replace(b"-helo_name h\n", b"-helo_name h\n-future_option some value\n--future_tainted v\n")
    env = round_trip(data)
    assert env.extra == [
        ExtraOption("-first_thing", ""),
        ExtraOption("-future_option some value", "helo_name"),
        ExtraOption("--future_tainted v", "helo_name"),
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"-host_address 127.0.0.1.60896", HostAddress("127.0.0.1", 60896)),  # before Exim 4.92
        (b"-host_address [::1]:25", HostAddress("::1", 25)),
        (b"-host_address [fe80::1%eth0]:0", HostAddress("fe80::1%eth0", 0)),
    ],
)
def test_host_address_forms(line: bytes, expected: HostAddress) -> None:
    data = write_header_file(minimal()).replace(b"-body_linecount", line + b"\n-body_linecount")
    assert read_header_file(data, ID).host_address == expected


def test_empty_value_differs_from_absent() -> None:
    env = round_trip(write_header_file(minimal(helo_name="")))
    assert env.helo_name == ""
    assert round_trip(write_header_file(minimal())).helo_name is None


def test_all_modelled_options_round_trip() -> None:
    env = minimal(
        helo_name="h",
        host_address=HostAddress("192.0.2.1", 1234),
        host_name="client.example",
        host_auth="plain",
        host_auth_pubname="PLAIN",
        interface_address=HostAddress("192.0.2.2", 25),
        active_hostname="mx.example",
        ident="id",
        received_protocol="esmtpsa",
        debug_selector="0x1",
        debuglog_name="/tmp/d",
        spool_file_wireformat=True,
        body_linecount=None,
        body_zerocount=2,
        auth_id="u",
        auth_sender="u@example",
        allow_unqualified_recipient=True,
        allow_unqualified_sender=True,
        deliver_firsttime=True,
        frozen=1,
        dont_deliver=True,
        host_lookup_deferred=True,
        host_lookup_failed=True,
        local=True,
        localerror=True,
        local_scan="ls",
        spam_bar="++",
        spam_score="2.6",
        spam_score_int="26",
        manual_thaw=True,
        sender_set_untrusted=True,
        tls_certificate_verified=True,
        tls_cipher="TLS1.3:AES",
        tls_peercert="-----BEGIN CERTIFICATE-----\\nMII\\n",
        tls_peerdn="CN=x",
        tls_sni="mx.example",
        tls_ourcert="pem",
        tls_ocsp=4,
        tls_resumption="A",
        tls_ver="TLS1.3",
        smtputf8=True,
        utf8_downcvt=True,
        dsn_envid="env-1",
        dsn_ret=1,
    )
    assert round_trip(write_header_file(env)) == env


# ---------------------------------------------------------------------------
# The strict reader

BASE_ID = "1xV6uN-0005TT-0O"


def _base() -> bytes:
    return sample_bytes("spool-b-smtp-H.txt")


def _swap(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def change(data: bytes) -> bytes:
        assert old in data, old
        return data.replace(old, new, 1)

    return change


MALFORMED: list[tuple[str, Callable[[bytes], bytes], str]] = [
    ("empty file", lambda d: b"", "file ends"),
    ("other id", _swap(b"0O-H\n", b"0P-H\n"), "first line"),
    ("first line -D", _swap(b"0O-H\n", b"0O-D\n"), "first line"),
    ("login without gid", _swap(b"Debian-exim 102 105\n", b"Debian-exim 102\n"), "login line"),
    ("login gid not a number", _swap(b"Debian-exim 102 105\n", b"Debian-exim 102 x\n"), "login line"),
    ("sender without brackets", _swap(b"<carol@example.org>\n", b"carol@example.org\n"), "sender line"),
    ("sender without >", _swap(b"<carol@example.org>\n", b"<carol@example.org\n"), "sender line"),
    ("sender with CR", _swap(b"<carol@example.org>\n", b"<carol@example.org>\r\n"), "CR or NUL"),
    ("time without count", _swap(b"1795351383 0\n", b"1795351383\n"), "time line"),
    ("time negative", _swap(b"1795351383 0\n", b"-1795351383 0\n"), "time line"),
    ("CR in option", _swap(b"esmtp\n", b"esmtp\r\n"), "CR or NUL"),
    ("NUL in option", _swap(b"esmtp\n", b"esm\0tp\n"), "CR or NUL"),
    ("flag with a value", _swap(b"-deliver_firsttime\n", b"-deliver_firsttime yes\n"), "takes no value"),
    ("number not a number", _swap(b"-body_linecount 3\n", b"-body_linecount three\n"), "needs a number"),
    ("number missing", _swap(b"-body_linecount 3\n", b"-body_linecount\n"), "needs a value"),
    (
        "option twice",
        _swap(b"-body_linecount 3\n", b"-body_linecount 3\n-body_linecount 4\n"),
        "appears twice",
    ),
    ("usec form", _swap(b"_usec .121795", b"_usec 121795"), ".NNNNNN"),
    ("timeval form", _swap(b"complete 1795351383.122194", b"complete 1795351383"), "SECONDS.NNNNNN"),
    ("host address form", _swap(b"[127.0.0.1]:60896", b"127.0.0.1"), "[address]:port"),
    ("port too large", _swap(b"[127.0.0.1]:60896", b"[127.0.0.1]:70000"), "[address]:port"),
    ("tainted flag", _swap(b"-deliver_firsttime", b"--deliver_firsttime"), "cannot carry a tainted value"),
    ("bare dash", _swap(b"XX\n", b"-\nXX\n"), "malformed option line"),
    ("unclosed quoter", _swap(b"--helo_name", b"--(lsearch helo_name"), "malformed option line"),
    ("acl value runs past", _swap(b"XX\n", b"-aclm 0 50\nshort\nXX\n"), "runs past"),
    ("acl arguments", _swap(b"XX\n", b"-aclc x\nXX\n"), "malformed -aclc"),
    ("acl NUL", _swap(b"XX\n", b"-aclc 0 3\na\0b\nXX\n"), "contains NUL"),
    ("tree flags", _swap(b"XX\n", b"YX a@b\n"), "malformed non-recipients tree"),
    ("tree cut short", _swap(b"XX\n", b"YN a@b\n"), "malformed non-recipients tree"),
    ("tree empty address", _swap(b"XX\n", b"NN \n"), "malformed non-recipients tree"),
    ("tree duplicate", _swap(b"XX\n", b"YN b@x\nNN b@x\n"), "appears twice"),
    ("count not a number", _swap(b"XX\n2\n", b"XX\ntwo\n"), "recipient count"),
    ("count too large", _swap(b"XX\n2\n", b"XX\n3\n"), "empty recipient line"),
    ("count too small", _swap(b"XX\n2\n", b"XX\n1\n"), "expected a blank line"),
    ("field length wrong", _swap(b"alice@example.com\n", b"alice@example.com  5,-1#1\n"), "does not fit"),
    ("unknown type bits", _swap(b"alice@example.com\n", b"alice@example.com  0,-1#4\n"), "unknown type bits"),
    ("fields missing", _swap(b"alice@example.com\n", b"alice@example.com#1\n"), "lacks errors_to"),
    ("empty address", _swap(b"alice@example.com\n", b"  0,-1#1\n"), "empty address"),
    ("obsolete form", _swap(b"alice@example.com\n", b"alice@example.com 5\n"), "obsolete or ambiguous"),
    ("no blank line", _swap(b"bob@example.com\n\n", b"bob@example.com\n"), "blank line"),
    ("header count digits", _swap(b"038  Date", b"38  Date"), "does not start with 'NNNf '"),
    ("header count too long", _swap(b"057  X-Mailer", b"058  X-Mailer"), "runs past the end"),
    ("header count too short", _swap(b"038  Date", b"037  Date"), "does not end with a newline"),
    ("header NUL", _swap(b"Lunch", b"Lu\0ch"), "contains NUL"),
    ("header flag", _swap(b"024F From", b"024Q From"), "unknown flag"),
    ("NUL blocks after a crash", lambda d: d + b"\0\0\0\0", "does not start with 'NNNf '"),
    ("envelope cut short", lambda d: d[: d.index(b"-body_linecount") + 5], "no newline"),
]


@pytest.mark.parametrize(("change", "reason"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_strict_reader_refuses(change: Callable[[bytes], bytes], reason: str) -> None:
    data = change(_base())
    with pytest.raises(SpoolFormatError) as info:
        read_header_file(data, BASE_ID)
    assert reason in str(info.value), f"got {info.value!s}, want {reason!r}"
    assert BASE_ID in str(info.value)


def test_strict_reader_accepts_the_unchanged_base() -> None:
    assert read_header_file(_base(), BASE_ID).message_id == BASE_ID


def test_reader_rejects_an_invalid_expected_id() -> None:
    with pytest.raises(ValueError):
        read_header_file(_base(), "../etc/passwd")


# ---------------------------------------------------------------------------
# The writer refuses what could inject a line

INJECTIONS: list[tuple[str, dict[str, object]]] = [
    ("sender CRLF", {"sender_address": "a@b\r\n-frozen 1"}),
    ("sender LF", {"sender_address": "a@b\n"}),
    ("sender NUL", {"sender_address": "a\0@b"}),
    ("login LF", {"originator_login": "root\nx"}),
    ("helo LF", {"helo_name": "evil\n-local"}),
    ("tainted helo CR", {"helo_name": Tainted("evil\r")}),
    ("host ip LF", {"host_address": HostAddress("1.2.3.4\n", 25)}),
    ("dsn envid LF", {"dsn_envid": "e\n"}),
    ("recipient LF", {"recipients": [Recipient("a@b\nc@d")]}),
    ("errors_to CR", {"recipients": [Recipient("a@b", errors_to="e@f\r")]}),
    ("orcpt NUL", {"recipients": [Recipient("a@b", orcpt="rfc822;\0")]}),
    ("non-recipient LF", {"non_recipients": {"a@b\nNN c@d"}}),
    ("unknown option LF", {"extra": [ExtraOption("-future x\n-frozen 1")]}),
]


@pytest.mark.parametrize("changes", [i[1] for i in INJECTIONS], ids=[i[0] for i in INJECTIONS])
def test_writer_refuses_cr_lf_nul(changes: dict[str, object]) -> None:
    with pytest.raises(SpoolFormatError, match="CR, LF or NUL"):
        write_header_file(minimal(**changes))


BAD_VALUES: list[tuple[str, dict[str, object], str]] = [
    ("empty recipient", {"recipients": [Recipient("")]}, "empty"),
    ("empty non-recipient", {"non_recipients": {""}}, "empty"),
    ("header NUL", {"headers": [SpoolHeader(" ", "X: a\0b\n")]}, "NUL"),
    ("header without newline", {"headers": [SpoolHeader(" ", "X: a")]}, "newline"),
    ("header flag", {"headers": [SpoolHeader("X", "X: a\n")]}, "flag"),
    ("acl NUL", {"acl_variables": {"acl_c0": "a\0"}}, "NUL"),
    ("acl name", {"acl_variables": {"acl_x0": "a"}}, "ACL variable"),
    ("negative count", {"body_linecount": -1}, "integer"),
    ("usec too big", {"received_time_usec": 1_000_000}, "0..999999"),
    ("port too big", {"host_address": HostAddress("1.2.3.4", 65536)}, "port"),
    ("unknown option not an option", {"extra": [ExtraOption("frozen 1")]}, "not an option"),
    ("lone surrogate", {"sender_address": "\ud800@x"}, "cannot be encoded"),
]


@pytest.mark.parametrize(("changes", "reason"), [b[1:] for b in BAD_VALUES], ids=[b[0] for b in BAD_VALUES])
def test_writer_refuses_bad_values(changes: dict[str, object], reason: str) -> None:
    with pytest.raises(SpoolFormatError, match=reason):
        write_header_file(minimal(**changes))


def test_non_utf8_bytes_survive() -> None:
    raw_subject = b"Subject: caf\xe9\n"  # Latin-1, not UTF-8
    data = write_header_file(minimal()).replace(
        b"012  Subject: hi\n", b"%03d  " % len(raw_subject) + raw_subject
    )
    env = round_trip(data)
    assert env.headers[0].text.encode("utf-8", "surrogateescape") == raw_subject


# ---------------------------------------------------------------------------
# Generated envelopes

_line = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\r\n\0"), max_size=20),
    st.binary(max_size=12).map(
        lambda b: (
            b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b"").decode("utf-8", "surrogateescape")
        )
    ),
)
_address = _line.filter(bool)
_maybe_tainted = st.one_of(st.none(), _line, _line.map(Tainted))
_recipient = st.builds(
    Recipient,
    _address,
    errors_to=_line,
    pno=st.integers(-1, 99),
    orcpt=_line,
    dsn_flags=st.integers(0, 15),
)
_header_text = st.lists(
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\n\0"), max_size=30),
    min_size=1,
    max_size=3,
).map(lambda lines: "\n\t".join(lines) + "\n")
_acl_name = st.from_regex(r"acl_[cm]([0-9]|_[A-Za-z0-9_]{1,8})", fullmatch=True)
_acl_value = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\0"), max_size=30)


@st.composite
def envelopes(draw: st.DrawFn) -> Envelope:
    return Envelope(
        message_id=ID,
        originator_login=draw(_line),
        originator_uid=draw(st.integers(-5, 70000)),
        originator_gid=draw(st.integers(-5, 70000)),
        sender_address=draw(_line),
        received_time=draw(st.integers(0, 2**40)),
        warning_count=draw(st.integers(0, 9)),
        received_time_usec=draw(st.none() | st.integers(0, 999_999)),
        received_time_complete=draw(st.none() | st.tuples(st.integers(0, 2**40), st.integers(0, 999_999))),
        helo_name=draw(_maybe_tainted),
        host_address=draw(st.none() | st.builds(HostAddress, _address, st.integers(0, 65535))),
        auth_sender=draw(_maybe_tainted),
        tls_peerdn=draw(_maybe_tainted),
        acl_variables=draw(st.dictionaries(_acl_name, _acl_value | _acl_value.map(Tainted), max_size=4)),
        body_linecount=draw(st.none() | st.integers(0, 10**9)),
        frozen=draw(st.none() | st.integers(0, 2**40)),
        deliver_firsttime=draw(st.booleans()),
        local=draw(st.booleans()),
        smtputf8=draw(st.booleans()),
        dsn_ret=draw(st.none() | st.integers(0, 2)),
        non_recipients=draw(st.sets(_address, max_size=25)),
        recipients=draw(st.lists(_recipient, max_size=8)),
        headers=draw(
            st.lists(st.builds(SpoolHeader, st.sampled_from(HEADER_FLAGS), _header_text), max_size=6)
        ),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(envelopes())
def test_generated_envelopes_round_trip(env: Envelope) -> None:
    data = write_header_file(env)
    back = read_header_file(data, ID)
    assert back == env
    assert write_header_file(back) == data
    for name in ("helo_name", "auth_sender", "tls_peerdn"):
        assert isinstance(getattr(back, name), Tainted) == isinstance(getattr(env, name), Tainted), name
    for variable, value in env.acl_variables.items():
        assert isinstance(back.acl_variables[variable], Tainted) == isinstance(value, Tainted)


# ---------------------------------------------------------------------------
# The journal


def test_journal_lines() -> None:
    data = format_journal_line("a@example.com") + format_journal_line("b@example.com")
    assert read_journal(data) == ["a@example.com", "b@example.com"]
    assert read_journal(b"") == []


def test_journal_torn_last_line_is_ignored() -> None:
    assert read_journal(b"a@example.com\nb@exam") == ["a@example.com"]
    assert read_journal(b"a@example.com\n\0\0\0") == ["a@example.com"]  # unwritten tail after a crash


@pytest.mark.parametrize("data", [b"a@x\n\nb@x\n", b"a@x\r\n", b"a\0@x\n"])
def test_journal_corruption_is_an_error(data: bytes) -> None:
    with pytest.raises(SpoolFormatError):
        read_journal(data)


@pytest.mark.parametrize("address", ["", "a@x\n", "a\r@x", "a\0"])
def test_journal_writer_refuses(address: str) -> None:
    with pytest.raises(SpoolFormatError):
        format_journal_line(address)
