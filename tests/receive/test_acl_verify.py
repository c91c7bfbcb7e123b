"""verify = recipient / sender / helo / header_syntax through real routing and a loopback DNS server.

The configuration (tests/receive/acl_support.py) has an alias file (lists,
forwards, :fail:, :defer:, a loop), localuser for the system's users (root
exists everywhere; "nosuchuser" nowhere) and a domainlist router for
example.org and backup.example.net.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mta.receive.acl import AclStage
from mta.receive.acl_log import rejection_log_lines
from tests.receive.acl_support import acl_world
from tests.support.dnsserver import DnsTestServer

RCPT = "check:\n  require verify = recipient\n  accept\n"


@pytest.mark.parametrize(
    ("recipient", "verb", "message"),
    [
        ("root@example.com", "accept", None),
        ("ROOT@Example.COM", "accept", None),
        ("nosuchuser@example.com", "deny", "Unknown user"),
        ("list@example.com", "accept", None),  # several children: the list itself verifies
        ("fwd@example.com", "accept", None),  # one child: verified in its turn (root)
        ("gone@example.com", "deny", "Gone away, no forwarding address"),
        ("later@example.com", "defer", None),
        ("far@example.com", "accept", None),  # to example.org, routed by domainlist
        ("someone@backup.example.net", "accept", None),
        ("someone@unrouted.example", "deny", "Unrouteable address"),
        ("loop1@example.com", "deny", "Unknown user"),  # the loop ends at localuser
    ],
)
def test_verify_recipient(tmp_path: Path, recipient: str, verb: str, message: str | None) -> None:
    world = acl_world(tmp_path, RCPT, "acl_smtp_rcpt = check\n")
    result = world.rcpt(recipient)
    assert (result.verb, result.user_message) == (verb, message)
    if verb == "deny":
        assert result.log_message == message
    if verb == "defer":
        assert result.log_message == "Mailbox being moved"  # logged, not told


def test_verify_recipient_options(tmp_path: Path) -> None:
    world = acl_world(
        tmp_path,
        "check:\n  require verify = recipient/defer_ok\n  accept\n"
        "redirect_ok:\n  require verify = recipient/success_on_redirect\n  accept\n",
        "acl_smtp_rcpt = check\n",
    )
    assert world.rcpt("later@example.com").verb == "accept"
    aliases = (tmp_path / "aliases").read_text() + "tonobody: nosuchuser\n"
    (tmp_path / "aliases").write_text(aliases)
    assert world.rcpt("tonobody@example.com").verb == "deny"
    assert world.run(AclStage.RCPT, acl="redirect_ok", recipient="tonobody@example.com").verb == "accept"


def test_warn_with_a_failing_verify_sets_acl_verify_message_only(tmp_path: Path) -> None:
    world = acl_world(
        tmp_path,
        "check:\n  warn !verify = recipient\n    log_message = unverified: $acl_verify_message\n"
        "    set acl_m_why = $acl_verify_message\n  deny message = why=$acl_m_why\n",
        "acl_smtp_rcpt = check\n",
    )
    assert world.rcpt("nosuchuser@example.com").user_message == "why=Unknown user"
    assert "Warning: unverified: Unknown user" in world.mainlog


SENDER = "check:\n  require verify = sender\n  accept\n"


@pytest.mark.parametrize(
    ("sender", "verb", "message"),
    [
        ("root@example.com", "accept", None),
        ("", "accept", None),  # a bounce has no sender to verify
        ("nosuchuser@example.com", "deny", "Sender verify failed"),
        ("later@example.com", "defer", None),
        ("someone@example.org", "accept", None),
    ],
)
def test_verify_sender(tmp_path: Path, sender: str, verb: str, message: str | None) -> None:
    world = acl_world(tmp_path, SENDER, "acl_smtp_rcpt = check\n")
    result = world.rcpt("root@example.com", sender_address=sender)
    assert (result.verb, result.user_message) == (verb, message)


def test_a_failed_sender_verify_is_logged_with_its_reason(tmp_path: Path) -> None:
    world = acl_world(tmp_path, SENDER, "acl_smtp_rcpt = check\n")
    ctx = world.context(sender_address="nosuchuser@example.com", recipient="root@example.com")
    result = world.rcpt("root@example.com", ctx=ctx)
    assert result.sender_verify_failure == ("nosuchuser@example.com", "Unknown user", False)
    assert rejection_log_lines(result, ctx) == [
        "H=(client.example.net) [203.0.113.9] sender verify fail for <nosuchuser@example.com>: Unknown user",
        "H=(client.example.net) [203.0.113.9] F=<nosuchuser@example.com> rejected RCPT <root@example.com>: "
        "Sender verify failed",
    ]
    deferred = world.rcpt("root@example.com", sender_address="later@example.com")
    assert rejection_log_lines(deferred, ctx)[0].endswith(
        "sender verify defer for <later@example.com>: Mailbox being moved"
    )


def test_sender_verification_is_done_once_per_message(tmp_path: Path) -> None:
    world = acl_world(tmp_path, SENDER, "acl_smtp_rcpt = check\n")
    ctx = world.context(sender_address="root@example.com")
    lines: list[str] = []
    ctx.trace = lines.append
    for recipient in ("root@example.com", "fwd@example.com"):
        assert world.rcpt(recipient, ctx=ctx).verb == "accept"
    assert lines.count("using cached sender verify result") == 1


def test_verify_sender_equals_and_no_details(tmp_path: Path) -> None:
    world = acl_world(
        tmp_path,
        "check:\n  require verify = sender=nosuchuser@example.com/no_details\n  accept\n"
        "other:\n  require verify = sender=root\n  accept\n",
        "acl_smtp_rcpt = check\n",
    )
    result = world.rcpt("root@example.com")
    assert result.verb == "deny" and result.sender_verify_failure is None
    assert world.run(AclStage.RCPT, acl="other", recipient="root@example.com").verb == "accept"  # qualified


def test_verify_sender_at_mail(tmp_path: Path) -> None:
    world = acl_world(tmp_path, SENDER, "acl_smtp_mail = check\n")
    assert world.run(AclStage.MAIL, sender_address="nosuchuser@example.com").verb == "deny"
    assert world.run(AclStage.MAIL, sender_address="root@example.com").verb == "accept"


# -- helo ----------------------------------------------------------------------------


HELO = "check:\n  require verify = helo\n  accept\n"


@pytest.fixture
def helo_world(tmp_path: Path, dns_server: DnsTestServer):  # type: ignore[no-untyped-def]
    dns_server.set_records(
        {
            "client.example.net": {"A": ["203.0.113.9"], "AAAA": ["2001:db8:2::9"]},
            "elsewhere.example.net": {"A": ["198.51.100.1"]},
        }
    )
    dns_server.servfail("broken.example.net")
    return acl_world(tmp_path, HELO, f"acl_smtp_helo = check\ndns_servers = {dns_server.server_spec}\n")


@pytest.mark.parametrize(
    ("helo", "fields", "verb"),
    [
        ("client.example.net", {}, "accept"),  # its A record is the client's address
        ("client.example.net", {"host_address": "2001:db8:2::9"}, "accept"),
        ("elsewhere.example.net", {}, "deny"),
        ("nonexistent.example.net", {}, "deny"),
        ("broken.example.net", {}, "deny"),  # a DNS failure does not verify
        ("[203.0.113.9]", {}, "accept"),
        ("[IPv6:2001:db8:2::9]", {"host_address": "2001:db8:2::9"}, "accept"),
        ("[198.51.100.1]", {}, "deny"),
        ("mx.example.net", {"host_name": "MX.example.net"}, "accept"),  # its verified name
        (None, {}, "deny"),
        ("anything", {"host_address": None}, "accept"),  # -bs: no IP address to check
    ],
)
def test_verify_helo(helo_world, helo: str | None, fields: dict[str, object], verb: str) -> None:  # type: ignore[no-untyped-def]
    assert helo_world.run(AclStage.HELO, helo_name=helo, **fields).verb == verb


def test_helo_is_verified_once_per_connection(helo_world, dns_server: DnsTestServer) -> None:  # type: ignore[no-untyped-def]
    ctx = helo_world.context(AclStage.HELO, helo_name="client.example.net")
    for _ in range(3):
        assert helo_world.run(AclStage.HELO, ctx=ctx).verb == "accept"
    assert dns_server.query_count() <= 2  # one A and one AAAA query


# -- header_syntax ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "fields", "verb"),
    [
        (["From: Joe <joe@example.net>\n", 'To: a@example.com, "B" <b@example.com>\n'], {}, "accept"),
        (["To: undisclosed-recipients:;\n", "Subject: @@@\n"], {}, "accept"),
        (["Cc: a@example.com,\n\tb@example.com\n"], {}, "accept"),
        (["From: <joe@example.net\n"], {}, "deny"),
        (["To: @\n"], {}, "deny"),
        (["Reply-To: a@b@c\n"], {}, "deny"),
        (["From: joe\n"], {}, "deny"),  # unqualified, from a remote host
        (["From: joe\n"], {"host_address": None}, "accept"),  # a local submission may
        (["Resent-To: a b c\n"], {}, "deny"),
    ],
)
def test_verify_header_syntax(tmp_path: Path, headers: list[str], fields: dict[str, object], verb: str) -> None:
    world = acl_world(
        tmp_path,
        "check:\n  deny !verify = header_syntax\n    message = header syntax\n"
        "    log_message = header syntax ($acl_verify_message)\n  accept\n",
        "acl_smtp_data = check\n",
    )
    result = world.run(AclStage.DATA, header_lines=lambda: headers, recipients=["root@example.com"], **fields)
    assert result.verb == verb
    if verb == "deny":
        assert result.user_message == "header syntax"
        assert result.log_message is not None and result.log_message.startswith("header syntax (")
