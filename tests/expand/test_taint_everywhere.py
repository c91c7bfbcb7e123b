"""Issue 11, point 3: tainted data stays tainted through every operator, item and list operation.

Each operator and item is given a tainted value where its data goes; whatever
it makes of it must come out tainted (or the expansion must fail).  The list
of operators and items is the expander's own table, so a new one is covered
as soon as it exists.
"""

from __future__ import annotations

import pytest

from mta.errors import ExpansionError
from mta.expand import ExpandContext, ExpandPolicy, expand
from mta.expand.items import ITEMS
from mta.expand.operators import OPERATORS
from mta.taint import is_tainted

# A tainted value each operator accepts.
VALUE = {
    "base32": "123", "base62": "123", "base32d": "bcd", "base62d": "0003D7", "base64d": "aGVsbG8=",
    "eval": "1+2", "eval10": "1+2", "hex2b64": "0102", "mask": "192.0.2.7/24", "ipv6norm": "::1",
    "ipv6denorm": "::1", "reverse_ip": "192.0.2.7", "time_eval": "1h", "time_interval": "3600",
    "randint": "10", "rfc2047d": "=?utf-8?q?h=C3=A9?=", "utf8_domain_from_alabel": "xn--bcher-kva.example",
    "utf8_localpart_from_alabel": "xn--je-uia",
}  # fmt: skip
NAMES = {"h": "h_3", "hash": "hash_3", "l": "l_2", "length": "length_2", "nh": "nh_5", "nhash": "nhash_5",
         "s": "s_1", "substr": "substr_1", "sha2": "sha2_256", "sha3": "sha3_256", "listnamed": None,
         "expand": None, "stat": None}  # fmt: skip


def ctx(value: str) -> ExpandContext:
    from mta.taint import Tainted

    return ExpandContext({"x": Tainted(value)}, policy=ExpandPolicy(run=True, readsocket=True))


@pytest.mark.parametrize("op", sorted(OPERATORS))
def test_every_operator_keeps_taint(op: str) -> None:
    name = NAMES.get(op, op)
    if name is None:
        pytest.skip(f"{op}: takes a name or text, not data (refusals tested elsewhere)")
    got = expand(f"${{{name}:$x}}", ctx(VALUE.get(op, "Some Text")))
    assert is_tainted(got), f"${{{name}:$x}} gave untainted {got!r}"


ITEM_CASES = {
    "sg": "${sg{$x}{e}{E}}",
    "tr": "${tr{$x}{e}{E}}",
    "extract": "${extract{a}{$x}}",
    "listextract": "${listextract{1}{$x}}",
    "map": "${map{$x}{<$item>}}",
    "filter": "${filter{$x}{true}}",
    "reduce": "${reduce{$x}{}{$value$item}}",
    "sort": "${sort{$x}{lt}{$item}}",
    "length": "${length{2}{$x}}",
    "substr": "${substr{1}{$x}}",
    "hash": "${hash{3}{$x}}",
    "nhash": "${nhash{5}{$x}}",
    "hmac": "${hmac{md5}{k}{$x}}",
    "listquote": "${listquote{:}{$x}}",
    "prvs": "${prvs{$x}{secret}}",
    "srs_encode": "${srs_encode{s}{$x}{mta.example}}",
    "imapfolder": "${imapfolder{$x}}",
    "if": "${if eq{a}{a}{$x}}",
    "lookup": "${lookup{a}lsearch{/dev/null}{}{$x}}",
    "env": "${env{NOPE}{}{$x}}",
}
VALUE_FOR_ITEM = {"extract": "a=value", "prvs": "a@b.example", "srs_encode": "a@b.example", "filter": "a:b"}
NOT_DATA = {"acl", "perl", "dlfunc", "certextract", "readfile", "readsocket", "run", "authresults", "prvscheck"}


@pytest.mark.parametrize("item", sorted(ITEMS))
def test_every_item_keeps_taint(item: str) -> None:
    if item in NOT_DATA:
        pytest.skip(f"{item}: refuses tainted names/commands, or yields no data (tested elsewhere)")
    text = ITEM_CASES[item].replace("{true}", "{eq{a}{a}}")
    try:
        got = expand(text, ctx(VALUE_FOR_ITEM.get(item, "some:text")))
    except ExpansionError as exc:
        pytest.fail(f"{text}: {exc.message}")
    assert is_tainted(got), f"{text} gave untainted {got!r}"


def test_prvscheck_of_tainted_address_is_tainted() -> None:
    signed = expand("${prvs{a@b.example}{secret}}", ExpandContext())
    from mta.taint import Tainted

    got = expand("${prvscheck{$x}{secret}}", ExpandContext({"x": Tainted(signed)}))
    assert got == "a@b.example" and is_tainted(got)
