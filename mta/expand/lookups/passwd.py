"""passwd: the system password entry of a user, as Exim's query-style passwd lookup.

``${lookup passwd{alice}}`` gives ``*:uid:gid:gecos:home:shell`` (the
password field is never shown), or "not found".
"""

from __future__ import annotations

import pwd


def find(path: str, key: str, options: str | None = None) -> str | None:
    try:
        entry = pwd.getpwnam(key)
    except (KeyError, ValueError):
        return None
    return f"*:{entry.pw_uid}:{entry.pw_gid}:{entry.pw_gecos}:{entry.pw_dir}:{entry.pw_shell}"
