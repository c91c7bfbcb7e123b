"""ACL conditions and modifiers, one table per kind, against real lists, files and logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mta.receive.acl import AclStage
from mta.taint import is_tainted
from tests.receive.acl_support import acl_world

# (condition, context fields, holds?)
CONDITIONS: list[tuple[str, dict[str, Any], bool]] = [
    ("hosts = 203.0.113.9", {}, True),
    ("hosts = 203.0.113.0/24", {}, True),
    ("hosts = 198.51.100.0/24", {}, False),
    ("hosts = :", {}, False),
    ("hosts = :", {"host_address": None}, True),
    ("hosts = +relay_from_hosts", {"host_address": "192.0.2.200"}, True),
    ("hosts = +relay_from_hosts", {"host_address": "2001:db8:1::5"}, True),
    ("hosts = <; 2001:db8::/32", {"host_address": "2001:db8:77::1"}, True),
    ("hosts = !203.0.113.9", {}, False),
    ("hosts = *.example.net", {"host_name": "mx.example.net"}, True),
    ("hosts = *.example.net", {}, False),  # no verified name: the item cannot match
    ("hosts = localhost", {"host_address": "127.0.0.1"}, True),  # resolved, in a thread
    ("domains = example.com", {}, True),
    ("domains = EXAMPLE.COM", {}, True),
    ("domains = +local_domains", {"recipient": "u@Other.Example.COM"}, True),
    ("domains = +local_domains", {"recipient": "u@example.com."}, False),
    ("domains = *.example.com", {"recipient": "u@sub.example.com"}, True),
    ("local_parts = user", {"recipient": "User@example.com"}, True),
    ("local_parts = ^[.] : ^.*[@%!/|]", {"recipient": '"a@b"@example.com'}, True),
    ("local_parts = ^[.] : ^.*[@%!/|]", {"recipient": "a.b@example.com"}, False),
    ("local_parts = lsearch;{root}/aliases", {"recipient": "fwd@example.com"}, True),
    ("recipients = user@example.com", {}, True),
    ("recipients = *@example.com", {}, True),
    ("recipients = *@example.org", {}, False),
    ("senders = :", {"sender_address": ""}, True),
    ("senders = :", {}, False),
    ("senders = sender@example.net", {}, True),
    ("senders = ^sender@", {}, True),
    ("sender_domains = example.net", {}, True),
    ("sender_domains = example.net", {"sender_address": ""}, False),
    ("authenticated = *", {}, False),
    ("authenticated = *", {"authenticator": "PLAIN", "authenticated_id": "joe"}, True),
    ("authenticated = cram_md5 : plain", {"authenticator": "PLAIN"}, True),
    ("authenticated = cram_md5", {"authenticator": "PLAIN"}, False),
    ("encrypted = *", {}, False),
    ("encrypted = *", {"tls_cipher": "TLS1.3:TLS_AES_256_GCM_SHA384:256"}, True),
    ("encrypted = TLS_AES_256_GCM_SHA384", {"tls_cipher": "TLS1.3:TLS_AES_256_GCM_SHA384:256"}, True),
    ("encrypted = TLS_AES_128_GCM_SHA256", {"tls_cipher": "TLS1.3:TLS_AES_256_GCM_SHA384:256"}, False),
    ("condition = yes", {}, True),
    ("condition = TRUE", {}, True),
    ("condition = 1", {}, True),
    ("condition = 0", {}, False),
    ("condition = -0", {}, False),
    ("condition = ", {}, False),
    ("condition = false", {}, False),
    ("condition = ${if eq{$sender_helo_name}{client.example.net}}", {}, True),
    ("condition = ${if >{$rcpt_count}{2}}", {"rcpt_count": 3}, True),
    ("condition = ${if eq{$local_part@$domain}{user@example.com}}", {"recipient": "USER@Example.com"}, True),
    ("condition = ${if eq{$smtp_command_argument}{TO:<user@example.com>}}", {}, True),
    ("!condition = no", {}, True),
    ("verify = certificate", {}, False),
    ("verify = certificate", {"tls_certificate_verified": True}, True),
]


@pytest.mark.parametrize(("condition", "fields", "holds"), CONDITIONS, ids=[f"{c} {f}" for c, f, _ in CONDITIONS])
def test_conditions(tmp_path: Path, condition: str, fields: dict[str, Any], holds: bool) -> None:
    condition = condition.replace("{root}", str(tmp_path))
    world = acl_world(tmp_path, f"check:\n  accept {condition}\n", "acl_smtp_rcpt = check\n")
    recipient = fields.pop("recipient", "user@example.com")
    assert world.rcpt(recipient, **fields).verb == ("accept" if holds else "deny")


def test_data_of_the_list_item_that_matched(tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text("203.0.113.9: known spammer\n")
    world = acl_world(
        tmp_path,
        f"check:\n  deny hosts = net-lsearch;{tmp_path}/hosts\n    message = $host_data\n"
        f"  deny local_parts = lsearch;{tmp_path}/aliases\n    message = alias of $local_part_data\n"
        "  deny senders = *@example.net\n    message = sender $sender_data\n",
        "acl_smtp_rcpt = check\n",
    )
    assert world.rcpt("a@example.com").user_message == "known spammer"
    assert world.rcpt("fwd@example.com", host_address="198.51.100.1").user_message == "alias of root@example.com"


def test_host_lists_within_one_connection(tmp_path: Path) -> None:
    """A host list of addresses is matched once per connection (the RCPT ACL asks it for every
    recipient); one that reads a file is read again at each command, so an edit shows at once."""
    (tmp_path / "hosts").write_text("203.0.113.9: first\n")
    world = acl_world(
        tmp_path,
        f"check:\n  deny hosts = net-lsearch;{tmp_path}/hosts\n    message = $host_data\n"
        "  accept hosts = +relay_from_hosts\n    message = $host_data\n",
        "acl_smtp_rcpt = check\n",
    )
    ctx = world.context(AclStage.RCPT)
    assert world.rcpt("a@example.com", ctx).user_message == "first"
    (tmp_path / "hosts").write_text("203.0.113.9: second\n")
    assert world.rcpt("b@example.com", ctx).user_message == "second"
    relayed = world.context(AclStage.RCPT, host_address="192.0.2.7")
    for recipient in ("c@example.org", "d@example.org"):
        assert world.rcpt(recipient, relayed).verb == "accept"
    assert next(iter(relayed.connection.host_matches.values())).matched
    assert world.rcpt("e@example.org", world.context(AclStage.RCPT, host_address="192.0.2.7")).verb == "accept"
    assert world.rcpt("f@example.org", world.context(AclStage.RCPT)).verb == "deny"


def test_caseful_local_part_control(tmp_path: Path) -> None:
    world = acl_world(
        tmp_path,
        "check:\n  warn set acl_m_l = $local_part\n  warn control = caseful_local_part\n"
        "    set acl_m_c = $local_part\n    control = caselower_local_part\n    set acl_m_after = $local_part\n"
        "  deny message = $acl_m_l $acl_m_c $acl_m_after\n",
        "acl_smtp_rcpt = check\n",
    )
    assert world.rcpt("MixedCase@example.com").user_message == "mixedcase MixedCase mixedcase"


# -- variables and taint ------------------------------------------------------------


def test_set_keeps_message_and_connection_variables_where_the_session_keeps_them(tmp_path: Path) -> None:
    world = acl_world(
        tmp_path,
        "check:\n  warn set acl_m_count = ${eval:0$acl_m_count+1}\n    set acl_c_seen = ${eval:0$acl_c_seen+1}\n"
        "  deny message = m=$acl_m_count c=$acl_c_seen\n",
        "acl_smtp_rcpt = check\n",
    )
    ctx = world.context(recipient="a@example.com")
    assert world.rcpt("a@example.com", ctx=ctx).user_message == "m=1 c=1"
    assert world.rcpt("b@example.com", ctx=ctx).user_message == "m=2 c=2"
    assert (ctx.message_vars, ctx.connection_vars) == ({"acl_m_count": "2"}, {"acl_c_seen": "2"})
    ctx.new_message()
    assert world.rcpt("c@example.com", ctx=ctx).user_message == "m=1 c=3"


@pytest.mark.parametrize(
    ("field", "variable"),
    [
        ("helo_name", "sender_helo_name"),
        ("sender_address", "sender_address"),
        ("authenticated_id", "authenticated_id"),
        ("host_name", "sender_host_name"),
        ("recipient", "local_part"),
    ],
)
def test_network_values_are_tainted_data_never_expanded(tmp_path: Path, field: str, variable: str) -> None:
    hostile = "${run{/bin/touch " + str(tmp_path / "pwned") + "}}${readfile{/etc/passwd}}"
    world = acl_world(
        tmp_path,
        f"check:\n  warn set acl_m_v = ${variable}\n  deny message = got $acl_m_v\n",
        "acl_smtp_rcpt = check\n",
    )
    ctx = world.context(recipient="a@example.com")
    if field == "recipient":
        hostile = hostile.lower()
        result = world.rcpt(f'"{hostile}"@example.com', ctx=ctx)
    else:
        setattr(ctx, field, hostile)
        result = world.rcpt("a@example.com", ctx=ctx)
    assert result.user_message == "got " + hostile
    assert is_tainted(ctx.message_vars["acl_m_v"])
    assert not (tmp_path / "pwned").exists()


def test_control_characters_from_the_client_cannot_break_a_header_or_a_log_line(tmp_path: Path) -> None:
    world = acl_world(
        tmp_path,
        "check:\n  warn add_header = X-Helo: $sender_helo_name\n    log_message = helo $sender_helo_name\n  accept\n",
        "acl_smtp_rcpt = check\n",
    )
    result = world.rcpt("a@example.com", helo_name="evil\r\nBcc: victim@example.org")
    assert result.add_headers == ["X-Helo: evil\\r\\nBcc: victim@example.org\n"]
    warning = [line for line in world.mainlog.splitlines() if "Warning:" in line]
    assert len(warning) == 1 and "Bcc: victim" in warning[0]
    assert not any(line.startswith("Bcc:") for line in world.mainlog.splitlines())


# -- modifiers ---------------------------------------------------------------------


def test_add_header(tmp_path: Path) -> None:
    world = acl_world(
        tmp_path,
        "check:\n"
        "  warn add_header = X-One: 1\n"
        "  warn add_header = no colon here\n"
        "  warn add_header = X-Two: 2\\nX-Three: 3\\n\\tfolded\n"
        "  warn add_header = :at_start:X-Top: t\n"
        "  warn hosts = 10.0.0.1\n    add_header = X-Never: n\n"
        "  warn add_header = X-Before: b\n    hosts = 10.0.0.1\n"
        "  accept\n",
        "acl_smtp_rcpt = check\n",
    )
    ctx = world.context(recipient="a@example.com")
    result = world.rcpt("a@example.com", ctx=ctx)
    assert result.add_headers == [
        "X-One: 1\n",
        "X-ACL-Warn: no colon here\n",
        "X-Two: 2\n",
        "X-Three: 3\n\tfolded\n",
        "X-Top: t\n",
        "X-Before: b\n",
    ]
    # The same lines again for the next recipient of the message are not added twice.
    assert world.rcpt("b@example.com", ctx=ctx).add_headers == []
    assert ctx.message.added_headers == result.add_headers


def test_warn_message_is_a_header_only_when_all_conditions_hold(tmp_path: Path) -> None:
    world = acl_world(
        tmp_path,
        "check:\n  warn message = X-Warn: listed\n    hosts = 203.0.113.9\n"
        "  warn message = X-Other: no\n    hosts = 10.0.0.1\n  accept\n",
        "acl_smtp_rcpt = check\n",
    )
    assert world.rcpt("a@example.com").add_headers == ["X-Warn: listed\n"]


def test_warn_log_message_is_logged_once_per_message(tmp_path: Path) -> None:
    world = acl_world(
        tmp_path,
        "check:\n  warn log_message = suspicious $sender_address\n  accept\n",
        "acl_smtp_rcpt = check\n",
    )
    ctx = world.context(recipient="a@example.com")
    world.rcpt("a@example.com", ctx=ctx)
    world.rcpt("b@example.com", ctx=ctx)
    lines = [line for line in world.mainlog.splitlines() if "Warning" in line]
    assert len(lines) == 1
    assert lines[0].endswith("H=(client.example.net) [203.0.113.9] Warning: suspicious sender@example.net")
    ctx.new_message()
    world.rcpt("c@example.com", ctx=ctx)
    assert world.mainlog.count("Warning: suspicious") == 2


def test_a_warn_that_defers_is_logged_and_skipped(tmp_path: Path) -> None:
    world = acl_world(
        tmp_path, "check:\n  warn condition = maybe\n    log_message = never\n  accept\n", "acl_smtp_rcpt = check\n"
    )
    assert world.rcpt("a@example.com").verb == "accept"
    assert "Warning: ACL 'warn' statement skipped (in ACL \"check\" at line" in world.mainlog
    assert 'condition test deferred: invalid "condition" value "maybe"' in world.mainlog


def test_logwrite_to_the_logs_named(tmp_path: Path) -> None:
    world = acl_world(
        tmp_path,
        "check:\n  warn logwrite = to main $local_part\n  warn logwrite = :reject: to reject\n"
        "  warn logwrite = :panic: to panic\n  accept\n",
        "acl_smtp_rcpt = check\n",
    )
    world.rcpt("who@example.com")
    assert "to main who" in world.mainlog
    assert "to reject" in world.rejectlog and "to reject" not in world.mainlog
    assert "to panic" in world.paniclog


def test_delay_is_skipped_when_checking_with_bh(tmp_path: Path) -> None:
    world = acl_world(tmp_path, "check:\n  accept delay = 1h\n", "acl_smtp_rcpt = check\n")
    lines: list[str] = []
    assert world.rcpt("a@example.com", host_checking=True, trace=lines.append).verb == "accept"
    assert "delay modifier requests 3600-second delay" in lines
    assert "delay skipped in -bh checking mode" in lines
    world = acl_world(tmp_path, "check:\n  accept delay = 0s\n", "acl_smtp_rcpt = check\n")
    assert world.rcpt("a@example.com").verb == "accept"


@pytest.mark.parametrize(
    ("control", "stage", "check"),
    [
        ("submission/domain=example.com/name=The Boss", AclStage.RCPT,
         lambda ctx: (ctx.message.submission.domain, ctx.message.submission.name) == ("example.com", "The Boss")),
        ("no_pipelining", AclStage.HELO, lambda ctx: ctx.connection.pipelining is False),
        ("queue_only", AclStage.RCPT, lambda ctx: ctx.message.queue_only),
        ("freeze", AclStage.DATA, lambda ctx: ctx.message.freeze),
        ("dkim_disable_verify", AclStage.RCPT, lambda ctx: True),
    ],
)  # fmt: skip
def test_controls_are_left_in_the_context_for_the_session(
    tmp_path: Path, control: str, stage: AclStage, check: Any
) -> None:
    world = acl_world(tmp_path, f"check:\n  accept control = {control}\n")
    ctx = world.context(stage, recipient="a@example.com")
    assert world.run(stage, acl="check", ctx=ctx).verb == "accept"
    assert check(ctx)


def test_a_control_in_the_wrong_acl_is_an_error_at_run_time_too(tmp_path: Path) -> None:
    world = acl_world(tmp_path, "check:\n  accept control = ${if eq{a}{a}{submission}}\n")
    result = world.run(AclStage.DATA, acl="check")
    assert result.error and result.log_message == 'cannot use "control=submission" in DATA ACL'


def test_log_reject_target(tmp_path: Path) -> None:
    world = acl_world(tmp_path, "check:\n  deny log_reject_target =\n", "acl_smtp_rcpt = check\n")
    assert world.rcpt("a@example.com").log_reject_target == frozenset()
    world = acl_world(tmp_path, "check:\n  deny log_reject_target = reject\n", "acl_smtp_rcpt = check\n")
    assert world.rcpt("a@example.com").log_reject_target == frozenset({"reject"})


def test_continue_is_evaluated_for_its_side_effects_only(tmp_path: Path) -> None:
    world = acl_world(tmp_path, "check:\n  accept continue = ${if eq{a}{b}{x}{y}}\n", "acl_smtp_rcpt = check\n")
    assert world.rcpt("a@example.com").verb == "accept"


def test_a_list_that_reads_a_file_does_not_block_the_event_loop(tmp_path: Path) -> None:
    """A FIFO as the lookup file: opening it blocks until a writer comes; other sessions go on meanwhile."""
    import asyncio
    import os

    fifo = tmp_path / "slow-file"
    os.mkfifo(fifo)
    world = acl_world(tmp_path, f"slow:\n  accept local_parts = lsearch;{fifo}\nfast:\n  accept\n")

    def writer() -> None:
        with open(fifo, "w") as f:
            f.write("someone: x\n")

    async def sessions() -> tuple[str, str]:
        slow_ctx = world.context(recipient="someone@example.com")
        slow = asyncio.create_task(world.engine.run("slow", slow_ctx))
        await asyncio.sleep(0.05)
        fast = await world.engine.run("fast", world.context(recipient="x@example.com"))
        assert not slow.done()  # still waiting for the file, in a thread
        await asyncio.to_thread(writer)
        return fast.verb, (await slow).verb

    assert asyncio.run(sessions()) == ("accept", "accept")
