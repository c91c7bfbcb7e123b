"""The spool writer: one thread per receiving process that makes messages durable in batches.

Why one thread and batches: a receiving process may have twenty sessions
finishing DATA at once.  Handing each message to a thread pool cost every
message a thread wake-up, a loop wake-up and a round of lock hand-offs
between sixteen threads (a quarter of the process's CPU went to context
switches), and the threads raced each other for the spool directory's lock.
Here the session queues its message (`SpoolWriter.submit`); the writer takes
everything queued, commits it as one batch, and wakes the event loop once
for the whole batch.  While it works, the next batch gathers.

Durability (`commit_batch`), for every message of a batch, in this order:

1. -D: created with O_EXCL and locked if the body was not spilled already,
   the rest of the body written, fsynced;
2. the -H under its temporary name hdr.ID: written, fsynced;
3. one fsync of the directory: every -D's and hdr.ID's entry is durable
   before any -H can name it;
4. each hdr.ID renamed to ID-H; one more fsync of the directory;
5. only then is the message done: the arrival is logged, and the session
   told, so that it may say 250.

The directory fsyncs of steps 3 and 4 are shared by the whole batch (group
commit), and each covers only renames made before it started.  With
`spool_sync_method = syncfs` (the default on Linux) the fsyncs of steps 1-3
are one syncfs() of the spool's file system, and step 4's another
(mta.spool.syncfs; docs/reliability.md), and the writer pipelines them
(`commit_cycle`): each turn renames the -H of the messages whose files the
last turn made durable, writes the files of the messages queued since, and
syncs both with one syncfs.  Each message still waits for two syncs, in
the order above; under load each sync serves two batches.  A message
that fails at any step is reported failed (the session answers 451 and
removes its files) and takes no further step; the others go on.  A failed
directory fsync (or syncfs) fails every message that needed it.  Nothing is reported
before the batch's last fsync, so no session can acknowledge early.

A crash at any point leaves, for each message, either no -H (its -D and
hdr.ID are removed by Spool.tidy_temporaries) or the whole message.  A
session cancelled (a shutdown) while its message is in a batch waits for
the batch to end before it removes anything (spooler.PendingMessage.commit),
so no -D is removed under an -H being renamed into place.
"""

from __future__ import annotations

import collections
import os
import threading
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

from mta.errors import SpoolError
from mta.spool.files import fsync_directory
from mta.spool.syncfs import syncfs

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from mta.receive.spooler import PendingMessage


class Commit:
    """One message to make durable, and its outcome (`error` None: durable)."""

    __slots__ = ("after", "after_error", "error", "future", "header", "loop", "message")

    def __init__(self, message: PendingMessage, header: bytes, after: Callable[[], None] | None,
                 future: asyncio.Future[BaseException | None] | None,
                 loop: asyncio.AbstractEventLoop | None) -> None:
        self.message = message
        self.header = header
        self.after = after  # the arrival's log lines: run in the writer once the message is durable
        self.future = future  # the session waits on it; settled on its loop, once per batch
        self.loop = loop
        self.error: BaseException | None = None
        # `after` failed once the message was durable: reported, but the message is accepted (a
        # 4xx now would have the client send it again, and both copies would be delivered).
        self.after_error: BaseException | None = None


def commit_batch(batch: list[Commit], helpers: Executor | None = None, parallel: int = 1,
                 filesystem: int | None = None) -> None:
    """Make every message of `batch` durable (see the module docstring); a message that cannot be
    has its `error` set.  Never raises for one message's failure.

    With `filesystem` (a descriptor on the spool's file system, kept open by the caller), one
    syncfs() of it stands for the fsyncs of steps 1 to 3, and another for step 4's: two turns of
    `commit_cycle` for the whole batch (mta.spool.syncfs says why).  Without it, steps 1 and 2
    fsync each file, for up to `parallel` messages at once (this thread and `parallel` - 1 of
    `helpers`): each fsync of a new file waits for the disk, and a disk takes several requests
    at once far faster than one after another."""
    if filesystem is not None:
        _settled, durable = commit_cycle([], batch, filesystem)
        commit_cycle(durable, [], filesystem)
        return
    pending = collections.deque(batch)

    def write_files() -> None:
        while True:
            try:
                commit = pending.popleft()
            except IndexError:
                return
            try:
                commit.message.write_files(commit.header)  # steps 1 and 2
            except Exception as exc:
                commit.error = exc

    started = [helpers.submit(write_files) for _ in range(min(parallel, len(batch)) - 1)] if helpers else []
    write_files()
    for future in started:
        future.result()
    written: dict[Path, list[Commit]] = {}
    for commit in batch:
        if commit.error is None:
            written.setdefault(commit.message.directory, []).append(commit)
    renamed: dict[Path, list[Commit]] = {}
    for directory, commits in written.items():
        if not _sync(directory, commits):  # step 3
            continue
        for commit in commits:
            try:
                commit.message.install_header()  # step 4
            except Exception as exc:
                commit.error = exc
                continue
            renamed.setdefault(directory, []).append(commit)
    for directory, commits in renamed.items():
        if _sync(directory, commits):
            for commit in commits:
                _committed(commit)


