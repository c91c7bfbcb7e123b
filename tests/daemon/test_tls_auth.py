"""STARTTLS, TLS on connect, and AUTH in the daemon: offered when they should be, refused when not, logged."""

from __future__ import annotations

import base64
import smtplib
import ssl
import time

from tests.support.daemon import DaemonWorld, RawClient

AUTH = """
begin authenticators

plain_server:
  driver = plaintext
  public_name = PLAIN
  server_condition = ${if and {{eq{$auth2}{alice}}{eq{$auth3}{sesame}}}}
  server_set_id = $auth2
"""


def client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def test_auth_only_after_starttls_then_relays_and_logs(daemon_world: DaemonWorld) -> None:
    daemon_world.write_config(transports=AUTH)
    daemon_world.start()
    with smtplib.SMTP("127.0.0.1", daemon_world.port, timeout=30) as client:
        client.ehlo("client.example.org")
        assert "auth" not in client.esmtp_features and "starttls" in client.esmtp_features
        client.starttls(context=client_context())
        client.ehlo("client.example.org")
        assert client.esmtp_features["auth"].strip() == "PLAIN"
        try:
            client.login("alice", "wrong")
            raise AssertionError("a wrong password was accepted")
        except smtplib.SMTPAuthenticationError as exc:
            assert exc.smtp_code == 535
        client.login("alice", "sesame")
        refused = client.sendmail("alice@example.com", ["bob@elsewhere.example"], b"Subject: relayed\r\n\r\nx\r\n")
        assert refused == {}
    failure = daemon_world.wait_for_log("authenticator failed for")
    assert "plain_server authenticator failed for (client.example.org) [127.0.0.1]: 535" in failure
    assert "sesame" not in daemon_world.mainlog.read_text() and "wrong" not in failure
    arrival = daemon_world.wait_for_log("<= alice@example.com")
    assert " P=esmtpsa X=TLS1." in arrival and " A=plain_server:alice " in arrival


def test_auth_without_tls_is_not_offered_nor_accepted(daemon_world: DaemonWorld) -> None:
    daemon_world.write_config(transports=AUTH)
    daemon_world.start()
    with RawClient(daemon_world.port) as client:
        client.reply()
        client.command("EHLO client.example.org")
        token = base64.b64encode(b"\0alice\0sesame").decode()
        assert client.command(f"AUTH PLAIN {token}")[0] == 503


def test_repeated_auth_failures_are_slowed_and_dropped(daemon_world: DaemonWorld) -> None:
    daemon_world.write_config(main="auth_advertise_hosts = 127.0.0.1\n", transports=AUTH)
    daemon_world.start()
    with RawClient(daemon_world.port, timeout=60) as client:
        client.reply()
        client.command("EHLO guesser.example")
        started = time.monotonic()
        codes = []
        for guess in ("a", "b", "c"):
            token = base64.b64encode(b"\0alice\0" + guess.encode()).decode()
            codes.append(client.command(f"AUTH PLAIN {token}")[0])
        assert codes == [535, 535, 535]
        assert time.monotonic() - started >= 3  # 1 s + 2 s of waiting before the replies
        assert client.reply()[0] == 421
        assert client.closed()
    daemon_world.wait_for_log("dropped: too many authentication failures")


def test_a_failed_tls_handshake_is_logged_and_harmless(daemon: DaemonWorld) -> None:
    with RawClient(daemon.port) as client:
        client.reply()
        client.command("EHLO client.example.org")
        assert client.command("STARTTLS") == (220, "TLS go ahead")
        client.send(b"this is not a TLS client hello\r\n" * 10)
        assert client.closed(timeout=30)
    daemon.wait_for_log("TLS error on connection from")
    with RawClient(daemon.port) as client:  # the daemon is fine
        assert client.reply()[0] == 220


def test_commands_sent_before_the_tls_handshake_are_not_obeyed(daemon: DaemonWorld) -> None:
    """CVE-2011-0411's class: what a client pipelines after STARTTLS is thrown away."""
    raw = RawClient(daemon.port)
    raw.reply()
    raw.command("EHLO client.example.org")
    raw.send("STARTTLS\r\nMAIL FROM:<injected@example.org>\r\n")
    assert raw.reply() == (220, "TLS go ahead")
    tls = client_context().wrap_socket(raw.sock, server_hostname="mail.example.com")
    tls.sendall(b"EHLO client.example.org\r\n")
    data = b""
    while not data.endswith(b"HELP\r\n"):
        data += tls.recv(4096)
    assert not data.startswith(b"250 OK")  # the injected MAIL got no reply of its own
    tls.sendall(b"MAIL FROM:<a@example.org>\r\n")
    assert tls.recv(4096).startswith(b"250 OK")  # no "sender already given": the injection was dropped
    tls.close()


def test_tls_on_connect_port(daemon_world: DaemonWorld) -> None:
    daemon_world.write_config(main="")
    daemon_world.config.write_text(daemon_world.config.read_text().replace(
        "local_interfaces = 127.0.0.1", f"local_interfaces = 127.0.0.1\ntls_on_connect_ports = {daemon_world.port}"))
    daemon_world.process = None
    import socket
    import subprocess

    from tests.support.mta import MTA

    with open(daemon_world.root / "daemon.stderr", "ab") as errors:
        daemon_world.process = subprocess.Popen([MTA, "-C", str(daemon_world.config), "-bdf"],
                                                stdout=subprocess.DEVNULL, stderr=errors)
    deadline = time.monotonic() + 20
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", daemon_world.port), timeout=10)
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    with client_context().wrap_socket(sock, server_hostname="mail.example.com") as tls:
        banner = tls.recv(4096)
        assert banner.startswith(b"220 ")
        tls.sendall(b"EHLO client.example.org\r\n")
        features = b""
        while not features.endswith(b"HELP\r\n"):
            features += tls.recv(4096)
        assert b"STARTTLS" not in features  # already encrypted
