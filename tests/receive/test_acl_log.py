"""Rejection log lines and replies in Exim's shapes (tests/data/exim-samples: rejectlog.txt, mainlog.txt)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mta.log import Logger
from mta.receive.acl import AclContext, AclResult, AclStage
from mta.receive.acl_log import (
    host_and_ident,
    log_rejection,
    reject_log_details,
    rejection_log_lines,
    rejection_reply,
    sender_fullhost,
)
from tests.receive.acl_support import acl_world
from tests.support.samples import sample_text

_STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", re.M)


def test_rcpt_rejections_match_exims_reject_log(tmp_path: Path) -> None:
    """The swaks session of the samples, through an ACL like samples.conf's: the same two lines."""
    world = acl_world(
        tmp_path,
        "check:\n  accept hosts = :\n  deny message = restricted characters in address\n"
        "    local_parts = ^[.] : ^.*[@%!/|]\n  accept hosts = +relay_from_hosts\n"
        "  require message = relay not permitted\n    domains = +local_domains : +relay_to_domains\n"
        "  require verify = recipient\n  accept\n",
        "acl_smtp_rcpt = check\n",
    )
    logger = world.engine.runtime.logger
    ctx = AclContext(AclStage.RCPT, host_address="127.0.0.1", helo_name="client.example.org",
                     sender_address="carol@example.org")  # fmt: skip
    for recipient in ("bob@example.net", "root@example.com", "mallory@example.com"):
        ctx.recipient, ctx.smtp_command = recipient, f"RCPT TO:<{recipient}>"
        result = world.rcpt(recipient, ctx=ctx)
        if not result.accepted:
            log_rejection(logger, result, ctx)
    theirs = _STAMP.sub("", sample_text("rejectlog.txt"))
    assert _STAMP.sub("", world.rejectlog) == theirs
    assert _STAMP.sub("", world.mainlog) == theirs


@pytest.mark.parametrize(
    ("fields", "selectors", "want"),
    [
        ({"host_address": "192.0.2.1", "helo_name": "client.example.org"}, (), "H=(client.example.org) [192.0.2.1]"),
        ({"host_address": "192.0.2.1"}, (), "H=[192.0.2.1]"),
        ({"host_address": "192.0.2.1", "helo_name": "[192.0.2.1]"}, (), "H=[192.0.2.1]"),
        ({"host_address": "2001:db8::1", "helo_name": "[IPv6:2001:DB8::1]"}, (), "H=[2001:db8::1]"),
        ({"host_address": "192.0.2.1", "helo_name": "mx.example.org", "host_name": "MX.example.org"}, (),
         "H=MX.example.org [192.0.2.1]"),
        ({"host_address": "192.0.2.1", "helo_name": "other", "host_name": "mx.example.org"}, (),
         "H=mx.example.org (other) [192.0.2.1]"),
        ({"host_address": "192.0.2.1", "host_port": 40000, "interface_address": "192.0.2.25", "interface_port": 25},
         ("incoming_port", "incoming_interface"), "H=[192.0.2.1]:40000 I=[192.0.2.25]:25"),
        ({"host_address": None, "ident": "alice"}, (), "U=alice"),
        ({"host_address": None}, (), "U=unknown"),
        ({"host_address": "192.0.2.1", "helo_name": "evil\r\n2026-01-01 forged line"}, (),
         "H=(evil\\r\\n2026-01-01 forged line) [192.0.2.1]"),
    ],
)  # fmt: skip
def test_host_and_ident(fields: dict[str, object], selectors: tuple[str, ...], want: str) -> None:
    ctx = AclContext(AclStage.RCPT, **fields)  # type: ignore[arg-type]
    assert host_and_ident(ctx, frozenset(selectors)) == want


def test_sender_fullhost_of_a_local_session_is_none() -> None:
    assert sender_fullhost(AclContext(AclStage.MAIL)) is None


@pytest.mark.parametrize(
    ("stage", "command", "verb", "want"),
    [
        (AclStage.RCPT, "RCPT TO:<bob@example.net> NOTIFY=NEVER", "deny",
         "H=(c) [192.0.2.1] F=<a@b.example> rejected RCPT <bob@example.net>: no"),
        (AclStage.MAIL, "MAIL FROM:<a@b.example> SIZE=100", "deny",
         "H=(c) [192.0.2.1] rejected MAIL <a@b.example>: no"),
        (AclStage.RCPT, "RCPT TO:<bob@example.net>", "defer",
         "H=(c) [192.0.2.1] F=<a@b.example> temporarily rejected RCPT <bob@example.net>: no"),
        (AclStage.CONNECT, None, "deny", 'H=(c) [192.0.2.1] rejected connection in "connect" ACL: no'),
        (AclStage.HELO, "EHLO c", "drop", "H=(c) [192.0.2.1] rejected EHLO or HELO c: no"),
        (AclStage.AUTH, "AUTH PLAIN c2VjcmV0AHNlY3JldABzZWNyZXQ=", "deny", "H=(c) [192.0.2.1] rejected AUTH PLAIN: no"),
        (AclStage.PREDATA, "DATA", "deny", "H=(c) [192.0.2.1] rejected DATA: no"),
        (AclStage.DATA, None, "deny", "H=(c) [192.0.2.1] F=<a@b.example> rejected after DATA: no"),
        (AclStage.VRFY, "VRFY postmaster", "deny", "H=(c) [192.0.2.1] rejected VRFY postmaster: no"),
        (AclStage.NOT_SMTP, None, "deny", "F=<a@b.example> rejected by non-SMTP ACL: no"),
    ],
)  # fmt: skip
def test_rejection_lines_per_stage(stage: AclStage, command: str | None, verb: str, want: str) -> None:
    ctx = AclContext(stage, host_address="192.0.2.1", helo_name="c", sender_address="a@b.example",
                     smtp_command=command)  # fmt: skip
    assert rejection_log_lines(AclResult(verb, log_message="no\nsecond line"), ctx) == [want]


