"""Low-level spool file operations: durable writes, atomic -H install, locks.

Everything here turns OSError into SpoolError (naming the file and what was
being done), so the layers above see only mta's error types.

Locking.  A message's lock is an exclusive fcntl lock on the first line of
its -D file, the byte range Exim locks, so Exim's tools and ours see each
other's locks.  On Linux it is an open-file-description lock (F_OFD_SETLK):
it belongs to the open file, not to the process, so closing some other
descriptor of the same file (after reading the body, say) does not drop it,
and a second lock attempt from the same process is refused like any other.
Elsewhere classic POSIX locks are used, with their per-process caveats.  A
forked child shares the parent's open file and so its lock: the lock ends
when the last descriptor of that open file is closed.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from mta.errors import LockedError, SpoolError
from mta.privilege import adopt_directory_owner
from mta.spool.format import HEADER_SUFFIX

SPOOL_MODE = 0o640
DIRECTORY_MODE = 0o750
HEADER_TEMP_PREFIX = "hdr."  # input/hdr.ID: an -H being written


class NoSuchMessage(SpoolError):
    """The message is not on the spool (never was, or has been removed)."""


def os_error(action: str, path: Path | str, exc: OSError) -> SpoolError:
    return SpoolError(f"spool file {path}: {action} failed: {exc.strerror or exc}", exc.errno or 0)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def open_for_reading(path: Path | str) -> int:
    """A spool file opened for reading, only if it is a regular file and not a symbolic link:
    a link or a FIFO planted in input/ or msglog/ must not make a reader (root's, for a
    command-line -Mv or a delivery) read another file or hang.  OSError otherwise."""
    return _open_regular(path)[0]


def _open_regular(path: Path | str) -> tuple[int, int]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return fd, info.st_size


def read_regular_file(path: Path | str) -> bytes:
    """The whole of a spool file, opened as open_for_reading does (OSError otherwise).

    Four system calls for a small file (open, fstat, read, close): a file object took nine
    (an ioctl, fstats, lseeks and a read to find the end), for every -H a delivery, a queue
    run or a listing reads.  A read shorter than asked is the end of a regular file; one
    that fills the buffer (the file grew) goes on to the end."""
    fd, size = _open_regular(path)
    try:
        data = os.read(fd, size + 1)
        if len(data) <= size:
            return data
        chunks = [data]
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def file_exists(path: Path | str) -> bool:
    """Path.exists(), but an error other than "not there" is a SpoolError."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise os_error("stat", path, exc) from exc
    return True


def is_directory(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise os_error("stat", path, exc) from exc


def unlink(path: Path | str) -> bool:
    """Remove `path`; False if it was not there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise os_error("unlink", path, exc) from exc
    return True


def unlink_quietly(path: Path) -> None:
    """Cleanup on a failure path, where the original error is the one to
    report; anything left is removed later by Spool.tidy_temporaries."""
    try:
        os.unlink(path)
    except OSError:
        pass


def fsync_directory(path: Path | str) -> None:
    """Make the directory's entries (creations, renames, unlinks) durable.

    Linux does not sync a directory when a file in it is synced.  Some file
    systems (NFS) cannot sync a directory and say EINVAL; as Exim does, we
    accept that.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise os_error("directory open", path, exc) from exc
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise os_error("directory sync", path, exc) from exc
    finally:
        os.close(fd)


def make_directory(path: Path) -> None:
    """Create `path` (and missing parents) with DIRECTORY_MODE, making each
    new entry durable in its parent."""
    if is_directory(path):
        return
    make_directory(path.parent)
    try:
        os.mkdir(path, DIRECTORY_MODE)
    except FileExistsError:
        if not is_directory(path):
            raise SpoolError(f"spool directory {path} exists and is not a directory") from None
        # Made by another process meanwhile, which may not have made its entry durable yet: a
        # message acknowledged in it before that would be lost with the entry in a crash.
        fsync_directory(path.parent)
        return
    except OSError as exc:
        raise SpoolError(f"spool directory {path.parent} is not writable: {exc.strerror}") from exc
    try:
        os.chmod(path, DIRECTORY_MODE)  # the umask may have taken bits away
        _adopt_path_owner(path)
    except OSError as exc:
        raise os_error("chmod", path, exc) from exc
    fsync_directory(path.parent)


def _adopt_path_owner(path: Path) -> None:
    """A directory root has just made belongs to whoever owns its parent (mta_user's spool)."""
    if os.geteuid() == 0:
        parent = os.stat(path.parent)
        if parent.st_uid != 0 or parent.st_gid != 0:
            os.chown(path, parent.st_uid, parent.st_gid)


# ---------------------------------------------------------------------------
# Writing -H atomically (Exim's spool_write_header): temporary file, fsync,
# rename over -H, fsync of the directory.  Readers see the old file or the
# new one, never a mixture.  Two halves, so that a test can stop between.


def stage_header(directory: Path, message_id: str, header: bytes) -> None:
    """Write `header` to hdr.ID and make its contents durable."""
    temp = directory / (HEADER_TEMP_PREFIX + message_id)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    staged = False
    try:
        try:
            fd = os.open(temp, flags, SPOOL_MODE)
        except FileExistsError:
            # Left by a crash: only the lock holder writes hdr.ID, and that
            # is our caller, so it is stale.  One go at removing it, as Exim.
            unlink(temp)
            fd = os.open(temp, flags, SPOOL_MODE)
        try:
            os.fchmod(fd, SPOOL_MODE)
            adopt_directory_owner(fd, directory)
            write_all(fd, header)
            os.fsync(fd)  # the contents are on disk before the rename can be
        finally:
            os.close(fd)
        staged = True
    except OSError as exc:
        raise os_error("header write", temp, exc) from exc
    finally:
        if not staged:
            unlink_quietly(temp)


def publish_header(directory: Path, message_id: str) -> None:
    """Rename hdr.ID over ID-H and make the rename durable."""
    temp = directory / (HEADER_TEMP_PREFIX + message_id)
    final = directory / (message_id + HEADER_SUFFIX)
    try:
        os.rename(temp, final)  # atomic: the old -H or the new, never neither
    except OSError as exc:
        unlink_quietly(temp)
        raise os_error("rename", final, exc) from exc
    fsync_directory(directory)


def install_header(directory: Path, message_id: str, header: bytes) -> None:
    """Write -H atomically.  On failure the temporary is removed and the
    old -H (if any) is untouched, unless the rename had happened."""
    stage_header(directory, message_id, header)
    publish_header(directory, message_id)


# ---------------------------------------------------------------------------
# Locks

_FLOCK = "@hhqqixxxx"  # struct flock on Linux: type, whence, start, len, pid, padding
_use_ofd = sys.platform.startswith("linux") and hasattr(fcntl, "F_OFD_SETLK")


def lock_length(message_id: str) -> int:
    return len(message_id) + 3  # "ID-D\n": the range Exim locks, and where the body starts


def take_lock(fd: int, message_id: str, path: Path | str) -> None:
    """Exclusive, non-blocking lock on the first line of the -D file open
    (for writing) as `fd`.  LockedError if anyone else holds it."""
    global _use_ofd
    request = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, lock_length(message_id), 0)
    try:
        if _use_ofd:
            try:
                fcntl.fcntl(fd, fcntl.F_OFD_SETLK, request)
                return
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                _use_ofd = False  # kernel older than 3.15
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, lock_length(message_id), 0, os.SEEK_SET)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            raise LockedError(f"spool file {path} is locked (the message is being handled)") from exc
        raise os_error("lock", path, exc) from exc


