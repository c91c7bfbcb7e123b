"""What a client sends the daemon, good and bad, over a real socket: the reply for each, and what is left behind.

Bad input gets the right 5xx/4xx code and the session goes on where it can;
nothing is spooled for a transaction that did not end in 250; nothing a
client sends is expanded or can forge a line in a log or a header.
"""

from __future__ import annotations

import smtplib
import socket
import time

import pytest

from tests.support.daemon import DaemonWorld, RawClient


def greeted(daemon: DaemonWorld, ehlo: bool = True) -> RawClient:
    client = RawClient(daemon.port)
    assert client.reply()[0] == 220
    assert client.command("EHLO client.example.org" if ehlo else "HELO client.example.org")[0] == 250
    return client


def test_ehlo_offers_the_extensions(daemon: DaemonWorld) -> None:
    with RawClient(daemon.port) as client:
        code, banner = client.reply()
        assert code == 220 and banner.startswith("mail.example.com ESMTP mta ")
        code, text = client.command("EHLO client.example.org")
        lines = text.split("\n")
        assert code == 250 and lines[0] == "mail.example.com Hello client.example.org [127.0.0.1]"
        assert set(lines[1:]) >= {"SIZE 52428800", "8BITMIME", "PIPELINING", "CHUNKING", "DSN", "STARTTLS",
                                  "SMTPUTF8", "HELP"}
        assert client.command("QUIT") == (221, "mail.example.com closing connection")


def test_a_whole_message_is_delivered_and_logged_as_exim_does(daemon: DaemonWorld) -> None:
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as client:
        client.ehlo("client.example.org")
        refused = client.sendmail("carol@example.org", ["alice@example.com", "bob@example.net"],
                                  b"Subject: lunch\r\nMessage-Id: <lunch-1@example.org>\r\n\r\nfree on Friday?\r\n")
    assert list(refused) == ["bob@example.net"] and refused["bob@example.net"] == (550, b"relay not permitted")
    box = daemon.wait_for_mail("alice", "free on Friday?")
    assert "Received: from [127.0.0.1] (helo=client.example.org)\n\tby mail.example.com with esmtp (mta " in box
    log = "\n".join(daemon.log_lines())
    assert ("H=(client.example.org) [127.0.0.1] F=<carol@example.org> rejected RCPT <bob@example.net>: "
            "relay not permitted") in log
    arrival = daemon.wait_for_log(" <= carol@example.org ")
    assert " H=(client.example.org) [127.0.0.1] P=esmtp S=" in arrival and arrival.endswith(" id=lunch-1@example.org")
    reject_log = (daemon.spool / "log" / "rejectlog").read_text()
    assert "rejected RCPT <bob@example.net>: relay not permitted" in reject_log


@pytest.mark.parametrize(
    ("commands", "replies"),
    [
        (["MAIL FROM:<a@example.org>"], [503]),  # before HELO
        (["HELO x.example", "RCPT TO:<b@example.com>"], [250, 503]),
        (["HELO x.example", "DATA"], [250, 503]),
        (["HELO x.example", "MAIL FROM:<a@example.org>", "MAIL FROM:<a@example.org>"], [250, 250, 503]),
        (["HELO x.example", "MAIL FROM:<a@example.org>", "DATA"], [250, 250, 503]),
        (["EHLO x.example", "BDAT 4 LAST"], [250, 503]),
    ],
    ids=["mail-before-helo", "rcpt-before-mail", "data-before-mail", "mail-twice", "data-without-rcpt",
         "bdat-without-mail"],
)
def test_commands_out_of_order(daemon: DaemonWorld, commands: list[str], replies: list[int]) -> None:
    with RawClient(daemon.port) as client:
        client.reply()
        got = []
        for line in commands:
            client.send(line + "\r\n" + ("xxxx" if line.startswith("BDAT") else ""))
            got.append(client.reply()[0])
        assert got == replies
        assert client.command("NOOP")[0] == 250  # the session goes on
    assert daemon.spool_files() == []


