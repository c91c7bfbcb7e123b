"""A message over 64 KiB with a `.` line and a `From ` line exactly on the transports' chunk boundaries.

Transports read -D in 64 KiB pieces (mta.transports.write.CHUNK_SIZE) and
shape each as it goes.  Here the first piece ends with a line end and the
second starts with a lone "." line (SMTP must stuff it, or the server sees
the end of DATA); the second piece ends with a line end and the third starts
with "From " (an mbox must escape it, or a mail reader sees a new message);
the third piece ends in the middle of a ".hidden" line's dot.  The message is
delivered for real: by SMTP to a loopback server, and into a real user's mbox.
tests/transports/test_write_shaping.py checks the same at every offset.
"""

from __future__ import annotations

import mailbox

from mta.transports.write import CHUNK_SIZE
from tests.e2e.conftest import E2E
from tests.support.mta import SMARTHOST_CONFIG, MtaEnv
from tests.support.sink import SmtpSink


def filler(size: int, mark: str) -> str:
    """Lines of text that add up to exactly `size` bytes (size >= 2)."""
    count, rest = divmod(size, 64)
    if rest == 1:  # a line needs at least 2 bytes: make the last full line one longer
        count, rest = count - 1, 65
    text = (mark + "x" * 62 + "\n") * count + (mark + "y" * (rest - 2) + "\n" if rest else "")
    assert len(text) == size
    return text


def boundary_body() -> str:
    """The body: a "." line at offset 64 KiB, a "From " line at 128 KiB, a ".hidden" line whose dot
    is the last byte before 192 KiB, and one more "From " line elsewhere."""
    first = filler(CHUNK_SIZE, "a")
    dot = ".\n"
    second = filler(CHUNK_SIZE - len(dot), "b")
    from_line = "From me, a line that an mbox must escape\n"
    third = filler(CHUNK_SIZE - len(from_line) - 1, "c")
    hidden = ".hidden line with its dot before the cut\n"
    tail = "From the middle of nowhere\nlast line\n"
    body = first + dot + second + from_line + third + hidden + tail
    assert body[CHUNK_SIZE - 1 : CHUNK_SIZE + 2] == "\n.\n"
    assert body[2 * CHUNK_SIZE - 1 :].startswith("\nFrom me")
    assert body[3 * CHUNK_SIZE - 2 : 3 * CHUNK_SIZE + 1] == "\n.h"
    return body




def test_smtp_stuffs_a_dot_line_on_the_chunk_boundary(mta_env: MtaEnv, sink: SmtpSink) -> None:
    body = boundary_body()
    mta_env.write_config(SMARTHOST_CONFIG.format(port=sink.port))
    # -oi: a lone dot in the input is text, not the end of the message.
    result = mta_env.run("-odi", "-oi", "-f", "alice@example.net", "bob@example.org",
                         input=f"Subject: big\n\n{body}")
    assert result.returncode == 0, result.stderr
    [message] = sink.messages  # one message: DATA did not end at the "." line
    assert message.rcpt_tos == ["bob@example.org"]
    headers, _, received = message.content.partition(b"\r\n\r\n")
    assert b"Subject: big" in headers
    # The server undid the stuffing: the body arrives as it was sent, "From " untouched (no mbox here).
    assert received == body.replace("\n", "\r\n").encode()
    assert any(line.endswith("Completed") for line in mta_env.log_lines())


def test_mbox_escapes_a_from_line_on_the_chunk_boundary(e2e: E2E) -> None:
    alice = e2e.user("alice")
    e2e.write_config()
    body = boundary_body()
    e2e.submit(f"From: {alice.address}\nTo: {alice.address}\nSubject: big\n\n{body}", "-odi", "-oi",
               alice.address)
    text = e2e.mbox(alice)
    stored_body = text.split("\n\n", 1)[1]
    want = body.replace("\nFrom ", "\n>From ")
    assert stored_body == want + "\n"  # and the blank line that ends an mbox message
    assert "\n>From me, a line that an mbox must escape\n" in text
    assert "\n.\n" in stored_body and "\n.hidden line" in stored_body  # no dot-stuffing in an mbox
    box = mailbox.mbox(e2e.mbox_path(alice), create=False)
    try:
        assert len(box) == 1  # the escaped lines did not start new messages
    finally:
        box.close()
    assert e2e.log_for(e2e.received_ids()[0])[-1] == "Completed"
