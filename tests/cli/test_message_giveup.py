"""`mta -Mg`: give up on a message, bouncing every recipient not yet delivered (Exim's test 0176).

The log has ``cancelled by root``, the bounce's arrival and ``Completed``;
no ``**`` line; the bounce lists each failed address without a reason, as
Exim's does; recipients already delivered (in -H or in a crashed attempt's
-J) are not in it; a bounce that is given up on is discarded.
"""

from __future__ import annotations

import time

from mta.spool.envelope import Recipient
from mta.spool.store import Spool
from tests.support.mta import MtaEnv
from tests.support.queue import change, submit
from tests.support.sink import SmtpSink


def log_for(env: MtaEnv, message_id: str) -> list[str]:
    return [line.split(" ", 3)[3] for line in env.log_lines() if line.split(" ", 3)[2] == message_id]


def test_give_up_bounces_what_is_pending(mta_env: MtaEnv) -> None:
    message_id = submit(mta_env, "a@example.org", "b@example.org", "c@example.org", "d@example.org")
    change(mta_env, message_id, non_recipients={"b@example.org"}, frozen=int(time.time()))  # frozen ones too
    (mta_env.spool / "input" / f"{message_id}-J").write_text("c@example.org\n")
    result = mta_env.run("-odq", "-Mg", message_id)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")

    (bounce_id,) = mta_env.message_ids()
    assert bounce_id != message_id
    assert not any(message_id in name for name in mta_env.spool_files())
    assert log_for(mta_env, message_id)[1:] == ["cancelled by root", "Completed"]
    assert log_for(mta_env, bounce_id)[0].startswith(f"<= <> R={message_id} ")
    bounce = Spool(mta_env.spool).read_envelope(bounce_id)
    assert (bounce.sender_address, [r.address for r in bounce.recipients]) == ("", ["root@example.com"])
    text = mta_env.data_file(bounce_id).decode()
    headers = mta_env.header_file(bounce_id)
    assert "X-Failed-Recipients: a@example.org,\n  d@example.org\n" in headers
    # Each address alone on its line: Exim keeps "delivery cancelled by administrator" out of the report.
    assert "recipients. This is a permanent error. The following address(es) failed:\n\n" \
           "  a@example.org\n  d@example.org\n\n" in text
    assert "b@example.org" not in text.split("Content-type: message/rfc822")[0]
    assert "c@example.org" not in text.split("Content-type: message/rfc822")[0]
    assert "Final-Recipient: rfc822;a@example.org\nStatus: 5.0.0\n" in text


def test_give_up_on_a_bounce_discards_it(mta_env: MtaEnv) -> None:
    message_id = submit(mta_env, "a@example.org", sender="")
    result = mta_env.run("-Mg", message_id)
    assert (result.returncode, result.stderr) == (0, "")
    assert mta_env.message_ids() == []
    assert log_for(mta_env, message_id)[1:] == ["cancelled by root", "Completed"]


def test_no_report_when_the_sender_asked_for_none(mta_env: MtaEnv) -> None:
    message_id = submit(mta_env, "a@example.org")
    change(mta_env, message_id, recipients=[Recipient("a@example.org", dsn_flags=0x10 | 0x01)])  # NOTIFY=SUCCESS
    assert mta_env.run("-Mg", message_id).returncode == 0
    assert mta_env.message_ids() == []


def test_the_bounce_is_delivered_at_once(mta_env: MtaEnv, sink: SmtpSink) -> None:
    mta_env.write_config(
        "begin routers\n"
        "smarthost:\n  driver = domainlist\n  transport = remote_smtp\n"
        f'  route_list = * "127.0.0.1::{sink.port}" byname\n  self = send\n'
        "begin transports\n"
        "remote_smtp:\n  driver = smtp\n  allow_localhost\n"
    )
    message_id = submit(mta_env, "a@example.org", sender="alice@example.net")
    result = mta_env.run("-Mg", message_id)
    assert (result.returncode, result.stderr) == (0, "")
    assert mta_env.message_ids() == []
    (received,) = sink.messages
    assert (received.mail_from, received.rcpt_tos) == ("<>", ["alice@example.net"])
    assert b"X-Failed-Recipients: a@example.org" in received.content
