"""dnslists against a DNS server on loopback (tests/support/dnsserver.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mta.receive.acl import AclStage
from mta.receive.acl_dnslists import parse_dnslist_item, reverse_address
from tests.receive.acl_support import AclWorld, acl_world
from tests.support.dnsserver import DnsTestServer

ZONE = {
    # 203.0.113.9 is listed with a reason; 203.0.113.10 with two codes; 192.0.2.66 by a rogue list.
    "9.113.0.203.bl.example": {"A": ["127.0.0.2"], "TXT": ["203.0.113.9 is a known spammer"]},
    "10.113.0.203.bl.example": {"A": ["127.0.0.2", "127.0.0.4"]},
    "66.2.0.192.rogue.example": {"A": ["192.0.2.1"]},
    "9.113.0.203.merged.example": {"A": ["127.0.0.10"]},
    "9.113.0.203.detail.example": {"A": ["127.0.0.10"], "TXT": ["detailed reason"]},
    # IPv6: the 32 nibbles of 2001:db8::1, last first.
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example": {"A": ["127.0.0.3"]},
    # Domain-keyed lists.
    "bad.example.net.dbl.example": {"A": ["127.0.1.2"], "TXT": ["bad domain"]},
    "7.100.51.198.keyed.example": {"A": ["127.0.0.2"]},
}

# The two answers of 203.0.113.10 come in either order.
TWO_ANSWERS = "two answers"

ACL = """\
check:
  deny    dnslists = {lists}
          message = listed at $dnslist_domain ($dnslist_value) for $dnslist_matched: $dnslist_text
  accept
