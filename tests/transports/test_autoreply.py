"""autoreply: the reply as spooled, item.reply, RFC 3834 silence, once/once_repeat, never_mail, taint.

The transport runs in this process (as in the delivery child of a run that
did not change user), so its reply goes through the real submission path
straight into a real spool, where each test reads it back.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from mta import record
from mta.config.loader import load_config
from mta.errors import DeferError, FailError
from mta.expand import ExpandContext, expand, time_variables
from mta.message.headers import header_lookup
from mta.receive.local_submit import generated_message_submitter
from mta.route.item import ReplyItem
from mta.runtime import Runtime, build_runtime
from mta.taint import Tainted
from mta.transports.autoreply import AutoreplyOptions, AutoreplyTransport
from mta.transports.base import DeliveryEnv, OutgoingMessage, Submitted
from tests.support.mta import MtaEnv
from tests.transports.transport_helpers import make_item, make_message

ORIGINAL = (
    "Received: from carol by mail.example.org\n"
    "From: Carol <carol@example.org>\n"
    "To: alice@example.com\n"
    "Subject: Lunch on Friday\n"
    "Message-ID: <lunch-1@example.org>\n"
    "References: <root@example.org>\n"
)
NOW = 1795351401.0


@pytest.fixture
def runtime(mta_env: MtaEnv) -> Runtime:
    mta_env.write_config("bounce_return_size_limit = 10K\nnever_users =\n")
    return build_runtime(load_config(str(mta_env.config)))


def autoreply(runtime: Runtime, **options: Any) -> AutoreplyTransport:
    transport = AutoreplyTransport("vacation", AutoreplyOptions(driver="autoreply", **options), ("test.conf", 9))
    transport.check(runtime.config)
    return transport


def delivery_env(runtime: Runtime, message: OutgoingMessage, now: float = NOW, **changes: Any) -> DeliveryEnv:
    """The env a delivery gives the transport: the real expander with the message's sender and headers."""
    lookup = header_lookup(message.headers)

    def expand_text(text: str, item: Any = None, extra: dict[str, Any] | None = None) -> str:
        variables: dict[str, Any] = {"sender_address": Tainted(message.sender_address), **time_variables(now)}
        if item is not None:
            variables.update(item.variables())
        variables.update(extra or {})
        return expand(text, ExpandContext(variables=variables, headers=lookup))

    env = DeliveryEnv(
        expand=expand_text,
        primary_hostname="mail.example.com",
        qualify_domain="example.com",
        now=now,
        extra={"runtime": runtime},
        submit=generated_message_submitter(runtime),
    )
    return record.replace(env, **changes) if changes else env


def original(
    tmp_path: Path, headers: str = ORIGINAL, sender: str = "carol@example.org", body: bytes = b"Hi\n"
) -> OutgoingMessage:
    return make_message(tmp_path / "original", body=body, headers=headers, sender=sender)


def spooled(runtime: Runtime, env: DeliveryEnv) -> list[tuple[Any, str]]:
    """(envelope, header section + body) of each reply this env's deliveries spooled."""
    replies = []
    for message_id in env.generated:
        envelope = runtime.spool.read_envelope(message_id)
        with runtime.spool.open_body(message_id) as body:
            text = "".join(h.text for h in envelope.headers if h.flag != "*") + "\n" + body.read().decode()
        replies.append((envelope, text))
    return replies


VACATION = {"from": "$local_part@$domain", "to": "$sender_address", "subject": "Re: $h_subject:"}


# -- the reply -------------------------------------------------------------------------------------------


