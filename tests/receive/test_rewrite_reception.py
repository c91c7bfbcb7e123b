"""Rewriting at reception, through the real CLI: `-odq` submissions and a `-bs` session.

What Exim 4.96 writes for the same configuration and message was looked at
with `exim -C ... -odq` (docs/rewrite.md): the old header kept in -H marked
``*`` and the new one right after it, ``X-rewrote-`` headers for the old
envelope addresses, rewritten recipients and sender, and the
``address_rewrite`` log lines.
"""

from __future__ import annotations

from mta.spool.format import read_header_file
from tests.support.mta import MtaEnv

RULES = """
log_selector = +address_rewrite
queue_only = true
acl_smtp_rcpt = accept
begin rewrite
*@old.example  $local_part@new.example
*@w.example  "The Name <$local_part@w2.example>"  w
*@s.example  $local_part@s2.example  Ff
*@bad.example  "a b c@@"
\\N^<?([^!@<>]+)!([^!@<>]+)>?$\\N   $2@$1   S
"""

MESSAGE = (
    "From: Ann <ann@old.example>\n"
    'To: group: b@old.example, "C D" <c@w.example> (comment);, e@keep.example,\n'
    "  f@old.example\n"
    "Cc: root\n"
    "Sender: x@s.example\n"
    "Subject: ann@old.example\n"
    "\n"
    "body\n"
)


def spooled(env: MtaEnv) -> object:
    (message_id,) = env.message_ids()
    raw = next((env.spool / "input").rglob(f"{message_id}-H")).read_bytes()
    return read_header_file(raw, message_id)


def test_local_submission_is_rewritten_as_exim_does(mta_env: MtaEnv) -> None:
    mta_env.write_config(RULES)
    result = mta_env.run("-odq", "-f", "s@s.example", "r1@old.example", "bad@bad.example", input=MESSAGE)
    assert (result.returncode, result.stderr) == (0, "")
    envelope = spooled(mta_env)
    assert envelope.sender_address == "s@s2.example"
    assert [r.address for r in envelope.recipients] == ["r1@new.example", "bad@bad.example"]
    lines = [(h.flag, h.text) for h in envelope.headers]
    assert lines[1:9] == [
        ("*", "From: Ann <ann@old.example>\n"),
        ("F", "From: Ann <ann@new.example>\n"),
        ("*", 'To: group: b@old.example, "C D" <c@w.example> (comment);, e@keep.example,\n  f@old.example\n'),
        ("T", "To: group: b@new.example, The Name <c@w2.example>;, e@keep.example,\n  f@new.example\n"),
        ("*", "Cc: root\n"),
        ("C", "Cc: root@example.com\n"),  # qualified (a local message), as Exim qualifies
        ("S", "Sender: x@s.example\n"),  # Ff: not the Sender: header
        (" ", "Subject: ann@old.example\n"),
    ]
    assert lines[9][1].startswith("Message-Id: ")
    assert lines[10:12] == [
        ("*", "X-rewrote-original-recipient: r1@old.example\n"),
        ("*", "X-rewrote-sender: s@s.example\n"),
    ]
    assert lines[12][1].startswith("Date: ")
    assert "(envelope-from <s@s2.example>)" in lines[0][1]
    log = [line.split(" ", 3)[3] for line in mta_env.log_lines()]
    assert log == [
        '"r1@old.example" from env-to rewritten as "r1@new.example" by rule 1',
        "Rewrite of bad@bad.example yielded unparseable address: space in address outside quotes in address a b c@@",
        '"s@s.example" from env-from rewritten as "s@s2.example" by rule 3',
        '"ann@old.example" from from: rewritten as "ann@new.example" by rule 1',
        '"b@old.example" from to: rewritten as "b@new.example" by rule 1',
        '"c@w.example" from to: rewritten as "The Name <c@w2.example>" by rule 2',
        '"f@old.example" from to: rewritten as "f@new.example" by rule 1',
        log[-1],
    ]
    assert log[-1].startswith("<= s@s2.example U=root P=local S=")
    panic = (mta_env.spool / "log" / "paniclog").read_text()
    assert panic.endswith("yielded unparseable address: space in address outside quotes in address a b c@@\n")


DATA_ACL = """
acl_smtp_data = check_data
begin acl
check_data:
  deny message = saw $sender_address for $recipients
       condition = ${if eq{$recipients}{rita@new.example}{no}{yes}}
  accept
"""


def test_smtp_time_rules_and_header_rewriting_in_an_smtp_session(mta_env: MtaEnv) -> None:
    # The DATA ACL (which refuses anything else) sees the envelope as rewritten, as in Exim.
    mta_env.write_config(DATA_ACL.replace("begin acl", RULES + "begin acl"))
    script = (
        "EHLO client.example\r\nMAIL FROM:<relay.example!sam>\r\nRCPT TO:<old.example!rita>\r\nDATA\r\n"
        "From: sam@old.example\r\nTo: Rita <rita@old.example>\r\nCc: local\r\n\r\nhi\r\n.\r\nQUIT\r\n"
    )
    result = mta_env.run("-bs", input=script)
    assert result.returncode == 0, result.stderr
    assert "250 OK id=" in result.stdout
    envelope = spooled(mta_env)
    # S rules made addresses of the bang paths at MAIL/RCPT time; then E rules applied at the end.
    assert envelope.sender_address == "sam@relay.example"
    assert [r.address for r in envelope.recipients] == ["rita@new.example"]
    lines = [(h.flag, h.text) for h in envelope.headers]
    assert ("F", "From: sam@new.example\n") in lines
    assert ("T", "To: Rita <rita@new.example>\n") in lines
    assert ("C", "Cc: local\n") in lines  # not qualified: unqualified addresses are not allowed over SMTP
    assert ("*", "X-rewrote-original-recipient: rita@old.example\n") in lines
