"""Local delivery end to end, through the real CLI, as root, to real users (issue 3 "Done when").

Each test submits with `mta -odi` (or queues with -odq and delivers with
`mta -M`), then looks at what a user or an administrator would see: the
mailbox, the Maildir, a pipe's output, file ownership, the main log, the
msglog, and `mta -bp`.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import mailbox
import os
import re
import stat
import time
from pathlib import Path

from tests.e2e.conftest import DOMAIN, E2E, LocalUser, message_text

ID = r"[0-9A-Za-z]{6}-[0-9A-Za-z]{6,11}-[0-9A-Za-z]{2,4}"
# The mbox separator: "From sender Mon Nov 23 20:05:58 2026" (asctime, day padded with a space).
FROM_LINE = re.compile(r"From (\S+) [A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}")


def read_mbox(path: Path) -> list[mailbox.mboxMessage]:
    box = mailbox.mbox(path, create=False)
    try:
        return list(box)
    finally:
        box.close()


def msglog(e2e: E2E, message_id: str) -> Path:
    return e2e.env.spool / "msglog" / message_id


def assert_gone(e2e: E2E, message_id: str) -> None:
    """Completed: no spool file, no msglog, and an empty queue listing."""
    assert e2e.log_for(message_id)[-1] == "Completed"
    assert not [name for name in e2e.env.spool_files() if message_id in name]
    assert not msglog(e2e, message_id).exists()
    assert e2e.queue() == ""


def owner(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid


# -- 1. alias + .forward -> mbox, .forward -> Maildir, alias -> pipe --------------------------------


def test_mbox_maildir_and_pipe_for_real_users(e2e: E2E) -> None:
    alice, bob, carol, pipe = e2e.user("alice"), e2e.user("bob"), e2e.user("carol"), e2e.user("pipe", home=False)
    # The pipe writes where only its user can: its output file proves who ran it.
    outdir = e2e.root / "pipe-out"
    outdir.mkdir()
    os.chown(outdir, pipe.uid, pipe.gid)
    out = outdir / "alerts.out"
    script = e2e.script(
        "record.sh",
        f'#!/bin/sh\necho "uid=$(id -u) gid=$(id -g) local_part=$LOCAL_PART recipient=$RECIPIENT" >> {out}\n'
        f"cat >> {out}\n",
    )
    e2e.write_aliases(f"sales: help\nhelp: {alice.name}\nalerts: |{script}\n")
    # alice keeps her mail (\name: not forwarded again); bob's goes into his Maildir.
    e2e.write_forward(alice, f"\\{alice.name}\n")
    e2e.write_forward(bob, f"{bob.home}/Maildir/\n")
    e2e.write_config()
    body = "Hello all,\nFrom the desk of the CEO: this line starts with From.\nBye\n"
    e2e.submit(message_text(f"Root <root@{DOMAIN}>", f"sales@{DOMAIN}, {bob.address}, alerts@{DOMAIN}",
                            "Quarterly report", body, f"Bcc: {carol.address}\n"), "-t", "-odi")
    (message_id,) = e2e.received_ids()

    # The mbox: owned by alice, 0600, one message in mbox shape.
    mbox_path = e2e.mbox_path(alice)
    assert owner(mbox_path) == (alice.uid, alice.gid)
    assert stat.S_IMODE(mbox_path.stat().st_mode) == 0o600
    text = mbox_path.read_text()
    lines = text.split("\n")
    assert FROM_LINE.fullmatch(lines[0]) and FROM_LINE.fullmatch(lines[0]).group(1) == f"root@{DOMAIN}"
    assert lines[1] == f"Return-path: <root@{DOMAIN}>"
    assert lines[2] == f"Envelope-to: sales@{DOMAIN}"
    assert re.fullmatch(r"Delivery-date: \w{3}, [ \d]?\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}", lines[3])
    assert lines[4].startswith("Received: from root by mail.example.com with local")
    assert "\n>From the desk of the CEO: this line starts with From.\n" in text
    assert text.endswith("Bye\n\n")  # the blank line that ends an mbox message
    (stored,) = read_mbox(mbox_path)
    assert stored["Subject"] == "Quarterly report"
    assert stored.get_from().startswith(f"root@{DOMAIN} ")

    # The Maildir: made by the delivery as bob, one message in new/, nothing left in tmp/.
    maildir = bob.home / "Maildir"
    for sub in ("tmp", "new", "cur"):
        assert owner(maildir / sub) == (bob.uid, bob.gid)
    (new_file,) = list((maildir / "new").iterdir())
    assert owner(new_file) == (bob.uid, bob.gid)
    assert not list((maildir / "tmp").iterdir())
    (maildir_message,) = list(mailbox.Maildir(maildir, create=False))
    assert maildir_message["Envelope-to"] == bob.address
    assert maildir_message["Return-path"] == f"<root@{DOMAIN}>"
    # A Maildir needs no From_ line and no >From escaping.
    assert "\nFrom the desk of the CEO" in new_file.read_text()
    assert not new_file.read_text().startswith("From ")

    # The pipe ran as the configured user (system_aliases: user = pipe), not as root.
    assert owner(out) == (pipe.uid, pipe.gid)
    report, _, piped = out.read_text().partition("\n")
    assert report == f"uid={pipe.uid} gid={pipe.gid} local_part=alerts recipient=alerts@{DOMAIN}"
    assert pipe.uid != 0
    assert FROM_LINE.match(piped)  # the pipe transport's default message_prefix
    assert "Subject: Quarterly report\n" in piped and "\nFrom the desk of the CEO" in piped

    # The Bcc recipient has a copy; no copy shows the Bcc: line.
    assert len(read_mbox(e2e.mbox_path(carol))) == 1
    for copy in (text, new_file.read_text(), piped):
        assert carol.name not in copy
    assert "Bcc:" not in e2e.mbox(carol)

    log = e2e.log_for(message_id)
    assert re.fullmatch(rf"<= root@{DOMAIN} U=root P=local S=\d+", log[0])  # no id=: we made the Message-Id
    assert sorted(log[1:-1]) == sorted([
        f"=> {alice.name} <sales@{DOMAIN}> R=localuser T=local_mbox",
        f"=> {maildir}/ <{bob.address}> R=userforward T=address_directory",
        f"=> |{script} <alerts@{DOMAIN}> R=system_aliases T=address_pipe",
        f"=> {carol.name} <{carol.address}> R=localuser T=local_mbox",
    ])
    assert_gone(e2e, message_id)


def test_odq_queues_and_M_delivers(e2e: E2E) -> None:
    alice = e2e.user("alice")
    e2e.write_config()
    e2e.submit(message_text(alice.address, alice.address, "later", "body\n"), "-odq", alice.address)
    (message_id,) = e2e.received_ids()
    assert e2e.log_for(message_id)[1:] == []
    assert not e2e.mbox_path(alice).exists()
    assert f"{message_id} <root@{DOMAIN}>" in e2e.queue()
    assert msglog(e2e, message_id).exists()

    proc = e2e.env.run("-M", message_id)
    assert proc.returncode == 0, proc.stderr
    assert e2e.log_for(message_id)[1:] == [f"=> {alice.name} <{alice.address}> R=localuser T=local_mbox", "Completed"]
    assert len(read_mbox(e2e.mbox_path(alice))) == 1
    assert_gone(e2e, message_id)


# -- 2. the bounce for an unknown user --------------------------------------------------------------


def dsn_parts(message: email.message.Message) -> tuple[email.message.Message, ...]:
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    parts = message.get_payload()
    assert isinstance(parts, list) and len(parts) == 3
    return tuple(parts)


def test_bounce_for_unknown_user_reaches_the_sender(e2e: E2E) -> None:
    alice = e2e.user("alice")
    mallory = e2e.nobody_called("mallory")
    e2e.write_config()
    original = message_text(f"Alice <{alice.address}>", f"{mallory}@{DOMAIN}", "Invoice 2231",
                            "Please find the invoice below.\n", f"Message-ID: <invoice-2231@{DOMAIN}>\n")
    e2e.submit(original, "-odi", "-f", alice.address, f"{mallory}@{DOMAIN}")
    original_id, bounce_id = e2e.received_ids()

    assert e2e.log_for(original_id)[1:] == [f"** {mallory}@{DOMAIN}: Unknown user", "Completed"]
    bounce_log = e2e.log_for(bounce_id)
    # Exim logs no id= for a Message-Id it made itself; mta does (reported to the lead): accept both.
    assert re.fullmatch(rf"<= <> R={original_id} U=mail P=local S=\d+", bounce_log[0])
    assert bounce_log[1:] == [f"=> {alice.name} <{alice.address}> R=localuser T=local_mbox", "Completed"]
    # Logged in Exim's order: the failure, then the bounce's arrival.
    lines = e2e.env.log_lines()
    failure_at = next(i for i, line in enumerate(lines) if f"{original_id} ** {mallory}@" in line)
    arrival_at = next(i for i, line in enumerate(lines) if f"{bounce_id} <= <>" in line)
    assert failure_at < arrival_at

    (stored,) = read_mbox(e2e.mbox_path(alice))
    assert stored.get_from().startswith("MAILER-DAEMON ")
    # Parse the mailbox text with the standard parser, as a mail reader would.
    bounce = email.message_from_string(stored.as_string(), policy=email.policy.default)
    assert bounce["Return-path"] == "<>"
    assert bounce["To"] == alice.address
    assert bounce["X-Failed-Recipients"] == f"{mallory}@{DOMAIN}"
    assert bounce["Auto-Submitted"] == "auto-replied"
    assert bounce["Subject"] == "Mail delivery failed: returning message to sender"
    assert bounce["References"] == f"<invoice-2231@{DOMAIN}>"
    explanation, status, returned = dsn_parts(bounce)
    assert explanation.get_content_type() == "text/plain"
    assert f"  {mallory}@{DOMAIN}\n    Unknown user\n" in explanation.get_content()
    assert status.get_content_type() == "message/delivery-status"
    per_message, per_recipient = status.get_payload()
    assert per_message["Reporting-MTA"] == "dns; mail.example.com"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Final-Recipient"] == f"rfc822;{mallory}@{DOMAIN}"
    assert re.fullmatch(r"5\.\d+\.\d+", per_recipient["Status"])
    assert returned.get_content_type() == "message/rfc822"
    (copy,) = returned.get_payload()
    assert copy["Subject"] == "Invoice 2231"
    assert copy["Return-path"] == f"<{alice.address}>"
    assert copy.get_payload() == "Please find the invoice below.\n"
    assert e2e.queue() == ""


# -- 3. a bounce that cannot be delivered is frozen --------------------------------------------------


def test_undeliverable_bounce_is_frozen_and_M_forces_it(e2e: E2E) -> None:
    alice = e2e.user("alice")
    ghost, trent = e2e.nobody_called("ghost"), e2e.nobody_called("trent")
    e2e.write_config()
    e2e.submit(message_text(f"{ghost}@{DOMAIN}", f"{trent}@{DOMAIN}", "Hello?", "Is anyone there?\n"),
               "-odi", "-f", f"{ghost}@{DOMAIN}", f"{trent}@{DOMAIN}")
    original_id, bounce_id = e2e.received_ids()
    assert e2e.log_for(original_id)[1:] == [f"** {trent}@{DOMAIN}: Unknown user", "Completed"]
    assert e2e.log_for(bounce_id)[1:] == [f"** {ghost}@{DOMAIN}: Unknown user", "Frozen (delivery error message)"]
    # A bounce never bounces: nothing new arrived for the failed bounce.
    assert e2e.received_ids() == [original_id, bounce_id]
    listing = e2e.queue()
    assert re.search(rf"^ *\d+m +\S+ {bounce_id} <> \*\*\* frozen \*\*\*\n {{10}}{ghost}@{DOMAIN}\n", listing, re.M)

    # A queue run would skip it; -M forces it (and it freezes again while ghost is still unknown).
    proc = e2e.env.run("-M", bounce_id)
    assert proc.returncode == 0, proc.stderr
    assert e2e.log_for(bounce_id)[3:] == [
        "Unfrozen by forced delivery", f"** {ghost}@{DOMAIN}: Unknown user", "Frozen (delivery error message)",
    ]
    assert "*** frozen ***" in e2e.queue()

    # The administrator fixes the cause (ghost becomes an alias of alice) and forces it again.
    e2e.write_aliases(f"{ghost}: {alice.name}\n")
    proc = e2e.env.run("-M", bounce_id)
    assert proc.returncode == 0, proc.stderr
    assert e2e.log_for(bounce_id)[6:] == [
        "Unfrozen by forced delivery", f"=> {alice.name} <{ghost}@{DOMAIN}> R=localuser T=local_mbox", "Completed",
    ]
    (stored,) = read_mbox(e2e.mbox_path(alice))
    assert stored["X-Failed-Recipients"] == f"{trent}@{DOMAIN}"
    assert_gone(e2e, bounce_id)


# -- 5. duplicates --------------------------------------------------------------------------------


def test_two_aliases_to_one_user_deliver_once(e2e: E2E) -> None:
    alice = e2e.user("alice")
    e2e.write_aliases(f"sales: help\nhelp: {alice.name}\n")
    e2e.write_config()
    e2e.submit(message_text(alice.address, f"help@{DOMAIN}", "Quarterly report", "numbers\n",
                            f"Cc: sales@{DOMAIN}\n"), "-t", "-odi")
    (message_id,) = e2e.received_ids()
    deliveries = [line for line in e2e.log_for(message_id) if line.startswith(("=>", "->"))]
    assert len(deliveries) == 1
    assert re.fullmatch(rf"=> {alice.name} <(help|sales)@{DOMAIN}> R=localuser T=local_mbox", deliveries[0])
    text = e2e.mbox(alice)
    # As Exim's mbox-alice.txt: one copy, both originals in Envelope-to.
    assert f"Envelope-to: help@{DOMAIN},\n sales@{DOMAIN}\n" in text
    assert len(read_mbox(e2e.mbox_path(alice))) == 1
    assert_gone(e2e, message_id)


# -- 6. a deferred address stays queued with its reason ------------------------------------------------


def quota_config(e2e: E2E, user: LocalUser) -> None:
    """`user` is delivered by a director of its own into a mailbox with a 1K quota."""
    e2e.write_config(
        directors=f"""
