"""Spooling a message received over SMTP, without blocking the event loop.

The body is kept in memory while it is small and spilled to its -D file
(from a worker thread) once it passes `SPILL_SIZE`, so that a 100 MB message
costs no more memory than a small one.  `commit()` hands the message to the
process's spool writer (mta.receive.spool_writer), which makes it durable
with the messages of other sessions that finish at the same moment:

1. the -D file: created with O_EXCL (or a spare file renamed to its name,
   never over a file that is there: mta.spool.spare) and locked, if it was not
   spilled already; the rest of the body written; a spare truncated to it; fsynced;
2. the -H under its temporary name hdr.ID (again a spare, where there is one),
   written and fsynced;
3. the directory fsynced: -D's entry is durable before any -H can name it;
4. hdr.ID renamed to ID-H, the directory fsynced again.

Only when `commit()` returns may the session say 250.  The directory
syncs of steps 3 and 4 are shared by the batch (group commit): one fsync()
of input/ covers every rename done before it started, which is what lets
twenty sessions spool a thousand messages a second on one disk.  None is
ever answered early.

A crash at any point leaves either no -H (the -D is removed by
Spool.tidy_temporaries) or the whole message.  `abort()` removes whatever
was written.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mta.errors import SpoolError
from mta.privilege import adopt_directory_owner
from mta.receive.spool_writer import Commit, SpoolWriter
from mta.spool.files import (
    HEADER_TEMP_PREFIX,
    SPOOL_MODE,
    MessageLock,
    os_error,
    take_lock,
    unlink_quietly,
    write_all,
)
from mta.spool.format import DATA_SUFFIX, HEADER_SUFFIX, write_header_file
from mta.spool.syncfs import available as syncfs_available

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from mta.spool.envelope import Envelope
    from mta.spool.store import Spool

SPILL_SIZE = 256 * 1024  # bytes of body kept in memory before it goes to -D


class Spooler:
    """What one receiving process needs to spool messages: the spool, its writer, a few threads.

    The threads only spill large bodies and remove aborted messages; commits go to the writer.
    """

    def __init__(self, spool: Spool, threads: int = 4, sync_method: str = "fsync") -> None:
        """`sync_method`: "syncfs" to commit batches with syncfs(2) where it is available
        (`spool_sync_method`; mta.spool.syncfs), else one fsync per file."""
        self.spool = spool
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="spool")
        use_syncfs = sync_method == "syncfs" and syncfs_available()
        self.writer = SpoolWriter(filesystem=spool.directory / "input" if use_syncfs else None)

    async def run(self, function: Callable[..., object], *args: object) -> object:
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    def new_message(self, message_id: str) -> PendingMessage:
        directory = self.spool.input_directory_for(message_id)
        return PendingMessage(self, message_id, directory)

    def close(self) -> None:
        self.writer.close()
        self.executor.shutdown(wait=True)


class PendingMessage:
    """One message being received: a file-like sink for the body, then commit or abort."""

    def __init__(self, spooler: Spooler, message_id: str, directory: Path) -> None:
        self.spooler = spooler
        self.message_id = message_id
        self.directory = directory
        self.data_path = directory / (message_id + DATA_SUFFIX)  # (a Path: the lock's, for deliveries)
        # The -H file's paths as strings: a pathlib join costs microseconds, three per message.
        self._header_temp = f"{directory}/{HEADER_TEMP_PREFIX}{message_id}"
        self._header_path = f"{directory}/{message_id}{HEADER_SUFFIX}"
        self._parts: list[bytes] = [(message_id + DATA_SUFFIX + "\n").encode()]
        self._buffered = 0
        self._fd: int | None = None
        self.lock: MessageLock | None = None
        self._done = False
        # The message log's first line, when a delivery worker is to write it (smtp_context).
        self.msglog_first: str | None = None
        self._spare_data = False  # -D is a spare file (mta.spool.spare): truncated at commit

    # -- the body sink (sync: called by LocalBodyWriter) -----------------------------------
    def write(self, data: bytes) -> int:
        self._parts.append(data)
        self._buffered += len(data)
        return len(data)

    @property
    def wants_spill(self) -> bool:
        return self._buffered >= SPILL_SIZE

    async def spill(self) -> None:
        """Write what is buffered to -D (creating it), in a worker thread."""
        await self.spooler.run(self._flush_parts)

    # -- worker-thread work -------------------------------------------------------------------
    def _open_data_file(self) -> None:
        fd = self.spooler.spool.spare.take(str(self.data_path))  # a finished message's file, or None
        self._spare_data = fd is not None
        if fd is None:
            try:
                fd = os.open(self.data_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, SPOOL_MODE)
            except OSError as exc:
                raise os_error("create", self.data_path, exc) from exc
        self._fd = fd
        self.lock = MessageLock(self.message_id, fd, self.data_path)
        try:
            take_lock(fd, self.message_id, self.data_path)  # nobody may deliver it before the -H exists
            os.fchmod(fd, SPOOL_MODE)
            adopt_directory_owner(fd, self.directory)  # root's -bs/-bS: the file is mta_user's, as the spool
        except (OSError, SpoolError):
            self._remove_files()
            raise

    def _flush_parts(self) -> None:
        if self._fd is None:
            self._open_data_file()
        data, self._parts, self._buffered = b"".join(self._parts), [], 0
        assert self._fd is not None
        try:
            write_all(self._fd, data)
        except OSError as exc:
            raise os_error("write", self.data_path, exc) from exc

    def write_files(self, header: bytes, sync: bool = True) -> None:
        """In the writer: -D complete and fsynced, then hdr.ID written and fsynced (steps 1, 2).
        `sync` False: not fsynced; the writer syncs the whole file system after the batch."""
        temp = self._header_temp
        try:
            self._flush_parts()
            assert self._fd is not None
            if self._spare_data:  # a spare's old contents end where this message's do
                os.ftruncate(self._fd, os.lseek(self._fd, 0, os.SEEK_CUR))
            if sync:
                os.fsync(self._fd)  # the body is on disk before any -H names it
            fd = self.spooler.spool.spare.take(temp)
            spare = fd is not None
            if fd is None:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, SPOOL_MODE)
            try:
                os.fchmod(fd, SPOOL_MODE)
                adopt_directory_owner(fd, self.directory)
                write_all(fd, header)
                if spare:
                    os.ftruncate(fd, len(header))
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            unlink_quietly(temp)
            raise os_error("write", temp, exc) from exc
        except BaseException:
            unlink_quietly(temp)
            raise

    def install_header(self) -> None:
        """In the writer, after the directory sync: hdr.ID becomes ID-H (step 4)."""
        temp = self._header_temp
        try:
            os.rename(temp, self._header_path)
        except OSError as exc:
            unlink_quietly(temp)
            raise os_error("rename", temp, exc) from exc

    def committed(self) -> None:
        """In the writer, once the rename is durable: the message exists; abort() leaves it be."""
        self._done = True

    @property
    def is_committed(self) -> bool:
        return self._done

    # -- the session's calls ------------------------------------------------------------------
    async def commit(self, envelope: Envelope, after: Callable[[], None] | None = None) -> BaseException | None:
        """Make the message durable and visible (see the module docstring), then run `after`
        (the arrival's log lines) in the writer.  Raises SpoolError, and removes everything,
        if the message could not be spooled: it must then not be acknowledged.  Returns what
        `after` raised, if it did: the message is spooled all the same, and must be accepted."""
        header = write_header_file(envelope)  # a value that cannot be written fails before any I/O
        loop = asyncio.get_running_loop()
        future: asyncio.Future[BaseException | None] = loop.create_future()
        try:
            self.spooler.writer.submit(Commit(self, header, after, future, loop))
        except BaseException:
            await self.abort()
            raise
        cancelled = None
        while True:
            try:
                await asyncio.shield(future)
                break
            except asyncio.CancelledError as exc:
                # The session is being cancelled (a shutdown) while its message is in a batch: let
                # the batch finish first, or abort() could remove -D under a rename of -H.
                cancelled = exc
                if future.done():
                    break
            except BaseException:
                await self.abort()  # nothing, once committed
                raise
        if cancelled is not None:
            if future.done() and future.exception() is not None:
                await self.abort()
            raise cancelled
        self._done = True
        return future.result()

    def release_lock(self) -> None:
        """After commit: let go of the -D lock (for the delivery workers or a queue runner)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None
            self._fd = None

    async def abort(self) -> None:
        """Forget the message: remove every file written so far.  Nothing after commit."""
        if self._done:
            return
        self._done = True
        self._parts = []
        if self._fd is not None:
            await self.spooler.run(self._remove_files)

    def _remove_files(self) -> None:
        for path in (self._header_path, self._header_temp, self.data_path):
            unlink_quietly(path)
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        self._fd = None
