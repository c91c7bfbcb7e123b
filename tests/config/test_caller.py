"""Who called us, and what they may do: trusted (-f), administrator (-bp, -M), the reports' identity.

The rules are tables of cases against the real password and group
databases (root, and names checked absent); the caller without a passwd
entry is a real process started under an unused uid.
"""

from __future__ import annotations

import dataclasses
import grp
import os
import pwd
from pathlib import Path

import pytest

from mta.config.caller import Caller, current_caller, is_admin, is_trusted, mta_identity
from mta.config.loader import load_config
from mta.errors import ConfigError
from mta.spool.store import Spool
from tests.support.mta import MtaEnv
from tests.support.nobody import Nobody, give_spool_to
from tests.support.users import absent_group, absent_user

ROOT_GROUP = grp.getgrgid(0).gr_name
SOMEONE = next(entry for entry in pwd.getpwall() if entry.pw_uid != 0)  # any real account but root
GHOST = absent_user("ghost")  # a user and group name nobody has


NO_GROUP = absent_group()


def unused_id(start: int = 54321) -> int:
    """A number that is neither a uid nor a gid on this machine."""
    for number in range(start, start + 1000):
        try:
            pwd.getpwuid(number)
            continue
        except KeyError:
            pass
        try:
            grp.getgrgid(number)
            continue
        except KeyError:
            return number
    raise RuntimeError("no unused id")


STRANGER = unused_id()


def caller(uid: int = STRANGER, groups: tuple[int, ...] = ()) -> Caller:
    return Caller(uid, STRANGER, str(uid), "", "/", frozenset(groups) | {STRANGER})


TRUSTED = [
    # (case, caller, trusted_users, trusted_groups, mta_user, want)
    ("root", caller(0), "", "", "mail", True),
    ("mta_user by number", caller(), "", "", str(STRANGER), True),
    ("mta_user by name", caller(SOMEONE.pw_uid), "", "", SOMEONE.pw_name, True),
    ("ordinary caller", caller(), "", "", "root", False),
    ("trusted_users by number", caller(), f"{GHOST} : {STRANGER}", "", "root", True),
    ("trusted_users by name", caller(SOMEONE.pw_uid), SOMEONE.pw_name, "", GHOST, True),
    ("unknown trusted user never matches", caller(), GHOST, "", "root", False),
    ("trusted_groups by number", caller(groups=(4242,)), "", "4242", "root", True),
    ("trusted_groups by name", caller(groups=(0,)), "", ROOT_GROUP, "root", True),
    ("not in the trusted group", caller(groups=(4243,)), "", f"4242 : {ROOT_GROUP}", "root", False),
    ("unknown trusted group is skipped", caller(groups=(4242,)), "", f"{NO_GROUP} : 4242", "root", True),
    ("unknown mta_user", caller(), "", "", GHOST, False),
]


@pytest.mark.parametrize(("caller_", "users", "groups", "mta_user", "want"), [c[1:] for c in TRUSTED],
                         ids=[c[0] for c in TRUSTED])
def test_is_trusted(caller_: Caller, users: str, groups: str, mta_user: str, want: bool) -> None:
    got = is_trusted(caller_, users, groups, mta_user)
    assert got is want, f"got {got} want {want}"


ADMIN = [
    # (case, caller, admin_groups, mta_group, trusted, want)
    ("trusted is admin", caller(), "", NO_GROUP, True, True),
    ("member of mta_group by number", caller(groups=(4242,)), "", "4242", False, True),
    ("member of mta_group by name", caller(groups=(0,)), "", ROOT_GROUP, False, True),
    ("member of an admin group", caller(groups=(4243,)), f"{NO_GROUP} : 4243", "4242", False, True),
    ("no group of either", caller(groups=(4244,)), "4243", "4242", False, False),
    ("unknown names only", caller(groups=(4244,)), NO_GROUP, NO_GROUP, False, False),
]


@pytest.mark.parametrize(("caller_", "admin_groups", "mta_group", "trusted", "want"), [c[1:] for c in ADMIN],
                         ids=[c[0] for c in ADMIN])
def test_is_admin(caller_: Caller, admin_groups: str, mta_group: str, trusted: bool, want: bool) -> None:
    got = is_admin(caller_, admin_groups, mta_group, trusted)
    assert got is want, f"got {got} want {want}"


