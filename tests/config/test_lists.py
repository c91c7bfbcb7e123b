"""Exim list matching (mta.config.lists): every item type, positive and negated."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from mta.config.lists import (
    ListContext,
    ListMatch,
    default_resolve_host,
    local_interface_addresses,
    match_address,
    match_domain,
    match_host,
    match_list,
    match_local_part,
)
from mta.errors import ConfigError, DeferError, ExpansionError, MtaError
from mta.taint import Tainted, is_tainted

PRIMARY = "mail.example.com"

NAMED: dict[tuple[str, str], str] = {
    ("domainlist", "local_domains"): "@ : localhost : example.com : *.example.org",
    ("domainlist", "dom1"): "first.example",
    ("domainlist", "dom2"): "+dom1 : third.example",
    # Exim's warning: a negation inside a referenced list does not propagate.
    ("domainlist", "neg1"): "!a.b",
    ("domainlist", "neg2"): "+neg1 : *.b",
    ("domainlist", "loop1"): "+loop2",
    ("domainlist", "loop2"): "x.example : +loop1",
    ("localpartlist", "admins"): "postmaster : abuse : hostmaster",
    ("addresslist", "bad_senders"): "spammer@*.example : *@junk.example",
    ("hostlist", "relay_from_hosts"): "127.0.0.1 : 192.168.0.0/16",
    ("hostlist", "v6nets"): "<; 2001:db8::/32 ; ::1",
    ("hostlist", "by_name"): "*.friend.example",
    # Same name in two namespaces is not a loop.
    ("addresslist", "same"): "*@+same",
    ("domainlist", "same"): "same.example",
}

RESOLVER: dict[str, list[str]] = {
    "mx.friend.example": ["192.0.2.7", "2001:db8::7"],
    PRIMARY: ["192.0.2.10"],
    "nowhere.example": [],
}


def _resolve(name: str) -> list[str]:
    if name == "slow.example":
        raise DeferError("temporary DNS failure for slow.example")
    return RESOLVER.get(name, [])


@pytest.fixture
def ctx() -> ListContext:
    return ListContext(
        primary_hostname=PRIMARY,
        named_list=lambda list_type, name: NAMED.get((list_type, name)),
        local_addresses=lambda: {"127.0.0.1", "::1", "192.0.2.10"},
        resolve_host=_resolve,
    )


def _check(result: ListMatch, want: bool, subject: object, list_text: str) -> None:
    assert isinstance(result, ListMatch)
    assert result.matched is want, f"{subject!r} in {list_text!r}: got {result}, want matched={want}"
    assert bool(result) is want


# -- domain lists ----------------------------------------------------------------

DOMAIN_CASES = [
    ("literal", "example.com", "example.com", True),
    ("literal-caseless", "EXAMPLE.Com", "example.COM", True),
    ("literal-miss", "other.com", "example.com", False),
    ("literal-negated", "example.com", "!example.com", False),
    ("negated-at-end-accepts-others", "other.com", "!example.com", True),
    ("negated-with-space", "example.com", "! example.com : *", False),
    ("exim-example-excluded", "a.b.c", "!a.b.c : *.b.c", False),
    ("exim-example-included", "x.b.c", "!a.b.c : *.b.c", True),
    ("exim-example-neither-last-positive", "q.z", "!a.b.c : *.b.c", False),
    ("exim-example-only-negative", "q.z", "!a.b.c", True),
    ("star-dot-suffix", "a.example.com", "*.example.com", True),
    ("star-dot-suffix-not-apex", "example.com", "*.example.com", False),
    ("star-no-dot", "donkey.ex", "*key.ex", True),
    ("star-no-dot-sub", "cipher.key.ex", "*key.ex", True),
    ("star-alone", "anything.at.all", "*", True),
    ("star-negated", "a.example.com", "!*.example.com : *", False),
    ("regex", "mail2024.example", r"^mail\d+\.example$", True),
    ("regex-caseless", "MAIL7.EXAMPLE", r"^mail\d+\.example$", True),
    ("regex-miss", "xmail1.example", r"^mail\d+\.example$", False),
    ("regex-unanchored-end", "mail1.example.evil", r"^mail\d+\.example", True),
    ("regex-uppercase-pattern", "mail7.example", r"^MAIL\d+\.example$", True),
    # The subject is lower-cased first (Exim), so (?-i) bites on upper-case pattern text.
    ("regex-caseful", "MAIL7.example", r"^(?-i)MAIL\d+\.example$", False),
    ("regex-negated", "mail1.example", r"!^mail\d+\.example$ : *", False),
    ("at-primary", PRIMARY, "@", True),
    ("at-primary-caseless", PRIMARY.upper(), "@", True),
    ("at-miss", "other.example", "@", False),
    ("at-negated", PRIMARY, "!@ : *", False),
    ("at-brackets-loopback", "[127.0.0.1]", "@[]", True),
    ("at-brackets-interface", "[192.0.2.10]", "@[]", True),
    ("at-brackets-ipv6", "[IPv6:::1]", "@[]", True),
    ("at-brackets-foreign", "[203.0.113.5]", "@[]", False),
    ("at-brackets-not-literal", "localhost", "@[]", False),
    ("at-brackets-negated", "[127.0.0.1]", "!@[] : *", False),
    ("named", "x.example.org", "+local_domains", True),
    ("named-at-inside", PRIMARY, "+local_domains", True),
    ("named-miss", "example.net", "+local_domains", False),
    ("named-negated", "example.com", "! +local_domains", False),
    ("named-negated-other", "example.net", "! +local_domains", True),
    ("named-nested", "first.example", "+dom2", True),
    ("named-nested-miss", "second.example", "+dom2", False),
    ("named-negation-does-not-propagate", "x.y", "+neg2", True),
    ("named-negation-inline-differs", "x.y", "!a.b : *.b", False),
    ("separator-changed", "b.example", "<; a.example ; b.example", True),
    ("empty-list", "example.com", "", False),
    ("empty-item", "example.com", ":", False),
    ("first-match-decides", "a.example", "a.example : !a.example", True),
]


@pytest.mark.parametrize(
    ("domain", "list_text", "want"), [c[1:] for c in DOMAIN_CASES], ids=[c[0] for c in DOMAIN_CASES]
)
def test_match_domain(ctx: ListContext, domain: str, list_text: str, want: bool) -> None:
    _check(match_domain(domain, list_text, ctx), want, domain, list_text)


@pytest.mark.parametrize(
    ("domain", "list_text", "data", "item"),
    [
        ("Example.COM", "other : example.com", "example.com", "example.com"),
        ("a.example.org", "*.example.org", "*.example.org", "*.example.org"),
        (PRIMARY, "@", PRIMARY, "@"),
        ("[127.0.0.1]", "@[]", "@[]", "@[]"),
        ("x.example.org", "+local_domains", "*.example.org", "+local_domains"),
        ("example.com", "!example.com", None, "!example.com"),
        ("other", "!example.com", None, None),
    ],
    ids=["literal", "wildcard", "at", "at-brackets", "named", "negative", "end-of-list"],
)
def test_domain_data_and_item(
    ctx: ListContext, domain: str, list_text: str, data: str | None, item: str | None
) -> None:
    result = match_domain(domain, list_text, ctx)
    assert (result.data, result.item) == (data, item)


def test_none_list_is_no_match(ctx: ListContext) -> None:
    assert match_domain("example.com", None, ctx) == ListMatch(False)


# -- local part lists --------------------------------------------------------------

LOCAL_PART_CASES = [
    ("literal-caseless", "Postmaster", "postmaster", False, True),
    ("literal-caseful", "Postmaster", "postmaster", True, False),
    ("literal-caseful-exact", "Postmaster", "Postmaster", True, True),
    ("second-item", "abuse", "postmaster : abuse", False, True),
    ("negated", "root", "!root", False, False),
    ("negated-end-rule", "bob", "!root", False, True),
    ("wildcard", "list-request", "*-request", False, True),
    ("wildcard-miss", "list-owner", "*-request", False, False),
    ("regex", ".hidden", r"^[.]", False, True),
    ("regex-caseful-off", "ABC", "^abc$", False, True),
    ("regex-caseful-on", "ABC", "^abc$", True, False),
    ("plus-caseful", "Bob", "+caseful : bob", False, False),
    ("plus-caseful-exact", "Bob", "+caseful : Bob", False, True),
    ("caseless-before-plus-caseful", "Bob", "bob : +caseful : Bob", False, True),
    ("named", "abuse", "+admins", False, True),
    ("named-negated", "abuse", "!+admins : *", False, False),
    ("at-is-literal-here", PRIMARY, "@", False, False),
    ("at-brackets-literal-here", "[127.0.0.1]", "@[]", False, False),
]


@pytest.mark.parametrize(
    ("local_part", "list_text", "caseful", "want"),
    [c[1:] for c in LOCAL_PART_CASES],
    ids=[c[0] for c in LOCAL_PART_CASES],
)
def test_match_local_part(
    ctx: ListContext, local_part: str, list_text: str, caseful: bool, want: bool
) -> None:
    _check(match_local_part(local_part, list_text, ctx, caseful=caseful), want, local_part, list_text)


def test_local_part_data_is_list_element(ctx: ListContext) -> None:
    assert match_local_part("ABUSE", "+admins", ctx).data == "abuse"


# -- address lists ------------------------------------------------------------------

ADDRESS_CASES = [
    ("star-at-domain", "user@example.com", "*@example.com", False, True),
    ("star-at-domain-caseless", "User@EXAMPLE.com", "*@example.com", False, True),
    ("star-at-domain-miss", "user@other.com", "*@example.com", False, False),
    ("user-at-star", "user@x.org", "user@*", False, True),
    ("user-at-star-miss", "other@x.org", "user@*", False, False),
    ("exact-caseless", "User@Example.COM", "user@example.com", False, True),
    ("exact-caseful-local-part", "User@Example.COM", "user@example.com", True, False),
    ("exact-caseful-domain-still-caseless", "User@Example.COM", "User@example.com", True, True),
    ("plus-caseful", "User@example.com", "+caseful : user@example.com", False, False),
    ("plus-caseful-exact", "User@example.com", "+caseful : User@example.com", False, True),
    ("bare-domain", "anyone@example.com", "example.com", False, True),
    ("bare-domain-wildcard", "a@sub.example.com", "*.example.com", False, True),
    ("bare-domain-miss", "a@other.example", "example.com", False, False),
    ("local-part-wildcard", "list-request@example.com", "*-request@example.com", False, True),
    ("local-part-wildcard-miss", "list@example.com", "*-request@example.com", False, False),
    ("regex-whole-address", "spam123@x.com", r"^spam\d+@", False, True),
    ("regex-miss", "ham@x.com", r"^spam\d+@", False, False),
    ("empty-address-empty-item", "", ":", False, True),
    ("empty-address-other-items", "", "*@* : *", False, False),
    ("empty-item-nonempty-address", "a@b.example", ":", False, False),
    ("empty-address-regex", "", "^$", False, True),
    ("domain-named-list", "x@example.com", "*@+local_domains", False, True),
    ("domain-named-list-miss", "x@example.net", "*@+local_domains", False, False),
    ("at-at-primary", f"postmaster@{PRIMARY}", "postmaster@@", False, True),
    ("named-address-list", "spammer@a.example", "+bad_senders", False, True),
    ("named-address-list-2", "anyone@junk.example", "+bad_senders", False, True),
    ("named-address-list-miss", "friend@a.example", "+bad_senders", False, False),
    ("negated", "boss@example.com", "!boss@example.com : *@example.com", False, False),
    ("negated-others-pass", "staff@example.com", "!boss@example.com : *@example.com", False, True),
    ("negated-end-rule", "x@y.example", "!boss@example.com", False, True),
    ("unqualified-subject", "root", "root@*", False, False),
    ("same-name-other-namespace", "x@same.example", "+same", False, True),
]


@pytest.mark.parametrize(
    ("address", "list_text", "caseful", "want"),
    [c[1:] for c in ADDRESS_CASES],
    ids=[c[0] for c in ADDRESS_CASES],
)
def test_match_address(ctx: ListContext, address: str, list_text: str, caseful: bool, want: bool) -> None:
    _check(match_address(address, list_text, ctx, caseful=caseful), want, address, list_text)


# -- host lists -----------------------------------------------------------------------

HOST_CASES = [
    ("empty-item-local", None, None, ":", True),
    ("empty-item-remote", "192.0.2.1", None, ":", False),
    ("default-config-accept-hosts", None, None, " : ", True),
    ("star-remote", "192.0.2.1", None, "*", True),
    ("star-local", None, None, "*", True),
    ("ip-local-submission", None, None, "192.0.2.1", False),
    ("negated-ip-local-end-rule", None, None, "!192.0.2.1", True),
    ("ipv4-exact", "192.0.2.1", None, "192.0.2.1", True),
    ("ipv4-miss", "192.0.2.2", None, "192.0.2.1", False),
    ("ipv4-negated", "192.0.2.1", None, "!192.0.2.1 : *", False),
    ("cidr-v4", "192.168.5.5", None, "192.168.0.0/16", True),
    ("cidr-v4-miss", "192.169.0.1", None, "192.168.0.0/16", False),
    ("cidr-v4-31", "192.168.23.237", None, "192.168.23.236/31", True),
    ("cidr-v4-31-miss", "192.168.23.238", None, "192.168.23.236/31", False),
    ("cidr-host-bits-set", "10.11.42.99", None, "10.11.42.7/24", True),
    ("cidr-negated", "10.1.2.3", None, "!10.0.0.0/8 : *", False),
    ("v4-mapped-v6-subject", "::ffff:192.168.1.1", None, "192.168.0.0/16", True),
    ("ipv6-exact", "2001:db8::5", None, "<; 2001:db8::5", True),
    ("ipv6-doubled-colons", "2001:db8::5", None, "2001::db8::::5", True),
    ("cidr-v6", "2001:db8:1::9", None, "<; 2001:db8::/32", True),
    ("cidr-v6-doubled-colons", "2001:db8:1::9", None, "2001::db8::::/32", True),
    ("cidr-v6-miss", "2001:db9::1", None, "<; 2001:db8::/32", False),
    ("v6-subject-v4-item", "2001:db8::1", None, "192.0.2.0/24", False),
    ("at-brackets-loopback", "127.0.0.1", None, "@[]", True),
    ("at-brackets-v6-loopback", "::1", None, "@[]", True),
    ("at-brackets-interface", "192.0.2.10", None, "@[]", True),
    ("at-brackets-foreign", "203.0.113.9", None, "@[]", False),
    ("at-brackets-negated", "127.0.0.1", None, "!@[] : *", False),
    ("name-wildcard", "192.0.2.7", "mx.friend.example", "*.friend.example", True),
    ("name-wildcard-caseless", "192.0.2.7", "MX.Friend.Example", "*.friend.example", True),
    ("name-wildcard-miss", "192.0.2.7", "mx.enemy.example", "*.friend.example", False),
    ("name-regex", "192.0.2.7", "mx12.friend.example", r"^mx\d+\.friend\.example$", True),
    ("name-regex-miss", "192.0.2.7", "www.friend.example", r"^mx\d+\.friend\.example$", False),
    ("name-equal", "192.0.2.200", "mx.friend.example", "mx.friend.example", True),
    ("name-resolved", "192.0.2.7", None, "mx.friend.example", True),
    ("name-resolved-v6", "2001:db8::7", None, "mx.friend.example", True),
    ("name-resolved-miss", "192.0.2.8", None, "mx.friend.example", False),
    ("at-resolves-primary", "192.0.2.10", None, "@", True),
    ("at-miss", "192.0.2.11", None, "@", False),
    ("named", "192.168.3.4", None, "+relay_from_hosts", True),
    ("named-miss", "10.0.0.1", None, "+relay_from_hosts", False),
    ("named-v6", "2001:db8::1", None, "+v6nets", True),
    ("named-negated", "127.0.0.1", None, "!+relay_from_hosts : *", False),
    # Exim: a name that cannot be found makes the list fail at that point...
    ("unknown-name-fails-list", "192.0.2.99", None, "*.friend.example : 192.0.2.99", False),
    ("unknown-resolution-fails-list", "192.0.2.99", None, "nowhere.example : 192.0.2.99", False),
    ("ip-first-still-matches", "192.0.2.99", None, "192.0.2.99 : *.friend.example", True),
    # ... unless +ignore_unknown or +include_unknown say otherwise.
    ("ignore-unknown", "192.0.2.99", None, "+ignore_unknown : *.friend.example : 192.0.2.99", True),
    ("include-unknown", "192.0.2.99", None, "+include_unknown : *.friend.example", True),
    ("ignore-defer", "192.0.2.99", None, "+ignore_defer : slow.example : 192.0.2.99", True),
    ("include-defer", "192.0.2.99", None, "+include_defer : slow.example", True),
    # The switches hold only for the list they are written in, not for named sublists.
    ("include-unknown-not-inherited", "192.0.2.99", None, "+include_unknown : +by_name", False),
    ("unknown-in-sublist-fails-sublist-only", "192.0.2.99", None, "+by_name : 192.0.2.99", True),
]


@pytest.mark.parametrize(
    ("ip", "host_name", "list_text", "want"),
    [c[1:] for c in HOST_CASES],
    ids=[c[0] for c in HOST_CASES],
)
def test_match_host(
    ctx: ListContext, ip: str | None, host_name: str | None, list_text: str, want: bool
) -> None:
    _check(match_host(ip, host_name, list_text, ctx), want, (ip, host_name), list_text)


def test_host_defer_propagates(ctx: ListContext) -> None:
    with pytest.raises(DeferError, match=r"slow\.example"):
        match_host("192.0.2.1", None, "slow.example : 192.0.2.1", ctx)


def test_host_names_without_resolver_compare_names_only() -> None:
    ctx = ListContext(primary_hostname=PRIMARY)
    assert match_host("192.0.2.7", "mx.friend.example", "mx.friend.example", ctx).matched
    assert not match_host("192.0.2.7", None, "mx.friend.example : 192.0.2.8", ctx).matched
    assert match_host("192.0.2.7", None, "mx.friend.example : 192.0.2.7", ctx).matched


def test_match_host_rejects_non_ip(ctx: ListContext) -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        match_host("not-an-ip", None, "*", ctx)


# -- files in lists -------------------------------------------------------------------


def test_file_items(ctx: ListContext, tmp_path: Path) -> None:
    f = tmp_path / "domains"
    f.write_text("# comment line\n\n!a.b.c   # excluded\n*.b.c\nplain.example\n")
    assert match_domain("x.b.c", str(f), ctx).matched
    assert not match_domain("a.b.c", str(f), ctx).matched
    assert match_domain("plain.example", str(f), ctx).item == "plain.example"
    assert not match_domain("other.example", str(f), ctx).matched
    # "!/file" inverts every line (Exim's hold_domains example).
    assert match_domain("a.b.c", "!" + str(f), ctx).matched
    assert not match_domain("x.b.c", "!" + str(f), ctx).matched


def test_file_hash_rules_for_local_parts(ctx: ListContext, tmp_path: Path) -> None:
    f = tmp_path / "locals"
    f.write_text("not#comment  # but this is\n")
    assert match_local_part("not#comment", str(f), ctx).matched
    g = tmp_path / "domains"
    g.write_text("not#comment\n")
    assert match_domain("not", str(g), ctx).matched


def test_file_last_negative_line_sets_end_rule(ctx: ListContext, tmp_path: Path) -> None:
    f = tmp_path / "negs"
    f.write_text("!bad.example\n")
    assert match_domain("good.example", str(f), ctx).matched
    assert not match_domain("bad.example", str(f), ctx).matched


def test_missing_list_file(ctx: ListContext, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read list file"):
        match_domain("x.example", str(tmp_path / "absent"), ctx)


# -- lookups in lists -------------------------------------------------------------------


@pytest.fixture
def lsearch_dir(tmp_path: Path) -> Path:
    (tmp_path / "domains").write_text("example.com: domain-data\n*.wild.example: wild-data\n")
    (tmp_path / "defaults").write_text("known.example: yes\n*: fallback\n")
    (tmp_path / "senders").write_text("bad@spam.example: whole\n*@any.example: star-at\n")
    (tmp_path / "bydomain").write_text(
        "example.com: !postmaster : *\nchain.example: alice : >more\nmore: bob\n"
    )
    (tmp_path / "ips").write_text(
        "192.0.2.1: single\n192.0.2.0/24: net24\n2001.0db8.0000.0000.0000.0000.0000.0001: six\n"
    )
    (tmp_path / "names").write_text("mx.friend.example: by-name\n")
    return tmp_path


LOOKUP_CASES = [
    ("domain-lsearch", "domain", "example.com", "lsearch;{d}/domains", True, "domain-data"),
    ("domain-lsearch-caseless", "domain", "EXAMPLE.com", "lsearch;{d}/domains", True, "domain-data"),
    ("domain-lsearch-miss", "domain", "example.net", "lsearch;{d}/domains", False, None),
    ("domain-lsearch-negated", "domain", "example.com", "!lsearch;{d}/domains : *", False, None),
    ("domain-partial", "domain", "a.b.wild.example", "partial-lsearch;{d}/domains", True, "wild-data"),
    ("domain-no-partial", "domain", "a.b.wild.example", "lsearch;{d}/domains", False, None),
    ("domain-star-default", "domain", "unknown.example", "lsearch*;{d}/defaults", True, "fallback"),
    ("local-part-lsearch", "local_part", "example.com", "lsearch;{d}/domains", True, "domain-data"),
    ("address-whole", "address", "bad@spam.example", "lsearch;{d}/senders", True, "whole"),
    ("address-whole-miss", "address", "good@spam.example", "lsearch;{d}/senders", False, None),
    ("address-star-at", "address", "x@any.example", "lsearch*@;{d}/senders", True, "star-at"),
    ("address-empty-never-looked-up", "address", "", "lsearch*;{d}/defaults", False, None),
    ("address-domain-lookup", "address", "x@example.com", "*@lsearch;{d}/domains", True, "domain-data"),
    ("address-at-at-allowed", "address", "bob@example.com", "@@lsearch;{d}/bydomain", True, None),
    (
        "address-at-at-negated-local",
        "address",
        "postmaster@example.com",
        "@@lsearch;{d}/bydomain",
        False,
        None,
    ),
    ("address-at-at-chain", "address", "bob@chain.example", "@@lsearch;{d}/bydomain", True, None),
    ("address-at-at-chain-miss", "address", "carol@chain.example", "@@lsearch;{d}/bydomain", False, None),
    ("host-net-lookup", "host", "192.0.2.1", "net-lsearch;{d}/ips", True, "single"),
    ("host-net24-lookup", "host", "192.0.2.77", "net24-lsearch;{d}/ips", True, "net24"),
    ("host-net-v6-dots", "host", "2001:db8::1", "net-lsearch;{d}/ips", True, "six"),
    ("host-net-miss", "host", "198.51.100.1", "net-lsearch;{d}/ips", False, None),
    ("host-name-lookup", "host", "192.0.2.7", "lsearch;{d}/names", True, "by-name"),
]


@pytest.mark.parametrize(
    ("kind", "subject", "list_text", "want", "data"),
    [c[1:] for c in LOOKUP_CASES],
    ids=[c[0] for c in LOOKUP_CASES],
)
def test_lookup_items(
    ctx: ListContext, lsearch_dir: Path, kind: str, subject: str, list_text: str, want: bool, data: str | None
) -> None:
    text = list_text.format(d=lsearch_dir)
    if kind == "host":
        result = match_host(subject, "mx.friend.example" if subject == "192.0.2.7" else None, text, ctx)
    else:
        result = match_list(kind, subject, text, ctx)
    _check(result, want, subject, text)
    if data is not None:
        assert result.data == data
        assert not is_tainted(result.data)


def test_lookup_missing_file_is_not_a_silent_miss(ctx: ListContext, tmp_path: Path) -> None:
    with pytest.raises(MtaError):
        match_domain("example.com", f"lsearch;{tmp_path}/absent", ctx)


# -- expansion, taint, dispatch ------------------------------------------------------------


def test_list_is_expanded_before_split() -> None:
    ctx = ListContext(primary_hostname=PRIMARY, expand=lambda s: s.replace("$domain", "a.example"))
    assert match_domain("a.example", "$domain : b.example", ctx).matched
    assert not match_domain("$domain", "$domain", ctx).matched


def test_forced_expansion_failure_means_not_in_list() -> None:
    def expand(text: str) -> str:
        raise ExpansionError("forced", forced=True)

    ctx = ListContext(primary_hostname=PRIMARY, expand=expand)
    assert match_domain("a.example", "!a.example", ctx) == ListMatch(False)


def test_other_expansion_failure_propagates() -> None:
    def expand(text: str) -> str:
        raise ExpansionError("bad expansion")

    ctx = ListContext(primary_hostname=PRIMARY, expand=expand)
    with pytest.raises(ExpansionError):
        match_domain("a.example", "a.example", ctx)


def test_data_from_tainted_list_is_tainted() -> None:
    ctx = ListContext(primary_hostname=PRIMARY, expand=Tainted)
    result = match_domain("a.example", "a.example", ctx)
    assert result.matched and is_tainted(result.data)
    plain = match_domain("a.example", "a.example", ListContext(primary_hostname=PRIMARY))
    assert not is_tainted(plain.data)


@pytest.mark.parametrize(
    ("kind", "subject", "list_text", "want"),
    [
        ("domain", "example.com", "+local_domains", True),
        ("match_domain", "example.net", "+local_domains", False),
        ("local_part", "abuse", "+admins", True),
        ("address", "a@junk.example", "+bad_senders", True),
        ("ip", "192.168.1.1", "+relay_from_hosts", True),
        ("host", "", ":", True),
    ],
    ids=["domain", "match_domain", "local_part", "address", "ip", "host-local"],
)
def test_match_list_dispatch(ctx: ListContext, kind: str, subject: str, list_text: str, want: bool) -> None:
    _check(match_list(kind, subject, list_text, ctx), want, subject, list_text)


def test_match_list_unknown_kind(ctx: ListContext) -> None:
    with pytest.raises(ValueError, match="unknown list kind"):
        match_list("colour", "red", "red", ctx)


# -- errors -----------------------------------------------------------------------------------

ERROR_CASES = [
    ("unknown-named", match_domain, "x.example", "+nosuch", "unknown named list \\+nosuch"),
    ("unknown-named-wrong-type", match_domain, "x.example", "+relay_from_hosts", "unknown named list"),
    ("named-loop", match_domain, "y.example", "+loop1", "refers to itself"),
    ("bad-regex", match_domain, "x.example", "^(unclosed", "bad regular expression"),
    ("bad-cidr-mask", match_host, "10.0.0.1", "10.0.0.0/33", "bad IP address or CIDR"),
    ("bad-cidr-short", match_host, "10.0.0.1", "192.168.0/16", "bad IP address or CIDR"),
    ("bad-ipv6", match_host, "10.0.0.1", "<; 2001:db8:::1", "bad IP address or CIDR"),
    ("mx-unsupported", match_domain, "x.example", "@mx_any", "not supported"),
]


@pytest.mark.parametrize(
    ("func", "subject", "list_text", "reason"),
    [c[1:] for c in ERROR_CASES],
    ids=[c[0] for c in ERROR_CASES],
)
def test_config_errors(ctx: ListContext, func: object, subject: str, list_text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        if func is match_host:
            match_host(subject, None, list_text, ctx)
        else:
            match_domain(subject, list_text, ctx)


def test_error_not_reached_when_earlier_item_decides(ctx: ListContext) -> None:
    assert match_domain("a.example", "a.example : +nosuch", ctx).matched


# -- the host's own addresses ---------------------------------------------------------------------


def test_local_interface_addresses() -> None:
    found = local_interface_addresses()
    assert {"127.0.0.1", "::1"} <= found
    for text in found:
        ipaddress.ip_address(text)  # every entry is a valid address


def test_at_brackets_uses_real_interfaces_by_default() -> None:
    ctx = ListContext(primary_hostname=PRIMARY)
    assert match_host("127.0.0.1", None, "@[]", ctx).matched
    assert match_domain("[127.0.0.1]", "@[]", ctx).matched
    assert not match_host("192.0.2.254", None, "@[]", ctx).matched


def test_default_resolve_host_literal() -> None:
    assert default_resolve_host("127.0.0.1") == ["127.0.0.1"]
