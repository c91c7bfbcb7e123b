"""The bad input of issue 3, each through the real CLI as root with real users.

Every case must end cleanly: a bounce (`**`) for what is the sender's
fault, a deferral (`==`, message kept on the queue) for what is the local
system's, and never a hang, a lost message or a file touched that the
address had no business touching.
"""

from __future__ import annotations

import mailbox
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import DOMAIN, E2E, LocalUser, message_text
from tests.support.tmpfs import remount, small_tmpfs


def read_mbox(path: Path) -> list[mailbox.mboxMessage]:
    box = mailbox.mbox(path, create=False)
    try:
        return list(box)
    finally:
        box.close()


def bounces_to(e2e: E2E, user: LocalUser) -> list[mailbox.mboxMessage]:
    if not e2e.mbox_path(user).exists():
        return []
    return [m for m in read_mbox(e2e.mbox_path(user)) if m.get_from().startswith("MAILER-DAEMON ")]


def queued(e2e: E2E, message_id: str) -> bool:
    return message_id in e2e.env.message_ids()


# -- an alias loop ----------------------------------------------------------------------------------


def test_alias_loop_fails_cleanly(e2e: E2E) -> None:
    alice = e2e.user("alice")
    loopa, loopb = e2e.nobody_called("loopa"), e2e.nobody_called("loopb")
    e2e.write_aliases(f"{loopa}: {loopb}\n{loopb}: {loopa}\n")
    e2e.write_config()
    started = time.monotonic()
    e2e.submit(message_text(alice.address, f"{loopa}@{DOMAIN}", "loop", "round and round\n"),
               "-odi", "-f", alice.address, f"{loopa}@{DOMAIN}")
    assert time.monotonic() - started < 20
    message_id, bounce_id = e2e.received_ids()
    assert e2e.log_for(message_id)[1:] == [f"** {loopa}@{DOMAIN}: Unknown user", "Completed"]
    assert e2e.log_for(bounce_id)[-1] == "Completed"
    (bounce,) = bounces_to(e2e, alice)
    assert bounce["X-Failed-Recipients"] == f"{loopa}@{DOMAIN}"
    assert e2e.queue() == ""


# -- a .forward others can write -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o666, 0o646, 0o664], ids=["world+group", "world", "group"])
def test_writable_forward_file_defers_and_delivers_nothing(e2e: E2E, mode: int) -> None:
    alice, erin = e2e.user("alice"), e2e.user("erin")
    forward = e2e.write_forward(erin, f"{alice.name}\n", mode=mode)
    e2e.write_config()
    e2e.submit(message_text(alice.address, erin.address, "hi", "body\n"), "-odi", "-f", alice.address, erin.address)
    (message_id,) = e2e.received_ids()
    (line,) = e2e.log_for(message_id)[1:]
    assert line.startswith(
        f"== {erin.address} R=userforward defer (0): director userforward: file {forward} is writable by "
    )
    assert f"(mode {mode:04o}; modemask 0022" in line
    # Nothing delivered: not to erin, not to where the planted .forward points.
    assert not e2e.mbox_path(erin).exists() and not e2e.mbox_path(alice).exists()
    assert queued(e2e, message_id)
    assert f"          {erin.address}\n" in e2e.queue()

    # Once the owner fixes the mode, a forced delivery follows the .forward.
    forward.chmod(0o644)
    assert e2e.env.run("-M", message_id).returncode == 0
    assert e2e.log_for(message_id)[2:] == [f"=> {alice.name} <{erin.address}> R=localuser T=local_mbox", "Completed"]


# -- addresses that look like pipes and files --------------------------------------------------------------


def hostile_addresses(e2e: E2E) -> tuple[list[str], Path, Path]:
    """`"|/bin/touch MARKER"@domain`, a copy of /etc/passwd as a local part, and /etc/passwd itself."""
    marker = e2e.root / "touched"
    passwd_copy = e2e.root / "passwd"
    shutil.copyfile("/etc/passwd", passwd_copy)
    addresses = [f'"|/bin/touch {marker}"@{DOMAIN}', f"{passwd_copy}@{DOMAIN}", f"/etc/passwd@{DOMAIN}"]
    return addresses, marker, passwd_copy


