"""Issue 17 end to end: a batched-SMTP batch written by a real delivery and read back with -bS, and a
vacation reply sent by a delivery running as the recipient through the ordinary users' drop directory."""

from __future__ import annotations

import os
import stat

from mta.config.loader import load_config
from mta.daemon.submission import take_offline_messages
from mta.runtime import build_runtime
from tests.e2e.conftest import DOMAIN, E2E, message_text
from tests.support.durability import SyscallTrace, assert_journal_durable
from tests.support.mta import MtaEnv

ACCEPT_RCPT = "acl_smtp_rcpt = rcpt_ok\nbegin acl\nrcpt_ok:\n  accept\n"


def test_bsmtp_batch_is_one_delivery_one_journal_write_and_reads_back(e2e: E2E, syscall_trace: SyscallTrace) -> None:
    gateway = e2e.user("pipe", home=False)
    spool_out = e2e.root / "uucp"
    spool_out.mkdir()
    os.chown(spool_out, gateway.uid, gateway.gid)
    batch_file = spool_out / "batch"
    e2e.write_config(
        # preserve_message_logs: the batch, completing the message, would otherwise retire its -H
        # instead of writing -J (docs/reliability.md); the journal's one write is what is checked.
        main="preserve_message_logs = true\n" + ACCEPT_RCPT,
        directors="uucp:\n  driver = smartuser\n  local_parts = u1 : u2 : U3\n  transport = bsmtp_out\n",
        transports=f"bsmtp_out:\n  driver = appendfile\n  file = {batch_file}\n  use_bsmtp\n  batch_max = 10\n"
        f"  user = {gateway.name}\n",
    )
    body = "First line\n.a line with a dot\n.\nlast\n"
    sender = f"carol@{DOMAIN}"
    proc = e2e.env.run(
        "-odi", "-oi", "-f", sender, f"u1@{DOMAIN}", f"u2@{DOMAIN}", f"U3@{DOMAIN}",
        input=message_text(sender, f"u1@{DOMAIN}", "to the gateway", body),
        env=syscall_trace.env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    [message_id] = e2e.received_ids()
    # One run of the transport for all three, and one durable -J write that names them all.
    assert [line.split(" <")[0] for line in e2e.log_for(message_id)[1:]] == ["=> u1", "-> u2", "-> U3", "Completed"]
    [journal] = assert_journal_durable(syscall_trace.events(), message_id)
    # (U3 twice: the key routing checks, then the recipient as -H spells it.)
    assert journal.n == len(f"u1@{DOMAIN}\nu2@{DOMAIN}\nu3@{DOMAIN}\nU3@{DOMAIN}\n")
    written = batch_file.read_text()
    assert written.startswith(
        f"MAIL FROM:<{sender}>\nRCPT TO:<u1@{DOMAIN}>\nRCPT TO:<u2@{DOMAIN}>\nRCPT TO:<U3@{DOMAIN}>\nDATA\nReceived: "
    )
    assert written.endswith("\n\nFirst line\n..a line with a dot\n..\nlast\n.\n")
    assert stat.S_IMODE(batch_file.stat().st_mode) == 0o600 and batch_file.stat().st_uid == gateway.uid

    # The other end of the gateway: a second mta takes the batch in with -bS.
    other = MtaEnv(e2e.root / "other")
    other.root.mkdir()
    other.write_config(ACCEPT_RCPT)
    with batch_file.open("rb") as batch:
        proc = other.run("-bS", "-odq", stdin=batch)
    assert proc.returncode == 0, proc.stderr
    [copy] = other.message_ids()
    envelope = build_runtime(load_config(str(other.config))).spool.read_envelope(copy)
    assert envelope.sender_address == sender
    assert [r.address for r in envelope.recipients] == [f"u1@{DOMAIN}", f"u2@{DOMAIN}", f"U3@{DOMAIN}"]
    assert other.data_file(copy).split(b"\n", 1)[1] == body.encode()
    assert envelope.received_protocol == "local-bsmtp"


def test_vacation_reply_goes_through_the_drop_directory_as_the_user(e2e: E2E) -> None:
    alice = e2e.user("alice")
    spool = e2e.reachable_spool()  # alice's delivery submits the reply through the drop directory
    e2e.write_config(
        main=ACCEPT_RCPT,
        directors=f"away:\n  driver = localuser\n  local_parts = {alice.name}\n  transport = vacation\n",
        transports="vacation:\n  driver = autoreply\n  from = $local_part@$domain\n  to = $sender_address\n"
        "  subject = Re: $h_subject:\n  text = I am away until Monday.\n  once = $home/.vacation.once\n"
        "  once_repeat = 7d\n  log = $home/.vacation.log\n",
    )
    # Two messages from carol and a bounce, queued in one -bS batch, then delivered by one queue run.
    batch = "".join(
        f"MAIL FROM:<{sender}>\nRCPT TO:<{alice.address}>\nDATA\n"
        + message_text("Carol <carol@example.org>", alice.address, subject, "Hi\n")
        + ".\n"
        for subject, sender in (("Lunch?", "carol@example.org"), ("Lunch!", "carol@example.org"), ("Bounce", ""))
    )
    e2e.submit(batch, "-bS", "-odq")
    e2e.submit("", "-qf")
    [dropped] = list((spool / "offline").iterdir())  # one reply: carol once, the bounce never
    assert dropped.stat().st_uid == alice.uid
    runtime = build_runtime(load_config(str(e2e.env.config)))
    [reply] = take_offline_messages(runtime)
    envelope = runtime.spool.read_envelope(reply)
    assert (envelope.sender_address, [r.address for r in envelope.recipients]) == ("", ["carol@example.org"])
    text = "".join(h.text for h in envelope.headers)
    assert f"From: {alice.address}\n" in text and "Subject: Re: Lunch" in text
    assert "Auto-Submitted: auto-replied\n" in text and "In-Reply-To: <" in text
    assert e2e.env.mainlog.read_text().count(f"<= <> U={alice.name} P=local ") == 1
    once = alice.home / ".vacation.once"
    assert once.stat().st_uid == alice.uid and stat.S_IMODE(once.stat().st_mode) == 0o600
    record = (alice.home / ".vacation.log").read_text()
    assert "  previously sent to carol@example.org\n" in record
    assert "  not sent: the message has an empty envelope sender (a bounce)\n" in record
