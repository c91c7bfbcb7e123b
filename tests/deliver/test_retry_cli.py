"""Retry end to end through the real command line: `mta -odi`, `-M`, `-Mc` as subprocesses.

A "down" host is a FakeSmtpServer that answers every connection with
``421`` (so connections can be counted); a refusing one is a closed port.
Everything else goes to an aiosmtpd sink, which also receives the bounces
and delay warnings (the sender is alice@example.org).  Time passes by
`age_spool`: the spool's arrival times and the retry records are moved into
the past through mta's own modules (tests/support/retry_time.py says why
not a clock in the binary).
"""

from __future__ import annotations

import email
import email.policy
import re
import time
from pathlib import Path

import pytest

from mta.hints.retry_db import RetryDb, RetryRecord
from mta.spool.envelope import Envelope
from tests.support.fakesmtp import FakeSmtpServer
from tests.support.mta import MtaEnv
from tests.support.retry_time import age_spool, edit_envelope, retry_records
from tests.support.retry_world import configure, down, sink
from tests.support.sink import SmtpSink

M, H, D = 60, 3600, 86400
SENDER = "alice@example.org"
__all__ = ["down", "sink"]  # fixtures


def submit(env: MtaEnv, *recipients: str, mode: str = "-odi", text: str = "Subject: hello\n\nbody\n",
           sender: str = SENDER) -> str:
    before = set(env.message_ids())
    result = env.run(mode, "-f", sender, *recipients, input=text)
    assert result.returncode == 0, result.stderr
    new = [i for i in env.message_ids() if i not in before]
    if new:
        return new[0]
    # Delivered (or bounced) at once: the id is in the log.
    return next(line.split()[2] for line in reversed(env.log_lines()) if " <= " in line and f"<= {sender}" in line)


def lines_of(env: MtaEnv, message_id: str) -> list[str]:
    return [line.split(" ", 3)[3] for line in env.log_lines() if line.split(" ", 3)[2] == message_id]


def reports(sink: SmtpSink, subject_start: str) -> list[email.message.EmailMessage]:
    found = []
    for received in sink.messages:
        message = email.message_from_bytes(received.content, policy=email.policy.default)
        if str(message["Subject"] or "").startswith(subject_start):
            found.append(message)  # type: ignore[arg-type]
    return found


def text_of(message: email.message.EmailMessage) -> str:
    return "\n".join(part.get_content() for part in message.walk() if part.get_content_type() == "text/plain")


def test_a_down_host_gets_one_connection_per_retry_interval_across_messages(
    mta_env: MtaEnv, down: FakeSmtpServer, sink: SmtpSink
) -> None:
    configure(mta_env, down.port, sink)
    ids = [submit(mta_env, "bob@example.net") for _ in range(3)]
    assert len(down.connections) == 1
    first = lines_of(mta_env, ids[0])
    assert first[1].startswith("H=127.0.0.1 [127.0.0.1] SMTP error from remote mail server after initial connection")
    assert first[2].startswith("== bob@example.net R=down T=remote_smtp defer (0): SMTP error")
    for message_id in ids[1:]:
        assert lines_of(mta_env, message_id)[1] == (
            "== bob@example.net R=down T=remote_smtp defer (-54): retry time not reached for any host for 'example.net'"
        )
    [(key, rec)] = retry_records(mta_env.spool).items()
    assert key == f"T:[127.0.0.1]:127.0.0.1:{down.port}"
    assert rec.next_try - rec.last_try == 15 * M and rec.first_failed == rec.last_try and not rec.expired

    # 16 minutes later: all three are tried in one run that respects retry times; one connection.
    age_spool(mta_env.spool, 16 * M)
    result = mta_env.run("-Mc", *ids)
    assert result.returncode == 0, result.stderr
    assert len(down.connections) == 2
    # A forced delivery (-M) ignores the retry time.
    mta_env.run("-M", ids[0])
    assert len(down.connections) == 3
    # Mail for other domains is not held up by it.
    submit(mta_env, "carol@example.org")
    assert [m.rcpt_tos for m in sink.messages] == [["carol@example.org"]]
    assert sorted(mta_env.message_ids()) == sorted(ids)


