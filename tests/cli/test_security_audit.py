"""Issue 9's lower findings, each through the real CLI as the audit found them.

- outbound SMTP smuggling: a bare CR in a body or header never reaches the
  next hop, and every line that starts with a dot is stuffed;
- -M on a malformed -H, -D or -J: exit 1 with one line, a panic-log line,
  and the message frozen, never delivered on a guess;
- an -H whose -D is missing is listed, not invisible;
- a bare CR inside a header is accepted, as Exim and Postfix accept it;
- P= and every printed or logged piece of message data is escaped: ESC, CR,
  U+202E and U+2028 never reach a terminal or a log raw;
- command-line recipients in RFC 5322 form.
"""

from __future__ import annotations

import re

import pytest

from mta.spool.format import read_header_file
from tests.support.fakesmtp import FakeSmtpServer
from tests.support.mta import MtaEnv

RAW_DANGER = ("\x1b", "\u202e", "\u2028", "\r")


def smarthost_config(env: MtaEnv, port: int) -> None:
    env.write_config(f"""
begin routers
smarthost:
  driver = domainlist
  transport = remote_smtp
  route_list = * "127.0.0.1::{port}" byname
  self = send

begin transports
remote_smtp:
  driver = smtp
  allow_localhost
  hosts_avoid_tls = *
""")


# -- outbound SMTP smuggling ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"one\r.\r\ntwo\n",  # <CR>.<CR><LF>: the smuggling sequence
        b"one\r\r\n.\r\nMAIL FROM:<x@evil>\n",
        b"a\rb\n.\n..\n.x\n",
        b"x" * 65535 + b"\r.\r\nafter\n",  # the CR right at the end of the first 64 KiB read
        b"x" * 65534 + b"\n.\rtail\n",  # a dot line straddling the chunk boundary
    ],
    ids=["cr-dot-cr-lf", "cr-cr-lf-dot", "mixed", "cr-at-boundary", "dot-at-boundary"],
)
def test_no_bare_cr_and_every_dot_line_stuffed_on_the_wire(mta_env: MtaEnv, body: bytes) -> None:
    with FakeSmtpServer() as server:
        smarthost_config(mta_env, server.port)
        message = b"Subject: bare\rcr\nX-Other: ok\n\n" + body
        sent = mta_env.run("-odi", "-f", "a@example.com", "b@example.org", input=message)
        assert sent.returncode == 0, sent.stderr
        (wire,) = server.data
    # Every CR on the wire is the first half of a CRLF; every line starting with "." is stuffed.
    assert re.search(rb"\r(?!\n)", wire) is None
    for line in wire.split(b"\r\n"):
        assert not line.startswith(b".") or line.startswith(b".."), line
    assert b"Subject: bare cr\r\n" in wire
    assert wire.endswith(b"\r\n")


# -- malformed spool files --------------------------------------------------------------------------


def queue_one(env: MtaEnv) -> str:
    sent = env.run("-odq", "someone@example.com", input="Subject: x\n\nhello\n")
    assert sent.returncode == 0, sent.stderr
    (message_id,) = env.message_ids()
    return message_id


def panic_lines(env: MtaEnv) -> list[str]:
    path = env.spool / "log" / "paniclog"
    return path.read_text().splitlines() if path.exists() else []


def test_M_on_a_malformed_H_is_exit_1_frozen_and_left_alone(mta_env: MtaEnv) -> None:
    message_id = queue_one(mta_env)
    header = mta_env.spool / "input" / f"{message_id}-H"
    header.write_text("nonsense\n")
    result = mta_env.run("-M", message_id)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"mta: message {message_id} is frozen: spool file {message_id}-H: line 1: ")
    assert any(f"{message_id} spool format error" in line for line in panic_lines(mta_env))
    assert header.read_text() == "nonsense\n"  # nothing guessed, nothing rewritten
    listing = mta_env.run("-bp")
    assert f"{message_id} *** spool read error:" in listing.stdout


@pytest.mark.parametrize("damage", ["journal", "data"])
def test_M_on_a_malformed_J_or_D_freezes_without_delivering(mta_env: MtaEnv, damage: str) -> None:
    mta_env.write_config("begin directors\nall:\n  driver = smartuser\n  transport = box\n"
                         f"begin transports\nbox:\n  driver = appendfile\n  file = {mta_env.root}/box\n")
    message_id = queue_one(mta_env)
    if damage == "journal":
        (mta_env.spool / "input" / f"{message_id}-J").write_bytes(b"someone@example.com\r\n")
    else:
        (mta_env.spool / "input" / f"{message_id}-D").write_bytes(b"not this message's data\n")
    result = mta_env.run("-M", message_id)
    assert result.returncode == 1
    assert result.stderr.startswith(f"mta: message {message_id} is frozen: ")
    assert not (mta_env.root / "box").exists()  # never delivered on a guess
    envelope = read_header_file((mta_env.spool / "input" / f"{message_id}-H").read_bytes(), message_id)
    assert envelope.frozen is not None
    assert "*** frozen ***" in mta_env.run("-bp").stdout or "spool read error" in mta_env.run("-bp").stdout
    assert any("spool format error" in line and "frozen" in line for line in panic_lines(mta_env))


