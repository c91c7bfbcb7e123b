"""Exim filters through real deliveries: a user's filter file and the system filter (issue 17).

Each test is one or two real `mta -odi` runs as root with real users; what
the filter language does command by command is tested through -bf
(tests/route/test_filter_corpus.py) and in-process (tests/route/test_filter.py).
"""

from __future__ import annotations

import mailbox
import os

from tests.e2e.conftest import DOMAIN, E2E, message_text


def read_mbox(path) -> list[mailbox.mboxMessage]:  # type: ignore[no-untyped-def]
    box = mailbox.mbox(path, create=False)
    try:
        return list(box)
    finally:
        box.close()


def test_a_users_filter_delivers_saves_and_logs_as_the_user(e2e: E2E) -> None:
    alice, erin = e2e.user("alice"), e2e.user("erin")
    e2e.write_forward(
        erin,
        f"""\
# Exim filter
logfile $home/filter.log
if $h_subject: matches "^urgent: (.*)" then
  logwrite "urgent from $sender_address: $1"
  deliver {alice.name}
  save $home/urgent
  unseen pipe "{e2e.bin}/record $1"
endif
""",
    )
    e2e.script("record", f'#!/bin/sh\nid -u > {erin.home}/piped\necho "$1" >> {erin.home}/piped\n')
    e2e.write_config()
    e2e.submit(
        message_text(alice.address, erin.address, "urgent: the roof", "leaking\n"),
        "-odi",
        "-f",
        alice.address,
        erin.address,
    )
    (message_id,) = e2e.received_ids()
    lines = e2e.log_for(message_id)
    assert lines[-1] == "Completed"
    # The significant deliveries replace erin's own: alice has it, erin's mailbox does not.
    (copy,) = read_mbox(e2e.mbox_path(alice))
    assert copy["Subject"] == "urgent: the roof"
    assert not e2e.mbox_path(erin).exists()
    saved = erin.home / "urgent"
    assert saved.stat().st_uid == erin.uid and "leaking" in saved.read_text()
    # The pipe ran as erin, with its argument expanded from the filter's match.
    assert (erin.home / "piped").read_text() == f"{erin.uid}\nthe roof\n"
    log = erin.home / "filter.log"
    assert log.stat().st_uid == erin.uid and log.stat().st_mode & 0o777 == 0o600
    assert log.read_text() == f"urgent from {alice.address}: the roof\n"
    assert any(line.startswith(f"=> {saved} <{erin.address}> R=userforward T=address_file") for line in lines)


def test_filter_that_forwards_to_itself_does_not_loop(e2e: E2E) -> None:
    alice, erin = e2e.user("alice"), e2e.user("erin")
    e2e.write_forward(erin, f"# Exim filter\ndeliver {erin.address}\nunseen deliver {erin.name}\n")
    e2e.write_config()
    e2e.submit(
        message_text(alice.address, erin.address, "round", "and round\n"), "-odi", "-f", alice.address, erin.address
    )
    (message_id,) = e2e.received_ids()
    # The generated address is erin again: forwardfile handled it once, so localuser delivers it.
    assert e2e.log_for(message_id)[-1] == "Completed"
    (copy,) = read_mbox(e2e.mbox_path(erin))
    assert copy["Subject"] == "round"


def test_a_filter_with_a_syntax_error_defers_with_its_line_and_loses_nothing(e2e: E2E) -> None:
    alice, erin = e2e.user("alice"), e2e.user("erin")
    forward = e2e.write_forward(erin, "# Exim filter\nif $h_subject: contains x then\n  save $home/x\nendiff\n")
    e2e.write_config()
    e2e.submit(message_text(alice.address, erin.address, "x", "body\n"), "-odi", "-f", alice.address, erin.address)
    (message_id,) = e2e.received_ids()
    # Exim's words and line count: "near" line 5, as the line end after the word is read too.
    assert e2e.log_for(message_id)[1:] == [
        f"== {erin.address} R=userforward defer (0): director userforward: filter file {forward}: "
        'unknown filtering command "endiff" near line 5 of filter file'
    ]
    assert not e2e.mbox_path(alice).exists() and not e2e.mbox_path(erin).exists()
    assert message_id in e2e.env.message_ids()


