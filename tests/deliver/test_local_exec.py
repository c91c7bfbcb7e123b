"""run_local_delivery: the forked child drops to a real user, reports outcomes, and is bounded in time."""

from __future__ import annotations

import os
import pwd
import signal
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from mta.deliver.local_exec import resolve_delivery_identity, run_local_delivery
from mta.errors import DeferError, FailError
from mta.transports.appendfile import AppendfileOptions, AppendfileTransport
from mta.transports.pipe import PipeOptions, PipeTransport
from tests.transports import transport_helpers
from tests.transports.transport_helpers import make_env, make_item, make_message, need_root

# Fixtures shared with the transport tests: pytest finds them by name in this module.
mail_user = transport_helpers.mail_user
shared_dir = transport_helpers.shared_dir


def pipe(**options: Any) -> PipeTransport:
    return PipeTransport("address_pipe", PipeOptions(driver="pipe", **options), ("test.conf", 3))


def mbox(**options: Any) -> AppendfileTransport:
    return AppendfileTransport("local_mbox", AppendfileOptions(driver="appendfile", **options), ("test.conf", 9))


def run(transport: Any, tmp_path: Path, uid: int | None, gid: int | None, **kwargs: Any) -> None:
    settings: dict[str, Any] = {"initgroups": False, "home": None, "current_directory": None, "never_users": {0}}
    settings.update(kwargs)
    run_local_delivery(
        transport, make_message(tmp_path / "spool"), make_item(), make_env(), uid=uid, gid=gid, **settings
    )


@pytest.fixture
def as_root() -> None:
    need_root("changing to another uid")


@pytest.mark.usefixtures("as_root")
def test_mbox_delivery_as_a_real_user(tmp_path: Path, mail_user: pwd.struct_passwd, shared_dir: Path) -> None:
    mail = shared_dir / "mail"
    mail.mkdir()
    os.chown(mail, mail_user.pw_uid, mail_user.pw_gid)
    # The message body lives under tmp_path (mode 0700, root): the user could not open it.
    run(mbox(file=f"{mail}/$local_part_data"), tmp_path, mail_user.pw_uid, mail_user.pw_gid)
    box = mail / "alice"
    st = box.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (mail_user.pw_uid, mail_user.pw_gid, 0o600)
    assert box.read_bytes().startswith(b"From carol@example.org ")
    assert box.read_bytes().endswith(b"the new place is good.\n\n")
    assert sorted(os.listdir(mail)) == ["alice"]


@pytest.mark.usefixtures("as_root")
def test_pipe_command_runs_as_the_user_in_home(tmp_path: Path, mail_user: pwd.struct_passwd, shared_dir: Path) -> None:
    home = shared_dir / "home"
    home.mkdir()
    os.chown(home, mail_user.pw_uid, mail_user.pw_gid)
    command = "/bin/sh -c 'id -u > ids; id -g >> ids; id -G >> ids; pwd >> ids; cat > message'"
    run(pipe(command=command), tmp_path, mail_user.pw_uid, mail_user.pw_gid, home=str(home))
    uid, gid, groups, cwd = (home / "ids").read_text().split("\n")[:4]
    assert (int(uid), int(gid), groups, cwd) == (mail_user.pw_uid, mail_user.pw_gid, str(mail_user.pw_gid), str(home))
    assert (home / "message").stat().st_uid == mail_user.pw_uid
    assert (home / "message").read_bytes().startswith(b"From carol@example.org ")


@pytest.mark.usefixtures("as_root")
def test_never_users_root_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(DeferError) as info:
        run(pipe(command=f"/usr/bin/touch {marker}"), tmp_path, 0, 0)
    assert info.value.message == "User 0 set for address_pipe transport is on the never_users list"
    assert not marker.exists()
    run(pipe(command=f"/usr/bin/touch {marker}"), tmp_path, 0, 0, never_users=set())  # root allowed when not listed
    assert marker.exists()


@pytest.mark.usefixtures("as_root")
def test_root_without_a_uid_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DeferError, match=r"no uid set for the local delivery of alice@example\.com"):
        run(pipe(command="/bin/true"), tmp_path, None, None)


def test_outcomes_come_back_from_the_child(tmp_path: Path) -> None:
    uid, gid = os.geteuid(), os.getegid()
    never: set[int] = set()
    with pytest.raises(DeferError) as deferred:
        run(pipe(command="/bin/sh -c 'exit 75'"), tmp_path, uid, gid, never_users=never)
    assert deferred.value.message == (
        "Child process of address_pipe transport returned 75 (could mean temporary error) "
        'from command: /bin/sh -c "exit 75"'
    )
    with pytest.raises(FailError) as failed:
        run(pipe(command="/bin/false"), tmp_path, uid, gid, never_users=never)
    assert (failed.value.code, failed.value.esc) == (550, "5.0.0")
    box = tmp_path / "box"
    box.write_bytes(b"x" * 100)
    box.chmod(0o600)
    with pytest.raises(DeferError) as quota:
        run(mbox(file=str(box), quota=200), tmp_path, uid, gid, never_users=never)
    assert (quota.value.message, quota.value.retry_error, quota.value.errno) == (
        "mailbox is full (quota exceeded)",
        "quota",
        -22,
    )
    run(pipe(command="/bin/true"), tmp_path, uid, gid, never_users=never)


def test_child_killed_by_a_signal_defers(tmp_path: Path) -> None:
    killer = tmp_path / "kill-parent.sh"
    killer.write_text("kill -KILL $PPID\nsleep 5\n")  # $PPID is the delivery child
    start = time.monotonic()
    with pytest.raises(DeferError, match=r"local delivery process for address_pipe transport was killed by signal 9"):
        run(pipe(command=f"/bin/sh {killer}"), tmp_path, os.geteuid(), os.getegid(), never_users=set())
    assert time.monotonic() - start < 10


def test_overall_timeout_kills_the_child(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    hang = tmp_path / "hang.sh"
    hang.write_text(f"echo $$ > {pidfile}\nexec /bin/sleep 30\n")
    start = time.monotonic()
    try:
        with pytest.raises(DeferError, match=r"local delivery process for address_pipe transport timed out after 1s"):
            run(pipe(command=f"/bin/sh {hang}"), tmp_path, os.geteuid(), os.getegid(), never_users=set(), timeout=1)
        assert time.monotonic() - start < 10
    finally:
        # The command had a process group of its own (the pipe transport's timeout covers it).
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.usefixtures("as_root")
def test_identity_comes_from_transport_then_director(mail_user: pwd.struct_passwd) -> None:
    env = make_env()
    item = make_item(uid=0, gid=0, home="/home/alice")
    identity = resolve_delivery_identity(pipe(user=mail_user.pw_name), item, env)
    assert (identity.uid, identity.gid, identity.home) == (mail_user.pw_uid, mail_user.pw_gid, "/home/alice")
    identity = resolve_delivery_identity(pipe(user=str(mail_user.pw_uid), group="0"), item, env)
    assert (identity.uid, identity.gid) == (mail_user.pw_uid, 0)
    identity = resolve_delivery_identity(pipe(home_directory="/srv/$local_part_data"), item, env)
    assert (identity.uid, identity.gid, identity.home) == (0, 0, "/srv/alice")
    with pytest.raises(DeferError, match='Failed to find user "no-such-user-xyz"'):
        resolve_delivery_identity(pipe(user="no-such-user-xyz"), item, env)
    with pytest.raises(DeferError, match='Failed to find group "no-such-group-xyz"'):
        resolve_delivery_identity(pipe(group="no-such-group-xyz"), item, env)
