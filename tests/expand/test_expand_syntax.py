"""Expansion syntax: variables, headers, escapes, \\N, errors and forced failure."""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterator

import pytest

from mta.errors import ExpansionError
from mta.expand import ExpandContext, check, expand, is_known_variable, time_variables
from mta.expand.expander import KNOWN_VARIABLES

HEADERS = {
    "subject": "  Hello there \n",
    "x-spam-score": " 5.5",
    "received": " from a\n\tby b\n from c",
}


def make_ctx(**variables: object) -> ExpandContext:
    base: dict[str, object] = {
        "local_part": "Bob",
        "domain": "example.com",
        "primary_hostname": "mx.example.com",
        "message_size": 1234,
        "sender_address": None,
    }
    base.update(variables)
    return ExpandContext(base, headers=HEADERS.get)  # type: ignore[arg-type]


def assert_expands(text: str, want: str, ctx: ExpandContext | None = None) -> None:
    got = expand(text, ctx if ctx is not None else make_ctx())
    assert got == want, f"expand({text!r}): got {got!r}, want {want!r}"


SUBSTITUTION = [
    ("plain", "no dollars here", "no dollars here"),
    ("bare-var", "$local_part", "Bob"),
    ("braced-var", "${local_part}", "Bob"),
    ("var-then-text", "$local_part@$domain", "Bob@example.com"),
    ("braced-var-glued", "${local_part}x", "Bobx"),
    ("var-ends-at-non-name", "$domain.", "example.com."),
    ("known-unset", "[$home]", "[]"),
    ("known-none", "[$sender_address]", "[]"),
    ("int-value", "$message_size", "1234"),
    ("acl-numbered", "[$acl_m0][$acl_c9]", "[][]"),
    ("acl-named", "[$acl_m_spam][$acl_c_x1]", "[][]"),
    ("capture-unset", "[$1]", "[]"),
    ("top-level-braces-literal", "a}b{c", "a}b{c"),
    ("header-h", "[$h_subject:]", "[Hello there]"),
    ("header-long-name", "[$header_Subject:]", "[Hello there]"),
    ("header-hyphen", "[$h_X-Spam-Score:]", "[5.5]"),
    ("header-bh", "[$bh_subject:]", "[Hello there]"),
    ("header-rh-raw", "[$rh_subject:]", "[  Hello there \n]"),
    ("header-rheader-raw", "[$rheader_x-spam-score:]", "[ 5.5]"),
    ("header-folded", "$h_received:", "from a\n\tby b\n from c"),
    ("header-absent", "[$h_cc:]", "[]"),
    ("header-then-space", "$h_subject: x", "Hello there x"),
]


@pytest.mark.parametrize(("text", "want"), [c[1:] for c in SUBSTITUTION], ids=[c[0] for c in SUBSTITUTION])
def test_substitution(text: str, want: str) -> None:
    assert_expands(text, want)


ESCAPES = [
    ("newline", r"a\nb", "a\nb"),
    ("tab", r"a\tb", "a\tb"),
    ("cr", r"a\rb", "a\rb"),
    ("backslash", r"a\\b", "a\\b"),
    ("dollar", r"\$local_part", "$local_part"),
    ("brace-open", r"\{", "{"),
    ("brace-close-in-arg", r"${lc:a\}b}", "a}b"),
    ("octal", r"\101\1022", "AB2"),
    ("octal-short", r"\7x", "\x07x"),
    ("hex", r"\x41\x4a", "AJ"),
    ("hex-no-digits-is-nul-which-ends-the-string", r"a\xq", "a"),
    ("other-char", r"\q\.", "q."),
    ("protect", r"\N${run{x}}$foo\N!", "${run{x}}$foo!"),
    ("protect-backslashes", r"\N\d+\.\N", r"\d+\."),
    ("protect-unterminated", r"a\N$x", "a$x"),
    ("protect-in-arg", r"${lc:\NA}B\N}", "a}b"),
]


@pytest.mark.parametrize(("text", "want"), [c[1:] for c in ESCAPES], ids=[c[0] for c in ESCAPES])
def test_escapes(text: str, want: str) -> None:
    assert_expands(text, want)


def test_callable_variable_is_lazy_and_called_once() -> None:
    calls: list[int] = []

    def body() -> str:
        calls.append(1)
        return "the body"

    ctx = make_ctx(message_body=body)
    assert_expands("no body used", "no body used", ctx)
    assert calls == []
    assert_expands("$message_body|$message_body", "the body|the body", ctx)
    assert len(calls) == 1, f"got {len(calls)} calls, want 1"


def test_callable_returning_none_is_empty() -> None:
    assert_expands("[$message_body]", "[]", make_ctx(message_body=lambda: None))


def test_variable_only_in_context_is_usable() -> None:
    assert_expands("$sender_rate_period", "1h", make_ctx(sender_rate_period="1h"))


def test_capture_variables_from_context() -> None:
    assert_expands("$1-$2", "a-b", make_ctx(**{"1": "a", "2": "b"}))
    assert_expands("$1st", "ast", make_ctx(**{"1": "a"}))


