"""The file-level pieces of a Maildir delivery, for the appendfile transport.

A message is written to ``tmp/`` under a name no other delivery can choose
(`create_unique`), then linked into ``new/``; the transport works through
directory descriptors (`open_directory`) so that a directory swapped for a
symbolic link half-way is never followed.  `usage` counts what the quota
options limit.  Every failure is a DeferError.
"""

from __future__ import annotations

import itertools
import os
import stat
import time

from mta.errors import DeferError

SUBDIRS = ("tmp", "new", "cur")
_counter = itertools.count(1)


def unlink_at(name: str, dir_fd: int) -> None:
    """Remove `name` in the directory `dir_fd`; already gone is fine."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return


def open_directory(name: str, dir_fd: int | None, follow: bool, shown: str | None = None) -> int:
    """A descriptor of the directory `name` (relative to `dir_fd`); `shown` names it in the error."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        raise DeferError(
            f"failed to open Maildir directory {shown or name}: {exc.strerror}", errno=exc.errno or 0
        ) from None


def usage(root: int, path: str) -> tuple[int, int]:
    """Total size and number of the messages in new/ and cur/ (tmp/ holds deliveries in progress)."""
    size = count = 0
    for sub in ("new", "cur"):
        try:
            with os.scandir(f"{path}/{sub}") as entries:
                for entry in entries:
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode):
                        size += st.st_size
                        count += 1
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise DeferError(f"failed to read Maildir {path}/{sub} for the quota: {exc.strerror}") from None
    return size, count


def _hostname_part(hostname: str) -> str:
    # The Maildir convention: "/" and ":" cannot appear in a name, so they are written in octal.
    return (hostname or "localhost").replace("/", "\\057").replace(":", "\\072")


def create_unique(tmp_fd: int, path: str, hostname: str, mode: int) -> tuple[str, int]:
    """Create tmp/<time>.<pid>_<counter>.<host> with O_EXCL; a clash just takes the next counter."""
    host = _hostname_part(hostname)
    for _ in range(20):
        name = f"{int(time.time())}.{os.getpid()}_{next(_counter)}.{host}"
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=tmp_fd)
        except FileExistsError:
            continue
        except OSError as exc:
            raise DeferError(f"failed to create {path}/tmp/{name}: {exc.strerror}", errno=exc.errno or 0) from None
        return name, fd
    raise DeferError(f"failed to create a unique file in {path}/tmp")
