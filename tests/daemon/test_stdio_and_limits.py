"""-bs and -bS on standard input, the connection limits of the master, loops, and DSN in bounces."""

from __future__ import annotations

import socket
import time

from tests.support.daemon import DaemonWorld, RawClient


def test_bs_one_session_on_stdin(daemon_world: DaemonWorld) -> None:
    daemon_world.write_config()
    session = ("HELO local.example\r\nMAIL FROM:<root@example.com>\r\nRCPT TO:<lee@example.com>\r\nDATA\r\n"
               "Subject: over -bs\r\n\r\nhello\r\n.\r\nQUIT\r\n")
    result = daemon_world.run("-bs", input=session)
    assert result.returncode == 0, result.stderr
    codes = [line[:3] for line in result.stdout.splitlines()]
    assert codes == ["220", "250", "250", "250", "354", "250", "221"], result.stdout
    box = daemon_world.wait_for_mail("lee", "over -bs")
    assert "with local-smtp" in box
    assert " U=root P=local-smtp " in daemon_world.wait_for_log("<= root@example.com")


def test_bS_batched_smtp_reports_errors_and_exits_non_zero(daemon_world: DaemonWorld) -> None:
    daemon_world.write_config()
    batch = ("HELO local.example\nMAIL FROM:<root@example.com>\nRCPT TO:<mo@example.com>\nDATA\n"
             "Subject: batched\n\nhello\n.\nMAIL FROM:<root@example.com>\nRCPT TO:<x@elsewhere.example>\nDATA\n"
             "Subject: refused\n\nno\n.\nQUIT\n").replace("\n", "\r\n")
    result = daemon_world.run("-bS", input=batch)
    assert result.stdout == ""  # no replies in batched SMTP
    assert result.returncode == 1
    assert "550 relay not permitted" not in result.stderr or "relay" in result.stderr
    daemon_world.wait_for_mail("mo", "Subject: batched")


def _connect_when_free(port: int, source: str = "127.0.0.1", timeout: float = 15) -> RawClient:
    """A session that got its 220: sessions that just ended may not have been counted out yet."""
    deadline = time.monotonic() + timeout
    while True:
        client = RawClient.__new__(RawClient)
        client.sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
        client.buffer = b""
        code, text = client.reply()
        if code == 220:
            return client
        client.close()
        assert time.monotonic() < deadline, text
        time.sleep(0.1)


def test_smtp_accept_max_and_per_host(daemon_world: DaemonWorld) -> None:
    daemon_world.write_config(main="smtp_accept_max = 3\nsmtp_accept_max_per_host = 2\n")
    daemon_world.start()
    held: list[RawClient] = []
    try:
        held.append(_connect_when_free(daemon_world.port))
        held.append(_connect_when_free(daemon_world.port))
        with RawClient(daemon_world.port) as third:
            code, text = third.reply()
            assert code == 421 and "from this IP address" in text
        held.append(_connect_when_free(daemon_world.port, source="127.0.0.3"))  # another host: the third slot
        with RawClient(daemon_world.port) as fourth:
            code, text = fourth.reply()
            assert code == 421 and "Too many concurrent SMTP connections" in text
        for client in held:
            client.command("QUIT")
    finally:
        for client in held:
            client.close()
    # The slots are free again once the receivers have told the master the sessions ended.
    _connect_when_free(daemon_world.port).close()


def test_a_mail_loop_is_refused_after_data(daemon_world: DaemonWorld) -> None:
    daemon_world.write_config(main="received_headers_max = 5\n")
    daemon_world.start()
    received = "".join(f"Received: from hop{i}.example by hop{i + 1}.example; Thu, 1 Jan 2026 00:00:0{i} +0000\r\n"
                       for i in range(6))
    with RawClient(daemon_world.port) as client:
        client.reply()
        client.command("EHLO client.example.org")
        client.command("MAIL FROM:<a@example.org>")
        client.command("RCPT TO:<nia@example.com>")
        client.command("DATA")
        code, text = client.command(received + "Subject: loop\r\n\r\nround\r\n.")
        assert code == 550 and "too many Received" in text
    assert daemon_world.spool_files() == []


def test_notify_never_means_no_bounce_and_orcpt_comes_back(daemon_world: DaemonWorld) -> None:
    daemon_world.write_config(transports="""
broken:
  driver = pipe
  command = /bin/false
""")
    daemon_world.config.write_text(daemon_world.config.read_text().replace(
        "everyone:\n  driver = smartuser\n  transport = box",
        "failing:\n  driver = smartuser\n  local_parts = ^fail.*\n  transport = broken\n  user = nobody\n\n"
        "everyone:\n  driver = smartuser\n  transport = box"))
    daemon_world.start()
    with RawClient(daemon_world.port) as client:
        client.reply()
        client.command("EHLO client.example.org")
        assert client.command("MAIL FROM:<olga@example.com> ENVID=env-42")[0] == 250
        assert client.command("RCPT TO:<fail-quiet@example.com> NOTIFY=NEVER")[0] == 250
        assert client.command("RCPT TO:<fail-loud@example.com> NOTIFY=FAILURE ORCPT=rfc822;loud+40x.example")[0] \
            == 250
        assert client.command("DATA")[0] == 354
        assert client.command("Subject: dsn test\r\n\r\nbody\r\n.")[0] == 250
    bounce = daemon_world.wait_for_mail("olga", "Final-Recipient")
    assert "Final-Recipient: rfc822;fail-loud@example.com" in bounce
    assert "Original-Recipient: rfc822;loud@x.example" in bounce
    assert "Original-Envelope-ID: env-42" in bounce
    assert "fail-quiet" not in bounce.split("Content-Type: message/rfc822")[0].split("X-Failed-Recipients")[0] or \
        "Final-Recipient: rfc822;fail-quiet" not in bounce
    daemon_world.wait_for_log("fail-quiet@example.com: no failure report")