def test_required_known_variables() -> None:
    required = [
        "primary_hostname", "qualify_domain", "qualify_recipient", "local_part", "domain",
        "local_part_prefix", "local_part_suffix", "local_part_data", "domain_data", "original_local_part",
        "original_domain", "parent_local_part", "parent_domain", "home", "address_data", "sender_address",
        "sender_address_local_part", "sender_address_domain", "return_path", "message_id",
        "message_exim_id", "message_size", "message_body", "message_headers", "received_protocol",
        "received_for", "sender_host_address", "sender_host_name", "sender_host_port", "sender_helo_name",
        "sender_rcvhost", "sender_ident", "authenticated_id", "authenticated_sender", "tod_log",
        "tod_full", "tod_bsdinbox", "tod_epoch", "tod_logfile", "value", "spool_directory",
        "version_number", "caller_uid", "caller_gid", "recipients", "recipients_count", "host",
        "host_address", "tls_cipher", "address_file", "address_pipe",
        "interface_address", "interface_port", "received_port", "router_name", "transport_name",
        "compile_number", "runrc", "acl_c0", "acl_c9", "acl_m0", "acl_m9", "acl_c_foo", "acl_m_bar",
        "item", "exim_uid", "exim_gid", "mta_uid", "tod_epoch_l", "config_file", "exim_version",
        "originator_uid", "queue_size", "prvscheck_result", "srs_recipient", "auth1", "r_anything",
    ]
    missing = [name for name in required if not is_known_variable(name)]
    assert not missing, f"not known: {missing}"
    assert "local_prt" not in KNOWN_VARIABLES


# Exim 4.96's own words (checked with exim -be; the corpus in tests/expand/corpus has more).
ERRORS = [
    ("unknown-var", "$foo", 'unknown variable name "foo"'),
    ("unknown-var-braced", "${foo}", 'unknown variable in "${foo}"'),
    ("unknown-var-in-skipped-branch", "${if eq{a}{b}{$nosuch}{x}}", 'unknown variable name "nosuch"'),
    ("unknown-acl-form", "$acl_x0", 'unknown variable name "acl_x0" (user-defined ACL variables must start'),
    ("unknown-operator", "${foo:x}", 'unknown expansion operator "foo"'),
    ("unknown-item", "${foo{x}}", '"${foo" is not a known operator (or a } is missing in a variable reference)'),
    ("unknown-lookup-type", "${lookup{x}xyz{/etc/passwd}}", 'unknown lookup type "xyz"'),
    ("bad-partial-lookup", "${lookup{x}partialx-lsearch{/f}}", 'format error in lookup type "partialx-lsearch"'),
    ("not-shipped-lookup", "${lookup dnsdb{mx=a.b}}", 'lookup type "dnsdb" is not available'),
    ("unknown-condition", "${if foo{a}{b}}", 'unknown condition "foo"'),
    ("pam", "${if pam{a}}", 'support for "pam" not compiled'),
    ("unbalanced-operator", "${lc:abc", "missing } at end of string"),
    ("unbalanced-var", "${local_part", '"${local_part" is not a known operator (or a } is missing'),
    ("unbalanced-if", "${if eq{a}{a}{yes}", 'syntax error in "if" item - "fail" expected'),
    ("unbalanced-arg", "${if eq{a}{a", "missing } at end of string"),
    ("unbalanced-sg", "${sg{a}{b}{c}", "missing '}' after 'sg'"),
    ("unbalanced-nested", "${lc:${uc:x}", "missing } at end of string"),
    ("lone-dollar", "cost: $", "$ not followed by letter, digit, or {"),
    ("dollar-space", "a $ b", "$ not followed by letter, digit, or {"),
    ("empty-braced", "${}", "letter or digit expected after ${"),
    ("trailing-backslash", "a\\", "\\ at end of string"),
    ("perl", "${perl{func}}", '"${perl" encountered, but this facility is not included in this binary'),
    ("dlfunc", "${dlfunc{/lib/x.so}{f}}", '"${dlfunc" encountered, but this facility is not included'),
    ("run-off", "${run{/bin/sh -c id}{y}{n}}", "running a command is not permitted"),
    ("readsocket-off", "${readsocket{/tmp/s}{x}}", "socket insertions are not permitted"),
    ("sg-too-few", "${sg{a}{b}}", "Not enough arguments for 'sg' (min is 3)"),
    ("sg-too-many", "${sg{a}{b}{c}{d}}", "Too many arguments for 'sg' (max is 3)"),
    ("fail-not-allowed", "${sg{a}{b}{c} fail}", "missing '}' after 'sg'"),
    ("header-no-colon", "${lc:$h_subject}", "missing } at end of string - could be header name not terminated"),
    ("header-braced", "${h_subject}", 'unknown variable in "${h_subject}"'),
    ("length-not-number", "${length{abc}{xyz}}", '"abc" is not a positive number (in "length" expansion)'),
    ("numeric-compare-not-number", "${if >{abc}{1}}", 'integer expected but "abc" found'),
    ("def-no-colon", "${if def{x}}", '":" expected after "def"'),
    ("def-no-name", "${if def:}", 'variable name omitted after "def:"'),
    ("def-unknown", "${if def:nosuch}", 'unknown variable "nosuch" after "def:"'),
    ("bad-regex", "${if match{a}{(}}", 'regular expression error in "(": missing closing parenthesis at offset 1'),
    ("wrong-substr-numbers", "${substr_1_2_3:abc}", 'non-digit after underscore in "substr_1_2_3"'),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_errors(text: str, message: str) -> None:
    with pytest.raises(ExpansionError) as info:
        expand(text, make_ctx())
    assert message in info.value.message, f"expand({text!r}): got error {info.value.message!r}, want {message!r}"
    assert info.value.forced is False, f"expand({text!r}): a plain error must not be forced"


SYNTAX_ERRORS_FOUND_BY_CHECK = [c for c in ERRORS if c[0] not in {
    "unknown-var", "unknown-var-braced", "unknown-var-in-skipped-branch", "unknown-acl-form", "header-braced",
    "length-not-number", "numeric-compare-not-number", "def-unknown", "bad-regex", "pam", "wrong-substr-numbers",
    "run-off", "readsocket-off",  # allowed or not is the configuration's policy, applied when expanding
}]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [c[1:] for c in SYNTAX_ERRORS_FOUND_BY_CHECK],
    ids=[c[0] for c in SYNTAX_ERRORS_FOUND_BY_CHECK],
)
def test_check_finds_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(ExpansionError) as info:
        check(text)
    assert message in info.value.message, f"check({text!r}): got {info.value.message!r}, want {message!r}"