quotauser:
  driver = localuser
  local_parts = {user.name}
  transport = small_mbox
""",
        transports=f"""
small_mbox:
  driver = appendfile
  file = {e2e.mail}/$local_part_data
  quota = 1K
  envelope_to_add
  return_path_add
""",
    )


def fill_mailbox(e2e: E2E, user: LocalUser, size: int) -> bytes:
    content = b"From old@example.com Mon Nov 23 10:00:00 2026\nSubject: old\n\n" + b"x" * size + b"\n\n"
    path = e2e.mbox_path(user)
    path.write_bytes(content)
    os.chown(path, user.uid, user.gid)
    path.chmod(0o600)
    return content


def test_deferred_address_stays_queued_and_M_delivers_it_later(e2e: E2E) -> None:
    alice, dave = e2e.user("alice"), e2e.user("dave")
    quota_config(e2e, dave)
    old = fill_mailbox(e2e, dave, 2000)
    e2e.submit(message_text(alice.address, f"{alice.address}, {dave.address}", "minutes", "text\n"),
               "-odi", "-f", alice.address, alice.address, dave.address)
    (message_id,) = e2e.received_ids()
    assert e2e.log_for(message_id)[1:] == [
        f"=> {alice.name} <{alice.address}> R=localuser T=local_mbox",
        f"== {dave.name} <{dave.address}> R=quotauser T=small_mbox defer (-22): mailbox is full (quota exceeded)",
    ]
    assert e2e.mbox_path(dave).read_bytes() == old  # not a byte of a partial message
    assert re.search(
        rf"^ *\d+m +\S+ {message_id} <{alice.address}>\n        D {alice.address}\n {{10}}{dave.address}\n",
        e2e.queue(), re.M,
    )
    header = e2e.env.header_file(message_id)
    assert f"NN {alice.address}\n" in header  # the non-recipients tree
    assert "-deliver_firsttime" not in header
    assert not (e2e.env.spool / "input" / f"{message_id}-J").exists()
    msglog_text = msglog(e2e, message_id).read_text()
    assert "mailbox is full" in msglog_text

    # The owner makes room; a forced delivery takes only what is left.
    e2e.mbox_path(dave).write_bytes(b"")
    proc = e2e.env.run("-M", message_id)
    assert proc.returncode == 0, proc.stderr
    assert e2e.log_for(message_id)[3:] == [f"=> {dave.name} <{dave.address}> R=quotauser T=small_mbox", "Completed"]
    assert len(read_mbox(e2e.mbox_path(alice))) == 1
    assert len(read_mbox(e2e.mbox_path(dave))) == 1
    assert_gone(e2e, message_id)


def test_default_delivery_mode_delivers_in_the_background(e2e: E2E) -> None:
    """Without -odi/-odq the command returns at once and a detached process delivers (-odb)."""
    alice = e2e.user("alice")
    e2e.write_config()
    e2e.submit(message_text(alice.address, alice.address, "soon", "body\n"), alice.address)
    (message_id,) = e2e.received_ids()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "Completed" not in e2e.log_for(message_id):
        time.sleep(0.05)
    assert e2e.log_for(message_id)[1:] == [f"=> {alice.name} <{alice.address}> R=localuser T=local_mbox", "Completed"]
    assert len(read_mbox(e2e.mbox_path(alice))) == 1


def test_mixed_case_recipient_reaches_the_user(e2e: E2E) -> None:
    """Local parts are looked up as written, then lower-cased (Exim's localuser): ALICE is alice."""
    alice = e2e.user("alice")
    e2e.write_config()
    upper = f"{alice.name.upper()}@{DOMAIN.upper()}"
    e2e.submit(message_text(alice.address, upper, "case", "body\n"), "-odi", upper)
    (message_id,) = e2e.received_ids()
    delivery, completed = e2e.log_for(message_id)[1:]
    assert delivery.lower() == f"=> {alice.name} <{upper.lower()}> r=localuser t=local_mbox"
    assert completed == "Completed"
    assert len(read_mbox(e2e.mbox_path(alice))) == 1


def test_forward_with_own_name_and_a_pipe_runs_as_the_user(e2e: E2E) -> None:
    """A .forward naming its owner delivers to the mailbox once (loop safety), and a pipe in it runs
    as the owner, never as root or as the alias file's pipe user."""
    erin = e2e.user("erin")
    out = erin.home / "pipe.out"
    script = e2e.script("whoami.sh", f"#!/bin/sh\ncat >/dev/null\nid -u > {out}\necho \"$HOME\" >> {out}\n")
    e2e.write_forward(erin, f"{erin.name}, |{script}\n")
    e2e.write_config()
    e2e.submit(message_text(erin.address, erin.address, "to myself", "body\n"),
               "-odi", "-f", erin.address, erin.address)
    (message_id,) = e2e.received_ids()
    assert sorted(e2e.log_for(message_id)[1:-1]) == sorted([
        f"=> {erin.name} <{erin.address}> R=localuser T=local_mbox",
        f"=> |{script} <{erin.address}> R=userforward T=address_pipe",
    ])
    assert e2e.log_for(message_id)[-1] == "Completed"
    assert len(read_mbox(e2e.mbox_path(erin))) == 1
    assert out.read_text() == f"{erin.uid}\n{erin.home}\n"
    assert owner(out) == (erin.uid, erin.gid)


def test_failing_pipe_output_is_returned_in_the_bounce(e2e: E2E) -> None:
    """return_fail_output: what a failing command printed reaches the sender, not the log."""
    alice = e2e.user("alice")
    script = e2e.script("nolist.sh", "#!/bin/sh\ncat >/dev/null\necho 'no such list: widgets'\nexit 1\n")
    e2e.write_aliases(f"widgets: |{script}\n")
    e2e.write_config()
    e2e.submit(message_text(alice.address, f"widgets@{DOMAIN}", "join", "subscribe\n"),
               "-odi", "-f", alice.address, f"widgets@{DOMAIN}")
    message_id, _bounce_id = e2e.received_ids()
    failure = e2e.log_for(message_id)[1]
    assert failure.startswith(f"** |{script} <widgets@{DOMAIN}> R=system_aliases T=address_pipe: Child process of")
    assert "no such list" not in failure
    (bounce,) = read_mbox(e2e.mbox_path(alice))
    assert "no such list: widgets" in bounce.as_string()


def test_failed_alias_member_is_bounced_once_while_another_is_deferred(e2e: E2E) -> None:
    """team -> mallory (unknown), dave (over quota): the bounce for mallory is sent once; the retry
    that delivers dave must not fail and bounce mallory again."""
    alice, dave = e2e.user("alice"), e2e.user("dave")
    mallory = e2e.nobody_called("mallory")
    quota_config(e2e, dave)
    e2e.write_aliases(f"team: {mallory}, {dave.name}\n")
    fill_mailbox(e2e, dave, 2000)
    e2e.submit(message_text(alice.address, f"team@{DOMAIN}", "team news", "body\n"),
               "-odi", "-f", alice.address, f"team@{DOMAIN}")
    message_id, bounce_id = e2e.received_ids()
    assert e2e.log_for(message_id)[1:] == [
        f"** {mallory}@{DOMAIN} <team@{DOMAIN}>: Unknown user",
        f"== {dave.name} <team@{DOMAIN}> R=quotauser T=small_mbox defer (-22): mailbox is full (quota exceeded)",
    ]
    assert f"NN {mallory}@{DOMAIN}\n" in e2e.env.header_file(message_id)  # done, in the non-recipients tree
    assert f"          team@{DOMAIN}\n" in e2e.queue()

    e2e.mbox_path(dave).write_bytes(b"")
    assert e2e.env.run("-M", message_id).returncode == 0
    assert e2e.log_for(message_id)[3:] == [f"=> {dave.name} <team@{DOMAIN}> R=quotauser T=small_mbox", "Completed"]
    assert e2e.received_ids() == [message_id, bounce_id]  # no second bounce
    assert len(read_mbox(e2e.mbox_path(alice))) == 1
    assert_gone(e2e, message_id)


def test_duplicate_of_a_deferred_delivery_stays_queued(e2e: E2E) -> None:
    """help and sales both lead to dave, whose mailbox is full: neither is done until dave has it,
    and the later delivery still names both."""
    alice, dave = e2e.user("alice"), e2e.user("dave")
    quota_config(e2e, dave)
    e2e.write_aliases(f"sales: help\nhelp: {dave.name}\n")
    fill_mailbox(e2e, dave, 2000)
    e2e.submit(message_text(alice.address, f"help@{DOMAIN}, sales@{DOMAIN}", "t", "body\n"),
               "-odi", "-f", alice.address, f"help@{DOMAIN}", f"sales@{DOMAIN}")
    (message_id,) = e2e.received_ids()
    (deferral,) = e2e.log_for(message_id)[1:]
    assert deferral.startswith(f"== {dave.name} <help@{DOMAIN}> R=quotauser T=small_mbox defer (-22)")
    listing = e2e.queue()
    assert f"          help@{DOMAIN}\n          sales@{DOMAIN}\n" in listing, listing  # no D for sales

    e2e.mbox_path(dave).write_bytes(b"")
    assert e2e.env.run("-M", message_id).returncode == 0
    assert e2e.log_for(message_id)[-1] == "Completed"
    (stored,) = read_mbox(e2e.mbox_path(dave))
    assert stored["Envelope-to"] == f"help@{DOMAIN},\n sales@{DOMAIN}"


def test_failed_delivery_bounces_for_every_duplicate(e2e: E2E) -> None:
    alice, dave = e2e.user("alice"), e2e.user("dave")
    e2e.write_config(
        directors=f"""
tinyuser:
  driver = localuser
  local_parts = {dave.name}
  transport = tiny_mbox
""",
        transports=f"""
tiny_mbox:
  driver = appendfile
  file = {e2e.mail}/$local_part_data
  message_size_limit = 100
""",
    )
    e2e.write_aliases(f"sales: help\nhelp: {dave.name}\n")
    e2e.submit(message_text(alice.address, f"help@{DOMAIN}, sales@{DOMAIN}", "t", "x" * 200 + "\n"),
               "-odi", "-f", alice.address, f"help@{DOMAIN}", f"sales@{DOMAIN}")
    message_id, _bounce_id = e2e.received_ids()
    assert e2e.log_for(message_id)[1:] == [
        f"** {dave.name} <help@{DOMAIN}> R=tinyuser T=tiny_mbox: message is too big (transport limit = 100)",
        "Completed",
    ]
    (stored,) = read_mbox(e2e.mbox_path(alice))
    bounce = email.message_from_string(stored.as_string(), policy=email.policy.default)
    assert bounce["X-Failed-Recipients"] == dave.address  # the address that failed, once
    _explanation, status, _returned = dsn_parts(bounce)
    # Both recipients the sender used are reported.
    assert [block["Final-Recipient"] for block in status.get_payload()[1:]] == [
        f"rfc822;help@{DOMAIN}", f"rfc822;sales@{DOMAIN}",
    ]
    assert not e2e.mbox_path(dave).exists()
