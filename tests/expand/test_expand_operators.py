"""${op:string} operators and ${if} conditions."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mta.errors import ExpansionError
from mta.expand import ExpandContext, expand
from mta.taint import Tainted

VARS = {
    "local_part": "Bob",
    "domain": "Example.COM",
    "sender_address": "",
    "message_size": "10K",
    "address_data": "uid=1000 home=/home/bob",
}


def assert_expands(text: str, want: str, ctx: ExpandContext | None = None) -> None:
    got = expand(text, ctx if ctx is not None else ExpandContext(VARS))
    assert got == want, f"expand({text!r}): got {got!r}, want {want!r}"


OPERATORS = [
    ("lc", "${lc:AbC}", "abc"),
    ("uc", "${uc:AbC}", "ABC"),
    ("lc-var", "${lc:$domain}", "example.com"),
    ("domain", "${domain:bob@Example.org}", "Example.org"),
    ("domain-of-header", "${domain:Bob Smith <bob@example.org>}", "example.org"),
    ("domain-none", "[${domain:localonly}]", "[]"),
    ("local-part", "${local_part:bob@example.org}", "bob"),
    ("local-part-header", "${local_part:\"Bob\" <b.smith@example.org>}", "b.smith"),
    ("local-part-no-at", "${local_part:postmaster}", "postmaster"),
    ("address-angle", "${address:Bob Smith <bob@example.org>}", "bob@example.org"),
    ("address-bare", "${address:bob@example.org}", "bob@example.org"),
    ("address-comment", "${address:bob@example.org (Bob)}", "bob@example.org"),
    ("address-empty", "[${address:}]", "[]"),
    ("addresses", "${addresses:A <a@x.org>, b@y.org (B)}", "a@x.org:b@y.org"),
    ("addresses-sep", "${addresses:>& A <a@x.org>, b@y.org}", "a@x.org&b@y.org"),
    ("length-n", "${length_3:abcdef}", "abc"),
    ("length-n-short", "${length_10:abc}", "abc"),
    ("strlen", "${strlen:abcdef}", "6"),
    ("strlen-empty", "${strlen:}", "0"),
    ("substr-m-n", "${substr_1_3:abcdef}", "bcd"),
    ("substr-m", "${substr_2:abcdef}", "cdef"),
    ("substr-negative", "${substr_-3_2:abcdef}", "de"),
    ("substr-negative-no-length", "${substr_-3:abcdef}", "abc"),
    ("substr-negative-before-start", "${substr_-8_4:abcdef}", "ab"),
    ("substr-past-end", "[${substr_10_2:abc}]", "[]"),
    ("substr-length-past-end", "${substr_1_10:abc}", "bc"),
    ("md5", "${md5:abc}", "900150983cd24fb0d6963f7d28e17f72"),
    ("sha1", "${sha1:abc}", "A9993E364706816ABA3E25717850C26C9CD0D89D"),
    ("sha256", "${sha256:abc}", hashlib.sha256(b"abc").hexdigest().upper()),
    ("base64", "${base64:hello world}", "aGVsbG8gd29ybGQ="),
    ("str2b64", "${str2b64:hi}", "aGk="),
    ("base64d", "${base64d:aGVsbG8gd29ybGQ=}", "hello world"),
    ("base64-roundtrip-utf8", "${base64d:${base64:caf\xe9}}", "caf\xe9"),
    ("hex2b64", "${hex2b64:68656c6c6f}", "aGVsbG8="),
    ("quote-plain", "${quote:abc.def-x_y}", "abc.def-x_y"),
    ("quote-space", "${quote:a b}", '"a b"'),
    ("quote-specials", '${quote:a"b\\\\c}', '"a\\"b\\\\c"'),
    ("quote-newline", "${quote:a\\nb}", '"a\\nb"'),
    ("quote-empty", "${quote:}", '""'),
    # A tab is "printing" to Exim's string_printing(): it stays as it is.
    ("escape", "${escape:a\\tb\\nc\\x01}", "a\tb\\nc\\001"),
    ("escape-printable", "${escape:abc ~}", "abc ~"),
    ("escape-8bit", "${escape:\xe9}", "\\303\\251"),
    ("rxquote", "${rxquote:a.b*c}", "a\\.b\\*c"),
    ("listcount", "${listcount:a : b : c}", "3"),
    ("listcount-escaped-colon", "${listcount:a::b : c}", "2"),
    ("listcount-other-sep", "${listcount:<; a;b;c;d}", "4"),
    ("listcount-empty", "${listcount:}", "0"),
    ("eval-precedence", "${eval:1+2*3}", "7"),
    ("eval-parens", "${eval:(1+2)*3}", "9"),
    ("eval-spaces", "${eval: 10 - 4 - 3 }", "3"),
    ("eval-div-truncates", "${eval:-7/2}", "-3"),
    ("eval-mod-sign", "${eval:-7%3}", "-1"),
    ("eval-unary", "${eval:-(2+3)}", "-5"),
    ("eval-not", "${eval:~0}", "-1"),
    ("eval-bitops", "${eval:6&3|8^1}", "11"),
    ("eval-shift", "${eval:1<<10 >> 2}", "256"),
    ("eval-hex", "${eval:0x10+1}", "17"),
    ("eval-octal", "${eval:010}", "8"),
    ("eval10-decimal", "${eval10:010}", "10"),
    ("eval-suffix", "${eval:2K+1M}", str(2 * 1024 + 1024 * 1024)),
    ("eval-of-var", "${eval:$message_size/2}", "5120"),
    ("nested-ops", "${uc:${substr_0_3:${lc:ABCDEF}}}", "ABC"),
]


@pytest.mark.parametrize(("text", "want"), [c[1:] for c in OPERATORS], ids=[c[0] for c in OPERATORS])
def test_operators(text: str, want: str) -> None:
    assert_expands(text, want)


OPERATOR_ERRORS = [
    ("eval-div-zero", "${eval:1/0}", "divide by zero"),
    ("eval-mod-zero", "${eval:1%0}", "modulo by zero"),
    ("eval-garbage", "${eval:1+abc}", "expecting number or opening parenthesis"),
    ("eval-trailing", "${eval:1 2}", 'expecting operator (after processing "1 ")'),
    ("eval-paren", "${eval:(1+2}", "expecting closing parenthesis"),
    ("eval-overflow", "${eval:9223372036854775807+1}", "overflow"),
    ("eval-bad-octal", "${eval:08}", 'expecting operator (after processing "0")'),
    ("eval-python", "${eval:__import__('os')}", "expecting number"),
    ("eval-power-not-python", "${eval:2**3}", "expecting number"),
    ("base64d-bad", "${base64d:!!!}", 'string "!!!" is not well-formed for "base64d" operator'),
    ("hex2b64-bad", "${hex2b64:xyz}", '"xyz" is not a hex string'),
    ("length-without-number", "${length:abcdef}", "Not enough arguments for 'length' (min is 2)"),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in OPERATOR_ERRORS], ids=[c[0] for c in OPERATOR_ERRORS])
def test_operator_errors(text: str, message: str) -> None:
    with pytest.raises(ExpansionError) as info:
        expand(text, ExpandContext(VARS))
    assert message in info.value.message, f"expand({text!r}): got {info.value.message!r}, want {message!r}"


def match_list(kind: str, subject: str, list_text: str) -> bool:
    # A plain list matcher standing in for the one config/lists.py provides.
    items = [item.strip() for item in list_text.split(":")]
    if kind in ("domain", "address", "localpart"):
        return subject.lower() in (item.lower() for item in items)
    return subject in items


@pytest.fixture
def ctx(tmp_path: Path) -> ExpandContext:
    (tmp_path / "present").write_text("x")
    return ExpandContext(
        {**VARS, "home": str(tmp_path), "acl_m_flag": "yes", "acl_m_zero": "0"},
        headers={"subject": "hi", "x-empty": ""}.get,
        match_list=match_list,
    )


CONDITIONS = [
    ("eq-true", "eq{a}{a}", True),
    ("eq-case", "eq{a}{A}", False),
    ("eqi", "eqi{abc}{ABC}", True),
    ("eqi-false", "eqi{abc}{abd}", False),
    ("not-eq", "!eq{a}{b}", True),
    ("not-not", "!!eq{a}{a}", True),
    ("not-spaced", "! eq{a}{b}", True),
    ("eq-vars", "eq{$local_part}{Bob}", True),
    ("lt", "lt{abc}{abd}", True),
    ("lti", "lti{ABC}{abd}", True),
    ("ge", "ge{b}{a}", True),
    ("num-eq", "={10}{10}", True),
    ("num-eqeq", "=={10}{010}", True),  # decimal, not octal
    ("num-lt", "<{9}{10}", True),
    ("num-gt", ">{9}{10}", False),
    ("num-le", "<={10}{10}", True),
    ("num-ge", ">={10}{11}", False),
    ("num-k", ">{$message_size}{10000}", True),
    ("num-k-equal", "={1K}{1024}", True),
    ("num-m", "={1M}{1048576}", True),
    ("num-negative", "<{-5}{3}", True),
    ("num-spaces", "={ 5 }{5}", True),
    ("num-empty-is-zero", "={}{0}", True),
    ("match", "match{abc}{b}", True),
    ("match-anchored", "match{abc}{^b}", False),
    ("match-protected", "match{a.b}{\\N^a\\.b$\\N}", True),
    ("exists-yes", "exists{$home/present}", True),
    ("exists-no", "exists{$home/absent}", False),
    ("isip-4", "isip{192.168.1.1}", True),
    ("isip-6", "isip{2001:db8::1}", True),
    ("isip-no", "isip{example.com}", False),
    ("isip-bad-octet", "isip{1.2.3.256}", False),
    ("isip4-yes", "isip4{10.0.0.1}", True),
    ("isip4-v6", "isip4{::1}", False),
    ("isip6-yes", "isip6{::1}", True),
    ("isip6-v4", "isip6{10.0.0.1}", False),
    ("and-true", "and{{eq{a}{a}}{eq{b}{b}}}", True),
    ("and-false", "and{{eq{a}{a}}{eq{b}{c}}}", False),
    ("and-spaced", "and { {eq{a}{a}} {eq{b}{b}} }", True),
    ("or-true", "or{{eq{a}{b}}{eq{b}{b}}}", True),
    ("or-false", "or{{eq{a}{b}}{eq{b}{c}}}", False),
    ("not-and", "!and{{eq{a}{a}}{eq{b}{c}}}", True),
    ("nested-combine", "or{{and{{eq{1}{1}}{!eq{1}{2}}}}{eq{x}{y}}}", True),
    ("inlist", "inlist{b}{a:b:c}", True),
    ("inlist-spaces", "inlist{b}{a : b : c}", True),
    ("inlist-case", "inlist{B}{a:b:c}", False),
    ("inlisti", "inlisti{B}{a:b:c}", True),
    ("inlist-sep", "inlist{c}{<; a;b;c}", True),
    ("inlist-no", "inlist{d}{a:b:c}", False),
    ("bool-true", "bool{true}", True),
    ("bool-yes", "bool{ Yes }", True),
    ("bool-false", "bool{false}", False),
    ("bool-no", "bool{no}", False),
    ("bool-number", "bool{2}", True),
    ("bool-zero", "bool{0}", False),
    ("bool-empty", "bool{}", False),
    ("bool-var", "bool{$acl_m_flag}", True),
    ("bool-lax-anything", "bool_lax{whatever}", True),
    ("bool-lax-false", "bool_lax{FALSE}", False),
    ("bool-lax-zero", "bool_lax{$acl_m_zero}", False),
    ("bool-lax-empty", "bool_lax{}", False),
    ("def-set", "def:local_part", True),
    ("def-empty", "def:sender_address", False),
    ("def-unset-known", "def:host", False),
    ("def-header", "def:h_subject:", True),
    ("def-header-empty-value", "def:h_x-empty:", True),
    ("def-header-absent", "def:h_cc:", False),
    ("def-header-long", "def:header_Subject:", True),
    ("not-def", "!def:h_cc:", True),
    ("match-domain", "match_domain{EXAMPLE.com}{a.org : example.com}", True),
    ("match-domain-no", "match_domain{x.org}{a.org : example.com}", False),
    ("match-address", "match_address{bob@x.org}{bob@x.org}", True),
    ("match-local-part", "match_local_part{bob}{alice : bob}", True),
    ("match-ip", "match_ip{10.0.0.1}{10.0.0.1 : 10.0.0.2}", True),
]


@pytest.mark.parametrize(("cond", "want"), [c[1:] for c in CONDITIONS], ids=[c[0] for c in CONDITIONS])
def test_conditions(cond: str, want: bool, ctx: ExpandContext) -> None:
    text = "${if " + cond + " {T}{F}}"
    got = expand(text, ctx)
    assert got == ("T" if want else "F"), f"{cond}: got {got!r}, want {'T' if want else 'F'}"


CONDITION_ERRORS = [
    ("bool-bad", "${if bool{maybe}{T}{F}}", 'unrecognised boolean value "maybe"'),
    ("num-bad", "${if <{1}{x}{T}{F}}", 'integer expected but "x" found'),
    ("num-bad-suffix", "${if ={1X}{1}{T}{F}}", 'invalid integer "1X"'),
    ("ne-is-not-exim", "${if ne{a}{b}{T}{F}}", 'unknown condition "ne"'),
    ("eq-one-arg", "${if eq{a}}", 'missing 2nd string in {} after "eq"'),
    (
        "and-unbraced",
        "${if and{eq{a}{a}}{T}{F}}",
        'each subcondition inside an "and{...}" condition must be in its own {}',
    ),
    ("unknown-symbol", "${if =~{a}{b}{T}{F}}", 'missing { after "="'),
    ("missing-condition", "${if {a}{T}}", "condition name expected"),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in CONDITION_ERRORS], ids=[c[0] for c in CONDITION_ERRORS])
def test_condition_errors(text: str, message: str, ctx: ExpandContext) -> None:
    with pytest.raises(ExpansionError) as info:
        expand(text, ctx)
    assert message in info.value.message, f"{text}: got {info.value.message!r}, want {message!r}"


def test_match_list_conditions_need_a_matcher() -> None:
    with pytest.raises(ExpansionError, match="match_domain"):
        expand("${if match_domain{a}{b}}", ExpandContext())


def test_match_list_receives_kind_subject_and_list(ctx: ExpandContext) -> None:
    seen: list[tuple[str, str, str]] = []

    def recording(kind: str, subject: str, list_text: str) -> bool:
        seen.append((kind, subject, list_text))
        return True

    ctx = ExpandContext({"domain": Tainted("a.org"), "sender_host_address": Tainted("192.0.2.1")}, match_list=recording)
    for cond in ("match_domain", "match_address", "match_local_part"):
        expand("${if " + cond + "{$domain}{+local_domains : x}}", ctx)
    expand("${if match_ip{$sender_host_address}{+relay : x}}", ctx)
    want = [(kind, "a.org", "+local_domains : x") for kind in ("domain", "address", "localpart")]
    want.append(("host", "192.0.2.1", "+relay : x"))
    assert seen == want, f"got {seen}, want {want}"


def test_and_stops_evaluating_after_false(tmp_path: Path) -> None:
    # The second sub-condition would fail (missing file); "and" never reaches it.
    text = "${if and{{eq{a}{b}}{eq{${lookup{x}lsearch{" + str(tmp_path) + "/none}}}{}}}{T}{F}}"
    got = expand(text, ExpandContext())
    assert got == "F", f"got {got!r}"
