"""Bounces and delay warnings: real originals on a real spool, reports parsed back with `email`."""

from __future__ import annotations

import email
import email.policy
import io
import pwd
import re
import tracemalloc
from collections.abc import Callable
from email.message import EmailMessage

import pytest

from mta.config.caller import current_caller
from mta.config.loader import load_config
from mta.deliver import dsn_text
from mta.deliver.bounce import FailedAddress, send_bounce, send_bounces, send_delay_warning
from mta.message.headers import rfc822_date
from mta.receive.local import SenderDecision, receive_local
from mta.runtime import Runtime, build_runtime
from mta.spool.envelope import Envelope, SpoolHeader, encode_text
from tests.spool.spool_helpers import SAMPLES
from tests.support.mta import MtaEnv

INVOICE = (
    b"From: Alice <alice@example.com>\n"
    b"To: mallory@example.com\n"
    b"Subject: Invoice 2231\n"
    b"Message-ID: <invoice-2231@example.com>\n"
    b"\n"
    b"Please find the invoice below.\n"
)
UNKNOWN_USER = FailedAddress("mallory@example.com", "mallory@example.com", "Unknown user")


@pytest.fixture
def make_runtime(mta_env: MtaEnv) -> Callable[..., Runtime]:
    def make(extra: str = "") -> Runtime:
        mta_env.write_config(extra)
        return build_runtime(load_config(str(mta_env.config)))

    return make


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime]) -> Runtime:
    return make_runtime()


def submit(
    runtime: Runtime,
    text: bytes = INVOICE,
    sender: str = "alice@example.com",
    recipients: tuple[str, ...] = ("mallory@example.com",),
) -> Envelope:
    """Spool an original the way `mta -bm` does and load its envelope back."""
    received = receive_local(
        runtime,
        io.BytesIO(text),
        caller=current_caller(),
        trusted=True,
        recipients=list(recipients),
        extract=False,
        dot_ends=False,
        sender=SenderDecision(sender, False),
        sender_name=None,
    )
    return runtime.spool.read_envelope(received.message_id)


def spooled_bytes(runtime: Runtime, message_id: str) -> bytes:
    """The message as a transport would send it: live headers, blank line, body."""
    envelope = runtime.spool.read_envelope(message_id)
    headers = b"".join(encode_text(h.text) for h in envelope.headers if h.flag != "*")
    with runtime.spool.open_body(message_id) as body:
        return headers + b"\n" + body.read()