def test_unknown_commands_then_dropped(daemon: DaemonWorld) -> None:
    with RawClient(daemon.port) as client:
        client.reply()
        assert [client.command(f"XYZZY{i}")[0] for i in range(3)] == [500, 500, 500]
        assert client.command("XYZZY3") == (500, "Too many unrecognized commands")
        assert client.closed()
    assert "dropped: too many unrecognized commands" in daemon.wait_for_log("too many unrecognized")


def test_recipients_max(daemon_world: DaemonWorld) -> None:
    # Few accepted (each is a delivery, costly under coverage), many refused in one pipelined burst.
    daemon_world.write_config(main="recipients_max = 10\n")
    daemon_world.start()
    with greeted(daemon_world) as client:
        assert client.command("MAIL FROM:<a@example.org>")[0] == 250
        client.send("".join(f"RCPT TO:<r{i}@example.com>\r\n" for i in range(2000)))
        codes = [client.reply()[0] for _ in range(2000)]
        assert codes[:10] == [250] * 10 and set(codes[10:]) == {452}
        assert client.command("DATA")[0] == 354
        assert client.command("Subject: many\r\n\r\nbody\r\n.")[0] == 250
    daemon_world.wait_for_log("Completed")


def test_a_huge_command_line_is_refused_and_the_session_goes_on(daemon: DaemonWorld) -> None:
    with greeted(daemon) as client:
        client.send("MAIL FROM:<" + "a" * (1 << 20) + "@example.org>\r\n")
        assert client.reply() == (500, "Command line too long")
        assert client.command("NOOP")[0] == 250


@pytest.mark.parametrize("line", [b"NOOP\n", b"NOOP\rNOOP\r\n", b"\xff\xfe\x00garbage\r\n", b"\x1b[2J\r\n"],
                         ids=["bare-lf", "lone-cr", "binary", "escape"])
def test_odd_line_ends_and_garbage(daemon: DaemonWorld, line: bytes) -> None:
    with greeted(daemon) as client:
        client.send(line)
        code, _text = client.reply()
        assert code in (250, 500)
        assert client.command("NOOP")[0] == 250
    log = daemon.mainlog.read_bytes()
    assert b"\x1b" not in log and b"\x00" not in log


def test_null_sender_with_remote_and_local_recipients(daemon: DaemonWorld) -> None:
    with greeted(daemon) as client:
        assert client.command("MAIL FROM:<>") == (250, "OK")
        assert client.command("RCPT TO:<x@elsewhere.example>") == (550, "relay not permitted")
        assert client.command("RCPT TO:<dave@example.com>") == (250, "Accepted")
        assert client.command("DATA")[0] == 354
        assert client.command("Subject: bounce-like\r\n\r\nbody\r\n.")[0] == 250
    line = daemon.wait_for_log(" <= <> ")
    assert "P=esmtp" in line


@pytest.mark.parametrize("where", ["data", "bdat", "before-dot"])
def test_disconnect_in_the_middle_of_a_message_leaves_nothing(daemon: DaemonWorld, where: str) -> None:
    client = greeted(daemon)
    assert client.command("MAIL FROM:<a@example.org>")[0] == 250
    assert client.command("RCPT TO:<erin@example.com>")[0] == 250
    if where == "bdat":
        client.send("BDAT 100000\r\n" + "x" * 50000)
    else:
        assert client.command("DATA")[0] == 354
        client.send("Subject: cut\r\n\r\n" + "line\r\n" * 20000 + ("." if where == "before-dot" else ""))
    time.sleep(0.3)
    client.sock.shutdown(socket.SHUT_RDWR)
    client.close()
    daemon.wait_for_log("lost while reading message data")
    assert daemon.spool_files() == []
    assert "<= a@example.org" not in "\n".join(daemon.log_lines())


