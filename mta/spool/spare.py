"""Spare spool files: the files of finished messages, kept to become the files of new ones.

A relayed message makes two files (its -D, and hdr.ID that becomes its -H) and a delivery
worker removes them a few milliseconds later.  On ext4 without a journal, allocating an
inode skips every free inode of its group deleted recently (the kernel's
recently_deleted(): the last minute, six while the inode table block is not yet
written back), one buffer look-up each, so on a busy spool each new file costs the kernel a scan
of thousands of inodes: 0.3 to 1 ms instead of 0.02 (docs/performance.md).  With
`spool_spare_files` set, the spool renames a finished message's files into spare/
instead of unlinking them, and the daemon's receivers rename one back under a new
message's name instead of creating a file: no inode is freed or allocated.

The pool is `spool_spare_files` fixed names, spare/0 to spare/N-1, so it never holds more.
A finished file is renamed into a free slot (RENAME_NOREPLACE; three slots are tried, from
a random one on).  When all three are taken the pool is taken to be full: for a second,
files replace the spare in a random slot (which frees one inode, as the unlink would have)
without trying first.  A receiver takes a slot it has listed
by renaming it with RENAME_NOREPLACE to the new file's name: as O_EXCL would, that never
replaces a file that is there.  Each rename is atomic, so one process gets a given spare,
and no file is ever two messages'.

What a spare may be, and when (docs/spool.md, "Spare files"):
- a -D, once the lock on it is released: its -H is gone and that is durable;
- an -H, removed by rename instead of unlink; the directory's fsync makes that durable
  exactly as it did the unlink;
- a file over SPARE_MAX_SIZE is emptied first, so that the pool never holds disk space
  the queue may need.
A spare's old contents are overwritten and truncated by its new owner before that
owner's first fsync, and nothing ever reads a -D without its -H, or an hdr.ID: a crash
at any step leaves what it left before.  Both readers check a file's first line, which
names its message, so not even a file system that a crash left with one inode under two
names (possible without a journal) could make one message's file serve for another.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path

SPARE = "spare"
SPARE_MAX_SIZE = 64 * 1024  # bytes: a larger file gives its blocks back before it is kept
_PUT_TRIES = 3  # slots tried (from a random one on) for a free one
_FULL_FOR = 1.0  # seconds: after finding the pool full, spares are replaced without trying
_RELIST_AFTER = 0.05  # seconds: an empty pool is not listed again sooner
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_renameat2: Callable[[int, bytes, int, bytes, int], int] | None = None
_get_errno: Callable[[], int] | None = None
_loaded = False


def available() -> bool:
    """Whether renameat2(2) can be called here.  Loads ctypes the first time: the daemon's
    processes call it before they give up their privileges (a Python under /root could not
    import it after), as they do for syncfs (mta.spool.syncfs)."""
    global _renameat2, _get_errno, _loaded
    if not _loaded:
        _loaded = True
        try:
            import ctypes

            function = ctypes.CDLL(None, use_errno=True).renameat2
        except (OSError, AttributeError, ImportError):  # no such function, or ctypes cannot be had
            return False
        function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        function.restype = ctypes.c_int
        _renameat2, _get_errno = function, ctypes.get_errno
    return _renameat2 is not None


def rename_noreplace(source: str, target: str) -> int:
    """rename(2) that never replaces `target`: 0, or the errno (EEXIST when `target` is
    there).  ENOSYS where the C library, the kernel or the file system cannot do it."""
    if not available():
        return errno.ENOSYS
    assert _renameat2 is not None and _get_errno is not None
    if _renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE) == 0:
        return 0
    number = _get_errno()
    return errno.ENOSYS if number == errno.EINVAL else number  # EINVAL: the file system has no NOREPLACE


def _remove_or_return(path: str, slot: str) -> None:
    """Something taken from spare/ that is not a spool file (made there by hand): remove it, and
    where that cannot be done, put it back, so that the new message's own file can be made."""
    try:
        os.unlink(path)
        return
    except IsADirectoryError:
        try:
            os.rmdir(path)
            return
        except OSError:
            pass
    except OSError:
        pass
    rename_noreplace(path, slot)