def commit_cycle(durable: list[Commit], batch: list[Commit], filesystem: int) -> tuple[list[Commit], list[Commit]]:
    """One turn of the syncfs pipeline: rename the -H of each message of `durable` (whose files
    the previous turn's syncfs made durable), write the files of each message of `batch`, then
    one syncfs() of `filesystem` for both.  Returns the commits settled by this turn (committed,
    or failed) and those of `batch` whose files are now durable, to be renamed by the next turn.

    So under load each syncfs serves two batches, the renames of one and the files of the next,
    and a message is acknowledged after two, as with a syncfs before and one after its batch's
    renames.  A failed syncfs fails every message it was for (its error names no file)."""
    done: list[Commit] = []
    renamed: list[Commit] = []
    for commit in durable:
        try:
            commit.message.install_header()  # step 4
        except Exception as exc:
            commit.error = exc
            done.append(commit)
            continue
        renamed.append(commit)
    written: list[Commit] = []
    for commit in batch:
        try:
            commit.message.write_files(commit.header, sync=False)  # steps 1 and 2, not synced
        except Exception as exc:
            commit.error = exc
            done.append(commit)
            continue
        written.append(commit)
    if renamed or written:
        try:
            syncfs(filesystem)
        except OSError as exc:
            error = SpoolError(f"spool file system sync failed: {exc.strerror or exc}", exc.errno or 0)
            for commit in renamed + written:
                commit.error = error
            return done + renamed + written, []
    for commit in renamed:
        _committed(commit)
    return done + renamed, written


def _committed(commit: Commit) -> None:
    commit.message.committed()  # on disk: from here on an error must not remove it
    if commit.after is not None:
        try:
            commit.after()
        except Exception as exc:
            commit.after_error = exc


def _sync(directory: Path, commits: list[Commit]) -> bool:
    """fsync `directory` for `commits`; on failure each of them fails."""
    if not commits:
        return False
    try:
        fsync_directory(directory)
    except (OSError, SpoolError) as exc:
        for commit in commits:
            commit.error = exc
        return False
    return True


class SpoolWriter:
    """The thread that runs `commit_batch` on whatever sessions have queued."""

    def __init__(self, name: str = "spool-writer", parallel: int = 4, filesystem: Path | None = None) -> None:
        """`filesystem`: a directory of the spool, whose file system the writer syncs with syncfs()
        once before and once after a batch's renames instead of fsyncing each file."""
        self._filesystem: int | None = None
        if filesystem is not None:
            # One descriptor for the writer's life: syncfs reports a write-back error that happened
            # since the descriptor was opened or last synced, so none between batches is missed.
            self._filesystem = os.open(filesystem, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            parallel = 1  # nothing to wait for per file: no helper threads
        self._parallel = parallel
        self._helpers = ThreadPoolExecutor(max_workers=parallel - 1, thread_name_prefix=name) if parallel > 1 else None
        self._lock = threading.Lock()
        self._wanted = threading.Condition(self._lock)
        self._queue: list[Commit] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, commit: Commit) -> None:
        """Queue `commit` (from the event loop: this never waits for the disk).  Its future is
        settled, on its loop, when its batch is done.  SpoolError if the writer is closed."""
        with self._lock:
            if self._closed:
                raise SpoolError("the spool writer has been closed")
            self._queue.append(commit)
            if len(self._queue) == 1:
                self._wanted.notify()  # an idle writer waits; a busy one takes the queue when done

    def close(self) -> None:
        """Commit what is queued, then end the thread."""
        with self._lock:
            self._closed = True
            self._wanted.notify()
        self._thread.join()
        if self._helpers is not None:
            self._helpers.shutdown(wait=True)
        if self._filesystem is not None:
            os.close(self._filesystem)
            self._filesystem = None

    def _run(self) -> None:
        if self._filesystem is not None:
            self._run_pipeline(self._filesystem)
            return
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._wanted.wait()
                if not self._queue:
                    return
                batch, self._queue = self._queue, []
            try:
                commit_batch(batch, self._helpers, self._parallel, self._filesystem)
            except BaseException as exc:  # a bug: fail what is undecided, and keep serving
                for commit in batch:
                    if commit.error is None and not commit.message.is_committed:
                        commit.error = exc
            _report(batch)

    def _run_pipeline(self, filesystem: int) -> None:
        """commit_cycle, turn after turn, while there is anything queued or left to rename."""
        durable: list[Commit] = []
        while True:
            with self._lock:
                while not self._queue and not durable and not self._closed:
                    self._wanted.wait()
                if not self._queue and not durable:
                    return
                batch, self._queue = self._queue, []
            try:
                done, durable = commit_cycle(durable, batch, filesystem)
            except BaseException as exc:  # a bug: fail what is undecided, and keep serving
                done, durable = durable + batch, []
                for commit in done:
                    if commit.error is None and not commit.message.is_committed:
                        commit.error = exc
            _report(done)


def _report(batch: list[Commit]) -> None:
    """Wake each loop once for its sessions' commits."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Commit]] = {}
    for commit in batch:
        if commit.loop is not None:
            by_loop.setdefault(commit.loop, []).append(commit)
    for loop, commits in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, commits)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more


def _settle(commits: list[Commit]) -> None:
    for commit in commits:
        future = commit.future
        if future is None or future.done():
            continue
        if commit.error is None:
            future.set_result(commit.after_error)
        else:
            future.set_exception(commit.error)
