"""Inflow control in a real daemon: receivers slow down when the delivery workers fall behind.

One receiver, one worker that may not be joined by another, and a pipe
transport that keeps the worker busy for seconds (slow@example.com).  With
`in_flow_backlog = 2`, two messages may wait for the worker; the DATA of the
next one gets its 354 only when the worker takes a message, or after
`in_flow_delay` without.  A message the workers are never handed (refused
after its text, or lost with its connection) gives its token back; clients that
take tokens and then send nothing do not hold others up for long.  A
queue_only daemon is never slowed, `-bP` shows the options, a bad value stops
start-up, and a SIGHUP re-exec keeps the tokens' pipe.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.daemon.test_worker_pool import SLOW_PIPE_BASE
from tests.support.daemon import DaemonWorld, RawClient

ONE_WORKER = "delivery_workers_max = 1\n"


def start(world: DaemonWorld, main: str, sleep: int = 3) -> RawClient:
    # slow@example.com goes to a pipe command that sleeps for `sleep` seconds.
    world.write_config(main=ONE_WORKER + main, base=SLOW_PIPE_BASE.replace("/bin/sleep 3", f"/bin/sleep {sleep}"))
    world.start()
    client = RawClient(world.port, timeout=60)
    assert client.reply()[0] == 220
    assert client.command("EHLO client.example")[0] == 250
    return client


def send(client: RawClient, recipient: str, body: str = "hello", expect: int = 250) -> float:
    """One message; the seconds its DATA waited for the 354."""
    assert client.command("MAIL FROM:<alice@example.com>")[0] == 250
    assert client.command(f"RCPT TO:<{recipient}>")[0] == 250
    asked = time.monotonic()
    code, text = client.command("DATA")
    waited = time.monotonic() - asked
    assert code == 354, text
    code, text = client.command(f"Subject: to {recipient}\r\n\r\n{body}\r\n.")
    assert code == expect, text
    return waited


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
    return False


def busy_worker(world: DaemonWorld, client: RawClient) -> None:
    """The worker takes a message for slow@ and is busy with it for the pipe's seconds: once the
    daemon's pipe command runs, the worker has taken the id, and its token is back in the pipe."""
    assert world.process is not None
    assert send(client, "slow@example.com") < 1.0
    deadline = time.monotonic() + 20
    while True:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[:1] == [b"/bin/sleep"] and _descends_from(int(entry.name), world.process.pid):
                return
        assert time.monotonic() < deadline, "the worker never started the pipe command"
        time.sleep(0.02)


def test_past_the_backlog_a_message_waits_for_the_delay_then_goes_on(daemon_world: DaemonWorld) -> None:
    client = start(daemon_world, "in_flow_backlog = 2\nin_flow_delay = 2s\n", sleep=5)
    busy_worker(daemon_world, client)
    assert send(client, "bob@example.com", "second") < 1.0
    assert send(client, "carol@example.com", "third") < 1.0
    # Two wait for the worker: the next one waits, up to in_flow_delay, and is then taken regardless.
    waited = send(client, "dave@example.com", "fourth")
    assert 1.8 <= waited < 3.5, waited
    client.command("QUIT")
    client.close()
    for local_part, body in (("bob", "second"), ("carol", "third"), ("dave", "fourth")):
        daemon_world.wait_for_mail(local_part, body, timeout=30)
    assert daemon_world.stop() == 0


def test_a_waiting_message_goes_on_as_soon_as_the_worker_takes_another(daemon_world: DaemonWorld) -> None:
    client = start(daemon_world, "in_flow_backlog = 2\nin_flow_delay = 60s\n", sleep=3)
    busy_worker(daemon_world, client)
    send(client, "bob@example.com", "second")
    send(client, "carol@example.com", "third")
    # The worker ends the pipe about 2 s from now and takes "second": its token lets this one in.
    waited = send(client, "dave@example.com", "fourth")
    assert 1.0 <= waited < 10.0, waited
    client.command("QUIT")
    client.close()
    daemon_world.wait_for_mail("dave", "fourth", timeout=30)
    assert daemon_world.stop() == 0


