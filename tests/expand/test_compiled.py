"""Compiled expansion strings (mta.expand.compiled) give exactly what the interpreter gives.

`expand()` evaluates a string from its parsed template when the string is in
the compiled subset; here every case is expanded both ways and compared: the
text, the taint spans, and for a failure the error's message and `forced`.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta.config.main import DEFAULT_RECEIVED_HEADER_TEXT
from mta.errors import ExpansionError
from mta.expand import ExpandContext, expand
from mta.expand.compiled import ITEM_NAMES, compile_template
from mta.expand.expander import Expander
from mta.taint import Tainted


def outcome(function, text: str, ctx: ExpandContext) -> tuple[object, ...]:  # type: ignore[no-untyped-def]
    try:
        result = function(text, ctx)
    except ExpansionError as exc:
        return ("error", exc.message, exc.forced)
    spans = result.spans if isinstance(result, Tainted) else None
    return ("ok", str.__str__(result), type(result).__name__, spans)


def interpreted(text: str, ctx: ExpandContext) -> str:
    return Expander(ctx).run(text, skipping=False)


def assert_same(text: str, ctx: ExpandContext) -> None:
    want = outcome(interpreted, text, ctx)
    got = outcome(expand, text, ctx)
    assert got == want, f"expand({text!r}): got {got!r}, want {want!r}"


CONTEXTS = {
    "smtp": {
        "sender_rcvhost": Tainted("[127.0.0.1] (helo=client.example.org)"),
        "sender_helo_name": None,
        "sender_ident": None,
        "primary_hostname": "mx.example.com",
        "received_protocol": "esmtp",
        "tls_in_ver": None,
        "tls_in_cipher_std": None,
        "version_number": "0.1.0",
        "sender_host_authenticated": None,
        "sender_address": Tainted("bob@example.org"),
        "message_exim_id": "1xZ1dy-000000004f3-1cSa",
        "received_for": Tainted("alice@example.com"),
    },
    "local": {
        "sender_rcvhost": None,
        "sender_ident": Tainted("bob"),
        "sender_helo_name": Tainted(""),
        "primary_hostname": "mx.example.com",
        "received_protocol": "local",
        "tls_in_ver": "TLS1.3",
        "tls_in_cipher_std": "TLS_AES_256_GCM_SHA384",
        "sender_host_authenticated": "plain",
        "authenticated_id": Tainted("bob\udcc3\udca9"),  # escaped bytes that form UTF-8: normalised
        "sender_address": Tainted(""),
        "message_exim_id": "1xZ1dy-000000004f3-1cSa",
        "received_for": None,
    },
    "odd": {
        "a": "x\0y",  # cut at the NUL
        "b": Tainted(""),
        "c": lambda: "called",
        "d": None,
        "sender_address": "plain@example.com",
    },
}

STRINGS = [
    DEFAULT_RECEIVED_HEADER_TEXT,
    "$smtp_active_hostname ESMTP mta $version_number $tod_full",
    "plain}text{with braces",
    "${if def:a{yes}{no}}|${if !def:a {yes} {no} }|${if ! ! def:b{yes}}|${if def:d}|${if def:a}",
    "${if def:b{[$b]}{<$b>}}${if def:c {$c}}",
    "${if def:sender_address {${if def:a{$a$b}{n}}}{${if def:nonesuch{x}}}}",
    "\\n\\t\\x41\\101\\303\\251\\q\\N$a\\N|\\N${if\\N",
    "a\\x",  # \x alone is a NUL: the rest is cut
    "${if def:b{x}}${unknownvar}",
    "${if def:b {x}{$unknownvar}}",
    "$unknownvar",
    "${if def:unknownvar{x}}",
    "${lookup}",
    "${if def:value{x}}",
    "$value $runrc",
    "$h_subject: ${if def:h_subject:{x}}",
    "$1 ${1}",
    "${if eq{a}{a}{x}}",
    "${lc:ABC}",
    "${if def:a{x}fail}",
    "${if def:a{x}{y}",
    "${if def:a{x}{y}}}",
    "${if def:a {x}",
    "${sender_address",
    "trailing \\",
    "$",
    "${if def:{x}}",
    "${if defx:a{x}}",
]


def test_the_strings_expanded_per_message_are_compiled() -> None:
    for text in (DEFAULT_RECEIVED_HEADER_TEXT, "$smtp_active_hostname ESMTP mta $version_number $tod_full"):
        assert compile_template(text) is not None


@pytest.mark.parametrize("context", sorted(CONTEXTS))
@pytest.mark.parametrize("text", STRINGS, ids=range(len(STRINGS)))
def test_same_as_the_interpreter(text: str, context: str) -> None:
    assert_same(text, ExpandContext(dict(CONTEXTS[context])))  # type: ignore[arg-type]


def test_the_item_names_are_the_items() -> None:
    from mta.expand.items import ITEMS

    assert frozenset(ITEMS) == ITEM_NAMES


def test_tainted_text_is_refused_as_before() -> None:
    with pytest.raises(ExpansionError, match="tainted"):
        expand(Tainted("${if def:a{x}}"), ExpandContext({"a": "1"}))


FRAGMENTS = ["$a", "${a}", "$b", "${c}", "$d", "$zz", "${if def:a{", "${if !def:b {", "${if def:d}", "${if def:zz{",
             "}", "{", "} {", "}{", " ", "x", "\\n", "\\N", "\\", "\\x", "\\303\\251", "$", "${lc:", "${value}", "-"]
VALUES = st.one_of(st.none(), st.sampled_from(["", "v", "x\0y", "\udcc3\udca9"]),
                   st.sampled_from(["", "t", "\udcc3\udca9"]).map(Tainted))


@settings(max_examples=400, deadline=None)
@given(pieces=st.lists(st.sampled_from(FRAGMENTS), max_size=14),
       values=st.fixed_dictionaries({"a": VALUES, "b": VALUES, "c": VALUES, "d": VALUES}))
def test_random_strings_same_as_the_interpreter(pieces: list[str], values: dict[str, object]) -> None:
    assert_same("".join(pieces), ExpandContext(values))  # type: ignore[arg-type]
