"""Issue 16, point 5: each limit holds with bounded memory, and a fresh client is served while it is pushed.

The daemon's memory is the PSS of its whole process tree (master,
receivers, workers) from /proc, before and at the peak of each stress
(tests/support/procmem.py); every stress checks that a new connection gets
its 220 and a message through meanwhile (tests/support/limits.py).  This
is the CI form: 1,000 idle connections; slowloris clients in a command and
in DATA; ten parallel AUTH guessers; a message of 64 MB against
message_size_limit = 8M, by DATA and by one BDAT, and 1 GB announced with
SIZE; a 10 MB header block, as many lines and as one line; 10,000
recipients.  `scripts/limits-test` runs the long form (10,000 idle
connections, a real 1 GB message) and prints the figures; see
docs/reliability.md.
"""

from __future__ import annotations

import os

from tests.daemon.test_hostile_clients import AUTH_AND_BROKEN
from tests.support.daemon import DaemonWorld
from tests.support.limits import (
    auth_guessers,
    big_message,
    header_block,
    idle_connections,
    many_recipients,
    raise_nofile,
    slowloris,
    timed_out,
)

MiB = 2**20
IDLE = int(os.environ.get("MTA_LIMITS_IDLE", "1000"))
TIMEOUT = 2  # smtp_receive_timeout, seconds


def test_idle_connections_slowloris_and_guessers(daemon_world: DaemonWorld) -> None:
    raise_nofile(IDLE + 1000)
    daemon_world.write_config(
        main=f"smtp_accept_max = {IDLE + 100}\nsmtp_receive_timeout = {TIMEOUT}s\nauth_advertise_hosts = 127.0.0.1\n",
        transports=AUTH_AND_BROKEN)
    daemon_world.start()

    idle = idle_connections(daemon_world, IDLE)
    print(f"\n{IDLE} idle connections: {idle}")
    # Bounded: well under 100 KB a connection (the figures are in docs/reliability.md).
    assert idle.growth_pss < IDLE * 100 * 1024 + 20 * MiB, str(idle)
    assert idle.served_in < 5, str(idle)

    # Slowloris: a byte every half second and never a line end, in a command and in DATA; the line's
    # deadline (smtp_receive_timeout) closes them as it would a silent client.
    slow = slowloris(daemon_world, in_data=3, in_command=2, interval=0.5, limit=TIMEOUT + 3)
    print(f"slowloris: {slow}")
    assert all(after is not None and after < TIMEOUT + 3 for after in slow.extra["closed after"]), str(slow)
    assert all(reply.startswith("421") for reply in slow.extra["replies"]), str(slow)
    assert slow.served_in < 5, str(slow)

    # The idle connections were timed out too, every one of them.
    assert timed_out(idle.sockets, TIMEOUT + 5) == IDLE
    daemon_world.wait_for_log("SMTP data timeout (message abandoned)")
    # And their slots are free: as many again are served (none is still counted against smtp_accept_max).
    again = idle_connections(daemon_world, IDLE)
    for sock in again.sockets:
        sock.close()

    # AUTH guessing: ten wrong passwords at once from one address, each after its pause; the address
    # is then refused (454) without being asked for a password, while others are served.
    guessers = auth_guessers(daemon_world, 10)
    print(f"AUTH guessers: {guessers}")
    assert guessers.extra["codes"] == [535] * 10
    assert guessers.extra["then"][0] == 454, str(guessers)
    assert guessers.served_in < 5, str(guessers)


def test_big_messages_header_blocks_and_recipients(daemon_world: DaemonWorld) -> None:
    size = int(os.environ.get("MTA_LIMITS_MESSAGE", str(64 * MiB)))
    daemon_world.write_config(main="message_size_limit = 8M\nrecipients_max = 10000\nqueue_only\n")
    daemon_world.start()
    bound = 40 * MiB  # what the daemon may grow by while any of these goes through

    announced = big_message(daemon_world, 2**30, announce=True)
    assert announced.extra["reply"][0] == 552 and announced.seconds < 5, str(announced)

    for how in ("data", "bdat"):
        streamed = big_message(daemon_world, size, how)
        print(f"\n{size // MiB} MB by {how}: {streamed}")
        assert streamed.extra["reply"] == (552, "Message size exceeds maximum permitted"), str(streamed)
        assert streamed.growth_pss < bound, str(streamed)
        assert 0 < streamed.served_in < 10, str(streamed)

    for one_line in (False, True):
        headers = header_block(daemon_world, 10 * MiB, one_line)
        print(f"10 MB header block{' in one line' if one_line else ''}: {headers}")
        assert headers.extra["reply"] == (552, "Message header section too big"), str(headers)
        assert headers.growth_pss < bound, str(headers)

    # Only the fresh clients' messages were kept: nothing of the refused ones.
    assert len(daemon_world.message_ids()) == 5
    before = set(daemon_world.message_ids())
    # 10,000 recipients (recipients_max), and 50 more that are refused.
    recipients = many_recipients(daemon_world, 10_000, extra=50)
    print(f"10,000 recipients: {recipients}")
    assert recipients.extra["codes"] == {250: 10_000, 452: 50}, str(recipients)
    assert recipients.extra["reply"][0] == 250, str(recipients)
    assert recipients.growth_pss < bound, str(recipients)
    new = set(daemon_world.message_ids()) - before  # the message, and the fresh client's
    sizes = sorted(len(next((daemon_world.spool / "input").rglob(f"{m}-H")).read_bytes()) for m in new)
    assert len(new) == 2 and sizes[-1] > 10_000 * len("r9999@example.com"), sizes