def test_reply_is_spooled_with_empty_sender_and_threading_headers(runtime: Runtime, tmp_path: Path) -> None:
    away = tmp_path / "away.txt"
    away.write_text("Back on Monday.\n")
    transport = autoreply(
        runtime,
        **VACATION,
        reply_to="alice.home@example.net",
        cc="bob@example.com",
        headers="X-Vacation: yes\nOrganization: Example",
        text="I am away.",
        file=str(away),
    )
    message = original(tmp_path)
    env = delivery_env(runtime, message)
    transport.deliver(message, make_item(), env)
    [(envelope, text)] = spooled(runtime, env)
    assert envelope.sender_address == ""  # like a bounce: a reply to it can never loop back
    assert sorted(r.address for r in envelope.recipients) == ["bob@example.com", "carol@example.org"]
    head, _, body = text.partition("\n\n")
    ours = [line for line in head.split("\n") if not line.startswith(("Received:", "\t", "Message-Id:", "Date:"))]
    # Exim's order: From ... Subject, In-Reply-To, References, Auto-Submitted, then `headers`.
    assert ours == [
        "From: alice@example.com",
        "Reply-To: alice.home@example.net",
        "To: carol@example.org",
        "Cc: bob@example.com",
        "Subject: Re: Lunch on Friday",
        "In-Reply-To: <lunch-1@example.org>",
        "References: <root@example.org>",
        " <lunch-1@example.org>",
        "Auto-Submitted: auto-replied",
        "X-Vacation: yes",
        "Organization: Example",
    ]
    assert body == "I am away.\nBack on Monday.\n"  # text first, then the file


def test_item_reply_replaces_the_options_and_return_message(runtime: Runtime, tmp_path: Path) -> None:
    transport = autoreply(runtime, to="nobody@example.com", subject="from the options", text="not this")
    item = make_item()
    item.reply = ReplyItem(
        to=Tainted("carol@example.org"),
        from_="alice@example.com",
        subject="Away",
        text="Gone fishing.\n",
        return_message=True,
    )
    message = original(tmp_path, body=b"Where shall we meet?\n")
    env = delivery_env(runtime, message)
    transport.deliver(message, item, env)
    [(envelope, text)] = spooled(runtime, env)
    assert [r.address for r in envelope.recipients] == ["carol@example.org"]
    assert "Subject: Away\n" in text and "from the options" not in text
    body = text.partition("\n\n")[2]
    assert body == (
        "Gone fishing.\n\n------ This is a copy of the message, including all the headers.\n\n"
        + ORIGINAL
        + "\nWhere shall we meet?\n"
    )


def test_returned_body_is_cut_at_bounce_return_size_limit(runtime: Runtime, tmp_path: Path) -> None:
    transport = autoreply(runtime, **VACATION, text="Away.", return_message=True, body_only=True)
    big = b"".join(b"line %05d of a long message\n" % n for n in range(2000))  # 58 KB, limit 10K
    message = original(tmp_path, body=big)
    env = delivery_env(runtime, message)
    transport.deliver(message, make_item(), env)
    [(_, text)] = spooled(runtime, env)
    body = text.partition("\n\n")[2]
    assert body.startswith(
        "Away.\n\n------ This is a copy of the body of the message, without the headers.\n"
        f"------ The body of the message is {len(big)} characters long; only the first\n"
        "------ 16000 or so are included here.\n\nline 00000 of a long message\n"
    )
    copy = body.split("included here.\n\n", 1)[1]
    assert 10 * 1024 < len(copy) <= 10 * 1024 + 29 and copy.endswith(" of a long message\n")  # whole lines


# -- when no reply is sent ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra_header", "sender", "answered"),
    [
        ("", "", False),  # a bounce
        ("Auto-Submitted: auto-generated\n", "carol@example.org", False),
        ("Auto-Submitted: auto-replied (vacation)\n", "carol@example.org", False),
        ("Auto-Submitted: no\n", "carol@example.org", True),
        ("Precedence: bulk\n", "carol@example.org", False),
        ("Precedence: List\n", "carol@example.org", False),
        ("Precedence: junk\n", "carol@example.org", False),
        ("Precedence: first-class\n", "carol@example.org", True),
        ("List-Id: Lunch club <lunch.example.org>\n", "carol@example.org", False),
        ("List-Unsubscribe: <mailto:leave@example.org>\n", "carol@example.org", False),
        ("List-Post: <mailto:lunch@example.org>\n", "carol@example.org", False),
        ("X-List-Id: not a list header\n", "carol@example.org", True),
    ],
)
def test_automatic_mail_gets_no_reply(
    runtime: Runtime, tmp_path: Path, extra_header: str, sender: str, answered: bool
) -> None:
    log = tmp_path / "vacation.log"
    transport = autoreply(runtime, **VACATION, text="Away.", log=str(log))
    message = original(tmp_path, headers=ORIGINAL + extra_header, sender=sender)
    env = delivery_env(runtime, message)
    transport.deliver(message, make_item(), env)  # the address is done either way
    assert len(spooled(runtime, env)) == (1 if answered else 0)
    assert ("  not sent: the message " in log.read_text()) is not answered