def test_only_crlf_dot_crlf_ends_data(daemon: DaemonWorld) -> None:
    """SMTP smuggling: <LF>.<LF>, <CR>.<CR> and <LF>.<CR><LF> are text, never the end of the message."""
    with greeted(daemon) as client:
        assert client.command("MAIL FROM:<a@example.org>")[0] == 250
        assert client.command("RCPT TO:<frank@example.com>")[0] == 250
        assert client.command("DATA")[0] == 354
        client.send(b"Subject: smuggle\r\n\r\nfirst\n.\nMAIL FROM:<evil@example.org>\r\n"
                    b"second\r.\rRCPT TO:<victim@example.com>\r\nthird\n.\r\nDATA\r\n.\r\n")
        code, text = client.reply()
        assert code == 250 and text.startswith("OK id=")
        assert client.command("QUIT")[0] == 221
    box = daemon.wait_for_mail("frank", "Subject: smuggle")
    assert "MAIL FROM:<evil@example.org>" in box and "RCPT TO:<victim@example.com>" in box
    assert len(daemon.wait_for_log("<= a@example.org").split()) > 3
    assert sum(" <= " in line for line in daemon.log_lines()) == 1


def test_bdat_chunks(daemon: DaemonWorld) -> None:
    with greeted(daemon) as client:
        assert client.command("MAIL FROM:<a@example.org> BODY=8BITMIME")[0] == 250
        assert client.command("RCPT TO:<gina@example.com>")[0] == 250
        first = b"Subject: chunked\r\n\r\nfirst part\r\n.not a terminator\r"
        client.send(b"BDAT %d\r\n" % len(first) + first)
        assert client.reply() == (250, f"{len(first)} byte chunk received")
        last = b"\nsecond part\r\n"
        client.send(b"BDAT %d LAST\r\n" % len(last) + last)
        code, text = client.reply()
        assert code == 250 and text.startswith("OK id=")
    box = daemon.wait_for_mail("gina", "second part")
    assert "first part\n.not a terminator\nsecond part" in box


def test_size_is_refused_at_mail_and_while_streaming(daemon_world: DaemonWorld) -> None:
    daemon_world.write_config(main="message_size_limit = 1M\n")
    daemon_world.start()
    with greeted(daemon_world) as client:
        assert client.command("MAIL FROM:<a@example.org> SIZE=1073741824")[0] == 552  # 1 GB announced
        assert client.command("MAIL FROM:<a@example.org> SIZE=1000")[0] == 250
        assert client.command("RCPT TO:<hank@example.com>")[0] == 250
        assert client.command("DATA")[0] == 354
        chunk = b"x" * 1000 + b"\r\n"
        for _ in range(3000):  # 3 MB, past the limit: read and thrown away, never held
            client.send(chunk)
        client.send(b".\r\n")
        assert client.reply() == (552, "Message size exceeds maximum permitted")
        assert client.command("NOOP")[0] == 250
    assert daemon_world.spool_files() == []
    assert "rejected after DATA: Message size exceeds maximum permitted" in \
        daemon_world.wait_for_log("rejected after DATA")


def test_dsn_parameters_are_recorded(daemon: DaemonWorld) -> None:
    from mta.spool.format import read_header_file

    daemon.stop()
    daemon.write_config(main="queue_only\n")
    daemon.start()
    with greeted(daemon) as client:
        assert client.command("MAIL FROM:<a@example.org> RET=HDRS ENVID=abc+2Bdef")[0] == 250
        assert client.command("RCPT TO:<ivy@example.com> NOTIFY=FAILURE,DELAY ORCPT=rfc822;ivy+40x@example.com")[0] \
            == 250
        assert client.command("DATA")[0] == 354
        assert client.command("Subject: dsn\r\n\r\nbody\r\n.")[0] == 250
    (message_id,) = daemon.message_ids()
    envelope = read_header_file(next((daemon.spool / "input").rglob(f"{message_id}-H")).read_bytes(), message_id)
    assert (envelope.dsn_ret, envelope.dsn_envid) == (2, "abc+def")
    (recipient,) = envelope.recipients
    assert recipient.orcpt == "rfc822;ivy@x@example.com"
    assert recipient.dsn_flags & 0x06 == 0x06