def test_a_message_the_workers_never_get_gives_its_token_back(daemon_world: DaemonWorld) -> None:
    client = start(daemon_world, "in_flow_backlog = 1\nin_flow_delay = 3s\nmessage_size_limit = 2K\n", sleep=8)
    busy_worker(daemon_world, client)  # the one token is in the pipe again
    # Refused after its text: the token it took goes back.
    assert send(client, "bob@example.com", "x" * 5000, expect=552) < 1.0
    # Lost with its connection in the middle of the text: the same.
    with RawClient(daemon_world.port) as lost:
        lost.reply()
        lost.command("EHLO lost.example")
        lost.command("MAIL FROM:<alice@example.com>")
        lost.command("RCPT TO:<erin@example.com>")
        asked = time.monotonic()
        assert lost.command("DATA")[0] == 354
        assert time.monotonic() - asked < 1.0
        lost.send("Subject: cut short\r\n\r\npart of it")
    daemon_world.wait_for_log("lost while reading message data")
    # So this one does not wait; it spends the token, and the next waits for the delay.
    assert send(client, "carol@example.com", "third") < 1.0
    assert send(client, "dave@example.com", "fourth") >= 2.5
    client.command("QUIT")
    client.close()
    assert daemon_world.stop() == 0


def test_a_queue_only_daemon_is_never_slowed(daemon_world: DaemonWorld) -> None:
    client = start(daemon_world, "queue_only\nin_flow_backlog = 1\nin_flow_delay = 5s\n")
    started = time.monotonic()
    for n in range(6):
        send(client, f"user{n}@example.com", f"queued {n}")
    # Each queued message gives its token back at once.  Kept, each message after the first
    # would wait for an idle worker's top-up (one token a second): about five seconds in all.
    assert time.monotonic() - started < 2.0
    client.command("QUIT")
    client.close()
    assert len(daemon_world.message_ids()) == 6
    assert daemon_world.stop() == 0


def test_the_options_are_shown_and_a_bad_value_stops_start_up(daemon_world: DaemonWorld) -> None:
    daemon_world.write_config()
    shown = daemon_world.run("-bP", "in_flow_delay", "in_flow_backlog")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == ["in_flow_delay = 1s", "in_flow_backlog = 50"]
    for bad in ("in_flow_backlog = 0", "in_flow_backlog = 70000", "in_flow_delay = soon"):
        daemon_world.write_config(main=bad + "\n")
        refused = daemon_world.run("-bV")
        assert refused.returncode != 0, bad
        assert str(daemon_world.config) in refused.stderr, refused.stderr
        assert bad.split()[0] in refused.stderr, refused.stderr


def pipes(pid: int) -> set[str]:
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("pipe:"):
            found.add(target)
    return found


def test_a_sighup_re_exec_keeps_the_tokens_pipe(daemon_world: DaemonWorld) -> None:
    client = start(daemon_world, "in_flow_backlog = 2\nin_flow_delay = 2s\n")
    client.close()
    assert daemon_world.process is not None
    master = daemon_world.process.pid
    before = pipes(master)
    assert len(before) == 1  # the tokens' pipe: the master keeps both ends for the children it starts
    os.kill(master, signal.SIGHUP)
    daemon_world.wait_for_log("SIGHUP received: re-exec daemon")
    deadline = time.monotonic() + 20
    while len([line for line in daemon_world.log_lines() if "daemon started" in line]) < 2:
        assert time.monotonic() < deadline, daemon_world.log_lines()[-5:]
        time.sleep(0.05)
    assert pipes(master) == before
    # The new image's receiver and worker use it: messages still go through, none held up.
    with RawClient(daemon_world.port, timeout=30) as after:
        after.reply()
        after.command("EHLO client.example")
        for n in range(4):
            assert send(after, f"user{n}@example.com", f"after {n}") < 1.5
        after.command("QUIT")
    daemon_world.wait_for_mail("user3", "after 3")
    assert not Path(daemon_world.spool / "log" / "paniclog").exists()
    assert daemon_world.stop() == 0


def test_clients_that_hold_their_data_open_do_not_hold_up_others(daemon_world: DaemonWorld) -> None:
    client = start(daemon_world, "in_flow_backlog = 2\nin_flow_delay = 5s\n")
    # Two clients take both tokens at DATA and then send nothing (a slow or hostile client keeps
    # its token until its text ends or its connection does).
    stalled = []
    for n in range(2):
        holder = RawClient(daemon_world.port, timeout=30)
        holder.reply()
        holder.command("EHLO holder.example")
        holder.command("MAIL FROM:<alice@example.com>")
        holder.command(f"RCPT TO:<held{n}@example.com>")
        assert holder.command("DATA")[0] == 354
        stalled.append(holder)
    # The worker has nothing to do: within a second it fills the pipe again, so a message does
    # not wait out in_flow_delay behind them.
    time.sleep(1.5)
    assert send(client, "bob@example.com", "not held up") < 1.5
    daemon_world.wait_for_mail("bob", "not held up")
    for holder in stalled:
        holder.close()
    client.command("QUIT")
    client.close()
    assert daemon_world.stop() == 0