def test_never_mail_and_no_recipients(runtime: Runtime, tmp_path: Path) -> None:
    message = original(tmp_path)
    transport = autoreply(
        runtime,
        **VACATION,
        cc="Boss <boss@example.com>, team@example.com",
        text="Away.",
        never_mail="carol@example.org : *@example.com",
    )
    env = delivery_env(runtime, message)
    transport.deliver(message, make_item(), env)
    assert env.generated == []  # every recipient was on never_mail: nothing sent, and no error
    transport = autoreply(
        runtime, **VACATION, cc="Boss <boss@example.com>, team@example.com", text="Away.", never_mail="team@example.com"
    )
    transport.deliver(message, make_item(), env)
    [(envelope, text)] = spooled(runtime, env)
    assert sorted(r.address for r in envelope.recipients) == ["boss@example.com", "carol@example.org"]
    assert "\nCc: Boss <boss@example.com>\n" in text
    env = delivery_env(runtime, message)
    autoreply(runtime, subject="nobody", text="x").deliver(message, make_item(), env)  # no to, cc or bcc
    assert env.generated == []


# -- once ---------------------------------------------------------------------------------------------------


def test_once_and_once_repeat(runtime: Runtime, tmp_path: Path) -> None:
    once, log = tmp_path / "once", tmp_path / "log"
    transport = autoreply(runtime, **VACATION, text="Away.", once=str(once), once_repeat="1d", log=str(log))
    message = original(tmp_path)
    sent = []
    for now in (NOW, NOW + 3600, NOW + 86400 + 1):
        env = delivery_env(runtime, message, now=now)
        transport.deliver(message, make_item(), env)
        sent.append(len(env.generated))
    assert sent == [1, 0, 1]  # answered, not again within a day, then again
    assert once.read_text() == f"{int(NOW + 86400 + 1)} carol@example.org\n"
    assert oct(os.stat(once).st_mode & 0o777) == "0o600"
    sent_entry = ["  From: alice@example.com", "  To: carol@example.org", "  Subject: Re: Lunch on Friday"]
    lines = log.read_text().split("\n")
    assert [line for line in lines if line.startswith("  ")] == [
        *sent_entry,
        "  previously sent to carol@example.org",
        *sent_entry,
    ]
    assert lines[0] == "2026-11-22 12:43:21" or len(lines[0]) == 19  # the log's time stamp, local time


def test_once_without_repeat_never_answers_twice_and_file_size_drops_the_oldest(
    runtime: Runtime, tmp_path: Path
) -> None:
    once = tmp_path / "once"
    transport = autoreply(runtime, **VACATION, text="Away.", once=str(once), once_file_size=60)
    sent = []
    for number, sender in enumerate(["a@", "b@", "c@", "c@", "a@"]):
        message = original(tmp_path / str(number), sender=sender + "example.org")
        env = delivery_env(runtime, message, now=NOW + number)
        transport.deliver(message, make_item(), env)
        sent.append(len(env.generated))
    # Each line is 25 bytes: adding c@ would pass 60, so a@ (the oldest) went, and is answered again.
    assert sent == [1, 1, 1, 0, 1]
    assert once.read_text() == f"{int(NOW) + 2} c@example.org\n{int(NOW) + 4} a@example.org\n"