def test_an_H_without_its_D_is_listed_and_reported(mta_env: MtaEnv) -> None:
    message_id = queue_one(mta_env)
    (mta_env.spool / "input" / f"{message_id}-D").unlink()
    listing = mta_env.run("-bp")
    assert (listing.returncode, listing.stderr) == (0, "")
    assert f"{message_id} *** spool read error: data file {message_id}-D is missing ***" in listing.stdout
    assert mta_env.run("-bpc").stdout == "1\n"
    result = mta_env.run("-M", message_id)
    assert result.returncode == 1
    assert "is missing" in result.stderr and "not on the spool" not in result.stderr


# -- headers with a bare CR ----------------------------------------------------------------------------


def test_bare_cr_inside_a_header_is_accepted(mta_env: MtaEnv) -> None:
    result = mta_env.run("-odq", "-oem", "bob@example.com", input=b"Subject: one\rtwo\r\nX-A: b\n\nbody\n")
    assert (result.returncode, result.stderr) == (0, "")
    (message_id,) = mta_env.message_ids()
    assert b"Subject: one\rtwo\n" in (mta_env.spool / "input" / f"{message_id}-H").read_bytes()


# -- escaping of what is printed and logged -----------------------------------------------------------


def test_P_field_is_one_escaped_word(mta_env: MtaEnv) -> None:
    result = mta_env.run("-odq", "-oMr", "e\x1bs p", "bob@example.com", input="Subject: x\n\nhi\n")
    assert result.returncode == 0, result.stderr
    (arrival,) = [line for line in mta_env.log_lines() if " <= " in line]
    assert " P=e\\033s\\040p " in arrival


@pytest.mark.parametrize("danger", RAW_DANGER, ids=["esc", "rlo", "line-separator", "cr"])
def test_no_raw_control_or_bidi_character_reaches_terminal_or_log(mta_env: MtaEnv, danger: str) -> None:
    mta_env.write_config("log_selector = +subject +received_recipients\n")
    recipient = f"bob{danger}x@example.com" if danger != "\r" else "bob@example.com"
    text = f"Subject: look {danger} here\n\nhi\n"
    result = mta_env.run("-odq", recipient, input=text)
    if danger == "\x1b":
        # A control character is not allowed in an address: refused, and the refusal escaped.
        assert result.returncode == 1
        assert "\x1b" not in result.stderr and "\\033" in result.stderr
        result = mta_env.run("-odq", "bob@example.com", input=text)
    assert result.returncode == 0, result.stderr
    outputs = {
        "-bp": mta_env.run("-bp").stdout,
        "-bt": mta_env.run("-bt", recipient).stdout + mta_env.run("-bt", recipient).stderr,
        "mainlog": mta_env.mainlog.read_bytes().decode(),  # not read_text: it would turn CR into LF
        "bad address stderr": mta_env.run("-odq", f"x{danger}y z@example.com", input="\n").stderr,
    }
    for where, output in outputs.items():
        assert danger not in output, f"raw {danger!r} in {where}: {output!r}"


# -- recipients in RFC 5322 form --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "recipients"),
    [
        ("Some User <user@example.com>", ["user@example.com"]),
        ("a(comment)@example.com", ["a@example.com"]),
        ("@a.example:user@example.com", ["user@example.com"]),
        ("<@a.example,@b.example:u@example.com>", ["u@example.com"]),
        ('x@example.com, "Doe, J" <jd@example.com>', ["x@example.com", "jd@example.com"]),
        ("undisclosed-recipients:;, y@example.com", ["y@example.com"]),
    ],
    ids=["display-name", "comment", "bare-route", "route", "list", "group"],
)
def test_command_line_recipients_in_rfc5322_form(mta_env: MtaEnv, argument: str, recipients: list[str]) -> None:
    result = mta_env.run("-odq", argument, input="Subject: x\n\nhi\n")
    assert (result.returncode, result.stderr) == (0, "")
    (message_id,) = mta_env.message_ids()
    envelope = read_header_file((mta_env.spool / "input" / f"{message_id}-H").read_bytes(), message_id)
    assert [r.address for r in envelope.recipients] == recipients