def test_current_caller_is_this_process() -> None:
    me = current_caller()
    entry = pwd.getpwuid(os.getuid())
    assert (me.uid, me.gid, me.login, me.home) == (os.getuid(), os.getgid(), entry.pw_name, entry.pw_dir)
    assert me.gecos == entry.pw_gecos.split(",")[0]
    assert me.groups == frozenset(os.getgroups()) | {os.getgid()}


IDENTITY = [
    # (case, mta_user, mta_group, want: (login, uid, gid) or an error)
    ("names", "root", ROOT_GROUP, ("root", 0, 0)),
    ("numbers", str(STRANGER), str(STRANGER + 1), (str(STRANGER), STRANGER, STRANGER + 1)),
    ("unknown group: the user's own", "root", NO_GROUP, ("root", 0, pwd.getpwnam("root").pw_gid)),
    ("number without a group", str(STRANGER), NO_GROUP, (str(STRANGER), STRANGER, STRANGER)),
    ("unknown user", GHOST, ROOT_GROUP, f'mta_user "{GHOST}" is not a known user'),
]


@pytest.mark.parametrize(("user", "group", "want"), [c[1:] for c in IDENTITY], ids=[c[0] for c in IDENTITY])
def test_mta_identity(tmp_path: Path, user: str, group: str, want: tuple[str, int, int] | str) -> None:
    path = tmp_path / "mta.conf"
    path.write_text(f"spool_directory = {tmp_path}/spool\nmta_user = {user}\nmta_group = {group}\n")
    config = load_config(str(path))
    if isinstance(want, str):
        with pytest.raises(ConfigError, match=want):
            mta_identity(config)
    else:
        assert mta_identity(config) == want


# -- a real caller without a passwd entry, through the CLI ---------------------------------------


@pytest.fixture
def stranger(nobody: Nobody) -> Nobody:
    """mta run under a uid and gid that have no passwd or group entry (containers do this)."""
    return dataclasses.replace(nobody, uid=STRANGER, gid=STRANGER)


def test_a_caller_without_passwd_entry_is_named_by_number(open_env: MtaEnv, stranger: Nobody) -> None:
    give_spool_to(open_env, stranger)
    result = stranger.run(open_env, "-odq", "-f", "boss@example.org", "bob@example.com", input="Subject: x\n\nb\n")
    assert (result.returncode, result.stderr) == (0, "")
    [message_id] = open_env.message_ids()
    envelope = Spool(open_env.spool).read_envelope(message_id)
    # Not trusted: -f is ignored, and the sender is the uid as a login, qualified (Exim's rule).
    assert envelope.sender_address == f"{STRANGER}@example.com"
    assert (envelope.originator_login, envelope.originator_uid) == (str(STRANGER), STRANGER)
    assert f" <= {STRANGER}@example.com U={STRANGER} P=local " in open_env.log_lines()[-1]


@pytest.mark.parametrize(
    ("settings", "allowed"),
    [
        ("", False),
        (f"admin_groups = 4242 : {STRANGER}\n", True),
        (f"mta_group = {STRANGER}\n", True),
        (f"trusted_users = {STRANGER}\n", True),
        (f"trusted_groups = {NO_GROUP} : {STRANGER}\n", True),
        (f"admin_groups = {NO_GROUP}\ntrusted_users = {GHOST}\n", False),
    ],
    ids=["nobody special", "admin_groups", "mta_group", "trusted_users", "trusted_groups", "unknown names"],
)
def test_queue_listing_needs_an_administrator(open_env: MtaEnv, stranger: Nobody, settings: str, allowed: bool) -> None:
    open_env.write_config(settings)
    open_env.config.chmod(0o644)
    queued = open_env.run("-odq", "bob@example.com", input="Subject: x\n\nb\n")
    assert queued.returncode == 0, queued.stderr
    # The spool stays root's; the stranger's group may read it (as a group like Exim's would),
    # so only the admin rules decide whether it may list the queue.
    for path in [open_env.spool, *open_env.spool.rglob("*")]:
        os.chown(path, 0, STRANGER)
    result = stranger.run(open_env, "-bp")
    if allowed:
        assert (result.returncode, result.stderr) == (0, "")
        assert "<root@example.com>" in result.stdout and "bob@example.com" in result.stdout
    else:
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr == "mta: permission denied: only administrators may list the queue\n"