def test_authenticated_and_tls_clients_show_in_the_line() -> None:
    ctx = AclContext(AclStage.RCPT, host_address="192.0.2.1", helo_name="c", sender_address="a@b.example",
                     authenticator="PLAIN", authenticated_id="joe", tls_cipher="TLS1.3:TLS_AES_256_GCM_SHA384:256",
                     smtp_command="RCPT TO:<x@y.example>")  # fmt: skip
    selectors = frozenset({"tls_cipher", "tls_certificate_verified"})
    [line] = rejection_log_lines(AclResult("deny", log_message="no"), ctx, selectors)
    assert line == (
        "H=(c) [192.0.2.1] X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=no F=<a@b.example> A=PLAIN:joe "
        "rejected RCPT <x@y.example>: no"
    )


def test_client_text_cannot_forge_a_log_line(tmp_path: Path) -> None:
    logger = Logger(str(tmp_path))
    ctx = AclContext(AclStage.RCPT, host_address="192.0.2.1", helo_name="c\n2026-01-01 00:00:00 forged",
                     sender_address="a@b.example", smtp_command="RCPT TO:<x\r\n@y>")  # fmt: skip
    log_rejection(logger, AclResult("deny", log_message="because\rsome\nthing"), ctx)
    lines = (tmp_path / "log" / "mainlog").read_text().splitlines()
    assert len(lines) == 1 and "forged" in lines[0]


def test_the_reject_log_adds_the_envelope_and_headers_after_data(tmp_path: Path) -> None:
    logger = Logger(str(tmp_path))
    headers = ["Received: from x\n\tby y\n", "From: a@b.example\n", "Subject: hi\n", "Message-Id: <1@b>\n"]
    ctx = AclContext(AclStage.DATA, host_address="192.0.2.1", helo_name="c", sender_address="a@b.example",
                     recipients=[f"r{n}@example.com" for n in range(7)], header_lines=lambda: headers)  # fmt: skip
    assert reject_log_details(ctx)[:4] == [
        "Envelope-from: <a@b.example>", "Envelope-to: <r0@example.com>", "    <r1@example.com>", "    <r2@example.com>",
    ]  # fmt: skip
    log_rejection(logger, AclResult("deny", log_message="header syntax"), ctx)
    reject = _STAMP.sub("", (tmp_path / "log" / "rejectlog").read_text())
    assert reject.endswith(
        "    <r4@example.com>\n    ...\nP Received: from x\n\\tby y\nF From: a@b.example\n  Subject: hi\n"
        "I Message-Id: <1@b>\n"
    )
    assert "Envelope" not in (tmp_path / "log" / "mainlog").read_text()


@pytest.mark.parametrize(
    ("targets", "main", "reject"),
    [
        (frozenset({"main", "reject"}), True, True),
        (frozenset({"reject"}), False, True),
        (frozenset({"main"}), True, False),
        (frozenset(), False, False),
    ],
)
def test_log_reject_target_chooses_the_logs(tmp_path: Path, targets: frozenset[str], main: bool, reject: bool) -> None:
    logger = Logger(str(tmp_path))
    ctx = AclContext(AclStage.RCPT, host_address="192.0.2.1", smtp_command="RCPT TO:<x@y>")
    log_rejection(logger, AclResult("deny", log_message="no", log_reject_target=targets), ctx)
    assert (tmp_path / "log" / "mainlog").exists() == main
    assert (tmp_path / "log" / "rejectlog").exists() == reject


@pytest.mark.parametrize(
    ("result", "stage", "want"),
    [
        (AclResult("deny"), AclStage.RCPT, ("550", ["Administrative prohibition"])),
        (AclResult("drop", user_message="bye"), AclStage.MAIL, ("550", ["bye"])),
        (AclResult("defer"), AclStage.RCPT, ("451", ["Temporary local problem - please try later"])),
        (AclResult("defer", user_message="greylisted"), AclStage.RCPT, ("451", ["greylisted"])),
        (AclResult("deny", user_message="no", code="554 5.7.1"), AclStage.DATA, ("554 5.7.1", ["no"])),
        (AclResult("deny"), AclStage.VRFY, ("252", ["Administrative prohibition"])),
    ],
)
def test_rejection_reply(result: AclResult, stage: AclStage, want: tuple[str, list[str]]) -> None:
    assert rejection_reply(result, stage) == want