def lock_is_held(fd: int, message_id: str, path: Path | str) -> bool:
    """True if some lock would stop us taking the message's lock."""
    command = fcntl.F_OFD_GETLK if _use_ofd else fcntl.F_GETLK
    request = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, lock_length(message_id), 0)
    try:
        answer = fcntl.fcntl(fd, command, request)
    except OSError as exc:
        raise os_error("lock test", path, exc) from exc
    return struct.unpack(_FLOCK, answer)[0] != fcntl.F_UNLCK


class MessageLock:
    """A held lock on a message: the open -D file.  Release it (or leave the
    `with` block) when done; closing the descriptor is what releases it."""

    def __init__(
        self, message_id: str, fd: int, path: Path | str, on_release: Callable[[MessageLock], None] | None = None
    ) -> None:
        self.message_id = message_id
        self.path = path  # the -D file
        # Where the message's files are, as a string: the spool builds their names from it.
        self.directory = os.path.dirname(path)
        self._fd: int | None = fd
        self._on_release = on_release
        # Run once the descriptor is closed (the lock let go): Spool.remove_message's spare -D.
        self.after_release: Callable[[], None] | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise ValueError(f"lock on {self.message_id} has been released")
        return self._fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if self._on_release is not None:
            self._on_release(self)
        os.close(fd)
        if self.after_release is not None:
            after, self.after_release = self.after_release, None
            after()

    def __enter__(self) -> MessageLock:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def open_and_lock(message_id: str, path: Path | str, on_release: Callable[[MessageLock], None]) -> MessageLock:
    """Open an existing -D file and lock it.  NoSuchMessage if it is gone
    (before or while we took the lock), LockedError if it is busy."""
    try:
        # Read-write, as a write lock needs; append, so that a stray write
        # through this descriptor could never damage the body (Exim).
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NoSuchMessage(f"message {message_id} is not on the spool") from None
    except OSError as exc:
        raise os_error("open", path, exc) from exc
    lock = MessageLock(message_id, fd, path, on_release)
    ok = False
    try:
        take_lock(fd, message_id, path)
        # The previous holder may have removed the message between our open
        # and our lock: then we would hold the lock of a deleted file.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if not same:
            raise NoSuchMessage(f"message {message_id} was removed")
        ok = True
    except OSError as exc:
        raise os_error("stat", path, exc) from exc
    finally:
        if not ok:
            lock.release()
    return lock


def space_shortage(directory: str, need_bytes: int, need_inodes: int, message_size: int = 0) -> str | None:
    """Exim's receive_check_fs(): None when the spool's file system has room for a new message,
    else the log text (``spool directory space check failed: ...``).

    Room means at least `need_bytes` + `message_size` bytes and `need_inodes` inodes free for
    an unprivileged process (f_bavail, f_favail).  Nothing to check (both 0, no size) or a
    statvfs() that fails is room: the write that follows reports a real shortage."""
    if need_bytes <= 0 and need_inodes <= 0 and message_size <= 0:
        return None
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    space = st.f_bavail * st.f_frsize
    inodes = st.f_favail
    # A file system without inode counts (some report 0 total) has no inode shortage.
    short_inodes = need_inodes > 0 and st.f_files > 0 and inodes < need_inodes
    if space < max(need_bytes, 0) + max(message_size, 0) or short_inodes:
        return (
            f"spool directory space check failed: space={space // 1024}K inodes={inodes} "
            f"check_space={max(need_bytes, 0) // 1024}K inodes={need_inodes} msg_size={max(message_size, 0)}"
        )
    return None