def test_failed_submission_defers_and_does_not_count_as_answered(runtime: Runtime, tmp_path: Path) -> None:
    once = tmp_path / "once"
    transport = autoreply(runtime, **VACATION, text="Away.", once=str(once))
    message = original(tmp_path)

    def refuse(argv: list[str], stream: Any) -> Submitted:
        assert argv == ["-t", "-oi", "-f", "<>"]
        return Submitted(1, "the mail daemon did not answer")

    with pytest.raises(DeferError, match=r"Failed to send message from vacation transport \(the mail daemon"):
        transport.deliver(message, make_item(), delivery_env(runtime, message, submit=refuse))
    assert once.read_text() == ""
    env = delivery_env(runtime, message)
    transport.deliver(message, make_item(), env)  # the retry answers
    assert len(env.generated) == 1


# -- message data and file names -------------------------------------------------------------------------------


def test_header_values_from_the_message_cannot_add_a_header(runtime: Runtime, tmp_path: Path) -> None:
    # An encoded word that decodes to CR LF: $h_subject: gives "Hi\r\nBcc: victim@example.net".
    hostile = "Subject: =?utf-8?b?SGkNCkJjYzogdmljdGltQGV4YW1wbGUubmV0?=\n"
    message = original(tmp_path, headers=ORIGINAL.replace("Subject: Lunch on Friday\n", hostile))
    transport = autoreply(runtime, **VACATION, text="Away.")
    env = delivery_env(runtime, message)
    transport.deliver(message, make_item(), env)
    [(envelope, text)] = spooled(runtime, env)
    assert [r.address for r in envelope.recipients] == ["carol@example.org"]
    head = text.partition("\n\n")[0]
    assert "\nBcc:" not in head and "victim@example.net" in head  # the data stayed inside Subject:
    # A control character from the configuration's own text fails, as in Exim.
    with pytest.raises(FailError, match="non-printing character 7"):
        autoreply(runtime, to="$sender_address", subject="bell \x07").deliver(message, make_item(), env)


@pytest.mark.parametrize("option", ["file", "once", "log"])
def test_file_names_from_the_message_are_refused(runtime: Runtime, tmp_path: Path, option: str) -> None:
    message = original(tmp_path, headers=ORIGINAL.replace("Lunch on Friday", "../../etc/cron.d/x"))
    transport = autoreply(runtime, **VACATION, text="Away.", **{option: f"{tmp_path}/$h_subject:"})
    what = {"file": "file", "once": "once file", "log": "logfile"}[option]
    with pytest.raises(DeferError, match=rf"Tainted '.*/etc/cron.d/x' \({what} for vacation transport\) not permitted"):
        transport.deliver(message, make_item(), delivery_env(runtime, message))


def test_file_missing_defers_unless_optional_and_file_expand(runtime: Runtime, tmp_path: Path) -> None:
    message = original(tmp_path)
    missing = str(tmp_path / "missing")
    with pytest.raises(DeferError, match=r"Failed to open file .*missing when sending message from vacation"):
        autoreply(runtime, **VACATION, file=missing).deliver(message, make_item(), delivery_env(runtime, message))
    env = delivery_env(runtime, message)
    autoreply(runtime, **VACATION, text="Away.", file=missing, file_optional=True).deliver(message, make_item(), env)
    [(_, text)] = spooled(runtime, env)
    assert text.endswith("\n\nAway.\n")
    template = tmp_path / "template"
    template.write_text("Dear ${uc:$local_part},\nliteral ${bad expansion\n")
    env = delivery_env(runtime, message)
    autoreply(runtime, **VACATION, file=str(template), file_expand=True).deliver(message, make_item(), env)
    [(_, text)] = spooled(runtime, env)
    assert text.endswith("\n\nDear ALICE,\nliteral ${bad expansion\n")  # a failed line goes as it is


def test_bad_options_are_configuration_errors(runtime: Runtime) -> None:
    from mta.errors import ConfigError

    with pytest.raises(ConfigError, match=r"test.conf.*once_repeat: \"sometimes\" is not a time"):
        autoreply(runtime, once_repeat="sometimes")
    with pytest.raises(ConfigError, match="subject"):
        autoreply(runtime, subject="${if}")
