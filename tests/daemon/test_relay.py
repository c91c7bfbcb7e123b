"""The shipped configuration (etc/mta.conf) over real sockets: never an open relay, whatever the trick.

The client connects from 127.0.0.2, which is not in relay_from_hosts and
does not authenticate, as a stranger on the Internet would; every trick of
research/security.md §3 must be refused at RCPT.  From 127.0.0.1 (in
relay_from_hosts) the same daemon relays, which shows the refusals are the
ACL's doing and not an accident.  -bh gives the same answers without
spooling anything.  The tricks include case and trailing-dot games, IP
literals, unqualified recipients and pipes and files, and the plain ones are
tried again after a HELO that names this host (docs/reliability.md).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support.daemon import DaemonWorld, RawClient

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "etc" / "mta.conf"

TRICKS = [
    "root@target.example",
    "root%target.example@localhost",
    "root%target.example@[127.0.0.1]",
    '"root@target.example"@localhost',
    '"root%target.example"@localhost',
    "root@target.example@localhost",
    "@localhost:root@target.example",
    "@localhost,@other.example:root@target.example",
    "target.example!root@localhost",
    "target.example!root",
    '"target.example!root"@localhost',
    "root@target.example.",
    "root%target.example@localhost.",
    "root@[198.51.100.7]",
    "root@localhost.target.example",
    "root@target.example.localhost",
    "root\\@target.example@localhost",
    "postmaster@target.example",
    '"root@target.example"',
    "root|/bin/sh@localhost",
    "/tmp/x@localhost",
    "../../x@localhost",
    # Case and trailing dots, to slip past a domain match that is exact or case-sensitive.
    "root@TARGET.EXAMPLE",
    "ROOT@Target.Example.",
    "root%target.example@LOCALHOST",
    "root%TARGET.EXAMPLE@LocalHost.",
    '"root@target.example"@LOCALHOST.',
    "TARGET.EXAMPLE!root@LOCALHOST",
    "root@target.example@LOCALHOST",
    "root@target..example",
    # IP literals: this host's own (which is not a local domain here) and the percent hack through them.
    "root@[127.0.0.1]",
    "root@[IPv6:::1]",
    "root%target.example@[IPv6:::1]",
    "@[127.0.0.1]:root@target.example",
    # Unqualified: a stranger's bare local part is not qualified with our domain.
    "root",
    "root%target.example",
    # Pipes, files and includes, quoted or not: never reachable from outside.
    '"|/bin/touch /tmp/mta-relay-canary"@localhost',
    "|/bin/true@localhost",
    '"/tmp/mta-relay-canary"@localhost',
    '"/tmp/mta-relay-dir/"@localhost',
    '":include:/etc/passwd"@localhost',
]
# HELO (or EHLO) names that claim to be this host or a trusted one: no trust may come of them.
TRUSTING_HELOS = ["localhost", "[127.0.0.1]", "[IPv6:::1]", "relay.example"]


def start_default(world: DaemonWorld) -> None:
    from tests.support.sink import free_port

    world.port = free_port()
    world.config.write_text(DEFAULT_CONFIG.read_text())
    aliases = world.root / "aliases"
    aliases.write_text("postmaster: root\n")
    world.start(f"-DSPOOL={world.spool}", f"-DMAIL_DIR={world.mail}", f"-DALIASES={aliases}",
                f"-DPORT={world.port}", "-DINTERFACES=127.0.0.1")


def client_from(address: str, port: int) -> RawClient:
    client = RawClient.__new__(RawClient)
    client.sock = socket.create_connection(("127.0.0.1", port), timeout=15, source_address=(address, 0))
    client.buffer = b""
    assert client.reply()[0] == 220
    return client


@pytest.fixture
def default_daemon(daemon_world: DaemonWorld) -> DaemonWorld:
    start_default(daemon_world)
    return daemon_world


@pytest.mark.parametrize("sender", ["<>", "<postmaster@localhost>", "<root@[127.0.0.1]>"])
def test_no_trick_relays_from_a_stranger(default_daemon: DaemonWorld, sender: str) -> None:
    accepted = []
    attempts = [("stranger.example", trick) for trick in TRICKS]
    attempts += [(helo, trick) for helo in TRUSTING_HELOS for trick in TRICKS[:3]]
    for helo, trick in attempts:
        # A connection each: syntax errors count towards a drop (smtp_max_synprot_errors).
        with client_from("127.0.0.2", default_daemon.port) as client:
            assert client.command(f"EHLO {helo}")[0] == 250
            code, text = client.command(f"MAIL FROM:{sender}")
            if code != 250:
                assert code >= 500, (sender, code, text)
                continue
            code, text = client.command(f"RCPT TO:<{trick}>")
            if code < 400:
                accepted.append((helo, trick))
            else:
                assert code >= 500, (trick, code, text)  # refused for good, not "try later"
    assert accepted == [], f"accepted from a stranger: {accepted}"
    assert default_daemon.spool_files() == []
    assert not Path("/tmp/mta-relay-canary").exists()


def test_a_local_recipient_is_accepted_and_the_relay_host_may_relay(default_daemon: DaemonWorld) -> None:
    with client_from("127.0.0.2", default_daemon.port) as client:
        assert client.command("EHLO stranger.example")[0] == 250
        assert client.command("MAIL FROM:<>")[0] == 250
        assert client.command("RCPT TO:<root@localhost>") == (250, "Accepted")
        assert client.command("RCPT TO:<nosuchuser-zq9@localhost>")[0] == 550
    with client_from("127.0.0.1", default_daemon.port) as client:
        assert client.command("EHLO inside.example")[0] == 250
        assert client.command("MAIL FROM:<root@localhost>")[0] == 250
        assert client.command("RCPT TO:<user@target.example>") == (250, "Accepted")


def test_bh_tells_the_same_story_and_spools_nothing(daemon_world: DaemonWorld) -> None:
    daemon_world.config.write_text(DEFAULT_CONFIG.read_text())
    aliases = daemon_world.root / "aliases"
    aliases.write_text("postmaster: root\n")
    macros = [f"-DSPOOL={daemon_world.spool}", f"-DMAIL_DIR={daemon_world.mail}", f"-DALIASES={aliases}"]
    session = ("EHLO stranger.example\r\nMAIL FROM:<>\r\nRCPT TO:<user@target.example>\r\n"
               "RCPT TO:<root@localhost>\r\nDATA\r\nSubject: test\r\n\r\nhello\r\n.\r\nQUIT\r\n")
    result = daemon_world.run(*macros, "-bh", "192.0.2.7", input=session)
    assert result.returncode == 0, result.stderr
    replies = [line[:3] for line in result.stdout.splitlines() if line[:3].isdigit() and line[3:4] == " "]
    assert replies == ["220", "250", "250", "550", "250", "354", "250", "221"], result.stdout
    assert "550 relay not permitted" in result.stdout
    assert "SMTP testing: that is not a real message id!" in result.stderr
    assert ">>> " in result.stderr or "accept" in result.stderr  # the ACL's decisions are shown
    assert not (daemon_world.spool / "input").exists() or not list((daemon_world.spool / "input").iterdir())
