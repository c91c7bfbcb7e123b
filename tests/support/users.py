"""Names of users that do not exist on this machine.

A test of "unknown user" must not depend on what accounts the machine
happens to have (a host with a `mallory` account would deliver the mail).
Each name is a role word plus random hex, and is checked against the
password database before it is handed out.
"""

from __future__ import annotations

import pwd
import secrets


def absent_user(role: str = "nouser") -> str:
    """A login name no account has, starting with `role` (lower case, so local parts match it)."""
    for _ in range(100):
        name = f"{role.lower()}{secrets.token_hex(4)}"
        try:
            pwd.getpwnam(name)
        except KeyError:
            return name
    raise RuntimeError(f"could not find an unused user name starting with {role!r}")
