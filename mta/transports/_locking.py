"""Opening and locking an mbox file safely (Exim's appendfile.c locking, for the appendfile transport).

Two locks guard a mailbox, taken in this order and released in reverse:

1. A lock file ``<mailbox>.lock``, made by the "hitching post" method that
   works even over NFS: create a uniquely named file next to it with
   O_EXCL, hard-link it to the lock name, and believe we hold the lock only
   if the unique file then has two links (link() can report failure after
   succeeding when an NFS reply is lost; the link count cannot lie).  A lock
   file older than `lockfile_timeout` was left by a crash and is removed.
   Mail readers (mutt, pine, procmail) take the same lock.
2. An exclusive fcntl() lock on the open mailbox, never blocking: if it is
   busy the file is closed, and opened and checked again after
   `lock_interval`, so we never keep a stale view of a file someone else is
   rewriting.

Security: the mailbox lives in a directory other users can write (/var/mail
is group-writable and sticky).  A symbolic link planted there could make us
append to /etc/passwd, so the file is examined with lstat() and opened with
O_NOFOLLOW, and the opened descriptor's fstat() must show the same device
and inode as the lstat() (a swap between the two is refused).  Ownership
and mode are checked on both.  Every problem is a DeferError: the message
stays on the spool and the administrator can fix the mailbox.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import sys
import time
from collections.abc import Callable

from mta import record
from mta.errors import DeferError

LOCK_SUFFIX = ".lock"


@record.dataclass(frozen=True, slots=True)
class MailboxPolicy:
    """What appendfile's options allow for one mailbox file."""

    uid: int  # the delivery uid: an existing mailbox must belong to it (check_owner)
    gid: int
    mode: int
    check_owner: bool = True
    check_group: bool = False
    mode_fail_narrower: bool = True
    allow_symlink: bool = False
    allow_fifo: bool = False
    file_must_exist: bool = False
    may_create: bool = True  # create_file allows creating this path
    use_fcntl_lock: bool = True
    lock_retries: int = 10
    lock_interval: float = 3.0


@record.dataclass(slots=True)
class OpenMailbox:
    """A mailbox opened for appending and locked; `size` is its length once locked."""

    fd: int
    path: str
    size: int
    is_fifo: bool = False
    created: bool = False  # made by this delivery: its directory entry needs an fsync too

    def close(self) -> None:
        # Closing the descriptor also releases the fcntl lock.
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _defer(text: str, err: int = 0) -> DeferError:
    return DeferError(text, errno=err)


def _os_defer(what: str, exc: OSError) -> DeferError:
    return DeferError(f"{what}: {exc.strerror or exc}", errno=exc.errno or 0)


# -- lock file --------------------------------------------------------------------------------------


