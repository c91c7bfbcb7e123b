"""Ordinary users' sendmail with a daemon: through the submission socket, or the drop directory when it is down.

The spool is root's and mta_user's only; `nobody` cannot read or write it,
yet can send mail, and the daemon knows who sent it from the kernel, not
from anything the client says.
"""

from __future__ import annotations

import os
import stat

from tests.support.daemon import DaemonWorld
from tests.support.mta import MtaEnv
from tests.support.nobody import Nobody

MESSAGE = "To: bob@example.com\nFrom: Someone Else <boss@example.com>\nSubject: from nobody\n\nhello\n"


def as_env(world: DaemonWorld) -> MtaEnv:
    env = MtaEnv(world.root)
    return env


def test_through_the_socket_with_the_callers_identity(daemon: DaemonWorld, nobody: Nobody) -> None:
    env = as_env(daemon)
    result = nobody.run(env, "-t", "-f", "forged@example.com", input=MESSAGE, config=False,
                        environ={"MTA_CONFIG": str(daemon.config)})
    assert (result.returncode, result.stderr) == (0, "")
    box = daemon.wait_for_mail("bob", "Subject: from nobody")
    # Untrusted: -f was not believed, and a Sender: names the real sender.
    assert "Sender: nobody <nobody@example.com>" in box or "Sender: nobody@example.com" in box
    arrival = daemon.wait_for_log("<= nobody@example.com")
    assert " U=nobody P=local " in arrival
    assert "forged@example.com" not in arrival
    # The spool itself is out of nobody's reach.
    spool_input = daemon.spool / "input"
    mode = os.stat(spool_input).st_mode
    assert not mode & (stat.S_IROTH | stat.S_IWOTH)
    listing = nobody.run(env, "-bp", config=False, environ={"MTA_CONFIG": str(daemon.config)})
    assert listing.returncode == 1 and "only administrators" in listing.stderr


def test_options_that_would_choose_the_daemons_behaviour_are_refused(daemon: DaemonWorld, nobody: Nobody) -> None:
    env = as_env(daemon)
    result = nobody.run(env, "-oMr", "forged", "bob@example.com", input="Subject: x\n\nhi\n", config=False,
                        environ={"MTA_CONFIG": str(daemon.config)})
    assert result.returncode == 1
    assert "-oM" in result.stderr and "not allowed" in result.stderr
    assert daemon.message_ids() == []


def test_with_no_daemon_the_message_waits_in_the_drop_directory(daemon_world: DaemonWorld, nobody: Nobody) -> None:
    daemon_world.write_config()
    daemon_world.start()  # makes the spool and its drop directory
    daemon_world.stop()
    env = as_env(daemon_world)
    result = nobody.run(env, "bob@example.com", input="Subject: while it was down\n\nhello\n", config=False,
                        environ={"MTA_CONFIG": str(daemon_world.config)})
    assert (result.returncode, result.stderr) == (0, "")
    offline = daemon_world.spool / "offline"
    (dropped,) = [p for p in offline.iterdir()]
    assert dropped.stat().st_uid == nobody.uid and not dropped.stat().st_mode & stat.S_IROTH
    # nobody may not look into the drop directory (write and traverse only).
    assert nobody.run(env, "-bV", config=False, environ={"MTA_CONFIG": str(daemon_world.config)}).returncode == 0
    daemon_world.start()
    box = daemon_world.wait_for_mail("bob", "while it was down")
    assert "hello" in box
    assert list(offline.iterdir()) == []
    assert " U=nobody P=local " in daemon_world.wait_for_log("<= nobody@example.com")


def test_a_user_removes_their_own_message_through_the_daemon_and_only_theirs(
    daemon: DaemonWorld, nobody: Nobody
) -> None:
    env = as_env(daemon)
    environ = {"MTA_CONFIG": str(daemon.config)}
    sent = nobody.run(env, "-odq", "bob@example.com", input="Subject: regret\n\nhi\n", config=False, environ=environ)
    assert (sent.returncode, sent.stderr) == (0, "")
    (own,) = daemon.message_ids()
    # A message somebody else (root) sent, still on the queue.
    other = daemon.run("-odq", "bob@example.com", input="Subject: root's\n\nhi\n")
    assert other.returncode == 0, other.stderr
    (theirs,) = [i for i in daemon.message_ids() if i != own]
    refused = nobody.run(env, "-Mrm", theirs, config=False, environ=environ)
    assert refused.returncode == 1
    assert "was not sent by you" in refused.stderr and theirs in refused.stderr
    removed = nobody.run(env, "-Mrm", own, config=False, environ=environ)
    assert (removed.returncode, removed.stdout.strip(), removed.stderr) == (0, f"Message {own} has been removed", "")
    assert daemon.message_ids() == [theirs]
    assert f"{own} removed by nobody" in daemon.wait_for_log(f"{own} removed by nobody")
    # An id that is not on the spool is one more refusal, reported with the rest.
    missing = theirs[:-2] + ("AA" if not theirs.endswith("AA") else "AB")
    mixed = nobody.run(env, "-Mrm", missing, theirs, config=False, environ=environ)
    assert mixed.returncode == 1 and "not on the spool" in mixed.stderr and "not sent by you" in mixed.stderr


def test_a_users_removal_with_no_daemon_says_why_it_cannot_be_done(daemon_world: DaemonWorld, nobody: Nobody) -> None:
    daemon_world.write_config()
    daemon_world.start()
    daemon_world.stop()
    env = as_env(daemon_world)
    result = nobody.run(env, "-Mrm", "1aBcDe-000001-AB", config=False, environ={"MTA_CONFIG": str(daemon_world.config)})
    assert result.returncode == 1
    assert "not running" in result.stderr and "ask an administrator" in result.stderr
    assert "Traceback" not in result.stderr
