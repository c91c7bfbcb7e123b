"""A transport's headers_rewrite: this copy's headers only, not the spool's, not added lines."""

from __future__ import annotations

from pathlib import Path

from mta.transports.appendfile import AppendfileOptions, AppendfileTransport
from mta.transports.write import header_block, header_edits
from tests.transports.transport_helpers import BODY, make_env, make_item, make_message

HEADERS = "From: Carol <carol@example.org>\nTo: alice@example.com, bob@example.com\nSubject: carol@example.org\n"


def transport(**options: object) -> AppendfileTransport:
    made = AppendfileTransport("local_mbox", AppendfileOptions(driver="appendfile", **options), ("test.conf", 7))
    made.check(None)
    return made


def test_headers_rewrite_changes_the_copy_sent_and_nothing_else(tmp_path: Path) -> None:
    box = transport(
        file=f"{tmp_path}/box",
        message_prefix="",
        message_suffix="",
        headers_add="X-Also: carol@example.org",
        # (a colon in a rule is doubled)
        headers_rewrite="*@example.org  $local_part@team.example  f : alice@*  ${uc::$local_part}@$domain  t",
    )
    message = make_message(tmp_path / "m", headers=HEADERS)
    before = [(h.flag, h.text) for h in message.headers]
    box.deliver(message, make_item(), make_env())
    assert (tmp_path / "box").read_bytes() == (
        b"From: Carol <carol@team.example>\n"
        b"To: ALICE@example.com, bob@example.com\n"
        b"Subject: carol@example.org\n"
        b"X-Also: carol@example.org\n\n" + BODY.replace(b"\nFrom what", b"\n>From what")
    )
    assert [(h.flag, h.text) for h in message.headers] == before  # the spool's headers are untouched


def test_a_failing_rule_leaves_the_header_as_it_was(tmp_path: Path) -> None:
    box = transport(file=f"{tmp_path}/box", headers_rewrite='*@example.org  "not an address"  f')
    message = make_message(tmp_path / "m", headers=HEADERS)
    edits = header_edits(box, message, [make_item()], make_env(), message.sender_address)
    assert edits.headers is not None
    assert header_block(edits.headers).decode() == HEADERS