def acquire_lockfile(
    mailbox: str,
    *,
    hostname: str,
    mode: int = 0o600,
    retries: int = 10,
    interval: float = 3.0,
    stale_after: float = 1800.0,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Create ``<mailbox>.lock`` by the hitching-post method and return its path.

    Tries `retries` times, `interval` seconds apart; a lock file whose
    ctime is more than `stale_after` seconds old (0: never) is removed as
    left by a crash.  Raises DeferError if the lock cannot be had.
    """
    lockname = mailbox + LOCK_SUFFIX
    safe_host = hostname.replace("/", "_") or "localhost"
    tries = max(retries, 1)
    for attempt in range(tries):
        # Unique per host, second and process: two deliveries never share a hitching post.
        hitch = f"{lockname}.{safe_host}.{int(time.time()):08x}.{os.getpid():08x}"
        try:
            hd = os.open(hitch, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
        except OSError as exc:
            raise _os_defer(
                f"creating lock file hitching post {hitch} (euid={os.geteuid()} egid={os.getegid()})", exc
            ) from None
        try:
            try:
                os.link(hitch, lockname)
            except OSError:
                # Usually EEXIST (someone else holds the lock); on NFS the link may
                # exist despite the error, which the link count below settles.
                pass
            links = os.fstat(hd).st_nlink
        finally:
            os.close(hd)
            _unlink_if_present(hitch)
        if links == 2:
            return lockname
        if stale_after > 0:
            _remove_if_stale(lockname, stale_after)
        if attempt + 1 < tries:
            sleep(interval)
    raise _defer(f"failed to lock mailbox {mailbox} (lock file)")


def release_lockfile(lockname: str) -> None:
    """Remove a lock file we created.

    Called after the message is safely written (or the mailbox restored), so
    a failure here must not turn the outcome into a deferral, which would
    deliver the message twice.  The lock then goes stale and the next
    delivery removes it after lockfile_timeout; we say so on stderr, the
    delivery process's diagnostic channel, rather than hide it.
    """
    try:
        os.unlink(lockname)
    except FileNotFoundError:
        return  # already removed as stale by another delivery: nothing held
    except OSError as exc:
        print(f"mta: could not remove lock file {lockname}: {exc.strerror}", file=sys.stderr)


def _unlink_if_present(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return


def _remove_if_stale(lockname: str, stale_after: float) -> None:
    try:
        st = os.lstat(lockname)
    except FileNotFoundError:
        return  # released meanwhile: the next try will get it
    except OSError as exc:
        raise _os_defer(f"attempting to stat lock file {lockname}", exc) from None
    # ctime, as Exim: it changes with every link and cannot be set back by utime().
    if time.time() - st.st_ctime > stale_after:
        _unlink_if_present(lockname)


# -- the mailbox itself ------------------------------------------------------------------------------


def open_and_lock_mailbox(path: str, policy: MailboxPolicy, sleep: Callable[[float], None] = time.sleep) -> OpenMailbox:
    """Open (creating if allowed) and fcntl-lock the mailbox `path`; see the module docstring.

    Raises DeferError naming the problem: not allowed to create, a symbolic
    link, not a regular file, wrong owner or mode, the file changed while
    being opened, or still locked after `lock_retries` tries.
    """
    tries = max(policy.lock_retries, 1)
    opened_once = False
    for attempt in range(tries):
        opened = _open_checked(path, policy, follow=False)
        if opened is None:
            continue  # created or removed while we looked: look again
        fd, is_fifo, created = opened
        opened_once = True
        if is_fifo or not policy.use_fcntl_lock:
            return OpenMailbox(fd, path, 0 if is_fifo else os.fstat(fd).st_size, is_fifo, created)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise _os_defer(f"failed to lock mailbox {path}", exc) from None
            if attempt + 1 < tries:
                sleep(policy.lock_interval)
            continue
        # The size once locked: what a failed delivery truncates back to.
        return OpenMailbox(fd, path, os.fstat(fd).st_size, False, created)
    if not opened_once:
        raise _defer(f"mailbox {path}: existence unclear")
    raise _defer(f"failed to lock mailbox {path} (fcntl)")


def _open_checked(path: str, policy: MailboxPolicy, follow: bool) -> tuple[int, bool, bool] | None:
    """One attempt to open `path`: (fd, is_fifo, created), or None when it changed under us."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        return _create(path, policy, follow)
    except OSError as exc:
        raise _os_defer(f"attempting to stat mailbox {path}", exc) from None

    is_link = stat.S_ISLNK(st.st_mode)
    if is_link and not policy.allow_symlink:
        raise _defer(f"mailbox {path} is a symbolic link (allow_symlink is not set)")
    link_note = " (symlink)" if is_link else ""
    if policy.check_owner and st.st_uid != policy.uid:
        raise _defer(f"mailbox {path}{link_note} has wrong uid ({st.st_uid} != {policy.uid})")
    if policy.check_group and st.st_gid != policy.gid:
        raise _defer(f"mailbox {path}{link_note} has wrong gid ({st.st_gid} != {policy.gid})")
    if is_link:
        # allow_symlink: the link's owner was checked above; now judge the file it points to.
        return _open_checked(path, policy, follow=True)

    is_fifo = policy.allow_fifo and stat.S_ISFIFO(st.st_mode)
    if not is_fifo and not stat.S_ISREG(st.st_mode):
        extra = " or named pipe" if policy.allow_fifo else ""
        raise _defer(f"mailbox {path} is not a regular file{extra}")

    old_mode = st.st_mode & 0o7777
    narrow_to = None
    if old_mode != policy.mode:
        diffs = old_mode ^ policy.mode
        if diffs & old_mode == diffs:
            narrow_to = policy.mode  # only removes permissions: safe to apply
        elif policy.mode_fail_narrower:
            raise _defer(f"mailbox {path} has the wrong mode {old_mode:o} ({policy.mode:o} expected)")

    flags = os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    # A FIFO is opened non-blocking so that nobody reading it means an error, not a hang.
    flags |= (os.O_WRONLY | os.O_NONBLOCK) if is_fifo else (os.O_RDWR | os.O_APPEND)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _defer(f"mailbox {path} is a symbolic link (allow_symlink is not set)") from None
        if is_fifo and exc.errno == errno.ENXIO:
            raise _os_defer(f"while opening named pipe {path} (could mean no process is reading it)", exc) from None
        raise _os_defer(f"while opening mailbox {path}", exc) from None
    checked = False
    try:
        _check_opened(fd, path, st, policy, is_fifo, narrow_to)
        checked = True
    finally:
        if not checked:
            os.close(fd)
    return fd, is_fifo, False


def _check_opened(
    fd: int, path: str, before: os.stat_result, policy: MailboxPolicy, is_fifo: bool, narrow_to: int | None
) -> None:
    """The descriptor must be the file we examined: same inode, type, owner; then fix the mode."""
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
        raise _defer(f"opened mailbox {path} inode number changed from {before.st_ino} to {st.st_ino}")
    kind_ok = stat.S_ISFIFO(st.st_mode) if is_fifo else stat.S_ISREG(st.st_mode)
    if not kind_ok:
        raise _defer(f"opened mailbox {path} is no longer a {'named pipe' if is_fifo else 'regular file'}")
    if (policy.check_owner and st.st_uid != policy.uid) or (policy.check_group and st.st_gid != policy.gid):
        raise _defer(f"opened mailbox {path} has wrong uid or gid")
    if narrow_to is not None:
        try:
            os.fchmod(fd, narrow_to)
        except OSError as exc:
            raise _os_defer(f"attempting to chmod mailbox {path}", exc) from None
    if is_fifo:
        # Writes block normally from here on: the reader is there, let it keep up.
        os.set_blocking(fd, True)


def _create(path: str, policy: MailboxPolicy, follow: bool) -> tuple[int, bool, bool] | None:
    if policy.file_must_exist:
        raise _defer(f"mailbox {path} does not exist, but file_must_exist is set", errno.ENOENT)
    if not policy.may_create:
        raise _defer(f"mailbox {path} does not exist, but creation outside the home directory is not permitted")
    # O_EXCL + O_NOFOLLOW: never create through a link planted a moment ago.  When
    # following an allowed symlink to a missing target, O_EXCL cannot be used.
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    if not follow:
        flags |= os.O_EXCL | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, policy.mode)
    except FileExistsError:
        return None
    except OSError as exc:
        raise _os_defer(f"while creating mailbox {path}", exc) from None
    try:
        if os.geteuid() == 0:
            os.fchown(fd, policy.uid, policy.gid)
        os.fchmod(fd, policy.mode)  # the umask may have narrowed it
    except OSError as exc:
        os.close(fd)
        raise _os_defer(f"while setting owner and mode of new mailbox {path}", exc) from None
    return fd, False, True