@pytest.mark.parametrize("how", ["arguments", "to-header"])
def test_pipe_and_file_addresses_are_unknown_users(e2e: E2E, how: str) -> None:
    alice = e2e.user("alice")
    e2e.write_config()
    addresses, marker, passwd_copy = hostile_addresses(e2e)
    copy_before = (passwd_copy.read_bytes(), passwd_copy.stat().st_mtime_ns)
    subject = f"hostile-{e2e.token}"
    if how == "arguments":
        e2e.submit(message_text(alice.address, "undisclosed-recipients:;", subject, "body\n"),
                   "-odi", "-f", alice.address, *addresses)
    else:
        e2e.submit(message_text(alice.address, ", ".join(addresses), subject, "body\n"),
                   "-odi", "-t", "-f", alice.address)
    message_id, bounce_id = e2e.received_ids()
    failures = e2e.log_for(message_id)[1:]
    assert failures[-1] == "Completed"
    assert sorted(failures[:-1]) == sorted(f"** {address}: Unknown user" for address in addresses)
    assert not marker.exists()
    assert (passwd_copy.read_bytes(), passwd_copy.stat().st_mtime_ns) == copy_before
    # The real one changes when other tests add users, so look for the message in it instead.
    assert subject.encode() not in Path("/etc/passwd").read_bytes()
    (bounce,) = bounces_to(e2e, alice)
    assert bounce["Subject"] == "Mail delivery failed: returning message to sender"
    assert e2e.log_for(bounce_id)[-1] == "Completed"
    # -bt says the same, and runs nothing either.
    proc = e2e.env.run("-bt", *addresses)
    assert proc.returncode == 2
    assert proc.stdout == "".join(f"{address} is undeliverable: Unknown user\n" for address in addresses)
    assert not marker.exists()


# -- a mailbox that is a symlink -----------------------------------------------------------------------------


def test_symlinked_mailbox_is_refused_and_target_unchanged(e2e: E2E) -> None:
    alice, frank = e2e.user("alice"), e2e.user("frank")
    target = e2e.root / "passwd"  # stands for /etc/passwd
    shutil.copyfile("/etc/passwd", target)
    target.chmod(0o644)
    before = (target.read_bytes(), target.stat().st_mtime_ns)
    link = e2e.mbox_path(frank)
    link.symlink_to(target)
    os.lchown(link, frank.uid, frank.gid)  # even a link frank owns himself is refused
    e2e.write_config()
    e2e.submit(message_text(alice.address, frank.address, "hi", "body\n"), "-odi", "-f", alice.address, frank.address)
    (message_id,) = e2e.received_ids()
    (line,) = e2e.log_for(message_id)[1:]
    assert line.startswith(f"== {frank.name} <{frank.address}> R=localuser T=local_mbox defer (")
    assert "symbolic link" in line and str(link) in line
    assert (target.read_bytes(), target.stat().st_mtime_ns) == before
    assert link.is_symlink()
    assert queued(e2e, message_id)


# -- an over-quota mailbox and a full disk -------------------------------------------------------------------


def own_director(e2e: E2E, user: LocalUser, transport: str) -> str:
    return f"""
{transport}_director:
  driver = localuser
  local_parts = {user.name}
  transport = {transport}
"""


def fill_mailbox(path: Path, user: LocalUser, size: int) -> bytes:
    content = b"From old@example.com Mon Nov 23 10:00:00 2026\nSubject: old\n\n" + b"x" * size + b"\n\n"
    path.write_bytes(content)
    os.chown(path, user.uid, user.gid)
    path.chmod(0o600)
    return content