def test_after_the_final_cutoff_the_address_bounces_saying_how_long(
    mta_env: MtaEnv, down: FakeSmtpServer, sink: SmtpSink
) -> None:
    configure(mta_env, down.port, sink)
    message_id = submit(mta_env, "bob@example.net", "carol@example.org")
    assert len(down.connections) == 1 and len(sink.messages) == 1
    age_spool(mta_env.spool, 4 * D + 1 * H)
    mta_env.run("-Mc", message_id)
    assert len(down.connections) == 2
    lines = lines_of(mta_env, message_id)
    assert "** bob@example.net: retry timeout exceeded" in lines
    assert lines[-1] == "Completed"
    [bounce] = reports(sink, "Mail delivery failed")
    text = text_of(bounce)
    assert "bob@example.net" in text and "retry timeout exceeded" in text
    assert "Delivery was tried for 4 days 1 hour" in text
    assert "carol@example.org" not in bounce["X-Failed-Recipients"]
    [(_, rec)] = retry_records(mta_env.spool).items()
    assert rec.expired

    # A new message for the dead domain bounces at once, without a connection (delay_after_cutoff).
    second = submit(mta_env, "bob@example.net")
    assert len(down.connections) == 2
    assert lines_of(mta_env, second)[1] == (
        "** bob@example.net R=down T=remote_smtp: all hosts for 'example.net' have been failing for a long time"
        " (and retry time not reached)"
    )
    assert len(reports(sink, "Mail delivery failed")) == 2
    assert mta_env.message_ids() == []


def test_delay_after_cutoff_false_tries_hosts_not_tried_since_the_message_arrived(
    mta_env: MtaEnv, down: FakeSmtpServer, sink: SmtpSink
) -> None:
    configure(mta_env, down.port, sink, transport="  no_delay_after_cutoff")
    old = submit(mta_env, "bob@example.net", mode="-odq")
    waiting = submit(mta_env, "bob@example.net")
    age_spool(mta_env.spool, 4 * D + 1 * H)
    submit(mta_env, "bob@example.net")  # past the cutoff: times out, the host's record expires
    assert len(down.connections) == 2
    # A message that arrived after the host's last try: tried once more, then bounced.
    third = submit(mta_env, "bob@example.net")
    assert len(down.connections) == 3
    assert "** bob@example.net: retry timeout exceeded" in lines_of(mta_env, third)
    # One that waited since before that try: not tried, bounced.
    mta_env.run("-Mc", old)
    assert len(down.connections) == 3
    assert (
        "** bob@example.net R=down T=remote_smtp: all hosts for 'example.net' have been failing for a long time"
        " and were last tried after this message arrived"
    ) in lines_of(mta_env, old)
    assert mta_env.message_ids() == [waiting]


def warning_count(env: MtaEnv, message_id: str) -> int:
    return int(env.header_file(message_id).splitlines()[3].split()[1])


def test_delay_warnings_once_per_interval(mta_env: MtaEnv, down: FakeSmtpServer, sink: SmtpSink) -> None:
    configure(mta_env, down.port, sink, main="delay_warning = 1h:3h")
    message_id = submit(mta_env, "bob@example.net", text="Subject: Meeting notes\n\nbody\n")
    age_spool(mta_env.spool, 61 * M)
    for _ in range(2):
        mta_env.run("-M", message_id)
    warnings = reports(sink, "Warning: message")
    assert [w["Subject"] for w in warnings] == [f"Warning: message {message_id} delayed 60 minutes"]
    assert warning_count(mta_env, message_id) == 1
    [warning] = warnings
    assert warning["To"] == SENDER and "bob@example.net" in text_of(warning)
    status = next(p for p in warning.walk() if p.get_content_type() == "message/delivery-status")
    assert "Action: delayed" in status.as_string()
    assert re.search(rf" <= <> R={message_id} U=\S+ P=local ", "\n".join(mta_env.log_lines()))

    age_spool(mta_env.spool, 2 * H)  # 3h01m: the second threshold
    mta_env.run("-M", message_id)
    assert warning_count(mta_env, message_id) == 2
    age_spool(mta_env.spool, 4 * H)  # 7h01m: 5h and 7h are both due, one warning brings it up to date
    mta_env.run("-M", message_id)
    mta_env.run("-M", message_id)
    subjects = [w["Subject"] for w in reports(sink, "Warning: message")]
    assert subjects[1:] == [f"Warning: message {message_id} delayed {n} hours" for n in (3, 7)]
    assert warning_count(mta_env, message_id) == 4


def test_no_delay_warning_when_not_wanted(mta_env: MtaEnv, down: FakeSmtpServer, sink: SmtpSink) -> None:
    configure(mta_env, down.port, sink, main="delay_warning = 1h")
    bulk = submit(mta_env, "bob@example.net", text="Subject: list mail\nPrecedence: bulk\n\nbody\n")
    quiet = submit(mta_env, "bob@example.net", "dave@example.net")
    # dave's sender asked for failure reports only (RFC 3461 NOTIFY=FAILURE); bob's for nothing at all.

    def notify(envelope: Envelope) -> None:
        envelope.recipients[0].dsn_flags = 0x10 | 0x08  # NOTIFY=NEVER
        envelope.recipients[1].dsn_flags = 0x10 | 0x02  # NOTIFY=FAILURE

    edit_envelope(mta_env.spool, quiet, notify)
    wanted = submit(mta_env, "bob@example.net")
    age_spool(mta_env.spool, 2 * H)
    mta_env.run("-M", bulk, quiet, wanted)
    assert [w["Subject"] for w in reports(sink, "Warning")] == [f"Warning: message {wanted} delayed 2 hours"]
    assert warning_count(mta_env, bulk) == warning_count(mta_env, quiet) == 0


