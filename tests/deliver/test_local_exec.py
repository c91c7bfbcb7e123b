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
from tests.support.users import absent_group, absent_user
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
    ghost_user, ghost_group = absent_user("ghost"), absent_group("ghost")
    with pytest.raises(DeferError, match=f'Failed to find user "{ghost_user}"'):
        resolve_delivery_identity(pipe(user=ghost_user), item, env)
    with pytest.raises(DeferError, match=f'Failed to find group "{ghost_group}"'):
        resolve_delivery_identity(pipe(group=ghost_group), item, env)


# -- identities without passwd entries, directories, and the parent's side ----------------------------


def unused_id() -> int:
    """A uid/gid number with no passwd or group entry (as containers and NFS setups have)."""
    for number in range(54321, 55321):
        try:
            pwd.getpwuid(number)
        except KeyError:
            return number
    raise RuntimeError("no unused uid")


def test_a_numeric_user_needs_no_passwd_entry_but_a_group() -> None:
    stranger = unused_id()
    env, item = make_env(), make_item()
    identity = resolve_delivery_identity(pipe(user=str(stranger), group=str(stranger)), item, env)
    assert (identity.uid, identity.gid) == (stranger, stranger)
    with pytest.raises(DeferError) as info:
        resolve_delivery_identity(pipe(user=str(stranger)), item, env)
    assert info.value.message == "User set without group for address_pipe transport"


def test_an_option_that_cannot_be_expanded_defers() -> None:
    with pytest.raises(DeferError) as info:
        resolve_delivery_identity(pipe(current_directory="${lookup{x}lsearch{/no/such/file}}"), make_item(), make_env())
    assert info.value.message.startswith(
        'Failed to expand current_directory "${lookup{x}lsearch{/no/such/file}}" for the address_pipe transport: '
    )


@pytest.mark.usefixtures("as_root")
def test_root_needs_a_group_too(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(DeferError) as info:
        run(pipe(command=f"/usr/bin/touch {marker}"), tmp_path, unused_id(), None, never_users=set())
    assert info.value.message == "User set without group for address_pipe transport"
    assert not marker.exists()


@pytest.mark.usefixtures("as_root")
def test_a_uid_without_passwd_entry_gets_only_its_group(tmp_path: Path, shared_dir: Path) -> None:
    """initgroups has no name to look up: the child keeps just its one group, and with no home
    it works in /."""
    stranger = unused_id()
    out = shared_dir / "out"
    out.mkdir()
    os.chown(out, stranger, stranger)
    command = f"/bin/sh -c 'id -u > {out}/ids; id -G >> {out}/ids; pwd >> {out}/ids'"
    run(pipe(command=command), tmp_path, stranger, stranger, initgroups=True, never_users=set())
    assert (out / "ids").read_text().split("\n")[:3] == [str(stranger), str(stranger), "/"]


def test_home_and_current_directory(tmp_path: Path) -> None:
    """A missing home is no error (the delivery runs in /); a missing current_directory defers."""
    me, group = os.geteuid(), os.getegid()
    out = tmp_path / "cwd"
    run(pipe(command=f"/bin/sh -c 'pwd > {out}'"), tmp_path, me, group, home=str(tmp_path / "gone"), never_users=set())
    assert out.read_text() == "/\n"
    run(pipe(command=f"/bin/sh -c 'pwd > {out}'"), tmp_path, me, group, home=str(tmp_path), never_users=set())
    assert out.read_text() == f"{tmp_path}\n"
    with pytest.raises(DeferError) as info:
        run(pipe(command="/bin/true"), tmp_path, me, group, current_directory=str(tmp_path / "gone"), never_users=set())
    assert info.value.message == f"failed to chdir to {tmp_path / 'gone'}: No such file or directory"


def test_a_body_that_cannot_be_opened_defers(tmp_path: Path) -> None:
    message = make_message(tmp_path / "spool")
    for leftover in (tmp_path / "spool").iterdir():
        leftover.unlink()  # the message vanished from the spool before the delivery
    marker = tmp_path / "ran"
    with pytest.raises(DeferError) as info:
        run_local_delivery(pipe(command=f"/usr/bin/touch {marker}"), message, make_item(), make_env(),
                           uid=os.geteuid(), gid=os.getegid(), initgroups=False, home=None,
                           current_directory=None, never_users=set())
    assert info.value.message.startswith(f"cannot open the body of message {message.message_id}: ")
    assert not marker.exists()


def test_a_child_reaped_by_someone_else_still_reports(tmp_path: Path) -> None:
    """With SIGCHLD ignored the kernel reaps the child itself; the outcome still comes through the
    report pipe (a daemon's SIGCHLD handler does the same)."""
    out = tmp_path / "out"
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        run(pipe(command=f"/bin/sh -c 'cat > {out}'"), tmp_path, os.geteuid(), os.getegid(), never_users=set())
        with pytest.raises(FailError):
            run(pipe(command="/bin/false"), tmp_path, os.geteuid(), os.getegid(), never_users=set())
    finally:
        signal.signal(signal.SIGCHLD, previous)
    assert out.read_bytes().endswith(b"the new place is good.\n\n")  # the pipe got the whole message
