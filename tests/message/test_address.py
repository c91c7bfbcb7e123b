"""Address parsing and helpers (mta.message.address)."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mta.errors import AddressError
from mta.message.address import (
    HeaderAddress,
    address_key,
    is_ip_literal,
    normalise_domain,
    parse_envelope_address,
    parse_envelope_tokens,
    parse_header_addresses,
    qualify,
    quote_local_part,
    split_address,
    strip_affix,
    unquote_local_part,
)

# -- envelope addresses ---------------------------------------------------------------

ENVELOPE_GOOD = [
    ("angle", "<user@example.com>", "user@example.com"),
    ("bare", "user@example.com", "user@example.com"),
    ("surrounding-space", "  <user@example.com>  ", "user@example.com"),
    ("space-inside-angles", "< user@example.com >", "user@example.com"),
    ("null-sender", "<>", ""),
    ("null-sender-spaced", "< >", ""),
    ("source-route", "<@r1.example,@r2.example:user@example.com>", "user@example.com"),
    ("source-route-single", "<@relay.example:u@x.example>", "u@x.example"),
    ("quoted-with-space", '"john doe"@example.com', '"john doe"@example.com'),
    ("quoted-needless-quotes-dropped", '"john"@example.com', "john@example.com"),
    ("quoted-at-sign", '"a@b"@example.com', '"a@b"@example.com'),
    ("quoted-escaped-quote", '"a\\"b"@example.com', '"a\\"b"@example.com'),
    ("quoted-escape-normalised", '"a\\b"@example.com', "ab@example.com"),
    ("quoted-in-angles", '<"x y"@example.com>', '"x y"@example.com'),
    ("obs-mixed-words", '"a b".c@example.com', '"a b.c"@example.com'),
    ("unqualified", "root", "root"),
    ("unqualified-angle", "<postmaster>", "postmaster"),
    ("case-kept", "John.Smith@Example.COM", "John.Smith@Example.COM"),
    ("atext-specials", "a!#$%&'*+/=?^_`{|}~-@example.com", "a!#$%&'*+/=?^_`{|}~-@example.com"),
    ("subaddress", "user+tag@example.com", "user+tag@example.com"),
    ("ipv4-literal", "user@[192.0.2.1]", "user@[192.0.2.1]"),
    ("ipv6-literal", "<user@[IPv6:2001:db8::1]>", "user@[IPv6:2001:db8::1]"),
    ("utf8", "jörg@bücher.example", "jörg@bücher.example"),
    ("underscore-domain", "a@host_name.example", "a@host_name.example"),
    ("max-local-part", "a" * 64 + "@example.com", "a" * 64 + "@example.com"),
    # Longer than RFC 5321's 64: accepted, as Exim and Postfix accept it.
    ("long-local-part", "a" * 200 + "@example.com", "a" * 200 + "@example.com"),
]


@pytest.mark.parametrize(("text", "want"), [c[1:] for c in ENVELOPE_GOOD], ids=[c[0] for c in ENVELOPE_GOOD])
def test_parse_envelope_address(text: str, want: str) -> None:
    assert parse_envelope_address(text) == want


ENVELOPE_BAD = [
    ("empty", "", "empty address"),
    ("blank", "   ", "empty address"),
    ("unclosed-angle", "<user@example.com", "missing >"),
    ("stray-close-angle", "user@example.com>", "unbalanced angle brackets"),
    ("angle-inside", "us<er@example.com", "unbalanced angle brackets"),
    ("text-after-angle", "<user@example.com> junk", "unexpected text after >"),
    ("unterminated-quote", '"john@example.com', "unterminated quoted string"),
    ("empty-local-part", "@example.com", "empty local part"),
    ("empty-local-part-angle", "<@example.com>", "source route not ended by a colon"),
    ("empty-quoted-local-part", '""@example.com', "empty local part"),
    ("missing-domain", "user@", "missing domain after @"),
    ("missing-domain-angle", "<user@>", "missing domain after @"),
    ("double-at", "a@b@example.com", 'unexpected "@"'),
    ("empty-label", "user@example..com", "empty label in domain"),
    ("leading-dot-domain", "user@.example.com", "empty label in domain"),
    ("trailing-dot-domain", "user@example.com.", "domain ends with a dot"),
    ("bad-domain-char", "user@exa!mple.com", 'bad character "!" in domain'),
    ("space-outside-quotes", "john doe@example.com", "space in address outside quotes"),
    ("space-before-at", "john @example.com", "space in address outside quotes"),
    ("leading-dot-local", ".john@example.com", "local part starts with a dot"),
    ("trailing-dot-local", "john.@example.com", "local part ends with a dot"),
    ("double-dot-local", "john..doe@example.com", "consecutive dots in local part"),
    ("comma", "a,b@example.com", 'unexpected ","'),
    ("comment", "user(comment)@example.com", "comment"),
    ("backslash-outside-quotes", "a\\b@example.com", "backslash outside quotes"),
    ("cr", "user@example.com\r", "CR, LF or NUL"),
    ("lf-inside", "user@exa\nmple.com", "CR, LF or NUL"),
    ("nul", "us\0er@example.com", "CR, LF or NUL"),
    ("control-in-quotes", '"a\x01b"@example.com', "control character"),
    ("domain-too-long", "a@" + ".".join(["a" * 60] * 5), "domain longer than 255"),
    ("label-too-long", "a@" + "b" * 64 + ".example", "domain label longer than 63"),
    ("bad-ip-literal", "user@[192.0.2]", "bad IP literal"),
    ("general-literal", "user@[x:y]", "bad IP literal"),
    ("unterminated-literal", "user@[192.0.2.1", "unterminated domain literal"),
    ("route-without-colon", "<@r1.example,user@example.com>", "source route not ended by a colon"),
    ("quoted-domain", 'user@"example.com"', "quoted string in domain"),
]


@pytest.mark.parametrize(("text", "reason"), [c[1:] for c in ENVELOPE_BAD], ids=[c[0] for c in ENVELOPE_BAD])
def test_parse_envelope_address_errors(text: str, reason: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_envelope_address(text)
    assert reason in info.value.message, f"got {info.value.message!r}, want {reason!r}"


def test_strip_trailing_dot_option() -> None:
    assert parse_envelope_address("user@example.com.", strip_trailing_dot=True) == "user@example.com"


# -- header address lists ----------------------------------------------------------------------

HA = HeaderAddress

HEADER_GOOD = [
    ("plain", "user@example.com", [HA("user@example.com")]),
    ("name-addr", "John Doe <john@example.com>", [HA("john@example.com", "John Doe")]),
    (
        "quoted-name-with-comma",
        '"Doe, John" <john@example.com>, jane@example.com',
        [HA("john@example.com", "Doe, John"), HA("jane@example.com")],
    ),
    ("quoted-name-escaped", '"Say \\"hi\\"" <a@b.example>', [HA("a@b.example", 'Say "hi"')]),
    ("obsolete-comment-name", "john@example.com (John Doe)", [HA("john@example.com", "John Doe")]),
    ("nested-comment", "a@b.example (Name (nested) here)", [HA("a@b.example", "Name (nested) here")]),
    ("comment-in-local-part", "john(c)@example.com", [HA("john@example.com", "c")]),
    ("name-and-comment", "John <j@x.example> (work)", [HA("j@x.example", "John")]),
    (
        "group",
        "Team: a@x.example, B <b@x.example>;",
        [HA("a@x.example", "", "Team"), HA("b@x.example", "B", "Team")],
    ),
    ("empty-group", "undisclosed-recipients:;", []),
    ("empty-group-spaced", "Undisclosed recipients: ;", []),
    ("group-then-mailbox", "G: a@x.example; , c@y.example", [HA("a@x.example", "", "G"), HA("c@y.example")]),
    ("group-without-semicolon-at-end", "G: a@x.example", [HA("a@x.example", "", "G")]),
    ("route-addr", "<@r1.example,@r2.example:a@b.example>", [HA("a@b.example")]),
    ("named-route-addr", "Bob <@r1.example:bob@b.example>", [HA("bob@b.example", "Bob")]),
    ("unqualified", "root", [HA("root")]),
    ("unqualified-list", "root, postmaster", [HA("root"), HA("postmaster")]),
    ("unqualified-angle", "Admin <root>", [HA("root", "Admin")]),
    ("empty-members", "a@x.example, , ,b@y.example", [HA("a@x.example"), HA("b@y.example")]),
    ("quoted-local-part", '"john doe"@example.com', [HA('"john doe"@example.com')]),
    ("ip-literal", "Lit <u@[192.0.2.1]>", [HA("u@[192.0.2.1]", "Lit")]),
    ("address-as-name", "foo@bar.example <foo@bar.example>", [HA("foo@bar.example", "foo@bar.example")]),
    ("initials-in-name", "John Q. Public <jqp@x.example>", [HA("jqp@x.example", "John Q. Public")]),
    (
        "encoded-word-kept",
        "=?utf-8?q?J=C3=B6rg?= <j@x.example>",
        [HA("j@x.example", "=?utf-8?q?J=C3=B6rg?=")],
    ),
    ("folded", " John <a@x.example>,\n\tb@y.example\n", [HA("a@x.example", "John"), HA("b@y.example")]),
    ("crlf-folded", "a@x.example,\r\n b@y.example", [HA("a@x.example"), HA("b@y.example")]),
    ("obs-spaces-around-dots", "a . b @ x . example", [HA("a.b@x.example")]),
    ("empty-value", "", []),
    ("blank-value", "   ", []),
]


@pytest.mark.parametrize(("value", "want"), [c[1:] for c in HEADER_GOOD], ids=[c[0] for c in HEADER_GOOD])
def test_parse_header_addresses(value: str, want: list[HeaderAddress]) -> None:
    assert parse_header_addresses(value) == want


HEADER_BAD = [
    ("missing-close-angle", "John <john@example.com", "missing > after address"),
    ("stray-close-angle", "john@example.com>", "unbalanced angle brackets"),
    ("missing-angle-brackets", "John Smith john@example.com", 'unexpected "Smith" after address'),
    ("missing-comma", "a@x.example b@y.example", 'unexpected "b" after address'),
    ("unterminated-quote", '"John <john@example.com>', "unterminated quoted string"),
    ("unterminated-comment", "a@x.example (oops", "unterminated comment"),
    ("close-paren", "a@x.example oops)", "unbalanced parentheses"),
    ("empty-angle", "Nobody <>", "empty address <>"),
    ("empty-local-part", "<@x.example>", "source route not ended by a colon"),
    ("missing-domain", "Bob <bob@>", "missing domain after @"),
    ("empty-label", "bob@x..example", "empty label in domain"),
    ("double-dot-local", "bob..smith@x.example", "consecutive dots in local part"),
    ("nested-group", "G: H: a@x.example;", "nested group"),
    ("junk-after-group", "G: a@x.example; junk", "after the ; that ends the group"),
    ("bad-literal", "a@[1.2.3]", "bad IP literal"),
    ("bare-lf", "a@x.example\nTo: injected@y.example", "CR, LF or NUL"),
    ("nul", "a@x.exam\0ple", "CR, LF or NUL"),
]


@pytest.mark.parametrize(("value", "reason"), [c[1:] for c in HEADER_BAD], ids=[c[0] for c in HEADER_BAD])
def test_parse_header_addresses_errors(value: str, reason: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_header_addresses(value)
    assert reason in info.value.message, f"got {info.value.message!r}, want {reason!r}"


def test_error_names_the_broken_mailbox() -> None:
    with pytest.raises(AddressError, match=re.escape("in 'Bob <bob@x.example'")):
        parse_header_addresses("alice@x.example, Bob <bob@x.example")


def test_lenient_mode_returns_good_ones_and_errors() -> None:
    errors: list[AddressError] = []
    got = parse_header_addresses("a@x.example, John Smith j@x.example, c@y.example", errors)
    assert got == [HA("a@x.example"), HA("c@y.example")]
    assert len(errors) == 1 and "Smith" in errors[0].message


def test_lenient_mode_tokenizer_error() -> None:
    errors: list[AddressError] = []
    assert parse_header_addresses('"unterminated', errors) == []
    assert [e.message for e in errors] == ["unterminated quoted string"]


# -- helpers -------------------------------------------------------------------------------------

SPLIT_CASES = [
    ("plain", "user@example.com", ("user", "example.com")),
    ("unqualified", "root", ("root", "")),
    ("null", "", ("", "")),
    ("null-angle", "<>", ("", "")),
    ("quoted-at", '"a@b"@example.com', ("a@b", "example.com")),
    ("quoted-space", '"john doe"@x.example', ("john doe", "x.example")),
    ("quoted-escape", '"a\\"b"@x.example', ('a"b', "x.example")),
    ("last-at", "a@b@c.example", ("a@b", "c.example")),
    ("case-kept", "John@Example.COM", ("John", "Example.COM")),
]


@pytest.mark.parametrize(("address", "want"), [c[1:] for c in SPLIT_CASES], ids=[c[0] for c in SPLIT_CASES])
def test_split_address(address: str, want: tuple[str, str]) -> None:
    assert split_address(address) == want


@pytest.mark.parametrize(
    ("address", "domain", "want"),
    [
        ("root", "example.com", "root@example.com"),
        ("user@other.example", "example.com", "user@other.example"),
        ("", "example.com", ""),
        ("<>", "example.com", ""),
        ('"a@b"', "example.com", '"a@b"@example.com'),
    ],
    ids=["unqualified", "qualified", "null", "null-angle", "quoted-at"],
)
def test_qualify(address: str, domain: str, want: str) -> None:
    assert qualify(address, domain) == want


@pytest.mark.parametrize(
    ("domain", "want"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("[IPv6:::1]", "[ipv6:::1]"),
        (".", "."),
    ],
    ids=["lower", "trailing-dot", "literal", "root"],
)
def test_normalise_domain(domain: str, want: str) -> None:
    assert normalise_domain(domain) == want


@pytest.mark.parametrize(
    ("domain", "want"),
    [
        ("[192.0.2.1]", "192.0.2.1"),
        ("[IPv6:2001:db8::1]", "2001:db8::1"),
        ("[ipv6:2001:DB8:0:0:0:0:0:1]", "2001:db8::1"),
        ("[192.0.2]", None),
        ("[2001:db8::1]", None),
        ("192.0.2.1", None),
        ("example.com", None),
        ("[]", None),
    ],
    ids=["v4", "v6", "v6-long-form", "v4-short", "v6-without-tag", "no-brackets", "name", "empty"],
)
def test_is_ip_literal(domain: str, want: str | None) -> None:
    assert is_ip_literal(domain) == want


@pytest.mark.parametrize(
    ("local_part", "want"),
    [
        ("john", "john"),
        ("john.doe", "john.doe"),
        ("john doe", '"john doe"'),
        ('a"b', '"a\\"b"'),
        ("a\\b", '"a\\\\b"'),
        (".john", '".john"'),
        ("john..doe", '"john..doe"'),
        ("a@b", '"a@b"'),
        ("", '""'),
        ("jörg", "jörg"),
    ],
    ids=[
        "atom",
        "dot-atom",
        "space",
        "quote",
        "backslash",
        "leading-dot",
        "double-dot",
        "at",
        "empty",
        "utf8",
    ],
)
def test_quote_local_part(local_part: str, want: str) -> None:
    assert quote_local_part(local_part) == want
    assert unquote_local_part(want) == local_part


def test_quote_local_part_refuses_controls() -> None:
    with pytest.raises(AddressError, match="control character"):
        quote_local_part("a\nb")


@pytest.mark.parametrize(
    ("a", "b", "caseful", "same"),
    [
        ("John@Example.COM", "john@example.com", False, True),
        ("John@Example.COM", "john@example.com", True, False),
        ("John@Example.COM", "John@example.com", True, True),
        ('"john"@x.example', "john@X.example", False, True),
        ("john@x.example.", "john@x.example", False, True),
        ("john@x.example", "jon@x.example", False, False),
        ("", "", False, True),
    ],
    ids=[
        "caseless",
        "caseful-local-part",
        "caseful-domain-caseless",
        "quotes",
        "trailing-dot",
        "different",
        "null",
    ],
)
def test_address_key(a: str, b: str, caseful: bool, same: bool) -> None:
    assert (address_key(a, caseful) == address_key(b, caseful)) is same


def test_address_key_preserves_nothing_of_case() -> None:
    assert address_key("John.Smith@Example.COM") == "john.smith@example.com"


AFFIX_CASES = [
    ("fixed-prefix", "owner-list", ["owner-"], [], False, False, ("owner-", "list", "")),
    ("fixed-prefix-caseless", "OWNER-list", ["owner-"], [], False, False, ("OWNER-", "list", "")),
    ("prefix-missing", "list", ["owner-"], [], False, False, None),
    ("prefix-optional", "list", ["owner-"], [], True, False, ("", "list", "")),
    (
        "prefix-first-in-list-wins",
        "owner-request-x",
        ["owner-", "owner-request-"],
        [],
        False,
        False,
        ("owner-", "request-x", ""),
    ),
    ("wild-prefix-longest", "a-b-c", ["*-"], [], False, False, ("a-b-", "c", "")),
    ("wild-prefix-missing", "abc", ["*-"], [], False, False, None),
    ("fixed-suffix", "user-bounces", [], ["-bounces"], False, False, ("", "user", "-bounces")),
    ("fixed-suffix-not-whole", "-bounces", [], ["-bounces"], False, False, None),
    ("wild-suffix-plus", "user+tag", [], ["+*"], False, False, ("", "user", "+tag")),
    ("wild-suffix-from-first", "user+tag+x", [], ["+*"], False, False, ("", "user", "+tag+x")),
    ("wild-suffix-second-pattern", "user-x", [], ["+*", "-*"], False, False, ("", "user", "-x")),
    ("wild-suffix-first-pattern-wins", "a-b+c", [], ["+*", "-*"], False, False, ("", "a-b", "+c")),
    ("suffix-missing", "user", [], ["-*"], False, False, None),
    ("suffix-optional", "user", [], ["-*"], False, True, ("", "user", "")),
    ("suffix-caseless", "User-BOUNCES", [], ["-bounces"], False, False, ("", "User", "-BOUNCES")),
    ("both", "owner-list+x", ["owner-"], ["+*"], False, False, ("owner-", "list", "+x")),
    ("none-configured", "user", [], [], False, False, ("", "user", "")),
]


@pytest.mark.parametrize(
    ("local_part", "prefixes", "suffixes", "p_opt", "s_opt", "want"),
    [c[1:] for c in AFFIX_CASES],
    ids=[c[0] for c in AFFIX_CASES],
)
def test_strip_affix(
    local_part: str,
    prefixes: list[str],
    suffixes: list[str],
    p_opt: bool,
    s_opt: bool,
    want: tuple[str, str, str] | None,
) -> None:
    assert strip_affix(local_part, prefixes, suffixes, p_opt, s_opt) == want


# -- property: quoting round-trips through the envelope parser -----------------------------------

_LOCAL_PART_CHARS = st.characters(
    min_codepoint=32, max_codepoint=0x2FF, blacklist_categories=("Cc", "Cs"), whitelist_characters="\t"
)
_LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)


@settings(deadline=None)
@given(
    local_part=st.text(alphabet=_LOCAL_PART_CHARS, min_size=1, max_size=40),
    labels=st.lists(_LABEL, min_size=1, max_size=4),
)
def test_quote_round_trip(local_part: str, labels: list[str]) -> None:
    quoted = quote_local_part(local_part)
    assume(len(quoted.encode()) <= 64)
    domain = ".".join(labels)
    address = f"{quoted}@{domain}"
    assert parse_envelope_address(address) == address
    assert parse_envelope_address(f"<{address}>") == address
    assert split_address(address) == (local_part, domain)
    assert parse_header_addresses(f"Someone <{address}>") == [HA(address, "Someone")]


# The common form (an ASCII dot-atom and a domain name) has a shortcut past the tokenizer; it must
# agree with the tokenizer on everything, including what it must leave to it.
_ENVELOPE_PIECES = st.sampled_from(["a", "Bob", "x.y", ".", "..", "@", "<", ">", "<>", " ", "\t", '"q r"', "(c)",
                                    "[1.2.3.4]", "-", "_", "é", "\r", "\0", ",", ":", "@r1,@r2:", "a" * 64, "b" * 63,
                                    ("c" * 60 + ".") * 5, "!#$%&'*+/=?^`{|}~"])


@settings(deadline=None, max_examples=500)
@given(pieces=st.lists(_ENVELOPE_PIECES, max_size=8), strip=st.booleans())
def test_envelope_shortcut_agrees_with_the_tokenizer(pieces: list[str], strip: bool) -> None:
    text = "".join(pieces)

    def outcome(parse):  # type: ignore[no-untyped-def]
        try:
            return ("ok", parse())
        except AddressError as exc:
            return ("error", exc.message)

    assert outcome(lambda: parse_envelope_address(text, strip)) == outcome(
        lambda: parse_envelope_tokens(text.strip(" \t"), text, strip))
