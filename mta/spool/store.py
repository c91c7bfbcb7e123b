"""The spool directory: every file operation on a queued message.

Layout (Exim's), under `spool_directory`:

    input/ID-D        body; first line "ID-D"; its fcntl lock = "message busy"
    input/ID-H        envelope and headers; a message exists iff this exists
    input/ID-J        journal of addresses delivered in the current attempt
    input/hdr.ID      an -H being written (temporary)
    msglog/ID         per-message log;  msglog.OLD/ID when preserved
    db/  log/         hints databases, log files (owned by other modules)

With split_spool_directory, input/ and msglog/ have one sub-directory per
base-62 digit, chosen by the 6th character of the id; a message is still
found in the other place (left there before the setting changed).

Durability: what a crash at each step leaves ("dir" = fsync of the
directory; the writing of a new message is in mta.spool.writer):

  commit   fsync ID-D; hdr.ID, fsync;   -> before the rename: ID-D (+ hdr.ID),
           rename to ID-H; dir             not a message; tidied.  After: the
                                           whole message
  rewrite  hdr.ID, fsync, rename, dir   -> the old ID-H or the new one
  journal  append "address\n", fsync,   -> a torn last line, ignored (see
           dir if the file is new          mta.spool.format.read_journal)
  retire   msglog; unlink ID-H, dir     -> as remove: a delivery that completes
                                           every recipient writes no -J (see
                                           retire_message)
  remove   msglog; unlink ID-H, dir;    -> no ID-H: no message; leftovers
           then ID-J, ID-D                 are tidied (by each queue run)

Only the holder of a message's lock rewrites its -H or touches its -J; the
methods that do so check that this Spool holds the lock (ValueError if not:
that is a bug in the caller, not a condition of the spool).

Errors: every OSError becomes SpoolError naming the file and the action;
NoSuchMessage (a SpoolError) when the message is not (or no longer) there;
LockedError when another process (or another lock in this one) holds the
lock.  Passing something that is not a message id is a programmer error
(ValueError); it also guarantees that an id never names a file outside the
spool.  The methods do blocking file I/O (fsync): the daemon calls them from
a worker thread, never on its event loop.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from mta.errors import LockedError, SpoolError, SpoolFormatError
from mta.privilege import adopt_directory_owner
from mta.spool.envelope import Envelope
from mta.spool.files import (
    HEADER_TEMP_PREFIX,
    SPOOL_MODE,
    MessageLock,
    NoSuchMessage,
    file_exists,
    fsync_directory,
    install_header,
    lock_is_held,
    lock_length,
    make_directory,
    open_and_lock,
    open_for_reading,
    os_error,
    read_regular_file,
    unlink,
    unlink_quietly,
    write_all,
)
from mta.spool.format import (
    DATA_SUFFIX,
    HEADER_SUFFIX,
    JOURNAL_SUFFIX,
    format_journal_line,
    read_header_file,
    read_journal,
    write_header_file,
)
from mta.spool.ids import BASE62_DIGITS, check_message_id, id_split_char, is_message_id
from mta.spool.listing import directory_names, list_messages
from mta.spool.spare import SparePool
from mta.spool.writer import MessageWriter

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

__all__ = ["MessageLock", "MessageWriter", "NoSuchMessage", "Spool"]

INPUT = "input"
MSGLOG = "msglog"
MSGLOG_OLD = "msglog.OLD"
SUBDIRECTORIES = (INPUT, MSGLOG, "db", "log")


class Spool:
    """All file operations on one spool directory."""

    def __init__(self, spool_directory: str | os.PathLike[str], split: bool = False, spare_files: int = 0) -> None:
        self.directory = Path(spool_directory)
        self.split = split
        # Finished messages' files kept for new ones (spool_spare_files; mta.spool.spare).
        self.spare = SparePool(str(self.directory), spare_files)
        # Locks this object holds, by message id (for the checks that only
        # the lock holder rewrites -H or touches -J).
        self._held: dict[str, MessageLock] = {}
        self._retired: set[str] = set()  # held messages whose msglog and -H retire_message removed
        self._made: dict[str, Path] = {}  # input directories known to exist, by split character
        self._msglog_made: set[Path] = set()  # msglog directories known to exist
        self._place_cache: dict[tuple[str, str], tuple[Path, Path]] = {}
        self._name_cache: dict[tuple[str, str], tuple[str, str]] = {}
        # Held messages known to have no -J: read_journal found none, and only the lock's holder
        # (this process) makes one.  remove_message then need not unlink it.
        self._no_journal: set[str] = set()

    # -- layout ------------------------------------------------------------

    def ensure_directories(self) -> None:
        """Create input/, msglog/, db/ and log/ (mode 0750) if missing and
        check that the spool can be written."""
        for name in SUBDIRECTORIES:
            make_directory(self.directory / name)
        for name in (INPUT, MSGLOG):
            if not os.access(self.directory / name, os.W_OK | os.X_OK):
                raise SpoolError(f"spool directory {self.directory / name} is not writable")

    def _places(self, area: str, message_id: str) -> tuple[Path, Path]:
        """(where a message's files go now, the other place it may be)."""
        key = (area, id_split_char(message_id))
        places = self._place_cache.get(key)
        if places is None:  # (made once: a delivery asks about six times per message)
            flat = self.directory / area
            split = flat / key[1]
            places = self._place_cache[key] = (split, flat) if self.split else (flat, split)
        return places

    def _place_names(self, area: str, message_id: str) -> tuple[str, str]:
        """`_places` as strings: a delivery builds its file names from them by concatenation
        (a `pathlib` join costs ten times as much, and a relayed message took about ten)."""
        key = (area, id_split_char(message_id))
        names = self._name_cache.get(key)
        if names is None:
            first, second = self._places(area, message_id)
            names = self._name_cache[key] = (str(first), str(second))
        return names

    def message_directory(self, message_id: str) -> Path:
        """The input directory holding the message (by its -H, else its -D)."""
        return Path(self._message_directory(message_id))

    def _message_directory(self, message_id: str) -> str:
        check_message_id(message_id)
        places = self._place_names(INPUT, message_id)
        for suffix in (HEADER_SUFFIX, DATA_SUFFIX):
            for directory in places:
                if file_exists(f"{directory}/{message_id}{suffix}"):
                    return directory
        raise NoSuchMessage(f"message {message_id} is not on the spool")

    def _held_directory(self, message_id: str) -> str:
        """`message_directory`, without looking when this process holds the message's lock: its
        -D is the lock, so the message is where the lock was taken (a delivery asks five times).
        For the readers below, which report a missing file as NoSuchMessage either way."""
        lock = self._held.get(message_id)
        if lock is not None and lock.held:
            return lock.directory
        return self._message_directory(message_id)

    def file_path(self, message_id: str, suffix: str) -> Path:
        """Where the message's -H, -D or -J file is (NoSuchMessage if neither its -H nor
        its -D is on the spool).  For reading it as it is (`mta -Mvh`)."""
        return self.message_directory(message_id) / (message_id + suffix)

    def exists(self, message_id: str) -> bool:
        """True if the message's -H exists (the message is complete)."""
        check_message_id(message_id)
        return any(file_exists(d / (message_id + HEADER_SUFFIX)) for d in self._places(INPUT, message_id))

    # -- creating ----------------------------------------------------------

    def new_message(self, message_id: str) -> MessageWriter:
        """Start spooling a new message (see MessageWriter)."""
        check_message_id(message_id)
        if message_id in self._held:
            raise LockedError(f"message {message_id} is already locked by this process")
        directory = self._places(INPUT, message_id)[0]
        make_directory(directory)
        writer = MessageWriter(message_id, directory, self._forget_lock)
        self._held[message_id] = writer.lock
        return writer

    def input_directory_for(self, message_id: str) -> Path:
        """The directory a new message's files go in (made if missing)."""
        check_message_id(message_id)
        # Once per directory, not per message: a receiver asks for every message it takes.
        key = id_split_char(message_id) if self.split else ""
        directory = self._made.get(key)
        if directory is None:
            directory = self._places(INPUT, message_id)[0]
            make_directory(directory)
            self._made[key] = directory
        return directory

    # -- locks -------------------------------------------------------------

    def lock(self, message_id: str) -> MessageLock:
        """Lock a message for delivery or modification.  Raises LockedError
        if another process (or another lock in this one) has it, and
        NoSuchMessage if it is gone."""
        if message_id in self._held:
            raise LockedError(f"message {message_id} is already locked by this process")
        path = f"{self._message_directory(message_id)}/{message_id}{DATA_SUFFIX}"
        lock = self._lock_path(message_id, path)
        self._held[message_id] = lock
        return lock

    def _lock_path(self, message_id: str, path: Path | str) -> MessageLock:
        return open_and_lock(message_id, path, self._forget_lock)

    def _forget_lock(self, lock: MessageLock) -> None:
        if self._held.get(lock.message_id) is lock:
            del self._held[lock.message_id]
            self._retired.discard(lock.message_id)
            self._no_journal.discard(lock.message_id)

    def is_locked(self, message_id: str) -> bool:
        """True if any process (this one included) holds the message's lock."""
        path = f"{self._held_directory(message_id)}/{message_id}{DATA_SUFFIX}"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NoSuchMessage(f"message {message_id} is not on the spool") from None
        except OSError as exc:
            raise os_error("open", path, exc) from exc
        try:
            return lock_is_held(fd, message_id, path)
        finally:
            os.close(fd)

    def _held_lock(self, message_id: str, action: str) -> MessageLock:
        lock = self._held.get(message_id)
        if lock is None or not lock.held:
            raise ValueError(f"{action} needs the lock on message {message_id}")
        return lock

    # -- reading and rewriting ---------------------------------------------

    def read_envelope(self, message_id: str) -> Envelope:
        """Read and strictly parse the message's -H (SpoolFormatError if bad)."""
        path = f"{self._held_directory(message_id)}/{message_id}{HEADER_SUFFIX}"
        try:
            data = read_regular_file(path)
        except FileNotFoundError:
            raise NoSuchMessage(f"message {message_id} is not on the spool") from None
        except OSError as exc:
            raise os_error("read", path, exc) from exc
        return read_header_file(data, message_id)

    def rewrite_envelope(self, envelope: Envelope) -> None:
        """Replace the -H atomically.  The caller must hold the message's lock
        (Exim's rule: only the process working on a message rewrites it)."""
        lock = self._held_lock(envelope.message_id, "rewrite_envelope")
        header = write_header_file(envelope)
        install_header(Path(lock.directory), envelope.message_id, header)

    def open_body(self, message_id: str) -> BinaryIO:
        """The -D file, opened for reading and positioned at the body."""
        path = f"{self._held_directory(message_id)}/{message_id}{DATA_SUFFIX}"
        try:
            body = open(open_for_reading(path), "rb")  # noqa: SIM115 - returned to the caller
        except FileNotFoundError:
            raise NoSuchMessage(f"message {message_id} is not on the spool") from None
        except OSError as exc:
            raise os_error("open", path, exc) from exc
        try:
            first = body.readline(lock_length(message_id))
        except OSError as exc:
            body.close()
            raise os_error("read", path, exc) from exc
        if first != (message_id + DATA_SUFFIX + "\n").encode():
            body.close()
            raise SpoolFormatError(f"spool file {path}: first line is {first[:40]!r}, not {message_id}-D")
        return body

    def held_body(self, message_id: str, limit: int) -> bytes | None:
        """The body of a message whose lock this process holds, read through the lock's
        descriptor in one pread (no open of -D), its first line checked as open_body checks it.
        None when the body is over `limit` bytes or the lock is not held here: open_body then."""
        lock = self._held.get(message_id)
        if lock is None or not lock.held:
            return None
        start = lock_length(message_id)
        try:
            size = os.fstat(lock.fd).st_size
            if size - start > limit:
                return None
            data = os.pread(lock.fd, size, 0)
        except OSError as exc:
            raise os_error("read", lock.path, exc) from exc
        if data[:start] != (message_id + DATA_SUFFIX + "\n").encode():
            raise SpoolFormatError(f"spool file {lock.path}: first line is {data[:40]!r}, not {message_id}-D")
        return data[start:]

    def body_size(self, message_id: str) -> int:
        """Bytes of body in -D (the file less its first line).  Of a held message, by an fstat of
        the lock's descriptor (the -D itself, without looking its name up)."""
        lock = self._held.get(message_id)
        path = f"{self._held_directory(message_id)}/{message_id}{DATA_SUFFIX}"
        try:
            info = os.fstat(lock.fd) if lock is not None and lock.held else os.stat(path)
            size = info.st_size - lock_length(message_id)
        except FileNotFoundError:
            raise NoSuchMessage(f"message {message_id} is not on the spool") from None
        except OSError as exc:
            raise os_error("stat", path, exc) from exc
        if size < 0:
            raise SpoolFormatError(f"spool file {path} is shorter than its first line")
        return size

    # -- journal -----------------------------------------------------------

    def append_journal(self, message_id: str, address: str, *more: str) -> None:
        """Record a successful delivery; durable when this returns, so that a
        crash can never lead to delivering to `address` again.  Needs the lock.

        `more` are further names of the same delivery (the recipient as the
        -H spells it, besides the routing key): they go in the same write()
        and fsync, after `address`, so a torn write can lose only them,
        never the line that crash safety rests on."""
        lock = self._held_lock(message_id, "append_journal")
        line = b"".join(format_journal_line(a) for a in (address, *more))
        directory = lock.directory
        path = f"{directory}/{message_id}{JOURNAL_SUFFIX}"
        self._no_journal.discard(message_id)
        created = False
        try:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                fd = os.open(path, flags, SPOOL_MODE)
                adopt_directory_owner(fd, directory)
                created = True
            try:
                write_all(fd, line)  # one write(): a crash tears at most this line
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise os_error("journal write", path, exc) from exc
        if created:
            fsync_directory(directory)  # a new file's entry must survive too

    def read_journal(self, message_id: str) -> list[str]:
        """Addresses delivered in an interrupted attempt ([] if no -J).

        Run as root, it also gives the -J to the directory's owner: a crash
        between append_journal's create and its fchown leaves a -J of root's
        that mta_user (the daemon's remote deliveries) cannot append to, and
        each attempt would then deliver its remote recipients again and fail
        to journal them, for ever."""
        directory = self._held_directory(message_id)
        path = f"{directory}/{message_id}{JOURNAL_SUFFIX}"
        try:
            fd = open_for_reading(path)
        except FileNotFoundError:
            lock = self._held.get(message_id)
            if lock is not None and lock.held:
                self._no_journal.add(message_id)
            return []
        except OSError as exc:
            raise os_error("read", path, exc) from exc
        try:
            with os.fdopen(fd, "rb") as journal:
                adopt_directory_owner(journal.fileno(), directory)
                data = journal.read()
        except OSError as exc:
            raise os_error("read", path, exc) from exc
        return read_journal(data)

    def remove_journal(self, message_id: str) -> None:
        """Drop -J once its addresses are in a rewritten -H.  Needs the lock."""
        lock = self._held_lock(message_id, "remove_journal")
        if message_id not in self._no_journal:
            unlink(f"{lock.directory}/{message_id}{JOURNAL_SUFFIX}")

    # -- msglog ------------------------------------------------------------

    def _msglog_path(self, message_id: str) -> Path:
        check_message_id(message_id)
        places = self._places(MSGLOG, message_id)
        for directory in places:
            if file_exists(directory / message_id):
                return directory / message_id
        return places[0] / message_id

    def msglog_path(self, message_id: str) -> Path:
        """Where the message log is, or would be made (`mta -Mvl`)."""
        return self._msglog_path(message_id)

    def append_msglog(self, message_id: str, line: str, new: bool = False, first: str | None = None) -> None:
        """Append one line (already timestamped by the caller).  Not fsynced:
        like Exim's, the msglog is a convenience copy of log lines.  `new`: the message
        has just arrived, so its msglog can only be where a new one goes (no need to look).
        `first`: a line to put before `line` if this makes the msglog (it was empty)."""
        text = line[:-1] if line.endswith("\n") else line
        for checked in (text, first or ""):
            if "\n" in checked or "\r" in checked or "\0" in checked:
                raise SpoolFormatError(f"msglog line contains CR, LF or NUL: {checked!r}")
        if new:
            check_message_id(message_id)
            directory = self._places(MSGLOG, message_id)[0]
            path = directory / message_id
            if directory not in self._msglog_made:  # (once, not at every arrival)
                make_directory(directory)
                self._msglog_made.add(directory)
        else:
            path = self._msglog_path(message_id)
            make_directory(path.parent)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, SPOOL_MODE)
            try:
                if first is not None or os.geteuid() == 0:
                    info = os.fstat(fd)
                    if os.geteuid() == 0 and info.st_uid == 0:
                        adopt_directory_owner(fd, path.parent)
                    if first is not None and info.st_size == 0:
                        text = first + "\n" + text
                write_all(fd, (text + "\n").encode("utf-8", "surrogateescape"))
            finally:
                os.close(fd)
        except OSError as exc:
            raise os_error("msglog write", path, exc) from exc

    def read_msglog(self, message_id: str) -> str | None:
        """The message log's text, or None if there is none."""
        path = self._msglog_path(message_id)
        try:
            return read_regular_file(path).decode("utf-8", "surrogateescape")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise os_error("read", path, exc) from exc

    def remove_msglog(self, message_id: str, preserve: bool = False) -> None:
        """Delete the msglog, or with `preserve` (preserve_message_logs) move
        it to msglog.OLD/ID."""
        if not preserve:
            # Where it is looked for, in that order, with the unlinks themselves: no stat first
            # (a delivery worker removes a message at every completed delivery).
            check_message_id(message_id)
            first, second = self._place_names(MSGLOG, message_id)
            if not unlink(f"{first}/{message_id}"):
                unlink(f"{second}/{message_id}")
            return
        path = self._msglog_path(message_id)
        if not file_exists(path):
            return
        old = self.directory / MSGLOG_OLD
        make_directory(old)
        try:
            os.replace(path, old / message_id)
        except OSError as exc:
            raise os_error("rename", path, exc) from exc

    # -- listing, removing, tidying ----------------------------------------

    def _input_directories(self) -> list[Path]:
        """input/ and its existing single-character sub-directories."""
        top = self.directory / INPUT
        found = [top]
        try:
            with os.scandir(top) as entries:
                for entry in entries:
                    is_subdirectory = len(entry.name) == 1 and entry.name in BASE62_DIGITS
                    if is_subdirectory and entry.is_dir(follow_symlinks=False):
                        found.append(Path(entry.path))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise os_error("directory read", top, exc) from exc
        return found

    def list_message_ids(self, ordered: bool = True) -> list[str]:
        """Every complete message (its -H exists), oldest first, whether in
        input/ or in its split sub-directory.  Temporaries, -D files without
        -H (unfinished), and files in a sub-directory that does not match
        their id (unreachable) are not listed.

        With `ordered` False they come in the order the directories return
        them (input/ first, then its sub-directories): Exim's "unsorted"
        -bpr, which saves the sort on a very large queue."""
        return [message_id for message_id, _, _ in list_messages(self, ordered)]

    def input_directories(self) -> list[Path]:
        """input/ and its existing single-character sub-directories (split_spool_directory),
        for a queue run that takes them one at a time (mta.spool.listing)."""
        return self._input_directories()

    def remove_message(self, message_id: str, preserve_msglog: bool = False) -> None:
        """Remove every file of a message.  Uses this process's lock if it
        holds one, else takes it (LockedError if another process has it).

        Order: the msglog first (as Exim does), so that a crash can never
        leave one without its message; then -H, made durable, so that from
        then on there is no message (a crash leaves only leftovers that
        tidy_temporaries removes, never an -H without its -D, and never an
        -H that comes back without the -J that records deliveries already
        made); then -J, and -D last because it carries the lock (with
        spool_spare_files, -H and -D go into spare/ instead: -D once the lock
        is released; mta.spool.spare).  (-J is not
        unlinked when this process looked for it under the lock it still holds
        and found none: only the lock's holder makes one.)"""
        taken: MessageLock | None = None
        lock = self._held.get(message_id)
        if lock is None:
            try:
                lock = taken = self.lock(message_id)
            except NoSuchMessage:
                lock = None  # no -D: nobody can be working on it; clear what is left
        try:
            directory = lock.directory if lock is not None else self._message_directory(message_id)
            if message_id not in self._retired:  # (else done, under the lock still held)
                self._retire(directory, message_id, preserve_msglog)
            if message_id not in self._no_journal:
                unlink(f"{directory}/{message_id}{JOURNAL_SUFFIX}")
            unlink(f"{directory}/{HEADER_TEMP_PREFIX}{message_id}")
            data = f"{directory}/{message_id}{DATA_SUFFIX}"
            if lock is not None and lock.held and self.spare.slots:
                # Kept as a spare only once the lock is let go: a receiver taking it must find
                # it unlocked.  Meanwhile it is a -D without -H, which nothing reads.
                size = os.fstat(lock.fd).st_size
                lock.after_release = lambda: self._spare_data_file(data, size)
            else:
                unlink(data)
        finally:
            if taken is not None:
                taken.release()

    def retire_message(self, message_id: str) -> None:
        """The first half of remove_message, for a delivery that has just completed every
        recipient: the msglog, then -H, made durable.  From then on the message does not exist
        and is never delivered again, which is what -J would have ensured (no -J is written for
        such a delivery); remove_message later removes the rest.  Needs the lock."""
        lock = self._held_lock(message_id, "retire_message")
        self._retire(lock.directory, message_id, False)
        self._retired.add(message_id)

    def _retire(self, directory: str, message_id: str, preserve_msglog: bool) -> None:
        self.remove_msglog(message_id, preserve=preserve_msglog)
        header = f"{directory}/{message_id}{HEADER_SUFFIX}"
        # Renamed into spare/ or unlinked: either way gone from input/ once the directory is synced.
        if (self.spare.slots and self.spare.put(header)) or unlink(header):
            fsync_directory(directory)

    def _spare_data_file(self, path: str, size: int) -> None:
        """After the lock on a removed message's -D is released: keep the file as a spare, or
        unlink it.  A -D that cannot be removed is left to tidy_temporaries, as after a crash."""
        if not self.spare.put(path, size):
            unlink_quietly(Path(path))

    def tidy_temporaries(self, max_age: float, now: float | None = None) -> list[Path]:
        """Remove leftovers of crashes older than `max_age` seconds: hdr.ID
        temporaries, -D files without -H (a reception that never committed),
        and -J files of messages that are gone.  A file whose message is
        locked is being worked on and is left alone.  Returns what was
        removed."""
        now = time.time() if now is None else now
        removed: list[Path] = []
        for directory in self._input_directories():
            # The names are taken one at a time (a big queue's 200,000 are never all held), and
            # a -D or -J beside its -H is a message, not a leftover: passed over for one stat,
            # without its lock or its age.
            here: list[Path] = []
            for name in directory_names(directory):
                message_id, kind = _classify(name)
                if message_id is None or kind == HEADER_SUFFIX:
                    continue
                if kind != HEADER_TEMP_PREFIX and file_exists(directory / (message_id + HEADER_SUFFIX)):
                    continue
                path = directory / name
                try:
                    if now - path.stat().st_mtime < max_age:
                        continue
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise os_error("stat", path, exc) from exc
                here.extend(self._tidy_one(directory, message_id, kind))
            removed.extend(sorted(here))
        return removed

    def _tidy_one(self, directory: Path, message_id: str, kind: str) -> list[Path]:
        data = directory / (message_id + DATA_SUFFIX)
        header = directory / (message_id + HEADER_SUFFIX)
        targets = {
            HEADER_TEMP_PREFIX: [directory / (HEADER_TEMP_PREFIX + message_id)],
            DATA_SUFFIX: [data, directory / (message_id + JOURNAL_SUFFIX)],
            JOURNAL_SUFFIX: [directory / (message_id + JOURNAL_SUFFIX)],
        }[kind]
        if message_id in self._held:
            return []
        try:
            lock: MessageLock | None = self._lock_path(message_id, data)
        except (LockedError, NoSuchMessage):
            if file_exists(data):
                return []  # locked: someone is working on it
            lock = None  # no -D at all: nobody can hold the message
        try:
            # Decide only while holding the lock: a commit may have renamed
            # the -H into place just before we took it.
            if kind != HEADER_TEMP_PREFIX and file_exists(header):
                return []
            if kind == JOURNAL_SUFFIX and file_exists(data):
                return []
            return [path for path in targets if unlink(path)]
        finally:
            if lock is not None:
                lock.release()


def _classify(name: str) -> tuple[str | None, str]:
    """(message id, kind) for spool file names; (None, "") for others."""
    if name.startswith(HEADER_TEMP_PREFIX) and is_message_id(name[len(HEADER_TEMP_PREFIX) :]):
        return name[len(HEADER_TEMP_PREFIX) :], HEADER_TEMP_PREFIX
    for suffix in (HEADER_SUFFIX, DATA_SUFFIX, JOURNAL_SUFFIX):
        if name.endswith(suffix) and is_message_id(name[: -len(suffix)]):
            return name[: -len(suffix)], suffix
    return None, ""
