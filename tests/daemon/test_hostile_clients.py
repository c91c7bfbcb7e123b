"""What a hostile client sends the daemon is data: it forges no line anywhere, is never expanded, runs nothing.

Issue 16, point 4, over a real daemon and checked byte by byte in what it
leaves: the main and reject logs, the -H file, the mailbox, and the bounce.

- CR/LF (and the other controls) through every value a client chooses: the
  HELO name, the envelope addresses, the AUTH id, MAIL's ENVID and AUTH=,
  RCPT's ORCPT.  Raw in a command line they are refused; xtext-encoded
  (``+0D+0A``) in ENVID, AUTH= and ORCPT they are refused at the command
  (501), not at the spool writer after the whole message (that was a 451,
  which a client retries for days); the AUTH id is escaped.
- ``${run{...}}`` and ``${readfile{/etc/shadow}}`` in each of them, and in
  headers, go through ACLs that log and add headers made of them, into the
  -H file, a delivery and a bounce (ENVID and ORCPT come back there), and are
  only ever text: the canary file is never made, the shadow file never read.
- Pipe and file deliveries from outside: with the shipped configuration
  they are refused at RCPT (tests/daemon/test_relay.py); here the ACL rule
  that refuses them is taken out, to show that routing alone never turns a
  local part into a command or a file: such a recipient is refused at RCPT
  by recipient verification, and one accepted without verification fails
  ("Unknown user") and runs nothing.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.test_relay import DEFAULT_CONFIG, client_from
from tests.support.daemon import DaemonWorld, RawClient
from tests.support.sink import free_port

AUTH_AND_BROKEN = """  headers_add = X-Transport: $h_x-evil:

broken:
  driver = pipe
  command = /bin/false

begin authenticators

plain_server:
  driver = plaintext
  public_name = PLAIN
  server_condition = ${if eq{$auth3}{sesame}}
  server_set_id = $auth2
"""

ACLS = """
check_mail:
  warn    logwrite   = mail-acl helo=$sender_helo_name sender=$sender_address auth=$authenticated_id
          add_header = X-Mail-Acl: helo=$sender_helo_name sender=$sender_address auth=$authenticated_id
  accept

check_data:
  warn    logwrite   = data-acl subject=$h_subject: evil=$h_x-evil:
          add_header = X-Data-Acl: subject=$h_subject: evil=$h_x-evil:
  accept