def test_deep_nesting_is_an_expansion_error() -> None:
    text = "${lc:" * 5000 + "x" + "}" * 5000
    with pytest.raises(ExpansionError, match="nested too deeply"):
        expand(text, make_ctx())
    assert expand("${lc:" * 50 + "X" + "}" * 50, make_ctx()) == "x"


def test_check_accepts_good_text() -> None:
    check("${if eq{$local_part}{x}{${lookup{$local_part}lsearch{/etc/aliases}{$value}fail}}}")


FORCED = [
    ("if-fail", "${if eq{a}{b}{yes}fail}"),
    ("if-fail-spaced", "${if eq {a} {b} {yes} fail }"),
    ("nested-fail", "x${lc:${if eq{a}{b}{yes}fail}}"),
    ("extract-fail", "${extract{nokey}{a=1}{$value}fail}"),
]


@pytest.mark.parametrize("text", [c[1] for c in FORCED], ids=[c[0] for c in FORCED])
def test_forced_failure(text: str) -> None:
    with pytest.raises(ExpansionError) as info:
        expand(text, make_ctx())
    assert info.value.forced is True, f"expand({text!r}): got forced=False, want True ({info.value.message})"


def test_fail_word_is_text_when_not_in_keyword_position() -> None:
    assert_expands("${if eq{a}{a}{fail}{x}}", "fail")
    assert_expands("fail", "fail")


@pytest.fixture
def timezone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield
    monkeypatch.undo()
    time.tzset()


TOD = [
    ("utc", "UTC0", {
        "tod_log": "2026-11-22 12:42:54",
        "tod_full": "Sun, 22 Nov 2026 12:42:54 +0000",
        "tod_bsdinbox": "Sun Nov 22 12:42:54 2026",
        "tod_logfile": "20261122",
        "tod_zone": "+0000",
        "tod_zulu": "20261122124254Z",
    }),
    ("west-of-utc", "EST5", {
        "tod_log": "2026-11-22 07:42:54",
        "tod_full": "Sun, 22 Nov 2026 07:42:54 -0500",
        "tod_bsdinbox": "Sun Nov 22 07:42:54 2026",
        "tod_zone": "-0500",
        "tod_zulu": "20261122124254Z",
    }),
    ("half-hour-east", "IST-5:30", {
        "tod_full": "Sun, 22 Nov 2026 18:12:54 +0530",
        "tod_logfile": "20261122",
    }),
    ("single-digit-day", "UTC0", None),
]  # fmt: skip


@pytest.mark.parametrize(("tz", "want"), [c[1:] for c in TOD], ids=[c[0] for c in TOD])
def test_time_variables(tz: str, want: dict[str, str] | None, timezone: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", tz)
    time.tzset()
    if want is None:
        now = calendar.timegm((2026, 3, 1, 1, 2, 3))
        want = {"tod_full": "Sun, 01 Mar 2026 01:02:03 +0000", "tod_bsdinbox": "Sun Mar 01 01:02:03 2026"}
    else:
        now = calendar.timegm((2026, 11, 22, 12, 42, 54))
    got = time_variables(now)
    assert got["tod_epoch"] == str(int(now))
    for name, value in want.items():
        assert got[name] == value, f"{name} in TZ={tz}: got {got[name]!r}, want {value!r}"


def test_time_variables_expand() -> None:
    ctx = ExpandContext(time_variables(0.0))
    assert_expands("$tod_epoch", "0", ctx)
