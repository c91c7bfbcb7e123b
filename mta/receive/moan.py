"""Mailing a submission error back to the sender (-oem, -oew, -oee).

When a message given on the command line cannot be accepted (no recipients
with -t, a bad address in To:, too big ...), the error modes -oem (the
default), -oew and -oee send the sender a report with a copy of what they
submitted, as Exim's "moan" messages do; -oep and -oeq only print it.
The report comes from <> (so it can never bounce back) and is spooled like
any message.
"""

from __future__ import annotations

from mta.message.headers import make_header
from mta.receive.body import LocalBodyWriter
from mta.receive.report import spool_report

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from mta.runtime import Runtime

INTRO = (
    "This message was created automatically by mail delivery software.\n"
    "\n"
    "A message that you sent could not be accepted for delivery:\n"
    "\n"
    "  {reason}\n"
    "\n"
    "------ This is a copy of your message, including all the headers. ------\n"
    "\n"
)


def send_submission_error(runtime: Runtime, sender: str, reason: str, copy: bytes) -> str:
    """Spool a report of `reason` to `sender` with `copy` of the message; return its id.

    The copy is cut at bounce_return_size_limit.
    """
    config = runtime.config
    limit = config.main.bounce_return_size_limit
    if limit and len(copy) > limit:
        cut = copy.rfind(b"\n", 0, limit) + 1
        copy = copy[:cut] + b"\n------ The copy was cut here (longer than %d bytes). ------\n" % limit
    headers = [
        make_header("Auto-Submitted", "auto-replied"),
        make_header("From", f"Mail Delivery System <Mailer-Daemon@{config.qualify_domain}>"),
        make_header("To", sender),
        make_header("Subject", "Mail failure - message not accepted"),
    ]
    intro = INTRO.format(reason=reason).encode("utf-8", "surrogateescape")

    def write_body(writer: LocalBodyWriter) -> None:
        writer.feed(intro)
        writer.feed(copy)

    return spool_report(runtime, sender, headers, write_body)