def test_freezing_rules(mta_env: MtaEnv, down: FakeSmtpServer, sink: SmtpSink) -> None:
    main = "timeout_frozen_after = 3d\nauto_thaw = 1h\nignore_bounce_errors_after = 2d"
    configure(mta_env, down.port, sink, main=main)
    sink.rcpt_replies["nobody@example.org"] = "550 5.1.1 No such user"
    to_cancel = submit(mta_env, "bob@example.net", mode="-odq")
    to_thaw = submit(mta_env, "carol@example.org", mode="-odq")
    # A bounce that cannot be delivered is frozen ...
    bounce = submit(mta_env, "nobody@example.org", sender="<>")
    assert lines_of(mta_env, bounce)[-1] == "Frozen (delivery error message)"

    def freeze(envelope: Envelope) -> None:
        envelope.frozen = envelope.received_time

    for message_id in (to_cancel, to_thaw):
        edit_envelope(mta_env.spool, message_id, freeze)
    mta_env.run("-Mc", to_thaw)
    assert lines_of(mta_env, to_thaw)[-1] == "Message is frozen"

    age_spool(mta_env.spool, 2 * D + 1 * H)
    mta_env.run("-Mc", to_thaw, bounce)
    assert lines_of(mta_env, to_thaw)[-3:] == ["Unfrozen by auto-thaw", lines_of(mta_env, to_thaw)[-2], "Completed"]
    # ... and, older than ignore_bounce_errors_after, tried once more and thrown away.
    assert lines_of(mta_env, bounce)[-4:-2] == ["Unfrozen by errmsg timer", lines_of(mta_env, bounce)[-3]]
    assert lines_of(mta_env, bounce)[-2:] == ["nobody@example.org: error ignored", "Completed"]

    age_spool(mta_env.spool, 1 * D)
    mta_env.run("-Mc", to_cancel)
    assert lines_of(mta_env, to_cancel)[-3:] == [
        "cancelled by timeout_frozen_after",
        "** bob@example.net: delivery cancelled; message timed out",
        "Completed",
    ]
    assert len(down.connections) == 0
    [cancelled] = reports(sink, "Mail delivery failed")
    assert "delivery cancelled; message timed out" in text_of(cancelled)
    assert mta_env.message_ids() == []


def test_clock_set_back_does_not_hold_a_host_for_ages(mta_env: MtaEnv, down: FakeSmtpServer, sink: SmtpSink) -> None:
    """A record written before the clock went back ten days: its times cannot be trusted, so the
    host is due at once (not in ten days), and after that try the record makes sense again."""
    configure(mta_env, down.port, sink)
    future = int(time.time()) + 10 * D
    RetryDb.for_spool(str(mta_env.spool)).put(
        f"T:[127.0.0.1]:127.0.0.1:{down.port}",
        RetryRecord(future - H, future, future + 15 * M, False, 0, 0, None, "421 down", future),
    )
    submit(mta_env, "bob@example.net")
    assert len(down.connections) == 1
    [rec] = retry_records(mta_env.spool).values()
    assert rec.last_try <= time.time() and rec.next_try - rec.last_try == 15 * M
    second = submit(mta_env, "bob@example.net")
    assert len(down.connections) == 1
    assert "retry time not reached for any host" in lines_of(mta_env, second)[1]


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_hints_damaged_between_deliveries(mta_env: MtaEnv, down: FakeSmtpServer, sink: SmtpSink, damage: str) -> None:
    configure(mta_env, down.port, sink)
    submit(mta_env, "bob@example.net")
    path = Path(mta_env.spool / "db" / "retry")
    assert path.exists()
    if damage == "truncate":
        path.write_bytes(b"")
    else:
        path.unlink()
    second = submit(mta_env, "bob@example.net", "carol@example.org")
    # The spool is the truth: the host is simply tried again, the rest delivered as usual.
    assert len(down.connections) == 2
    # (The two hosts are tried at once: their lines come in either order.)
    deferral = "== bob@example.net R=down T=remote_smtp defer (0)"
    assert any(line.startswith(deferral) for line in lines_of(mta_env, second))
    assert [m.rcpt_tos for m in sink.messages] == [["carol@example.org"]]
    assert len(retry_records(mta_env.spool)) == 1


def test_a_bad_retry_rule_names_file_and_line(mta_env: MtaEnv) -> None:
    mta_env.write_config("begin retry\n*   *   F,2h,15m; G,16h,1h\n")
    result = mta_env.run("-bV")
    assert result.returncode != 0
    line = mta_env.config_text.splitlines().index("*   *   F,2h,15m; G,16h,1h") + 1
    assert f"{mta_env.config}:{line}" in result.stderr, result.stderr
    assert "G needs a cutoff, an interval and a multiplier" in result.stderr