"""

LOG_LINE = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


def shadow_secret() -> bytes | None:
    """The first line of /etc/shadow (a hash, or at least a name and a field), if there is one to leak."""
    try:
        first = Path("/etc/shadow").read_bytes().split(b"\n", 1)[0]
    except OSError:
        return None
    return first if len(first) > 8 else None


def hostile(canary: Path) -> str:
    return f"${{run{{/bin/touch {canary}}}}}${{readfile{{/etc/shadow}}}}"


def xtext(text: str) -> str:
    return "".join(c if "!" <= c <= "~" and c not in "+=" else f"+{ord(c):02X}" for c in text)


def plain(authcid: str, password: str) -> str:
    return base64.b64encode(b"\0" + authcid.encode() + b"\0" + password.encode()).decode()


def assert_log_files_are_whole_lines(world: DaemonWorld) -> None:
    for name in ("mainlog", "rejectlog", "paniclog"):
        path = world.spool / "log" / name
        if not path.exists():
            continue
        data = path.read_bytes()
        assert b"\r" not in data and b"\0" not in data, name
        for line in data.splitlines():
            assert LOG_LINE.match(line), f"{name}: a line that is not the logger's: {line!r}"
            assert b" X-Forged" not in line.split(b" ", 2)[2][:10], line


@pytest.fixture
def canary() -> Iterator[Path]:
    path = Path(f"/tmp/mta-hostile-canary-{free_port()}")
    path.unlink(missing_ok=True)
    yield path
    path.unlink(missing_ok=True)


def test_no_client_value_forges_a_line_or_is_expanded(daemon_world: DaemonWorld, canary: Path) -> None:
    from mta.spool.format_read import read_header_file

    world = daemon_world
    world.write_config(main="auth_advertise_hosts = 127.0.0.1\nqueue_only\n"
                            "acl_smtp_mail = check_mail\nacl_smtp_data = check_data\n",
                       acl=ACLS, transports=AUTH_AND_BROKEN)
    world.config.write_text(world.config.read_text().replace(
        "everyone:\n  driver = smartuser\n  transport = box",
        "failing:\n  driver = smartuser\n  local_parts = ^fail\n  transport = broken\n  user = nobody\n\n"
        "everyone:\n  driver = smartuser\n  headers_add = X-Router: $h_x-evil:\n  transport = box"))
    world.start()
    evil = hostile(canary)
    crlf = "\r\nX-Forged: 1"

    # Raw control characters in a command line: refused where they arrive.  A connection each, and a
    # successful AUTH first where AUTH= needs it (an unauthenticated client's AUTH= is not looked at).
    refused = [
        ([], f"EHLO evil\rX-Forged: 1{evil}"),
        ([], "EHLO evil\0null"),
        (["EHLO x.example"], f"MAIL FROM:<\"a\r{evil}\"@example.org>"),
        (["EHLO x.example", "MAIL FROM:<a@example.org>"], "RCPT TO:<\"b\rX-Forged: 1\"@example.com>"),
        (["EHLO x.example"], f"MAIL FROM:<a@example.org> ENVID={xtext('e' + crlf)}"),
        (["EHLO x.example"], "MAIL FROM:<a@example.org> ENVID=e+00"),
        (["EHLO x.example"], "MAIL FROM:<a@example.org> ENVID=e+1B[2J"),
        (["EHLO x.example", f"AUTH PLAIN {plain('alice', 'sesame')}"],
         f"MAIL FROM:<a@example.org> AUTH={xtext('b' + crlf + '@example.org')}"),
        (["EHLO x.example", "MAIL FROM:<a@example.org>"],
         f"RCPT TO:<c@example.com> ORCPT=rfc822;{xtext('c' + crlf + '@example.com')}"),
        (["EHLO x.example", "MAIL FROM:<a@example.org>"], "RCPT TO:<c@example.com> ORCPT=rfc822;c+85@example.com"),
    ]
    for before, line in refused:
        with RawClient(world.port) as client:
            client.reply()
            for command in before:
                assert client.command(command)[0] in (235, 250), command
            code, text = client.command(line)
            assert code == 501, (line, code, text)

    # Accepted values with control characters (escaped) and expansions (left alone), everywhere.
    with RawClient(world.port) as client:
        client.reply()
        assert client.command("EHLO client.example")[0] == 250
        assert client.command(f"AUTH PLAIN {plain('alice' + crlf + evil, 'sesame')}")[0] == 235
        sender = f'"{evil}"@example.com'
        code, text = client.command(f"MAIL FROM:<{sender}> ENVID={xtext(evil)} AUTH={xtext(evil + '@example.org')}")
        assert code == 250, text
        for rcpt in (f'"{evil}"@example.com', "fail-1@example.com"):
            code, text = client.command(f"RCPT TO:<{rcpt}> NOTIFY=FAILURE ORCPT=rfc822;{xtext(evil + '@o.example')}")
            assert code == 250, (rcpt, text)
        assert client.command("DATA")[0] == 354
        # Line breaks that only appear in $h_x-evil:, which the ACLs, the router and the transport put in
        # headers of their own: encoded words that decode to CR LF (RFC 2047), and a second X-Evil: header
        # (several are joined by a newline).
        encoded = "=?utf-8?q?a=0D=0AX-Forged:_1?= =?utf-8?b?" + base64.b64encode(b"\r\nX-Forged: 2").decode() + "?="
        code, text = client.command(f"Subject: {evil}\r\nX-Evil: {evil}\r\n {encoded}\r\nX-Evil: X-Forged: 3\r\n"
                                    f"\r\nbody {evil}\r\n.")
        assert code == 250, text
        assert client.command("QUIT")[0] == 221

    (message_id,) = world.message_ids()
    raw = next((world.spool / "input").rglob(f"{message_id}-H")).read_bytes()
    envelope = read_header_file(raw, message_id)  # strict: a forged line would not parse
    assert envelope.dsn_envid == evil
    assert envelope.auth_id == "alice\\r\\nX-Forged: 1" + evil  # escaped, and not expanded
    assert [r.address for r in envelope.recipients] == [f'"{evil}"@example.com', "fail-1@example.com"]
    assert all(r.orcpt == f"rfc822;{evil}@o.example" for r in envelope.recipients)
    names = [h.text.split(":", 1)[0] for h in envelope.headers]
    assert "X-Forged" not in names and names.count("Received") == 1, raw.decode(errors="replace")
    received = next(h.text for h in envelope.headers if h.text.startswith("Received:"))
    assert "\r" not in received and all(line[:1] in ("\t", " ") for line in received.splitlines()[1:]), received
    assert f"(authenticated as alice\\r\\nX-Forged: 1{evil})" in received

    world.stop()
    world.config.write_text(world.config.read_text().replace("\nqueue_only\n", "\n"))
    result = world.run("-M", message_id)
    assert result.returncode == 0, result.stderr
    box = world.mail / "box"
    mailbox = box.read_bytes()
    assert mailbox.count(b"\nFinal-Recipient: rfc822;fail-1@example.com") == 1  # the bounce came back
    assert f"Original-Envelope-ID: {evil}".encode() in mailbox
    assert f"Original-Recipient: rfc822;{evil}@o.example".encode() in mailbox
    assert not re.search(rb"^X-Forged", mailbox, re.M)
    delivered = mailbox.split(b"\nFrom ")[0]  # the message itself; the bounce follows
    header_block = delivered.split(b"\n\n", 1)[0]
    assert b"\r" not in header_block
    for added in (b"X-Data-Acl: subject=", b"X-Router: ", b"X-Transport: "):  # made of $h_x-evil:, one header each
        assert header_block.count(b"\n" + added + evil.encode()) == 1, added
    assert b"\n\tX-Forged: 3" in header_block and b"\n\tX-Forged: 1" in header_block  # folded in, not forged
    assert not canary.exists(), "a client's ${run} was expanded"
    secret = shadow_secret()
    written = [world.mainlog, box, *(p for p in world.spool.rglob("*") if p.is_file() and "tls" not in p.parts)]
    for path in written:
        assert secret is None or secret not in path.read_bytes(), f"/etc/shadow leaked into {path}"
    assert_log_files_are_whole_lines(world)
    log = world.mainlog.read_text()
    print(log)


def test_pipes_and_files_are_never_reached_from_outside(daemon_world: DaemonWorld, canary: Path) -> None:
    """The shipped configuration without its "Restricted characters" rule: routing still makes no pipe or file."""
    world = daemon_world
    text = DEFAULT_CONFIG.read_text()
    rule = text.index("  deny    message       = Restricted characters in address")
    end = text.index("  # RFC 5321 says postmaster")
    text = text[:rule] + text[end:]
    # Recipients of <> go unverified to routing (and their failures bounce nowhere); others are verified.
    text = text.replace("  require verify        = recipient\n",
                        "  accept  senders       = :\n  require verify        = recipient\n")
    assert "Restricted characters" not in text and "senders       = :" in text
    world.port = free_port()
    world.config.write_text(text)
    aliases = world.root / "aliases"
    aliases.write_text("postmaster: root\n")
    world.start(f"-DSPOOL={world.spool}", f"-DMAIL_DIR={world.mail}", f"-DALIASES={aliases}",
                f"-DPORT={world.port}", "-DINTERFACES=127.0.0.1")
    made = world.root / "made-by-a-file-delivery"
    targets = [f'"|/bin/touch {canary}"', f"|/bin/touch{canary}", f'"/bin/touch {canary}|"', f'"{made}"',
               f'"{made}/"', f'":include:{world.root}/aliases"', '"root@localhost"', "root%localhost"]
    for sender, verified in (("<root@localhost>", True), ("<>", False)):
        with client_from("127.0.0.2", world.port) as client:
            assert client.command("EHLO stranger.example")[0] == 250
            assert client.command(f"MAIL FROM:{sender}")[0] == 250
            codes = [client.command(f"RCPT TO:<{local}@localhost>")[0] for local in targets]
            if verified:
                assert set(codes) == {550}, codes  # Unknown user: refused at RCPT
                continue
            assert set(codes) == {250}, codes
            assert client.command("DATA")[0] == 354
            assert client.command("Subject: pipes\r\n\r\nbody\r\n.")[0] == 250
    world.wait_for_log(" Frozen (delivery error message)")  # Exim's end for a failed message from <>
    log = world.mainlog.read_text()
    failures = [line for line in log.splitlines() if " ** " in line]
    assert len(failures) == len(targets), log
    assert all("Unknown user" in line for line in failures), "\n".join(failures)
    assert " T=address_pipe" not in log and " T=address_file" not in log and " T=address_directory" not in log
    assert not canary.exists() and not made.exists()