def parse(runtime: Runtime, message_id: str) -> EmailMessage:
    message = email.message_from_bytes(spooled_bytes(runtime, message_id), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message.defects == [], message.defects
    return message


def report_parts(message: EmailMessage, copy_type: str | None = "message/rfc822") -> list[EmailMessage]:
    """Check the multipart/report shape and return its parts."""
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    parts = list(message.iter_parts())
    want = ["text/plain", "message/delivery-status"] + ([copy_type] if copy_type else [])
    assert [p.get_content_type() for p in parts] == want
    assert parts[0].get_content_charset() == "us-ascii"
    return parts  # type: ignore[return-value]


def status_blocks(part: EmailMessage) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The per-message fields and the per-recipient blocks of a message/delivery-status part."""
    blocks = [dict(block.items()) for block in part.get_payload()]  # type: ignore[union-attr]
    return blocks[0], blocks[1:]


def returned_message(part: EmailMessage) -> EmailMessage:
    inner = part.get_payload()[0]  # type: ignore[index]
    assert isinstance(inner, EmailMessage)
    return inner


def sample_message(name: str) -> bytes:
    """An Exim sample as stored in the mbox, without the comment and mbox From_ lines
    and the headers appendfile added at delivery."""
    data = (SAMPLES / name).read_bytes().split(b"\n", 2)[2]
    return b"".join(data.splitlines(keepends=True)[3:])  # Return-path, Envelope-to, Delivery-date


def failed_recipients(message: EmailMessage) -> list[str]:
    return [a.strip() for h in message.get_all("X-Failed-Recipients", []) for a in str(h).split(",")]


def body_after_headers(raw: bytes) -> bytes:
    return raw.split(b"\n\n", 1)[1]


def boundary_of(raw: bytes) -> bytes:
    found = re.search(rb"boundary=(\S+)", raw)
    assert found is not None
    return found.group(1)


# -- the bounce ----------------------------------------------------------------


def test_bounce_has_exims_shape(runtime: Runtime) -> None:
    original = submit(runtime)
    bounce_id = send_bounce(runtime, original, [UNKNOWN_USER])
    assert bounce_id is not None
    raw = spooled_bytes(runtime, bounce_id)
    sample = sample_message("msg-bounce-unknown-user.txt")

    # The same headers in the same order as Exim's bounce.
    def names(data: bytes) -> list[str]:
        return [h.split(b":")[0].decode() for h in data.split(b"\n\n")[0].split(b"\n") if h and h[:1] not in b" \t"]

    assert names(raw) == names(sample)
    assert b"-mtadsn-" in boundary_of(raw)

    # The explanation and the delivery status are Exim's, byte for byte.
    ours = body_after_headers(raw).replace(boundary_of(raw), b"BOUNDARY")
    theirs = body_after_headers(sample).replace(boundary_of(sample), b"BOUNDARY")
    cut = b"Content-type: message/rfc822\n\n"
    assert ours.split(cut)[0] == theirs.split(cut)[0]
    assert ours.endswith(b"Please find the invoice below.\n\n--BOUNDARY--\n")

    message = parse(runtime, bounce_id)
    assert message["X-Failed-Recipients"] == "mallory@example.com"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["From"] == "Mail Delivery System <Mailer-Daemon@example.com>"
    assert message["To"] == "alice@example.com"
    assert message["References"] == "<invoice-2231@example.com>"
    assert message["Subject"] == "Mail delivery failed: returning message to sender"
    assert message["MIME-Version"] == "1.0"
    assert message["Reply-To"] is None
    parts = report_parts(message)
    per_message, recipients = status_blocks(parts[1])
    assert per_message == {"Reporting-MTA": "dns; mail.example.com"}
    assert recipients == [{"Action": "failed", "Final-Recipient": "rfc822;mallory@example.com", "Status": "5.0.0"}]
    returned = returned_message(parts[2])
    assert returned["Return-path"] == "<alice@example.com>"
    assert returned["Subject"] == "Invoice 2231"
    assert returned["Message-ID"] == "<invoice-2231@example.com>"
    assert returned["Received"].startswith("from root by mail.example.com with local")
    assert returned.get_content() == "Please find the invoice below.\n"


def test_bounce_is_spooled_from_null_sender_with_localerror(runtime: Runtime, mta_env: MtaEnv) -> None:
    original = submit(runtime)
    bounce_id = send_bounce(runtime, original, [UNKNOWN_USER], now=original.received_time + 3)
    assert bounce_id is not None and bounce_id != original.message_id

    envelope = runtime.spool.read_envelope(bounce_id)
    mail = pwd.getpwnam("mail")
    assert envelope.sender_address == ""
    assert envelope.localerror
    assert [r.address for r in envelope.recipients] == ["alice@example.com"]
    assert envelope.received_protocol == "local"
    assert (envelope.originator_login, envelope.originator_uid, envelope.ident) == ("mail", mail.pw_uid, "mail")
    assert envelope.received_time == original.received_time + 3
    header_file = mta_env.header_file(bounce_id).splitlines()
    assert header_file[2] == "<>"
    assert "-localerror" in header_file
    # Reception added Received:, Message-Id: and Date: as for any arrival.
    assert envelope.headers[0].text.startswith("Received: from mail by mail.example.com with local")
    assert f"<E{bounce_id}@mail.example.com>" in dsn_text.header_value(envelope.headers, "message-id")  # type: ignore[operator]

    # The arrival is logged as Exim logs a bounce: <= <> R=<original> U=<mta_user> P=local S=<size>.
    size = len(spooled_bytes(runtime, bounce_id))
    pattern = rf"{bounce_id} <= <> R={original.message_id} U=mail P=local S={size}( |$)"
    assert any(re.search(pattern, line) for line in mta_env.log_lines()), mta_env.log_lines()
    # The bounce is free for the caller (or a queue runner) to deliver.
    assert not runtime.spool.is_locked(bounce_id)


def test_bounce_of_a_message_queued_by_the_cli(mta_env: MtaEnv, runtime: Runtime) -> None:
    result = mta_env.run("-odq", "-f", "alice@example.com", "mallory@example.com", input=INVOICE)
    assert result.returncode == 0, result.stderr
    [original_id] = mta_env.message_ids()
    original = runtime.spool.read_envelope(original_id)
    bounce_id = send_bounce(runtime, original, [UNKNOWN_USER])
    assert bounce_id is not None
    parts = report_parts(parse(runtime, bounce_id))
    returned = returned_message(parts[2])
    assert returned["Message-ID"] == "<invoice-2231@example.com>"
    assert returned.get_content() == "Please find the invoice below.\n"
    assert sorted(mta_env.message_ids()) == sorted([original_id, bounce_id])


def test_several_failures_in_one_bounce(runtime: Runtime) -> None:
    original = submit(runtime, recipients=("sales@example.com", "alerts@example.com", "carol@example.org"))
    failures = [
        FailedAddress(
            "sales@example.com",
            "bob@remote.example",
            "SMTP error from remote mail server after RCPT TO:<bob@remote.example>: 550 5.1.1 <bob@remote.example>:"
            " Recipient address rejected: User unknown",
            status="5.1.1",
            remote_mta="mx.remote.example",
            diagnostic_code="550-5.1.1 <bob@remote.example>:\r\n550 5.1.1 Recipient address rejected",
        ),
        FailedAddress("alerts@example.com", "|/usr/bin/alert", "Child process of pipe transport returned 1"),
        FailedAddress("carol@example.org", "carol@example.org", "retry timeout exceeded", status="4.4.7"),
    ]
    bounce_id = send_bounce(runtime, original, failures)
    assert bounce_id is not None
    message = parse(runtime, bounce_id)
    # The address that failed is listed, a pipe by the address that led to it.
    assert failed_recipients(message) == ["bob@remote.example", "alerts@example.com", "carol@example.org"]
    parts = report_parts(message)
    text = parts[0].get_content()
    assert (
        "  bob@remote.example\n"
        "    (generated from sales@example.com)\n"
        "    host mx.remote.example\n"
        "    SMTP error from remote mail server after RCPT TO:<bob@remote.example>:\n"
        "    550 5.1.1 <bob@remote.example>: Recipient address rejected:\n"
        "    User unknown\n"
        "  pipe to |/usr/bin/alert\n"
        "    generated by alerts@example.com\n"
        "    Child process of pipe transport returned 1\n"
        "  carol@example.org\n"
        "    retry timeout exceeded\n"
    ) in text
    _, recipients = status_blocks(parts[1])
    # Final-Recipient is the address the sender used: aliases stay private.
    assert recipients == [
        {
            "Action": "failed",
            "Final-Recipient": "rfc822;sales@example.com",
            "Status": "5.1.1",
            "Remote-MTA": "dns; mx.remote.example",
            "Diagnostic-Code": "smtp; 550-5.1.1 <bob@remote.example>: 550 5.1.1 Recipient address rejected",
        },
        {"Action": "failed", "Final-Recipient": "rfc822;alerts@example.com", "Status": "5.0.0"},
        {"Action": "failed", "Final-Recipient": "rfc822;carol@example.org", "Status": "4.4.7"},
    ]
    # A multi-line reply is folded as RFC 3464 wants, one continuation line per reply line.
    raw = spooled_bytes(runtime, bounce_id)
    assert b"Diagnostic-Code: smtp; 550-5.1.1 <bob@remote.example>:\n 550 5.1.1 Recipient" in raw


def test_remote_reply_cannot_forge_fields_or_boundaries(runtime: Runtime) -> None:
    original = submit(runtime)
    message = parse(runtime, send_bounce(runtime, original, [
        FailedAddress(
            "mallory@example.com",
            "mallory@example.com",
            "550 no\n--fake-boundary\r\nX: y",
            remote_mta="mx.example.net\nAction: delivered",
            diagnostic_code="550 no\n\nAction: delivered\nFinal-Recipient: rfc822;other@example.com",
        )
    ]))  # fmt: skip
    parts = report_parts(message)
    _, recipients = status_blocks(parts[1])
    assert len(recipients) == 1
    assert recipients[0]["Action"] == "failed"
    assert recipients[0]["Final-Recipient"] == "rfc822;mallory@example.com"
    assert recipients[0]["Remote-MTA"] == "dns; mx.example.net\\nAction: delivered"
    assert "    --fake-boundary\n    X: y\n" in parts[0].get_content()


def test_errors_reply_to_sets_reply_to(make_runtime: Callable[..., Runtime]) -> None:
    runtime = make_runtime("errors_reply_to = postmaster@$qualify_domain\n")
    raw = spooled_bytes(runtime, send_bounce(runtime, submit(runtime), [UNKNOWN_USER]))  # type: ignore[arg-type]
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Reply-To"] == "postmaster@example.com"
    # Where Exim puts it: after X-Failed-Recipients:, before Auto-Submitted:.
    assert b"X-Failed-Recipients: mallory@example.com\nReply-To: postmaster@example.com\nAuto-Submitted:" in raw


def test_references_keep_the_thread(runtime: Runtime) -> None:
    earlier = " ".join(f"<ref{n}@example.com>" for n in range(20))
    text = INVOICE.replace(b"Subject:", f"References: {earlier}\nSubject:".encode())
    message = parse(runtime, send_bounce(runtime, submit(runtime, text), [UNKNOWN_USER]))  # type: ignore[arg-type]
    ids = message["References"].split()
    # At most 12: the thread's root, the ten latest, and the bounced message itself.
    assert ids == ["<ref0@example.com>"] + [f"<ref{n}@example.com>" for n in range(10, 20)] + [
        "<invoice-2231@example.com>"
    ]


# -- what is returned of the original ---------------------------------------------


def long_body(lines: int, width: int = 99) -> bytes:
    return b"".join(b"%06d " % n + b"x" * (width - 7) + b"\n" for n in range(lines))


def test_body_over_size_limit_is_cut_at_a_line_end(make_runtime: Callable[..., Runtime]) -> None:
    runtime = make_runtime("bounce_return_size_limit = 10K\n")
    body = long_body(500)  # 50,000 bytes of 100-byte lines
    original = submit(runtime, INVOICE.split(b"\n\n")[0] + b"\n\n" + body)
    message = parse(runtime, send_bounce(runtime, original, [UNKNOWN_USER]))  # type: ignore[arg-type]
    parts = report_parts(message)
    assert (
        "------ The body of the message is 50000 characters long; only the first\n"
        "------ 10240 or so are included here.\n"
    ) in parts[0].get_content()
    returned = returned_message(parts[2])
    assert returned["Subject"] == "Invoice 2231"
    copy = returned.get_content().encode()
    assert copy == body[:10200]  # 102 whole lines: the 103rd would pass 10240 bytes


def test_body_within_size_limit_is_returned_whole(make_runtime: Callable[..., Runtime]) -> None:
    runtime = make_runtime("bounce_return_size_limit = 10K\n")
    body = long_body(100)  # 10,000 bytes
    original = submit(runtime, INVOICE.split(b"\n\n")[0] + b"\n\n" + body)
    parts = report_parts(parse(runtime, send_bounce(runtime, original, [UNKNOWN_USER])))  # type: ignore[arg-type]
    assert returned_message(parts[2]).get_content().encode() == body
    assert "------" not in parts[0].get_content()


def test_headers_only_when_bounce_return_body_is_false(make_runtime: Callable[..., Runtime]) -> None:
    runtime = make_runtime("no_bounce_return_body\n")
    message = parse(runtime, send_bounce(runtime, submit(runtime), [UNKNOWN_USER]))  # type: ignore[arg-type]
    parts = report_parts(message, "text/rfc822-headers")
    assert "The body of the message is not included here" in parts[0].get_content()
    copy = parts[2].get_content()
    assert copy.startswith("Return-path: <alice@example.com>\nReceived: from root by mail.example.com")
    assert "Subject: Invoice 2231\nMessage-ID: <invoice-2231@example.com>\nDate: " in copy
    assert "Please find the invoice" not in copy


def test_headers_only_when_the_sender_asked_ret_hdrs(runtime: Runtime) -> None:
    original = submit(runtime)
    original.dsn_ret = 2  # as -H stores RET=HDRS from MAIL FROM
    parts = report_parts(parse(runtime, send_bounce(runtime, original, [UNKNOWN_USER])), "text/rfc822-headers")  # type: ignore[arg-type]
    assert "Please find the invoice" not in parts[2].get_content()


def test_no_copy_when_bounce_return_message_is_false(make_runtime: Callable[..., Runtime]) -> None:
    runtime = make_runtime("no_bounce_return_message\n")
    bounce_id = send_bounce(runtime, submit(runtime), [UNKNOWN_USER])
    assert bounce_id is not None
    message = parse(runtime, bounce_id)
    parts = report_parts(message, copy_type=None)
    _, recipients = status_blocks(parts[1])
    assert recipients[0]["Final-Recipient"] == "rfc822;mallory@example.com"
    assert b"Please find" not in spooled_bytes(runtime, bounce_id)


def test_deleted_headers_are_not_returned(runtime: Runtime) -> None:
    original = submit(runtime)
    original.headers.append(SpoolHeader("*", "X-Secret: rewritten away\n"))
    parts = report_parts(parse(runtime, send_bounce(runtime, original, [UNKNOWN_USER])))  # type: ignore[arg-type]
    assert returned_message(parts[2])["X-Secret"] is None


@pytest.mark.parametrize("limit, returned_size", [("", 100 * 1024), ("bounce_return_size_limit = 0\n", 5_000_000)])
def test_large_original_is_streamed(make_runtime: Callable[..., Runtime], limit: str, returned_size: int) -> None:
    runtime = make_runtime(limit)
    body = long_body(50_000)  # 5,000,000 bytes
    original = submit(runtime, INVOICE.split(b"\n\n")[0] + b"\n\n" + body)
    tracemalloc.start()
    try:
        bounce_id = send_bounce(runtime, original, [UNKNOWN_USER])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Chunks of 64 KiB go through: nothing near the size of the body is ever held.
    assert peak < 1_000_000, f"peak {peak} bytes while bouncing a 5 MB message"
    parts = report_parts(parse(runtime, bounce_id))  # type: ignore[arg-type]
    copy = returned_message(parts[2]).get_content().encode()
    assert copy == body[: returned_size - returned_size % 100]


# -- where bounces go ----------------------------------------------------------------


def test_errors_to_groups_failures_into_one_bounce_per_address(runtime: Runtime) -> None:
    original = submit(runtime, recipients=("mallory@example.com", "list@example.com", "other@example.com"))
    failures = [
        UNKNOWN_USER,
        FailedAddress("list@example.com", "gone@example.net", "Unknown user", errors_to="owner@example.com"),
        FailedAddress("list@example.com", "lost@example.net", "Unknown user", errors_to="owner@example.com"),
        FailedAddress("other@example.com", "quiet@example.net", "Unknown user", errors_to=""),
    ]
    with pytest.raises(ValueError, match="send_bounces"):
        send_bounce(runtime, original, failures)
    assert runtime.spool.list_message_ids() == [original.message_id]  # nothing half made

    ids = send_bounces(runtime, original, failures)
    assert len(ids) == 2
    to_sender, to_owner = (parse(runtime, i) for i in ids)

    assert to_sender["To"] == "alice@example.com"
    assert to_sender["Subject"] == "Mail delivery failed: returning message to sender"
    assert to_sender["X-Failed-Recipients"] == "mallory@example.com"

    assert to_owner["To"] == "owner@example.com"
    assert to_owner["Subject"] == "Mail delivery failed"
    assert failed_recipients(to_owner) == ["gone@example.net", "lost@example.net"]
    parts = report_parts(to_owner)
    assert "A message sent by\n\n  <alice@example.com>\n\ncould not be delivered" in parts[0].get_content()
    _, recipients = status_blocks(parts[1])
    assert [r["Final-Recipient"] for r in recipients] == ["rfc822;list@example.com"] * 2
    assert [runtime.spool.read_envelope(i).recipients[0].address for i in ids] == [
        "alice@example.com",
        "owner@example.com",
    ]
    # errors_to = "" discards: quiet@ is in no bounce.
    for i in ids:
        assert b"quiet@example.net" not in spooled_bytes(runtime, i)


def test_only_discarded_failures_make_no_bounce(runtime: Runtime) -> None:
    original = submit(runtime)
    discarded = FailedAddress("mallory@example.com", "mallory@example.com", "Unknown user", errors_to="")
    assert send_bounce(runtime, original, [discarded]) is None
    assert runtime.spool.list_message_ids() == [original.message_id]


def test_a_bounce_never_bounces(runtime: Runtime, mta_env: MtaEnv) -> None:
    original = submit(runtime, sender="")
    assert original.sender_address == ""
    redirected = FailedAddress("mallory@example.com", "mallory@example.com", "x", errors_to="owner@example.com")
    assert send_bounce(runtime, original, [UNKNOWN_USER]) is None
    assert send_bounces(runtime, original, [UNKNOWN_USER, redirected]) == []
    assert send_delay_warning(runtime, original, ["mallory@example.com"], delay=3600) is None
    assert runtime.spool.list_message_ids() == [original.message_id]
    assert not any("<= <> R=" in line for line in mta_env.log_lines())


def test_failed_address_checks_its_status() -> None:
    with pytest.raises(ValueError, match="status"):
        FailedAddress("a@example.com", "a@example.com", "x", status="550")
    with pytest.raises(ValueError, match="status"):
        FailedAddress("a@example.com", "a@example.com", "x", status="2.0.0")


# -- delay warnings -------------------------------------------------------------------


def test_delay_warning_has_exims_shape(runtime: Runtime, mta_env: MtaEnv) -> None:
    text = INVOICE.replace(b"Subject: Invoice 2231", b"Subject: Meeting notes")
    original = submit(runtime, text, recipients=("bob@example.net",))
    warning_id = send_delay_warning(runtime, original, ["bob@example.net"], delay=600, now=original.received_time + 700)
    assert warning_id is not None
    message = parse(runtime, warning_id)
    assert message["Subject"] == f"Warning: message {original.message_id} delayed 10 minutes"
    assert message["To"] == "alice@example.com"
    assert message["X-Failed-Recipients"] is None
    assert message["References"] == "<invoice-2231@example.com>"
    parts = report_parts(message, "text/rfc822-headers")
    explanation = parts[0].get_content()
    date = dsn_text.header_value(original.headers, "date")
    assert explanation == (
        "This message was created automatically by mail delivery software.\n"
        "A message that you sent has not yet been delivered to one or more of its\n"
        "recipients after more than 10 minutes on the queue on mail.example.com.\n\n"
        f"The message identifier is:     {original.message_id}\n"
        "The subject of the message is: Meeting notes\n"
        f"The date of the message is:    {date}\n\n"
        "The address to which the message has not yet been delivered is:\n\n"
        "  bob@example.net\n\n" + dsn_text.WARNING_FINAL
    )
    _, recipients = status_blocks(parts[1])
    assert recipients == [{"Action": "delayed", "Final-Recipient": "rfc822;bob@example.net", "Status": "4.0.0"}]
    copy = parts[2].get_content()
    assert copy.startswith("Return-path: <alice@example.com>\n")
    assert "Subject: Meeting notes\n" in copy and "Please find" not in copy

    envelope = runtime.spool.read_envelope(warning_id)
    assert envelope.sender_address == "" and envelope.localerror
    assert [r.address for r in envelope.recipients] == ["alice@example.com"]
    assert any(f"{warning_id} <= <> R={original.message_id} U=mail P=local" in line for line in mta_env.log_lines())

    # Exim's raw layout around the headers-only copy: headers, blank line, blank line, end.
    raw = spooled_bytes(runtime, warning_id)
    assert re.search(rb"\nDate: [^\n]+\n\n\n--[^\n]+--\n$", raw)


def test_delay_warning_in_hours_and_retry_limit(runtime: Runtime) -> None:
    original = submit(runtime, recipients=("bob@example.net", "carol@example.org"))
    until = original.received_time + 4 * 86400
    message = parse(runtime, send_delay_warning(  # type: ignore[arg-type]
        runtime,
        original,
        ["bob@example.net", "carol@example.org"],
        delay=86400,
        now=original.received_time + 86400 + 60,
        will_retry_until=until,
    ))  # fmt: skip
    assert message["Subject"] == f"Warning: message {original.message_id} delayed 24 hours"
    parts = report_parts(message, "text/rfc822-headers")
    assert "The addresses to which the message has not yet been delivered are:\n\n" in parts[0].get_content()
    _, recipients = status_blocks(parts[1])
    assert [r["Final-Recipient"] for r in recipients] == ["rfc822;bob@example.net", "rfc822;carol@example.org"]
    assert all(r["Will-Retry-Until"] == rfc822_date(until) for r in recipients)


# -- the texts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message, want",
    [
        ("Unknown user", "\n    Unknown user"),
        ("line one\nline two", "\n    line one\n    line two"),
        ("short: not broken", "\n    short: not broken"),
        (
            "SMTP error from remote mail server after RCPT TO:<a@b.example>: 550 no such user",
            "\n    SMTP error from remote mail server after RCPT TO:<a@b.example>:\n    550 no such user",
        ),
        ("caf\u00e9\ttab\\", "\n    caf\\303\\251\\ttab\\\\"),
        ("", ""),
    ],
    ids=["plain", "newline", "short-colon", "smtp-reply", "escapes", "empty"],
)
def test_address_error_layout(message: str, want: str) -> None:
    got = dsn_text.address_error(message)
    assert got == want, f"got {got!r} want {want!r}"


@pytest.mark.parametrize(
    "final, original, host, want",
    [
        ("a@example.com", "a@example.com", None, "  a@example.com"),
        ("A@example.com", "a@example.com", None, "  A@example.com"),
        ("b@example.net", "a@example.com", None, "  b@example.net\n    (generated from a@example.com)"),
        ("/var/mail/a", "a@example.com", None, "  save to /var/mail/a\n    generated by a@example.com"),
        (">b@example.net", "a@example.com", None, "  mail to b@example.net\n    generated by a@example.com"),
        ("a@example.net", "a@example.net", "mx.example.net", "  a@example.net\n    host mx.example.net"),
    ],
    ids=["same", "case-only", "alias", "file", "autoreply", "host"],
)
def test_address_information_layout(final: str, original: str, host: str | None, want: str) -> None:
    got = dsn_text.address_information(final, original, host)
    assert got == want, f"got {got!r} want {want!r}"


def test_long_diagnostic_code_is_cut_below_the_line_limit() -> None:
    field = dsn_text.diagnostic_code_field("550 " + "x" * 2000)
    assert field.endswith("[truncated]\n")
    assert max(len(line) for line in field.split("\n")) < 998
