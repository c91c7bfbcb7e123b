"""Names of users and groups that do not exist on this machine.

A test of "unknown user" must not depend on what accounts the machine
happens to have (a host with a `mallory` account would deliver the mail).
Each name is a role word plus random hex, and is checked against the
password or group database before it is handed out.  The names differ from
run to run (and between pytest-xdist workers): never put one in a test id.
"""

from __future__ import annotations

import grp
import pwd
import secrets
from collections.abc import Callable


def _absent(role: str, lookup: Callable[[str], object], what: str) -> str:
    for _ in range(100):
        name = f"{role.lower()}{secrets.token_hex(4)}"
        try:
            lookup(name)
        except KeyError:
            return name
    raise RuntimeError(f"could not find an unused {what} name starting with {role!r}")


def absent_user(role: str = "nouser") -> str:
    """A login name no account has, starting with `role` (lower case, so local parts match it)."""
    return _absent(role, pwd.getpwnam, "user")


def absent_group(role: str = "nogroup") -> str:
    """A group name no group has, starting with `role`."""
    return _absent(role, grp.getgrnam, "group")