def test_long_local_parts_are_accepted(daemon: DaemonWorld) -> None:
    local = "a" * 100
    with greeted(daemon) as client:
        assert client.command("MAIL FROM:<a@example.org>")[0] == 250
        assert client.command(f"RCPT TO:<{local}@example.com>")[0] == 250


@pytest.mark.parametrize("where", ["helo", "mail", "rcpt", "header"])
def test_expansion_syntax_from_a_client_is_never_expanded(daemon: DaemonWorld, where: str) -> None:
    hostile = "${run{/bin/touch /tmp/mta-expanded}}${lookup{root}lsearch{/etc/shadow}}"
    with RawClient(daemon.port) as client:
        client.reply()
        helo = "x.example" if where != "helo" else f"[{hostile}]"
        try:
            client.command(f"EHLO {helo}")
            local = f'"{hostile}"' if where == "mail" else "a"
            client.command(f"MAIL FROM:<{local}@example.org>")
            rcpt = f'"{hostile}"@example.com' if where == "rcpt" else "jay@example.com"
            client.command(f"RCPT TO:<{rcpt}>")
            client.command("DATA")
            client.command(f"Subject: {hostile}\r\nX-Test: {hostile}\r\n\r\nbody\r\n.")
            client.command("QUIT")
        except ConnectionError:
            pass  # refused along the way (a HELO that is not a name): what matters is below
    time.sleep(0.5)
    import os

    assert not os.path.exists("/tmp/mta-expanded")
    assert "root:" not in daemon.mainlog.read_text()


def test_crlf_in_anything_cannot_forge_a_log_line(daemon: DaemonWorld) -> None:
    with RawClient(daemon.port) as client:
        client.reply()
        client.command("EHLO forged\r2026-01-01 00:00:00 1xZ000-000000000000-0000 => fake")
        client.command("MAIL FROM:<a@example.org>")
        client.command("RCPT TO:<kim\r@example.com>")
        client.command("QUIT")
    for line in daemon.log_lines():
        assert not line.startswith("2026-01-01"), line


def test_vrfy_expn_etrn_are_refused_by_default(daemon: DaemonWorld) -> None:
    with greeted(daemon) as client:
        vrfy = client.command("VRFY bob@example.com")
        expn = client.command("EXPN staff@example.com")
        etrn = client.command("ETRN example.com")
    assert vrfy[0] in (252, 550) and expn[0] >= 500 and etrn[0] >= 450
    assert "ETRN example.com received" not in daemon.mainlog.read_text()


def test_an_accepted_etrn_starts_a_queue_run_for_the_domain(daemon_world: DaemonWorld) -> None:
    daemon_world.write_config(main="acl_smtp_etrn = accept\nqueue_only\n")
    daemon_world.start()
    with greeted(daemon_world) as client:
        assert client.command("MAIL FROM:<a@example.org>")[0] == 250
        assert client.command("RCPT TO:<pat@example.com>")[0] == 250
        assert client.command("DATA")[0] == 354
        assert client.command("Subject: waiting for etrn\r\n\r\nbody\r\n.")[0] == 250
        assert client.command("ETRN example.com")[0] == 250
    daemon_world.wait_for_log("ETRN example.com received from")
    daemon_world.wait_for_mail("pat", "waiting for etrn")


def test_a_silent_client_is_timed_out(daemon_world: DaemonWorld) -> None:
    daemon_world.write_config(main="smtp_receive_timeout = 1s\n")
    daemon_world.start()
    with greeted(daemon_world) as client:
        client.command("MAIL FROM:<a@example.org>")
        client.command("RCPT TO:<quinn@example.com>")
        client.command("DATA")
        client.send("Subject: half a message\r\n")
        code, text = client.reply()
        assert code == 421 and "timeout" in text
        assert client.closed()
    daemon_world.wait_for_log("SMTP data timeout (message abandoned) on connection from")
    assert daemon_world.spool_files() == []
