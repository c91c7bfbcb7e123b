"""Who called us: the invoking user, and whether they are trusted or an admin.

Trusted (may set the envelope sender with -f and fake host data): root,
mta_user, `trusted_users`, members of `trusted_groups`.  Administrators
(may list and manage the queue): root, mta_user, members of mta_group or
`admin_groups`, trusted users, and the owner of the spool directory (a
per-user instance is administered by the user who runs it).
"""

from __future__ import annotations

import os
import pwd

from mta import record
from mta.values import split_list

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


@record.dataclass(frozen=True, slots=True)
class Caller:
    uid: int
    gid: int
    login: str
    gecos: str
    home: str
    groups: frozenset[int]


def current_caller() -> Caller:
    uid = os.getuid()
    gid = os.getgid()
    try:
        pw = pwd.getpwuid(uid)
        login, gecos, home = pw.pw_name, pw.pw_gecos.split(",")[0], pw.pw_dir
    except KeyError:
        # A uid with no passwd entry (containers): Exim names it by number.
        login, gecos, home = str(uid), "", "/"
    return Caller(uid, gid, login, gecos, home, frozenset(os.getgroups()) | {gid})


def caller_for_uid(uid: int, gid: int) -> Caller:
    """The user with this uid as a Caller (their passwd entry and groups), for a process that acts
    for someone other than itself: the daemon for a socket's peer, the web monitor for its user."""
    try:
        pw = pwd.getpwuid(uid)
        login, gecos, home, primary = pw.pw_name, pw.pw_gecos.split(",")[0], pw.pw_dir, pw.pw_gid
    except KeyError:
        login, gecos, home, primary = str(uid), "", "/", gid
    try:
        groups = frozenset(os.getgrouplist(login, primary)) if login != str(uid) else frozenset({gid})
    except (OSError, KeyError):
        groups = frozenset({gid})
    return Caller(uid, primary, login, gecos, home, groups | {gid})


def _user_id(name: str) -> int | None:
    if name.isdigit():
        return int(name)
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def _group_id(name: str) -> int | None:
    if name.isdigit():
        return int(name)
    # grp (an extension module to load) only for a group named: an ordinary user's sendmail,
    # with no trusted_groups, never asks.
    import grp

    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def is_trusted(caller: Caller, trusted_users: str, trusted_groups: str, mta_user: str) -> bool:
    if caller.uid == 0 or caller.uid == _user_id(mta_user):
        return True
    if any(_user_id(u) == caller.uid for u in split_list(trusted_users) if u):
        return True
    group_ids = (_group_id(g) for g in split_list(trusted_groups) if g)
    return any(gid in caller.groups for gid in group_ids if gid is not None)


def is_admin(caller: Caller, admin_groups: str, mta_group: str, trusted: bool) -> bool:
    if trusted:
        return True
    names = [g for g in split_list(admin_groups) if g] + [mta_group]
    return any(gid in caller.groups for gid in (_group_id(g) for g in names) if gid is not None)


def owns_spool(caller: Caller, spool_directory: str) -> bool:
    """True when the caller owns the spool directory: a per-user instance
    (scripts/run from an ordinary user's checkout) is administered by its
    owner, who can read and change its files anyway."""
    try:
        return os.stat(spool_directory).st_uid == caller.uid
    except OSError:
        return False


def is_administrator(caller: Caller, config: Any) -> bool:
    """Root, mta_user, members of mta_group or admin_groups, trusted users, and the owner of
    the spool directory: who may list the queue and act on any message."""
    m = config.main
    trusted = is_trusted(caller, m.trusted_users, m.trusted_groups, m.mta_user)
    return is_admin(caller, m.admin_groups, m.mta_group, trusted) or owns_spool(caller, m.spool_directory)


def mta_identity(config: Any) -> tuple[str, int, int]:
    """Login, uid and gid that reports (bounces, error mail) are spooled under: mta_user/mta_group."""
    from mta.errors import ConfigError

    name = config.main.mta_user
    try:
        entry = pwd.getpwnam(name)
        uid, gid = entry.pw_uid, entry.pw_gid
    except KeyError:
        if not name.isdigit():
            raise ConfigError(f'mta_user "{name}" is not a known user') from None
        uid = gid = int(name)
    group = config.main.mta_group
    import grp

    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        if group.isdigit():
            gid = int(group)
        # Otherwise the user's own group: the login is what identifies a report.
    return name, uid, gid
