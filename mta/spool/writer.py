"""Spooling a new message: the body streamed to ID-D, then ID-H committed.

Order of work, and what a crash at each point leaves (see docs/spool.md):

1. create ID-D with O_EXCL and lock it at once, then write its first line
   and fsync the directory (the -D entry is durable before any -H can name
   it).  A crash from here until step 4 leaves ID-D without ID-H: not a
   message; nobody lists it, and Spool.tidy_temporaries removes it.
2. the caller streams the body into `data_file` (never held in memory).
3. commit: flush and fsync ID-D; write the -H to hdr.ID and fsync it.
4. rename hdr.ID to ID-H, fsync the directory.  The message exists from
   the rename on, and is durable when commit() returns: only then may the
   receiver say 250 (or exit 0).

Exim writes -D under its final name as well.  A temporary -D name would not
remove the "-D without -H" state (a crash between the two renames leaves it
just the same), so it would only add a rename.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from mta.errors import SpoolError
from mta.privilege import adopt_directory_owner
from mta.spool.envelope import Envelope
from mta.spool.files import (
    HEADER_TEMP_PREFIX,
    SPOOL_MODE,
    MessageLock,
    fsync_directory,
    os_error,
    publish_header,
    stage_header,
    take_lock,
    unlink,
    write_all,
)
from mta.spool.format import DATA_SUFFIX, HEADER_SUFFIX, write_header_file

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO


class MessageWriter:
    """A message being received: stream the body to `data_file`, then
    `commit(envelope)`.  Use it as a context manager: leaving the block
    without a successful commit removes every file of the message.

    The -D file is created and locked before anything is written, so no
    queue runner can pick the message up.  After commit the lock is still
    held (for an immediate delivery) until `close()` or the end of the
    block, or the caller takes it over with `detach_lock()`.

    Made by Spool.new_message(); `on_release` is told when the lock goes.
    """

    def __init__(self, message_id: str, directory: Path, on_release: Callable[[MessageLock], None]) -> None:
        self.message_id = message_id
        self.directory = directory
        self.data_path = directory / (message_id + DATA_SUFFIX)
        self.header_path = directory / (message_id + HEADER_SUFFIX)
        self._committed = False
        self._discarded = False
        self._detached = False
        self.data_file: BinaryIO  # set once -D exists and is locked

        try:
            fd = os.open(self.data_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, SPOOL_MODE)
        except OSError as exc:
            # EEXIST included: the file is someone else's; never remove it.
            raise os_error("create", self.data_path, exc) from exc
        self.lock = MessageLock(message_id, fd, self.data_path, on_release)
        created = False
        try:
            # Lock first: from here on the message is "busy" to everyone.
            take_lock(fd, message_id, self.data_path)
            os.fchmod(fd, SPOOL_MODE)  # the umask may have taken bits away
            adopt_directory_owner(fd, directory)
            write_all(fd, (message_id + DATA_SUFFIX + "\n").encode())
            fsync_directory(directory)
            created = True
        except OSError as exc:
            raise os_error("create", self.data_path, exc) from exc
        finally:
            if not created:
                self._discard()
        # closefd=False: a caller closing data_file must not drop the lock.
        self.data_file = open(fd, "r+b", closefd=False)  # noqa: SIM115 - closed by _close_data_file
        self.data_file.seek(0, os.SEEK_END)

    def commit(self, envelope: Envelope) -> None:
        """Make the message durable and visible.  When this returns, the
        message survives a crash and may be acknowledged (250 / exit 0).
        If it raises (SpoolError, SpoolFormatError), nothing of the message
        is left on the spool and it must not be acknowledged."""
        ok = False
        try:
            self._stage(envelope)
            self._publish()
            ok = True
        finally:
            if not ok:
                self._discard()
        self._committed = True

    def _stage(self, envelope: Envelope) -> None:
        """First half of commit: the body durable, the -H written and synced
        under its temporary name.  A crash after this leaves ID-D and hdr.ID:
        still not a message."""
        if self._committed or self._discarded:
            raise ValueError(f"message {self.message_id} is already committed or aborted")
        if envelope.message_id != self.message_id:
            raise ValueError(f"envelope is for {envelope.message_id}, writer for {self.message_id}")
        # Format first: a value that cannot be written fails before any more
        # is on disk.
        header = write_header_file(envelope)
        try:
            self.data_file.flush()
            os.fsync(self.lock.fd)  # the body is on disk before any -H names it
        except OSError as exc:
            raise os_error("write", self.data_path, exc) from exc
        stage_header(self.directory, self.message_id, header)

    def _publish(self) -> None:
        """Second half of commit: rename -H into place, fsync the directory."""
        publish_header(self.directory, self.message_id)

    def abort(self) -> None:
        """Remove every file of this (uncommitted) message and release the
        lock.  After commit() the message belongs to the spool and this does
        nothing (use Spool.remove_message)."""
        if self._committed:
            return
        problems = self._discard()
        if problems:
            raise SpoolError(
                f"could not remove all files of message {self.message_id}: {'; '.join(problems)}"
            )

    def detach_lock(self) -> MessageLock:
        """After commit: hand the held lock to the caller, who releases it."""
        if not self._committed or not self.lock.held:
            raise ValueError("detach_lock() needs a committed message whose lock is still held")
        self._detached = True
        self._close_data_file()
        return self.lock

    def close(self) -> None:
        """Release the lock; an uncommitted message is aborted first."""
        if not self._committed:
            self.abort()
            return
        self._close_data_file()
        if not self._detached:
            self.lock.release()

    def __enter__(self) -> MessageWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None and not self._committed:
            self._discard()  # the exception in flight is the one to report
        else:
            self.close()

    def _close_data_file(self) -> None:
        data_file: BinaryIO | None = getattr(self, "data_file", None)
        if data_file is not None and not data_file.closed:
            try:
                data_file.close()
            except OSError:
                # A flush error here only matters before commit, which has
                # flushed already; on abort the data is being thrown away.
                pass

    def _discard(self) -> list[str]:
        """Best-effort removal of everything this writer may have made: -H
        first (the message must never look complete), the temporary, then
        -D; then release the lock.  Returns what could not be removed."""
        if self._discarded:
            return []
        self._discarded = True
        problems: list[str] = []
        # Only this writer can have made ID-H or hdr.ID: the id is new and
        # ID-D (created with O_EXCL) has been locked by us throughout.
        temp = self.directory / (HEADER_TEMP_PREFIX + self.message_id)
        for path in (self.header_path, temp, self.data_path):
            try:
                unlink(path)
            except SpoolError as exc:
                problems.append(str(exc))
        self._close_data_file()
        self.lock.release()
        return problems
