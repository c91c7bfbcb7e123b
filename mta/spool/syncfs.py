"""syncfs(2): make everything written to one file system durable with one call.

Why: the daemon's spool writer commits the messages of many sessions at once
(mta.receive.spool_writer).  With fsync() every message costs two syncs of
new files (-D and hdr.ID), and on Linux each such fsync writes the file's
data, its inode and, on ext4 without a journal, its directory too, and then
flushes the disk's cache: four or five requests to the disk, each a VM exit
on a virtual machine.  One syncfs() before the renames and one after cover a
whole batch: measured on the development VM, 0.12-0.15 ms of system time per
message against 0.3-1.0 ms with two fsyncs per message.

The price: syncfs also writes what other programs left dirty on the same file
system, so a spool that shares one with a heavy writer waits for it.  Hence
`spool_sync_method = fsync` for such a machine (docs/reliability.md).

Python's os module has no syncfs, so it is called through ctypes, loaded only
by the processes that commit batches (ctypes costs 2.5 ms to import) and
before they drop their privileges (a Python under /root cannot import once
they are gone).  Errors: since Linux 5.8 syncfs reports a write-back error of
any file of the file system that happened since the descriptor was opened or
last synced, so the caller keeps one descriptor open for its whole life and
fails the whole batch on an error.
"""

from __future__ import annotations

import os
import sys

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_syncfs: Callable[[int], int] | None = None
_get_errno: Callable[[], int] | None = None
_loaded = False


def available() -> bool:
    """Whether syncfs(2) can be called here (Linux with a C library that has it).  Loads ctypes
    the first time: call it before dropping privileges."""
    global _syncfs, _get_errno, _loaded
    if not _loaded:
        _loaded = True
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                libc = ctypes.CDLL(None, use_errno=True)
                function = libc.syncfs
            except (OSError, AttributeError, ImportError):
                return False
            function.argtypes = [ctypes.c_int]
            function.restype = ctypes.c_int
            _syncfs, _get_errno = function, ctypes.get_errno
    return _syncfs is not None


def syncfs(fd: int) -> None:
    """syncfs(fd), the GIL released while it waits; OSError as os.fsync raises it."""
    if not available():
        raise OSError(38, "syncfs is not available")  # ENOSYS
    assert _syncfs is not None and _get_errno is not None
    if _syncfs(fd) != 0:
        number = _get_errno()
        raise OSError(number, os.strerror(number))