def test_over_quota_mailbox_defers_and_keeps_the_message(e2e: E2E) -> None:
    alice, dave = e2e.user("alice"), e2e.user("dave")
    e2e.write_config(
        directors=own_director(e2e, dave, "quota_mbox"),
        transports=f"""
quota_mbox:
  driver = appendfile
  file = {e2e.mail}/$local_part_data
  quota = 2K
""",
    )
    # Under quota now, but this message would take it over.
    old = fill_mailbox(e2e.mbox_path(dave), dave, 1500)
    e2e.submit(message_text(alice.address, dave.address, "big", "y" * 1000 + "\n"),
               "-odi", "-f", alice.address, dave.address)
    (message_id,) = e2e.received_ids()
    assert e2e.log_for(message_id)[1:] == [
        f"== {dave.name} <{dave.address}> R=quota_mbox_director T=quota_mbox defer (-22): "
        "mailbox is full (quota exceeded)"
    ]
    assert e2e.mbox_path(dave).read_bytes() == old
    assert queued(e2e, message_id)
    assert bounces_to(e2e, alice) == []


@pytest.fixture
def small_disk(e2e: E2E) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted in the test's world (root only); unmounted afterwards."""
    with small_tmpfs(e2e.root / "small", size="64k", mode="1777") as mountpoint:
        yield mountpoint


def test_full_disk_defers_and_keeps_the_message(e2e: E2E, small_disk: Path) -> None:
    alice, dave = e2e.user("alice"), e2e.user("dave")
    e2e.write_config(
        directors=own_director(e2e, dave, "disk_mbox"),
        transports=f"""
disk_mbox:
  driver = appendfile
  file = {small_disk}/$local_part_data
""",
    )
    mbox = small_disk / dave.name
    old = fill_mailbox(mbox, dave, 3000)
    (small_disk / "filler").write_bytes(b"f" * 40 * 1024)
    body = "".join(f"line {n} of a message too big for the disk\n" for n in range(3000))  # ~130 KiB
    e2e.submit(message_text(alice.address, dave.address, "big", body), "-odi", "-f", alice.address, dave.address)
    (message_id,) = e2e.received_ids()
    (line,) = e2e.log_for(message_id)[1:]
    assert line.startswith(f"== {dave.name} <{dave.address}> R=disk_mbox_director T=disk_mbox defer (28): ")
    assert "No space left on device" in line
    assert mbox.read_bytes() == old  # truncated back: no partial message
    assert queued(e2e, message_id)

    # More room, but the disk has gone read-only (as after an I/O error): still a deferral.
    remount(small_disk, "size=1m,ro")
    e2e.env.run("-M", message_id)
    line = e2e.log_for(message_id)[-1]
    assert line.startswith(f"== {dave.name} <{dave.address}> R=disk_mbox_director T=disk_mbox defer (30): ")
    assert "Read-only file system" in line
    assert mbox.read_bytes() == old
    assert queued(e2e, message_id)

    # Writable again, and the queued message goes in whole.
    remount(small_disk, "rw")
    assert e2e.env.run("-M", message_id).returncode == 0
    assert e2e.log_for(message_id)[-1] == "Completed"
    _old_message, new_message = read_mbox(mbox)
    assert new_message.get_payload() == body


# -- a pipe command that hangs ------------------------------------------------------------------------------


