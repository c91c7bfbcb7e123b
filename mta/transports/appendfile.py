"""appendfile transport: deliver into a local mailbox, an mbox file or a Maildir.

An mbox delivery (``file``) appends one message to a single file: a
``From sender date`` line, the header (with Return-path:, Envelope-to: and
Delivery-date: when asked), the body with lines starting ``From `` escaped
as ``>From ``, and a blank line.  The file is locked with a lock file and
an fcntl lock (see _locking.py), checked against symlink and ownership
tricks, and never left holding part of a message: any failure once writing
has started truncates it back to its size before the delivery, and success
is only reported after fsync().

A Maildir delivery (``directory`` with ``maildir_format``) writes the
message to ``tmp/`` under a unique name, fsyncs it, links it into ``new/``
and fsyncs the directory, so a reader never sees a half-written message and
a crash never loses an acknowledged one (the file-level pieces are in
_maildir.py).

Runs in the delivery child, already as the delivery user (mta.deliver.local_exec).
Every failure is a DeferError (the mailbox's trouble, tried again later)
except a message larger than the transport's message_size_limit (FailError).
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterable

from mta.drivers import DriverOptions, Kind, option, options_table
from mta.errors import ConfigError, DeferError, DeliveryError, ExpansionError
from mta.route.item import AddressItem
from mta.taint import file_name_refused
from mta.transports import _local, _maildir
from mta.transports._local import BatchOptions
from mta.transports._locking import (
    MailboxPolicy,
    OpenMailbox,
    acquire_lockfile,
    open_and_lock_mailbox,
    release_lockfile,
)
from mta.transports.base import DeliveryEnv, LocalTransport, OutgoingMessage
from mta.transports.write import HeaderEdits, WriteSpec, header_edits, transport_return_path

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

# Backslash-n, as in Exim: the expansion makes it a newline.
MBOX_PREFIX = "From ${if def:return_path{$return_path}{MAILER-DAEMON}} ${tod_bsdinbox}\\n"
CREATE_FILE_WORDS = ("anywhere", "inhome", "belowhome")
# Exim's ERRNO_EXIMQUOTA: the log shows "defer (-22): mailbox is full ...".
QUOTA_ERRNO = -22
QUOTA_MESSAGE = "mailbox is full (quota exceeded)"


@options_table
class AppendfileOptions(BatchOptions):
    """Options of the appendfile transport."""

    file: str | None = option(
        None,
        Kind.STRING,
        "The mbox file to append to, e.g. `/var/mail/$local_part_data`; for files named in alias or "
        "forward files use `$address_file`. Set exactly one of `file` and `directory`. The expanded name "
        "must be absolute and must not contain data from the message or the network (tainted data).",
        expand=True,
    )
    directory: str | None = option(
        None,
        Kind.STRING,
        "The Maildir to deliver into, e.g. `$home/Maildir`; needs `maildir_format`. Same rules as `file`.",
        expand=True,
    )
    maildir_format: bool = option(
        False, Kind.BOOL, "Deliver into `directory` in Maildir format (tmp/, new/, cur/, one file per message)."
    )
    create_directory: bool = option(
        True, Kind.BOOL, "Create missing directories of the mailbox path (and a Maildir's tmp/new/cur)."
    )
    directory_mode: int = option(0o700, Kind.OCTAL, "Mode of directories created for a delivery.")
    create_file: str = option(
        "anywhere",
        Kind.STRING,
        "Where a missing mailbox may be created: `anywhere`, `inhome` (directly in the home directory), "
        "`belowhome` (anywhere under it) or an absolute path under which creation is allowed.",
    )
    file_must_exist: bool = option(False, Kind.BOOL, "Defer instead of creating a mailbox that does not exist.")
    mode: int = option(
        0o600,
        Kind.OCTAL,
        "Mode of a created mailbox or Maildir file; an existing mailbox with wider permissions is narrowed to it.",
    )
    mode_fail_narrower: bool = option(
        True, Kind.BOOL, "Defer when an existing mailbox's mode is narrower than `mode` (else deliver anyway)."
    )
    check_owner: bool = option(True, Kind.BOOL, "An existing mailbox must belong to the delivery user (else defer).")
    check_group: bool = option(False, Kind.BOOL, "An existing mailbox must belong to the delivery group.")
    allow_symlink: bool = option(
        False,
        Kind.BOOL,
        "Allow the mailbox to be a symbolic link (owned by the delivery user). Off by default: a link "
        "planted in a shared mail directory could otherwise redirect mail into any file.",
    )
    allow_fifo: bool = option(False, Kind.BOOL, "Allow the mailbox to be a named pipe (written without locking).")
    use_lockfile: bool = option(True, Kind.BOOL, "Lock an mbox with a `<file>.lock` lock file (hitching-post method).")
    use_fcntl_lock: bool = option(True, Kind.BOOL, "Lock an mbox with an exclusive fcntl() lock.")
    lockfile_mode: int = option(0o600, Kind.OCTAL, "Mode of the lock file.")
    lockfile_timeout: int = option(
        1800, Kind.TIME, "A lock file older than this was left by a crash and is removed; 0 never removes one."
    )
    lock_retries: int = option(10, Kind.INT, "How many times to try for the mbox locks before deferring.", minimum=1)
    lock_interval: int = option(3, Kind.TIME, "Wait between tries for the mbox locks.")
    message_prefix: str | None = option(
        None,
        Kind.STRING,
        "Text written before each message. Unset: the mbox `From ` line "
        "(`From ${if def:return_path{$return_path}{MAILER-DAEMON}} ${tod_bsdinbox}\\n`) for `file`, "
        "nothing for a Maildir. Set it empty to write no prefix.",
        expand=True,
    )
    message_suffix: str | None = option(
        None,
        Kind.STRING,
        "Text written after each message. Unset: a newline for `file` (the blank line between mbox "
        "messages), nothing for a Maildir.",
        expand=True,
    )
    check_string: str | None = option(
        None,
        Kind.STRING,
        "A string that must not start a line of the message; unset: `From ` for `file`, none for a Maildir.",
    )
    escape_string: str | None = option(
        None, Kind.STRING, "What replaces `check_string` at the start of a line; unset: `>From ` for `file`."
    )
    use_crlf: bool = option(False, Kind.BOOL, "Write lines ending in CRLF instead of LF.")
    quota: int = option(
        0,
        Kind.SIZE,
        "Largest size of the mailbox (mbox file, or the files in a Maildir's new/ and cur/); a delivery "
        "that would pass it is deferred with retry error `quota`. 0 means no quota.",
    )
    quota_filecount: int = option(
        0, Kind.INT, "Largest number of messages in a Maildir (new/ and cur/); 0 means no limit."
    )
    quota_is_inclusive: bool = option(
        True,
        Kind.BOOL,
        "Count the new message in the quota check. If false, a delivery is allowed while the mailbox is "
        "under quota, even if this message takes it over.",
    )


class AppendfileTransport(LocalTransport):
    """Deliver into a local mailbox: an mbox file (`file`; lock file and fcntl locking, a `From ` line
    before each message) or a Maildir (`directory` with `maildir_format`).  See docs/transports.md.
    """

    options: AppendfileOptions
    options_class: ClassVar[type[DriverOptions]] = AppendfileOptions

    # -- start-up ---------------------------------------------------------------------------------

    def check(self, config: Any) -> None:
        o = self.options

        def error(text: str) -> ConfigError:
            return ConfigError(f"appendfile transport {self.name}: {text}", *self.source)

        if o.file is not None and o.directory is not None:
            raise error('only one of "file" or "directory" can be set')
        if o.file is None and o.directory is None:
            raise error(
                'one of "file" or "directory" must be set (for files named in alias or forward files, '
                "use file = $address_file)"
            )
        if o.directory is not None and not o.maildir_format:
            raise error('"directory" deliveries need maildir_format (Maildir is the directory format supported)')
        if o.file is not None and o.maildir_format:
            raise error('maildir_format needs "directory", not "file"')
        if o.create_file not in CREATE_FILE_WORDS and not o.create_file.startswith("/"):
            raise error(f'create_file must be anywhere, inhome, belowhome or an absolute path, not "{o.create_file}"')
        if o.file is not None and not (o.use_lockfile or o.use_fcntl_lock):
            raise error("no locking configured (set use_lockfile or use_fcntl_lock)")
        names = ("file", "directory", "message_prefix", "message_suffix", "headers_add", "headers_remove")
        _local.check_expansions(((name, getattr(o, name)) for name in names), error)

    # -- delivery ---------------------------------------------------------------------------------

    def deliver(self, message: OutgoingMessage, item: AddressItem, env: DeliveryEnv) -> None:
        self.deliver_items(message, [item], env)

    def deliver_items(self, message: OutgoingMessage, items: list[AddressItem], env: DeliveryEnv) -> None:
        _local.check_size(self.options, message)
        env = _local.batch_env(env, items)
        item = items[0]
        path, is_maildir = self._target(item, env)
        return_path = transport_return_path(self, message, item, env)
        edits = header_edits(self, message, items, env, return_path)
        spec = self._write_spec(items, env, return_path, is_maildir)
        home = _local.delivery_home(item, env)
        if is_maildir:
            self._deliver_maildir(path, message, spec, edits, env, home)
        else:
            self._deliver_mbox(path, message, spec, edits, env, home)

    def _target(self, item: AddressItem, env: DeliveryEnv) -> tuple[str, bool]:
        """The expanded, checked mailbox path, and whether it is a Maildir."""
        o = self.options
        text = o.file if o.file is not None else o.directory
        if text is None:
            raise DeferError(f"Mandatory file or directory option missing from {self.name} transport")
        try:
            path = env.expand(text, item)
        except ExpansionError as exc:
            raise DeferError(
                f'Expansion of "{text}" (file or directory name for {self.name} transport) failed: {exc.message}'
            ) from None
        if file_name_refused(path):
            # CVE-2019-10149 and friends: a name built from message data could point anywhere.
            raise DeferError(f"Tainted '{path}' (file or directory name for {self.name} transport) not permitted")
        if not path.startswith("/") or "\0" in path:
            raise DeferError(f'appendfile: file or directory name "{path}" is not absolute')
        is_maildir = o.directory is not None
        return (path.rstrip("/") or "/") if is_maildir else path, is_maildir

    def _write_spec(
        self, items: list[AddressItem], env: DeliveryEnv, return_path: str, is_maildir: bool
    ) -> WriteSpec:
        o = self.options
        item = items[0]
        if o.use_bsmtp:
            # Batched SMTP: no mbox From line unless asked for; dots are doubled whatever check_string says.
            prefix = self._expand_text("message_prefix", o.message_prefix or "", item, env, return_path)
            suffix = self._expand_text("message_suffix", o.message_suffix or "", item, env, return_path)
            return _local.bsmtp_spec(o, return_path, items, prefix.decode("utf-8", "surrogateescape"),
                                     suffix.decode("utf-8", "surrogateescape"))
        mbox = not is_maildir
        prefix = o.message_prefix if o.message_prefix is not None else (MBOX_PREFIX if mbox else "")
        suffix = o.message_suffix if o.message_suffix is not None else ("\\n" if mbox else "")
        check = o.check_string if o.check_string is not None else ("From " if mbox else "")
        escape = o.escape_string if o.escape_string is not None else (">From " if mbox else "")
        return _local.write_spec(
            o,
            check=check,
            escape=escape,
            prefix=self._expand_text("message_prefix", prefix, item, env, return_path),
            suffix=self._expand_text("message_suffix", suffix, item, env, return_path),
        )

    def _expand_text(self, name: str, text: str, item: AddressItem, env: DeliveryEnv, return_path: str) -> bytes:
        if not text:
            return b""
        try:
            value = env.expand(text, item, {"return_path": return_path})
        except ExpansionError as exc:
            raise DeferError(
                f'Expansion of "{text}" ({name} for {self.name} transport) failed: {exc.message}'
            ) from None
        return _local.encode(value)

    def _may_create(self, path: str, home: str | None) -> bool:
        """create_file: may a missing file at `path` be created?"""
        rule = self.options.create_file
        if rule == "anywhere":
            return True
        base = home if rule in ("inhome", "belowhome") else rule
        if not base:
            return False
        base = os.path.normpath(base)
        target = os.path.normpath(path)
        if rule == "inhome":
            return os.path.dirname(target) == base
        return target.startswith(base.rstrip("/") + "/")

    def _ids(self, env: DeliveryEnv) -> tuple[int, int]:
        # The child runs as the delivery user; env carries it when the caller knows better.
        uid = env.uid if env.uid is not None else os.geteuid()
        gid = env.gid if env.gid is not None else os.getegid()
        return uid, gid

    # -- mbox ---------------------------------------------------------------------------------------

    def _deliver_mbox(
        self,
        path: str,
        message: OutgoingMessage,
        spec: WriteSpec,
        edits: HeaderEdits,
        env: DeliveryEnv,
        home: str | None,
    ) -> None:
        o = self.options
        uid, gid = self._ids(env)
        may_create = self._may_create(path, home)
        parent = os.path.dirname(path)
        if o.create_directory and may_create and not o.file_must_exist and not os.path.lexists(parent):
            self._make_directories(parent)
        policy = MailboxPolicy(
            uid=uid,
            gid=gid,
            mode=o.mode,
            check_owner=o.check_owner,
            check_group=o.check_group,
            mode_fail_narrower=o.mode_fail_narrower,
            allow_symlink=o.allow_symlink,
            allow_fifo=o.allow_fifo,
            file_must_exist=o.file_must_exist,
            may_create=may_create,
            use_fcntl_lock=o.use_fcntl_lock,
            lock_retries=o.lock_retries,
            lock_interval=o.lock_interval,
        )
        # Lock file first, then open: two deliveries never even open the file at once (Exim's NFS lesson).
        lockname = None
        if o.use_lockfile:
            lockname = acquire_lockfile(
                path,
                hostname=env.primary_hostname,
                mode=o.lockfile_mode,
                retries=o.lock_retries,
                interval=o.lock_interval,
                stale_after=o.lockfile_timeout,
            )
        try:
            box = open_and_lock_mailbox(path, policy)
            try:
                self._append(box, message, spec, edits)
            finally:
                box.close()
        finally:
            if lockname is not None:
                release_lockfile(lockname)

    def _append(self, box: OpenMailbox, message: OutgoingMessage, spec: WriteSpec, edits: HeaderEdits) -> None:
        """Write the message at the end of the locked mailbox; on failure leave it as it was."""
        limit = 0 if box.is_fifo else self._quota_limit(box.size, message.size)
        done = False
        restored = False
        try:
            failure: DeliveryError
            try:
                _write_message(box.fd, _local.spool_chunks(message, spec, edits), limit, box.size)
                if not box.is_fifo:
                    os.fsync(box.fd)
                    if box.created:
                        _fsync_directory(os.path.dirname(box.path))
                done = True
                return
            except DeliveryError as exc:
                failure = exc
            except OSError as exc:
                failure = _write_error(box.path, exc)
            restored = True
            raise _restore(box, failure)
        finally:
            if not done and not restored and not box.is_fifo:
                # Something unexpected is on its way up: still leave no partial message behind.
                os.ftruncate(box.fd, box.size)

    def _quota_limit(self, current: int, incoming: int) -> int:
        """The size the mailbox may reach while writing (0: none); defers at once if already over."""
        o = self.options
        if not o.quota:
            return 0
        if current + (incoming if o.quota_is_inclusive else 0) > o.quota:
            raise _quota_error()
        # Not inclusive: a mailbox under quota takes the whole message, however large.
        return o.quota if o.quota_is_inclusive else 0

    def _make_directories(self, directory: str) -> None:
        missing = []
        current = directory
        while current and current != "/" and not os.path.lexists(current):
            missing.append(current)
            current = os.path.dirname(current)
        for name in reversed(missing):
            try:
                os.mkdir(name, self.options.directory_mode)
                os.chmod(name, self.options.directory_mode)  # the umask may have narrowed it
            except FileExistsError:
                continue  # another delivery made it meanwhile
            except OSError as exc:
                raise DeferError(f"failed to create directory {name}: {exc.strerror}", errno=exc.errno or 0) from None

    # -- maildir ------------------------------------------------------------------------------------

    def _deliver_maildir(
        self,
        path: str,
        message: OutgoingMessage,
        spec: WriteSpec,
        edits: HeaderEdits,
        env: DeliveryEnv,
        home: str | None,
    ) -> None:
        if not self._may_create(path + "/any", home):
            raise DeferError(
                f"tried to create file in {path}, but file creation outside the home directory is not permitted"
            )
        self._ensure_maildir(path)
        root = _maildir.open_directory(path, None, follow=True)
        try:
            tmp_fd = _maildir.open_directory("tmp", root, follow=False, shown=f"{path}/tmp")
            try:
                new_fd = _maildir.open_directory("new", root, follow=False, shown=f"{path}/new")
                try:
                    limit = self._maildir_quota(root, path, message.size)
                    self._write_maildir_file(path, tmp_fd, new_fd, message, spec, edits, env, limit)
                finally:
                    os.close(new_fd)
            finally:
                os.close(tmp_fd)
        finally:
            os.close(root)

    def _ensure_maildir(self, path: str) -> None:
        o = self.options
        for directory in (path, *(f"{path}/{sub}" for sub in _maildir.SUBDIRS)):
            if os.path.isdir(directory):
                continue
            if not o.create_directory:
                raise DeferError(f"Maildir directory {directory} does not exist and create_directory is not set")
            self._make_directories(directory)

    def _maildir_quota(self, root: int, path: str, incoming: int) -> int:
        """Check quota and quota_filecount before writing; return the size limit while writing (0: none)."""
        o = self.options
        if not o.quota and not o.quota_filecount:
            return 0
        size, count = _maildir.usage(root, path)
        inclusive = o.quota_is_inclusive
        if o.quota_filecount and count + (1 if inclusive else 0) > o.quota_filecount:
            raise _quota_error()
        if o.quota and size + (incoming if inclusive else 0) > o.quota:
            raise _quota_error()
        return o.quota - size if o.quota and inclusive else 0

    def _write_maildir_file(
        self,
        path: str,
        tmp_fd: int,
        new_fd: int,
        message: OutgoingMessage,
        spec: WriteSpec,
        edits: HeaderEdits,
        env: DeliveryEnv,
        limit: int,
    ) -> None:
        name, fd = _maildir.create_unique(tmp_fd, path, env.primary_hostname, self.options.mode)
        in_new = False
        done = False
        try:
            try:
                os.fchmod(fd, self.options.mode)  # the umask may have narrowed it
                _write_message(fd, _local.spool_chunks(message, spec, edits), limit)
                # The file's data must be on disk before its name appears in new/.
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(name, name, src_dir_fd=tmp_fd, dst_dir_fd=new_fd)
            except FileExistsError:
                raise DeferError(f"Maildir file {path}/new/{name} already exists") from None
            in_new = True
            os.fsync(new_fd)
            done = True
        except OSError as exc:
            raise _write_error(f"{path}/tmp/{name}", exc) from None
        finally:
            if not done:
                if in_new:
                    # Not durable in new/: take it back so that a retry cannot leave two copies.
                    _maildir.unlink_at(name, new_fd)
                _maildir.unlink_at(name, tmp_fd)
        # Delivered: the message lives in new/.  A tmp/ name left behind is only clutter
        # (Maildir readers clear old tmp/ files), so failing here must not defer and redeliver.
        try:
            os.unlink(name, dir_fd=tmp_fd)
        except OSError as exc:
            print(f"mta: could not remove {path}/tmp/{name}: {exc.strerror}", file=sys.stderr)


# -- helpers ------------------------------------------------------------------------------------------


def _write_message(fd: int, chunks: Iterable[bytes], limit: int, size: int = 0) -> None:
    """Write the chunks after `size` bytes; the quota error before a write would pass `limit` (0: no limit)."""
    for chunk in chunks:
        if limit and size + len(chunk) > limit:
            raise _quota_error()
        _write_all(fd, chunk)
        size += len(chunk)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        count = os.write(fd, view)
        view = view[count:]


def _quota_error() -> DeferError:
    return DeferError(QUOTA_MESSAGE, errno=QUOTA_ERRNO, retry_error="quota")


def _write_error(path: str, exc: OSError) -> DeferError:
    """A write failure is always temporary: a full disk or quota must never lose mail."""
    if exc.errno == errno.EDQUOT:
        return DeferError(
            f"mailbox is full (system quota exceeded while writing to {path})", errno=exc.errno, retry_error="quota"
        )
    return DeferError(f"error writing to {path}: {exc.strerror or exc}", errno=exc.errno or 0)


def _restore(box: OpenMailbox, failure: DeliveryError) -> DeliveryError:
    """Truncate the mailbox back to its size before this delivery; say so if that fails too."""
    if box.is_fifo:
        return failure
    try:
        os.ftruncate(box.fd, box.size)
        os.fsync(box.fd)
    except OSError as exc:
        return type(failure)(
            f"{failure.message}; the mailbox could not be truncated back to {box.size} bytes: {exc.strerror}",
            code=failure.code,
            esc=failure.esc,
            errno=failure.errno,
            retry_error=failure.retry_error,
        )
    return failure


def _fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