def test_system_filter_adds_headers_and_recipients_and_fails_messages(e2e: E2E) -> None:
    alice, bob, carol = e2e.user("alice"), e2e.user("bob"), e2e.user("carol")
    system_filter = e2e.root / "system.filter"
    system_filter.write_text(f"""\
# Exim filter
if $h_subject: contains "spam" then
  fail text "<<spam rejected>>We do not take spam here."
endif
headers add "X-Scanned: by the system filter"
headers remove X-Secret
unseen deliver {carol.address}
testprint "not seen outside -bF"
""")
    e2e.write_config(main=f"system_filter = {system_filter}\n")
    e2e.submit(
        message_text(alice.address, bob.address, "hello", "hi\n", "X-Secret: 42\n"),
        "-odi",
        "-f",
        alice.address,
        bob.address,
    )
    (message_id,) = e2e.received_ids()
    assert e2e.log_for(message_id)[-1] == "Completed"
    for user in (bob, carol):
        (copy,) = read_mbox(e2e.mbox_path(user))
        assert copy["X-Scanned"] == "by the system filter" and copy["X-Secret"] is None
    e2e.submit(
        message_text(alice.address, bob.address, "cheap spam", "buy\n"), "-odi", "-f", alice.address, bob.address
    )
    spam_id, bounce_id = e2e.new_ids([message_id])
    lines = e2e.log_for(spam_id)
    assert "cancelled by system filter: spam rejected" in lines
    assert f"** {bob.address}: We do not take spam here." in lines
    assert len(read_mbox(e2e.mbox_path(bob))) == 1  # only the first message
    bounces = [m for m in read_mbox(e2e.mbox_path(alice)) if m.get_from().startswith("MAILER-DAEMON ")]
    assert len(bounces) == 1 and "We do not take spam here." in bounces[0].as_string()
    assert bounce_id in e2e.env.message_ids() or e2e.log_for(bounce_id)[-1] == "Completed"


def test_system_filter_freeze_and_error_keep_the_message(e2e: E2E) -> None:
    alice, bob = e2e.user("alice"), e2e.user("bob")
    system_filter = e2e.root / "system.filter"
    system_filter.write_text('# Exim filter\nif $h_subject: contains hold then freeze "held for review" endif\n')
    e2e.write_config(main=f"system_filter = {system_filter}\n")
    e2e.submit(message_text(alice.address, bob.address, "hold me", "x\n"), "-odi", "-f", alice.address, bob.address)
    (held_id,) = e2e.received_ids()
    assert e2e.log_for(held_id)[1:] == ["Frozen by the system filter: held for review"]
    assert "*** frozen ***" in e2e.queue()
    # A broken system filter: nothing is routed, the message stays for the next attempt.
    system_filter.write_text("# Exim filter\nif $h_subject: is x then\n")
    e2e.submit(message_text(alice.address, bob.address, "plain", "x\n"), "-odi", "-f", alice.address, bob.address)
    (plain_id,) = e2e.new_ids([held_id])
    assert e2e.log_for(plain_id)[1:] == ['Error in system filter: "endif" missing at end of filter file']
    assert plain_id in e2e.env.message_ids() and not e2e.mbox_path(bob).exists()
    assert DOMAIN in bob.address


def test_vacation_replies_to_a_person_as_the_user_but_never_to_a_list(e2e: E2E) -> None:
    from mta.config.loader import load_config
    from mta.daemon.submission import take_offline_messages
    from mta.runtime import build_runtime

    alice, erin = e2e.user("alice"), e2e.user("erin")
    spool = e2e.reachable_spool()  # erin's reply goes through the drop directory
    e2e.write_forward(erin, "# Exim filter\nvacation\n")  # not even guarded by "if personal"
    message = erin.home / ".vacation.msg"
    message.write_text("I am away; about $h_subject: ask Bob.\n")
    os.chown(message, erin.uid, erin.gid)
    config = e2e.write_config(transports="address_reply:\n  driver = autoreply\n")
    config.write_text(
        config.read_text().replace(
            "userforward:\n  driver = forwardfile\n",
            "userforward:\n  driver = forwardfile\n  reply_transport = address_reply\n",
        )
    )
    e2e.submit(
        message_text(f"Alice <{alice.address}>", erin.address, "lunch", "hi\n"),
        "-odi",
        "-f",
        alice.address,
        erin.address,
    )
    e2e.submit(
        message_text("news@lists.example", erin.address, "digest", "news\n", "List-Id: <news.lists.example>\n"),
        "-odi",
        "-f",
        "news@lists.example",
        erin.address,
    )
    first, second = e2e.received_ids()
    # Not significant: erin gets both messages as usual.
    assert [m["Subject"] for m in read_mbox(e2e.mbox_path(erin))] == ["lunch", "digest"]
    assert any(
        line.startswith(f"=> >{alice.address} <{erin.address}> R=userforward T=address_reply")
        for line in e2e.log_for(first)
    )
    # The list message gets no reply (RFC 3834), although the filter does not test "personal".
    assert not any("T=address_reply" in line for line in e2e.log_for(second))
    [dropped] = list((spool / "offline").iterdir())
    assert dropped.stat().st_uid == erin.uid
    runtime = build_runtime(load_config(str(e2e.env.config)))
    [reply] = take_offline_messages(runtime)
    envelope = runtime.spool.read_envelope(reply)
    assert (envelope.sender_address, [r.address for r in envelope.recipients]) == ("", [alice.address])
    text = "".join(h.text for h in envelope.headers)
    assert "Subject: On vacation\n" in text and "Auto-Submitted: auto-replied\n" in text
    with runtime.spool.open_body(reply) as body:
        assert b"I am away; about lunch ask Bob." in body.read()