def hanging_pipe(e2e: E2E) -> Path:
    pipe = e2e.user("pipe", home=False)
    state = e2e.root / "state"
    state.mkdir()
    os.chown(state, pipe.uid, pipe.gid)
    pidfile = state / "pid"
    script = e2e.script("hang.sh", f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 300\n")
    e2e.write_aliases(f"hang: |{script}\n")
    return pidfile


def assert_process_gone(pidfile: Path) -> None:
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists(), f"the hanging command (pid {pid}) was left running"


def assert_log_in_time_order(e2e: E2E) -> None:
    """Main log lines are written in time order (exigrep and eximstats rely on it)."""
    stamps = [line[:19] for line in e2e.env.log_lines()]
    assert stamps == sorted(stamps), "\n".join(e2e.env.log_lines())


def test_hanging_pipe_times_out_and_fails(e2e: E2E) -> None:
    alice = e2e.user("alice")
    pidfile = hanging_pipe(e2e)
    e2e.write_config(pipe_timeout="2s")
    started = time.monotonic()
    e2e.submit(message_text(alice.address, f"hang@{DOMAIN}", "x", "body\n"),
               "-odi", "-f", alice.address, f"hang@{DOMAIN}")
    assert time.monotonic() - started < 15
    message_id, _bounce_id = e2e.received_ids()
    failure, completed = e2e.log_for(message_id)[1:]
    assert re.fullmatch(rf"\*\* \|{e2e.bin}/hang\.sh <hang@{DOMAIN}> R=system_aliases T=address_pipe: .*timed out.*",
                        failure)
    assert completed == "Completed"
    (bounce,) = bounces_to(e2e, alice)
    assert "timed out" in bounce.as_string()
    assert_process_gone(pidfile)
    # The bounce was made after the 2 s timeout, and its arrival is logged with that time.
    assert_log_in_time_order(e2e)


def test_hanging_pipe_with_timeout_defer_stays_queued(e2e: E2E) -> None:
    alice = e2e.user("alice")
    pidfile = hanging_pipe(e2e)
    e2e.write_config(pipe_timeout="2s", pipe_options="  timeout_defer\n")
    started = time.monotonic()
    e2e.submit(message_text(alice.address, f"hang@{DOMAIN}", "x", "body\n"),
               "-odi", "-f", alice.address, f"hang@{DOMAIN}")
    assert time.monotonic() - started < 15
    (message_id,) = e2e.received_ids()
    (line,) = e2e.log_for(message_id)[1:]
    assert re.fullmatch(rf"== \|{e2e.bin}/hang\.sh <hang@{DOMAIN}> R=system_aliases T=address_pipe defer .*timed out.*",
                        line)
    assert queued(e2e, message_id)
    assert bounces_to(e2e, alice) == []
    assert_process_gone(pidfile)


# -- a user without a home directory ------------------------------------------------------------------------


def test_user_without_home_directory_gets_mbox_mail(e2e: E2E) -> None:
    """No home: there can be no .forward (userforward declines), and the mailbox, which is not in the
    home directory, is delivered as usual."""
    alice, gina = e2e.user("alice"), e2e.user("gina", home=False)
    assert not gina.home.exists()
    e2e.write_config()
    proc = e2e.env.run("-bt", gina.address)
    assert (proc.stdout, proc.returncode) == (f"{gina.address}\n  router = localuser, transport = local_mbox\n", 0)
    e2e.submit(message_text(alice.address, gina.address, "welcome", "body\n"),
               "-odi", "-f", alice.address, gina.address)
    (message_id,) = e2e.received_ids()
    assert e2e.log_for(message_id)[1:] == [f"=> {gina.name} <{gina.address}> R=localuser T=local_mbox", "Completed"]
    mbox = e2e.mbox_path(gina)
    assert (mbox.stat().st_uid, mbox.stat().st_gid) == (gina.uid, gina.gid)
    assert len(read_mbox(mbox)) == 1
    assert not gina.home.exists()  # nothing made it


def test_missing_current_directory_set_by_the_administrator_defers(e2e: E2E) -> None:
    """Only a missing *home* is passed over; a current_directory the configuration names must exist."""
    alice, gina = e2e.user("alice"), e2e.user("gina")
    missing = e2e.root / "no-such-dir"
    e2e.write_config(
        directors=own_director(e2e, gina, "cwd_mbox"),
        transports=f"""
cwd_mbox:
  driver = appendfile
  file = {e2e.mail}/$local_part_data
  current_directory = {missing}
""",
    )
    e2e.submit(message_text(alice.address, gina.address, "x", "body\n"), "-odi", "-f", alice.address, gina.address)
    (message_id,) = e2e.received_ids()
    assert e2e.log_for(message_id)[1:] == [
        f"== {gina.name} <{gina.address}> R=cwd_mbox_director T=cwd_mbox defer (2): "
        f"failed to chdir to {missing}: No such file or directory"
    ]
    assert not e2e.mbox_path(gina).exists()
    assert queued(e2e, message_id)


# -- a .forward that is a symlink to someone else's file -------------------------------------------------------


def test_forward_symlink_to_a_root_file_is_refused(e2e: E2E) -> None:
    alice, erin = e2e.user("alice"), e2e.user("erin")
    secret = e2e.root / "shadow"  # stands for /etc/shadow: root's, unreadable to erin
    secret.write_text(f"{alice.name}\n")
    secret.chmod(0o600)
    forward = erin.home / ".forward"
    forward.symlink_to(secret)
    os.lchown(forward, erin.uid, erin.gid)
    e2e.write_config()
    e2e.submit(message_text(alice.address, erin.address, "x", "body\n"), "-odi", "-f", alice.address, erin.address)
    (message_id,) = e2e.received_ids()
    (line,) = e2e.log_for(message_id)[1:]
    # Read as erin, the link leads nowhere she may go: the kernel refuses it before any check of ours.
    assert line.startswith(
        f"== {erin.address} R=userforward defer (13): cannot open director userforward: file {forward}"
    )
    assert line.endswith("Permission denied")
    # Not followed: nothing reached the address the root-owned file names.
    assert not e2e.mbox_path(alice).exists() and not e2e.mbox_path(erin).exists()
    assert queued(e2e, message_id)


def test_mail_for_root_is_never_delivered_as_root(e2e: E2E) -> None:
    """never_users = root: root's mail is deferred (alias root to a person), never written as root."""
    alice = e2e.user("alice")
    e2e.write_config()
    e2e.submit(message_text(alice.address, f"root@{DOMAIN}", "x", "body\n"),
               "-odi", "-f", alice.address, f"root@{DOMAIN}")
    (message_id,) = e2e.received_ids()
    assert e2e.log_for(message_id)[1:] == [
        f"== root <root@{DOMAIN}> R=localuser T=local_mbox defer (0): "
        "User 0 set for local_mbox transport is on the never_users list"
    ]
    assert not (e2e.mail / "root").exists()
    assert queued(e2e, message_id)


# -- a user's :include: of what only root can read ----------------------------------------------------


@pytest.mark.parametrize("where", ["root-only file", "directory the user cannot enter"])
def test_include_of_what_the_user_cannot_read_is_refused(e2e: E2E, where: str) -> None:
    """Issue 9: a user's .forward and its :include:s are read as the user, not as root."""
    alice, erin = e2e.user("alice"), e2e.user("erin")
    secret_dir = e2e.root / "private"
    secret_dir.mkdir(mode=0o700 if where != "root-only file" else 0o755)
    secret = secret_dir / "secret.txt"
    secret.write_text(f"{alice.name}\ntop-secret-{e2e.token}\n")
    secret.chmod(0o600 if where == "root-only file" else 0o644)
    e2e.write_forward(erin, f":include:{secret}\n")
    e2e.write_config()
    e2e.submit(message_text(alice.address, erin.address, "x", "body\n"), "-odi", "-f", alice.address, erin.address)
    (message_id,) = e2e.received_ids()
    (line,) = e2e.log_for(message_id)[1:]
    assert line.startswith(f"== {erin.address} R=userforward defer (13): ")
    assert f"included file {secret}: Permission denied" in line
    # Nothing of the file was used or shown: alice got nothing, no bounce, no trace of its text.
    assert not e2e.mbox_path(alice).exists()
    assert f"top-secret-{e2e.token}" not in "\n".join(e2e.env.log_lines())
    assert queued(e2e, message_id)
