"""Bounce messages and delay warnings: RFC 3464 delivery status notifications.

Public API::

    FailedAddress(address, final_address, message, status="5.0.0",
                  remote_mta=None, diagnostic_code=None, errors_to=None)
    bounce_address(original, failure) -> str | None
    send_bounces(runtime, original, failures, *, now=None) -> list[str]
    send_bounce(runtime, original, failures, *, now=None) -> str | None
    send_delay_warning(runtime, original, pending, *, delay, now=None,
                       will_retry_until=None) -> str | None

A report is a new message, made through `Reception` like any other: its -D
is written here, its -H by `Reception.accept` (durably, before the call
returns), and its arrival is logged as Exim does, ``<= <> R=<original id>
U=<mta_user> P=local S=<size>``.  The envelope sender is empty (``<>``), the
-H carries ``-localerror``, and the one recipient is the bounce address.
The caller (the delivery code) delivers the returned message id; until then
it waits on the queue, unlocked, like any queued message.

Rules:

- A bounce never bounces.  When the original's sender is empty (it is
  itself a bounce or a warning), nothing is made and the functions return
  None / []; the caller then freezes the original (Exim: "Frozen (delivery
  error message)") -- the test for that is ``original.sender_address == ""``.
- Where a report goes (`bounce_address`): a failed address's `errors_to`
  when set, else the envelope sender; ``errors_to == ""`` means discard: no
  report for that address (the caller logs it as ignored).  One report per
  distinct bounce address.
- The original comes back as the third part: ``message/rfc822`` with the
  body, or ``text/rfc822-headers`` when bounce_return_body is false or the
  sender asked for RET=HDRS; none at all when bounce_return_message is
  false.  A body longer than bounce_return_size_limit (0: no limit) is cut
  at the end of the last whole line before the limit, and the text part
  says so.  The body is streamed from the original's -D in chunks: a 50 MB
  original never needs 50 MB of memory.

Errors: SpoolError (and its SpoolFormatError/NoSuchMessage) when the
original's -D cannot be read or the report cannot be spooled, and
SubmissionError when the report is refused (bigger than
message_size_limit: keep bounce_return_size_limit well below it).  Nothing
of a report that failed is left on the spool; reports already made for
other bounce addresses by the same `send_bounces` call stay (a bounce sent
twice is better than none).  The caller keeps the failed addresses on the
original and tries again later.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable

from mta import record
from mta.config.variables import expansion_context
from mta.deliver import dsn_text
from mta.errors import ExpansionError
from mta.expand.expander import expand
from mta.message.headers import Header, make_header
from mta.receive.body import CHUNK_SIZE, LocalBodyWriter
from mta.receive.report import spool_report
from mta.spool.envelope import FLAG_OLD, Envelope, encode_text

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import BinaryIO

    from mta.runtime import Runtime

# Exim's -dsn_ret value for RET=HDRS (RET=FULL is 1).
DSN_RET_HDRS = 2
# Exim starts a new X-Failed-Recipients: header every 50 addresses.
FAILED_RECIPIENTS_PER_HEADER = 50
_STATUS = re.compile(r"[45]\.\d{1,3}\.\d{1,3}")

# What goes back of the original message.
_NO_COPY = "none"
_HEADERS = "headers"
_FULL = "full"
_TRUNCATED = "truncated"


@record.dataclass(frozen=True, slots=True)
class FailedAddress:
    """One address that failed for good, as the bounce reports it.

    `address` is the recipient as the sender gave it (the top-level
    address: it is the Final-Recipient, so aliases stay private);
    `final_address` the one that actually failed, which differs after
    aliasing or forwarding; `message` the reason shown to the person
    ("Unknown user", or "SMTP error from remote mail server after RCPT
    TO:<x>: 550 5.1.1 ...").  `status` is the RFC 3463 code, `remote_mta`
    the name of the host that refused, `diagnostic_code` its reply.
    `errors_to`: None for "the envelope sender", an address to bounce to
    instead, "" to discard the failure.
    """

    address: str
    final_address: str
    message: str
    status: str = "5.0.0"
    remote_mta: str | None = None
    diagnostic_code: str | None = None
    errors_to: str | None = None
    original_recipient: str | None = None  # RFC 3461 ORCPT, "rfc822;address" as the sender gave it

    def __post_init__(self) -> None:
        # A report with a malformed Status: is useless to the programs that
        # read it; this is our code's mistake, not the environment's.
        if not _STATUS.fullmatch(self.status):
            raise ValueError(f"{self.address}: bad RFC 3463 status {self.status!r} for a failure (want 5.x.y or 4.x.y)")


def bounce_address(original: Envelope, failure: FailedAddress) -> str | None:
    """Where the report of `failure` goes; None when nowhere (discarded, or the
    original is itself a bounce and a bounce never bounces)."""
    if not original.sender_address:
        return None
    if failure.errors_to is not None:
        return failure.errors_to or None
    return original.sender_address


def send_bounces(
    runtime: Runtime, original: Envelope, failures: list[FailedAddress], *, now: float | None = None
) -> list[str]:
    """Spool one bounce per distinct bounce address; return their message ids, in order.

    [] when the original's sender is <> (the caller freezes it: a bounce
    never bounces) or every failure was discarded (errors_to "").
    """
    groups: dict[str, list[FailedAddress]] = {}
    for failure in failures:
        target = bounce_address(original, failure)
        if target is not None:
            groups.setdefault(target, []).append(failure)
    return [_send_failure_report(runtime, original, target, group, now) for target, group in groups.items()]


def send_bounce(
    runtime: Runtime, original: Envelope, failures: list[FailedAddress], *, now: float | None = None
) -> str | None:
    """Spool the bounce for `failures`, which must all go to one bounce address.

    Returns its message id, or None when no bounce is made: the original's
    sender is <> (the caller freezes it: a bounce never bounces) or the
    failures are discarded (errors_to "").  Failures bound for different
    addresses are a ValueError: use `send_bounces` for them.
    """
    targets = {bounce_address(original, f) for f in failures} - {None}
    if len(targets) > 1:
        raise ValueError(f"failures go to {len(targets)} bounce addresses; use send_bounces()")
    ids = send_bounces(runtime, original, failures, now=now)
    return ids[0] if ids else None


def send_delay_warning(
    runtime: Runtime,
    original: Envelope,
    pending: list[str],
    *,
    delay: int,
    now: float | None = None,
    will_retry_until: float | None = None,
) -> str | None:
    """Spool a warning to the sender that `pending` are not delivered yet; return its id.

    `delay` is the delay_warning threshold reached, in seconds (the Subject
    says "delayed N minutes", or hours once the message is two hours old);
    `will_retry_until`, if known, is when the retry rules give up.  Only
    the original's headers are returned.  None when the sender is <> (no
    warnings about bounces) or nothing is pending.  The caller counts the
    warning in the original's -H (warning_count).
    """
    if not original.sender_address or not pending:
        return None
    now = time.time() if now is None else now
    config = runtime.config
    target = original.sender_address
    boundary = _boundary(now)
    delay_words = dsn_text.delay_text(delay, int(now - original.received_time))
    headers = _report_headers(runtime, original, target, boundary)
    headers.append(make_header("Subject", f"Warning: message {original.message_id} delayed {delay_words}"))

    text = dsn_text.warning_intro(
        delay_words,
        config.primary_hostname,
        original.message_id,
        dsn_text.header_value(original.headers, "subject"),
        dsn_text.header_value(original.headers, "date"),
    )
    text += dsn_text.pending_heading(len(pending))
    text += "".join(dsn_text.address_information(a, a) + "\n" for a in pending)
    text += "\n" + dsn_text.WARNING_FINAL + "\n"
    status = dsn_text.reporting_mta(config.primary_hostname, original.dsn_envid)
    status += "".join(
        dsn_text.recipient_fields("delayed", a, "4.0.0", will_retry_until=will_retry_until) for a in pending
    )

    def write_body(writer: LocalBodyWriter) -> None:
        _write_parts(
            writer, boundary, text, status, "text/rfc822-headers", lambda: _write_copy(runtime, original, writer)
        )

    return spool_report(runtime, target, headers, write_body, now=now, parent_id=original.message_id)


# -- the bounce -------------------------------------------------------------


def _send_failure_report(
    runtime: Runtime, original: Envelope, target: str, failures: list[FailedAddress], now: float | None
) -> str:
    now = time.time() if now is None else now
    config = runtime.config
    main = config.main
    boundary = _boundary(now)
    to_sender = target.lower() == original.sender_address.lower()

    headers = _failed_recipients_headers(failures)
    headers += _report_headers(runtime, original, target, boundary)
    subject = "Mail delivery failed" + (": returning message to sender" if to_sender else "")
    headers.append(make_header("Subject", subject))

    body_size = runtime.spool.body_size(original.message_id)
    limit = main.bounce_return_size_limit
    if not main.bounce_return_message:
        copy = _NO_COPY
    elif not main.bounce_return_body or original.dsn_ret == DSN_RET_HDRS:
        copy = _HEADERS
    elif limit and body_size > limit:
        copy = _TRUNCATED
    else:
        copy = _FULL

    text = dsn_text.failure_intro(original.sender_address, to_sender)
    for failure in failures:
        text += dsn_text.address_information(failure.final_address, failure.address, failure.remote_mta)
        text += dsn_text.address_error(failure.message) + "\n"
    text += "\n"
    if copy == _TRUNCATED:
        text += dsn_text.body_truncated_note(body_size, limit)
    elif copy == _HEADERS:
        text += dsn_text.body_omitted_note()

    status = dsn_text.reporting_mta(config.primary_hostname, original.dsn_envid)
    for failure in failures:
        status += dsn_text.recipient_fields(
            "failed", failure.address, failure.status, failure.remote_mta, failure.diagnostic_code,
            original_recipient=failure.original_recipient,
        )

    def write_body(writer: LocalBodyWriter) -> None:
        if copy == _NO_COPY:
            _write_parts(writer, boundary, text, status)
            return
        body_limit = limit if copy == _TRUNCATED else 0
        content_type = "text/rfc822-headers" if copy == _HEADERS else "message/rfc822"
        _write_parts(
            writer,
            boundary,
            text,
            status,
            content_type,
            lambda: _write_copy(runtime, original, writer, with_body=copy != _HEADERS, limit=body_limit),
        )

    return spool_report(runtime, target, headers, write_body, now=now, parent_id=original.message_id)


def _failed_recipients_headers(failures: list[FailedAddress]) -> list[Header]:
    """X-Failed-Recipients:, folded one address a line, 50 addresses a header (Exim)."""
    # Each failed address once, even when several recipients led to it (duplicates).
    shown = list(
        dict.fromkeys(
            dsn_text.printing(f.address if dsn_text.is_pipe_or_file(f.final_address) else f.final_address)
            for f in failures
        )
    )
    step = FAILED_RECIPIENTS_PER_HEADER
    return [make_header("X-Failed-Recipients", ",\n  ".join(shown[i : i + step])) for i in range(0, len(shown), step)]


# -- shared by both kinds of report ------------------------------------------


def _boundary(now: float) -> str:
    # Unguessable, so that no line of a returned body can close our parts early.
    return f"{int(now)}-mtadsn-{secrets.randbelow(2**31)}"


def _report_headers(runtime: Runtime, original: Envelope, target: str, boundary: str) -> list[Header]:
    """Reply-To: (errors_reply_to) to MIME-Version:, in Exim's order; Subject: is the caller's."""
    config = runtime.config
    headers = []
    reply_to = _errors_reply_to(runtime)
    if reply_to:
        headers.append(make_header("Reply-To", reply_to))
    headers.append(make_header("Auto-Submitted", "auto-replied"))  # RFC 3834: no auto-reply to this
    headers.append(make_header("From", f"Mail Delivery System <Mailer-Daemon@{config.qualify_domain}>"))
    headers.append(make_header("To", target))
    references = dsn_text.references(original.headers)
    if references:
        headers.append(make_header("References", references))
    headers.append(make_header("Content-Type", f"multipart/report; report-type=delivery-status; boundary={boundary}"))
    headers.append(make_header("MIME-Version", "1.0"))
    return headers


def _errors_reply_to(runtime: Runtime) -> str | None:
    text = runtime.config.main.errors_reply_to
    if not text:
        return None
    try:
        return expand(text, expansion_context(runtime.config)).strip() or None
    except ExpansionError as exc:
        if exc.forced:
            return None
        # A broken option must not stop bounces: they go without Reply-To:,
        # and the administrator hears of it in the panic log.
        runtime.logger.panic(f"expansion of errors_reply_to failed: {exc}")
        return None


def _write_parts(
    writer: LocalBodyWriter,
    boundary: str,
    text: str,
    status: str,
    copy_type: str | None = None,
    write_copy: Callable[[], None] | None = None,
) -> None:
    """The multipart/report body: explanation, delivery status, and the copy of the original."""
    _put(writer, f"--{boundary}\nContent-type: text/plain; charset=us-ascii\n\n{text}")
    _put(writer, f"--{boundary}\nContent-type: message/delivery-status\n\n{status}")
    if write_copy is None:
        _put(writer, f"--{boundary}--\n")
        return
    _put(writer, f"--{boundary}\nContent-type: {copy_type}\n\n")
    write_copy()
    _put(writer, f"\n--{boundary}--\n")


def _put(writer: LocalBodyWriter, text: str) -> None:
    writer.feed(text.encode("ascii"))  # our texts are ASCII: everything foreign went through printing()


def _write_copy(
    runtime: Runtime, original: Envelope, writer: LocalBodyWriter, with_body: bool = False, limit: int = 0
) -> None:
    """Return-path:, the original's live headers, a blank line, and (maybe) its body."""
    writer.feed(encode_text(f"Return-path: <{original.sender_address}>\n"))
    for header in original.headers:
        if header.flag != FLAG_OLD:
            writer.feed(encode_text(header.text))
    writer.feed(b"\n")
    if with_body:
        with runtime.spool.open_body(original.message_id) as body:
            _copy_body(body, writer, limit)


def _copy_body(body: BinaryIO, writer: LocalBodyWriter, limit: int) -> None:
    """Stream the body chunk by chunk; with a limit, stop there, at the end of
    the last whole line (unless no line ends before the limit at all)."""
    remaining = limit if limit > 0 else None
    last = b"\n"
    while remaining is None or remaining > 0:
        chunk = body.read(CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining))
        if not chunk:
            break
        if remaining is not None:
            remaining -= len(chunk)
            if remaining == 0:
                end = chunk.rfind(b"\n")
                if end >= 0:
                    chunk = chunk[: end + 1]
        writer.feed(chunk)
        last = chunk[-1:]
    if last != b"\n":
        writer.feed(b"\n")  # the closing boundary must start a line