"""


@pytest.fixture
def world_for(tmp_path: Path, dns_server: DnsTestServer):  # type: ignore[no-untyped-def]
    dns_server.set_records(ZONE)
    dns_server.servfail("9.113.0.203.broken.example")

    def make(lists: str) -> AclWorld:
        root = tmp_path / str(len(list(tmp_path.iterdir())))
        root.mkdir()
        return acl_world(
            root, ACL.format(lists=lists), f"acl_smtp_rcpt = check\ndns_servers = {dns_server.server_spec}\n"
        )

    return make


@pytest.mark.parametrize(
    ("lists", "fields", "message"),
    [
        ("bl.example", {}, "listed at bl.example (127.0.0.2) for 203.0.113.9: 203.0.113.9 is a known spammer"),
        ("bl.example", {"host_address": "198.51.100.1"}, None),
        ("nothere.example : bl.example", {}, "listed at bl.example (127.0.0.2) for 203.0.113.9: "
                                             "203.0.113.9 is a known spammer"),
        ("bl.example", {"host_address": "2001:db8::1"}, "listed at bl.example (127.0.0.3) for 2001:db8::1: "),
        ("bl.example=127.0.0.2", {}, "listed at bl.example (127.0.0.2) for 203.0.113.9: "
                                     "203.0.113.9 is a known spammer"),
        ("bl.example=127.0.0.3", {}, None),
        ("bl.example!=127.0.0.3", {}, "listed at bl.example (127.0.0.2) for 203.0.113.9: "
                                      "203.0.113.9 is a known spammer"),
        ("bl.example!=127.0.0.2", {}, None),
        # Two answers: "=" wants one of them listed, "==" wants all of them.
        ("bl.example=127.0.0.4", {"host_address": "203.0.113.10"}, TWO_ANSWERS),
        ("bl.example==127.0.0.4", {"host_address": "203.0.113.10"}, None),
        ("bl.example==127.0.0.2,127.0.0.4", {"host_address": "203.0.113.10"}, TWO_ANSWERS),
        # Bit masks: 127.0.0.2 has bit 2; 127.0.0.4 has bit 4.
        ("bl.example&0.0.0.2", {}, "listed at bl.example (127.0.0.2) for 203.0.113.9: "
                                   "203.0.113.9 is a known spammer"),
        ("bl.example&0.0.0.4", {}, None),
        ("bl.example!&0.0.0.4", {}, "listed at bl.example (127.0.0.2) for 203.0.113.9: "
                                    "203.0.113.9 is a known spammer"),
        # An answer outside 127/8 means the list is broken, not that the host is listed.
        ("rogue.example", {"host_address": "192.0.2.66"}, None),
        # The TXT record of a merged list comes from the more specific zone.
        ("detail.example,merged.example=127.0.0.10", {}, "listed at detail.example (127.0.0.10) for "
                                                         "203.0.113.9: detailed reason"),
        # Explicit keys: a name is not reversed, an address is.
        ("dbl.example/$sender_address_domain", {"sender_address": "x@bad.example.net"},
         "listed at dbl.example (127.0.1.2) for bad.example.net: bad domain"),
        ("keyed.example/<;198.51.100.99;198.51.100.7", {}, "listed at keyed.example (127.0.0.2) for "
                                                          "198.51.100.7: "),
        # A local submission has no address to look up.
        ("bl.example", {"host_address": None}, None),
    ],
)  # fmt: skip
def test_dnslists(world_for: Any, lists: str, fields: dict[str, Any], message: str | None) -> None:
    result = world_for(lists).rcpt("a@example.com", **fields)
    if message is None:
        assert result.verb == "accept"
    elif message == TWO_ANSWERS:
        assert result.verb == "deny"
        assert result.user_message in (
            f"listed at bl.example ({first}, {second}) for 203.0.113.10: "
            for first, second in (("127.0.0.2", "127.0.0.4"), ("127.0.0.4", "127.0.0.2"))
        )
    else:
        assert (result.verb, result.user_message) == ("deny", message)


@pytest.mark.parametrize(
    ("lists", "verb"),
    [
        ("broken.example", "accept"),  # a failed lookup: not listed, by default
        ("+include_unknown : broken.example", "deny"),
        ("+defer_unknown : broken.example", "defer"),
        ("+defer_unknown : bl.example : broken.example", "deny"),  # listed before the failure
    ],
)
def test_a_failed_lookup(world_for: Any, lists: str, verb: str) -> None:
    world = world_for(lists)
    assert world.rcpt("a@example.com").verb == verb
    assert "DNS list lookup defer (probably timeout) for 9.113.0.203.broken.example" in world.mainlog or (
        "bl.example" in lists
    )


def test_a_rogue_answer_is_logged(world_for: Any) -> None:
    world = world_for("rogue.example")
    world.rcpt("a@example.com", host_address="192.0.2.66")
    assert "DNS list lookup for 192.0.2.66 at rogue.example returned 192.0.2.1; not in 127.0/8 and discarded" in (
        world.mainlog
    )


def test_answers_are_remembered_for_the_connection(world_for: Any, dns_server: DnsTestServer) -> None:
    world = world_for("bl.example")
    ctx = world.context(recipient="a@example.com")
    for recipient in ("a@example.com", "b@example.com", "c@example.com"):
        assert world.rcpt(recipient, ctx=ctx).verb == "deny"
    assert dns_server.query_count("9.113.0.203.bl.example") == 2  # A and TXT, once each


def test_dnslist_variables_last_for_the_connection(world_for: Any) -> None:
    world = world_for("bl.example")
    ctx = world.context(recipient="a@example.com")
    world.rcpt("a@example.com", ctx=ctx)
    ctx.stage = AclStage.DATA
    result = world.run(AclStage.DATA, acl="deny message = still $dnslist_domain", ctx=ctx)
    assert result.user_message == "still bl.example"


def test_dnslist_text_cannot_inject_a_header(tmp_path: Path, dns_server: DnsTestServer) -> None:
    # A TXT record holding a newline (\\010 in zone-file syntax).
    dns_server.set_records({"9.113.0.203.evil.example": {"A": ["127.0.0.2"], "TXT": [('"a\\010Bcc: x@y"',)]}})
    world = acl_world(
        tmp_path,
        "check:\n  warn dnslists = evil.example\n    add_header = X-Listed: $dnslist_text\n  accept\n",
        f"acl_smtp_rcpt = check\ndns_servers = {dns_server.server_spec}\n",
    )
    assert world.rcpt("a@example.com").add_headers == ["X-Listed: a\\nBcc: x@y\n"]


def test_auto_keyed_lists_cannot_be_used_for_local_submissions(world_for: Any) -> None:
    world = world_for("bl.example")
    result = world.run(AclStage.NOT_SMTP, acl="accept dnslists = bl.example", host_address=None)
    assert result.error or result.verb == "deny"
    assert result.log_message == "cannot test auto-keyed dnslists condition in non-SMTP ACL"


@pytest.mark.parametrize(
    ("address", "reversed_"),
    [
        ("192.0.2.1", "1.2.0.192"),
        ("::ffff:192.0.2.1", "1.2.0.192"),
        ("2001:db8::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"),
        ("example.net", None),
    ],
)
def test_reverse_address(address: str, reversed_: str | None) -> None:
    assert reverse_address(address) == reversed_


@pytest.mark.parametrize(
    ("item", "want"),
    [
        ("bl.example", ("bl.example", "bl.example", None, False, False, False, None)),
        ("bl.example=127.0.0.2,127.0.0.3",
         ("bl.example", "bl.example", ("127.0.0.2", "127.0.0.3"), False, False, False, None)),
        ("bl.example!==127.0.0.2", ("bl.example", "bl.example", ("127.0.0.2",), False, True, True, None)),
        ("bl.example=&0.0.0.2", ("bl.example", "bl.example", ("0.0.0.2",), True, False, True, None)),
        ("bl.example!&0.0.0.2", ("bl.example", "bl.example", ("0.0.0.2",), True, True, False, None)),
        ("txt.example,bl.example=127.0.0.2/key",
         ("bl.example", "txt.example", ("127.0.0.2",), False, False, False, "key")),
    ],
)  # fmt: skip
def test_parse_dnslist_item(item: str, want: tuple[object, ...]) -> None:
    parsed = parse_dnslist_item(item)
    got = (
        parsed.domain,
        parsed.txt_domain,
        parsed.iplist,
        parsed.bitmask,
        parsed.negated,
        parsed.match_all,
        parsed.keys,
    )
    assert got == want