class SparePool:
    """spare/ under one spool directory, with `slots` names; 0 slots: never used."""

    def __init__(self, spool_directory: str, slots: int) -> None:
        self.directory = f"{spool_directory}/{SPARE}"
        self.slots = slots
        self._usable = slots > 0
        self._made = False
        self._listed: list[str] = []
        self._empty_at = -_RELIST_AFTER
        self._full_until = 0.0

    def put(self, path: str, size: int | None = None) -> bool:
        """Move the finished file `path` into a slot.  True if it is kept (`path` is then gone);
        False if not (spares cannot be had here): the caller unlinks it.  `size`: the file's,
        when the caller knows it (saves a stat)."""
        if not self._usable:
            return False
        if not self._made and not self._make():
            return False
        try:
            if size is None:
                size = os.stat(path).st_size
            if size > SPARE_MAX_SIZE:
                os.truncate(path, 0)
        except OSError:
            return False  # (the caller's unlink reports what is wrong, if anything)
        start = int.from_bytes(os.urandom(4), "little")  # (the random module would cost start-up)
        if time.monotonic() >= self._full_until:
            # Into a free slot if one of three is: a spare is worth more than a freed inode.
            for step in range(min(_PUT_TRIES, self.slots)):
                number = rename_noreplace(path, f"{self.directory}/{(start + step) % self.slots}")
                if number == 0:
                    return True
                if number != errno.EEXIST:
                    if number == errno.ENOSYS:
                        self._usable = False
                    return False
            # Full (a queue run with no receptions to take spares): for a second, replace a
            # spare at once instead of trying.  That frees one inode, as the unlink would have.
            self._full_until = time.monotonic() + _FULL_FOR
        try:
            os.rename(path, f"{self.directory}/{start % self.slots}")  # atomic: a taker gets one or the other
        except OSError:
            return False
        return True

    def take(self, path: str) -> int | None:
        """A spare renamed to `path` (which is never replaced) and opened for writing, as a
        descriptor; None if there is none to be had: create the file.  The caller writes the
        file from its start and truncates it to what it wrote before it syncs it."""
        while self._usable:
            try:
                # One pop, no test first: a receiver's spool threads share the list.
                slot = f"{self.directory}/{self._listed.pop()}"
            except IndexError:
                if not self._list():
                    return None
                continue
            number = rename_noreplace(slot, path)
            if number == errno.ENOENT:
                continue  # another receiver took it first
            if number != 0:
                if number == errno.ENOSYS:
                    self._usable = False
                return None
            try:
                fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                fd = -1
            if fd >= 0:
                try:
                    st = os.fstat(fd)
                    # Only ever a file the spool made; anything else is not written through.
                    if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                        return fd
                except OSError:
                    pass
                os.close(fd)
            _remove_or_return(path, slot)
            return None
        return None

    def empty_if_unused(self) -> int:
        """With no slots (spool_spare_files = 0, perhaps after a larger setting), nothing takes
        spares: remove those left in spare/.  The number removed."""
        if self.slots:
            return 0
        try:
            names = os.listdir(self.directory)
        except OSError:
            return 0  # none (the usual case), or not ours to read
        removed = 0
        for name in names:
            try:
                os.unlink(f"{self.directory}/{name}")
                removed += 1
            except OSError:
                pass  # a directory put there by hand, or gone meanwhile: left be
        return removed

    def _list(self) -> bool:
        now = time.monotonic()
        if now - self._empty_at < _RELIST_AFTER:
            return False
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            names = []  # no message has finished yet
        except OSError:
            self._usable = False
            return False
        if not names:
            self._empty_at = now
            return False
        turn = int.from_bytes(os.urandom(4), "little") % len(names)  # receivers listing together start apart
        self._listed = names[turn:] + names[:turn]
        return True

    def _make(self) -> bool:
        from mta.errors import SpoolError
        from mta.spool.files import make_directory

        self._made = True
        try:
            make_directory(Path(self.directory))
        except SpoolError:
            self._usable = False  # spares are a saving, never a condition of delivery
        else:
            # The kernel, C library and file system must all know RENAME_NOREPLACE: without it
            # a take could replace a file, so spares are not used at all.
            if rename_noreplace(self.directory, self.directory) != errno.EEXIST:
                self._usable = False
        return self._usable
