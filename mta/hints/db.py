"""LMDB hints databases: ``<spool>/db/<name>``, shared by every mta process.

Public API::

    db = HintsDb(db_directory, "ratelimit", panic=logger.panic)
    db.get(key) -> bytes | None
    db.put(key, value)
    db.delete(key) -> bool
    db.update(key, change) -> result      # read, change, write: one write transaction
    db.get_many(keys) -> {key: value}     # one read transaction; absent keys left out
    db.update_many(keys, change) -> result   # several keys read, changed, written at once
    db.items(prefix=b"") -> list[(key, value)]
    db.get_record(key, decode) -> record | None   # invalid records are dropped
    db.close()
    hints_key(*parts) -> bytes            # THE way to make a key from network data

Each database is one LMDB environment in a single file (``<spool>/db/ratelimit``,
with ``ratelimit-lock`` beside it), opened on first use.  LMDB lets many
processes read and write one file at once (the daemon's receiving processes,
delivery workers, queue runners, admin tools): a write transaction holds a
lock across processes, so `update` is an atomic read-modify-write.

Durability and errors: a hints database only says *when* to try something,
never *whether*; the spool is the truth.  So a database that is missing is
created, and one that is not an LMDB file, has a bad header, was truncated,
or makes LMDB report corruption, is removed and created again, with a line
in the panic log.  A record that does not decode (`get_record`) is treated as
absent and deleted.  Only when the database cannot be made at all (the
directory is not writable, say) does an operation raise `HintsError`; the
caller decides what that means (the ACL ratelimit condition defers, as
Exim's does).

Security: keys built from network data (a sender address, a HELO name, an
ETRN argument) must come from `hints_key`, which escapes every byte outside
printable ASCII and hashes what would be too long, so that no client can
make a key that LMDB refuses or that looks like another kind of record in a
dump.  Values read back are untrusted: their decoders validate sizes and
types (CVE-2025-67896 was a length field read back from a hints database and
used as an array bound).

Concurrency inside a process: LMDB allows one open environment per file
and process (its fcntl locks belong to the process), so every `HintsDb` of
one path shares one handle, whose lock serialises their operations; they
may be used from the threads of ``asyncio.to_thread``.  Calls block (disk
I/O): from an event loop, run them in a thread.  An environment inherited
across fork is not used by the child (LMDB forbids it): the child closes
its copy, which touches only the child's own reader slots and locks, and
opens its own.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import threading
from collections.abc import Callable

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypeVar

    import lmdb

    _T = TypeVar("_T")
    _R = TypeVar("_R")

# The longest key kept readable; LMDB's own limit is 511 bytes.
MAX_KEY_BYTES = 400
# Start small (the file is sparse anyway) and double when full, up to the cap.
_INITIAL_MAP_SIZE = 16 * 1024 * 1024
_MAX_MAP_SIZE = 4 * 1024 * 1024 * 1024
# Every LMDB data file starts with two meta pages; the first holds the magic and
# version at offset 16 (after the page header) on the 64-bit layout LMDB uses here.
_META_MAGIC = struct.pack("<II", 0xBEEFC0DE, 1)
_META_MAGIC_OFFSET = 16
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_KEY_SAFE = frozenset(range(0x21, 0x7F)) - {ord("%")}
_KEY_UNSAFE = re.compile(rb"[^\x21-\x24\x26-\x7e]")  # a byte not in _KEY_SAFE


class HintsError(Exception):
    """The database cannot be opened or written even after recreating it."""


def hints_key(*parts: str) -> bytes:
    """A key from `parts` joined with ``/``: the one helper for keys that contain network data.

    Bytes outside printable ASCII, space and ``%`` become ``%XX``, so a key is
    one printable word whatever a client sent.  A key longer than
    MAX_KEY_BYTES keeps its first 64 bytes and ends with ``#`` and the
    SHA-256 of the whole, so it stays unique and within LMDB's limit.
    """
    raw = "/".join(parts).encode("utf-8", "surrogateescape")
    if len(raw) <= MAX_KEY_BYTES and not _KEY_UNSAFE.search(raw):
        return raw  # the usual key, printable already (one search in C, not a Python step per byte)
    out = bytearray()
    for byte in raw:
        if byte in _KEY_SAFE:
            out.append(byte)
        else:
            out += b"%%%02X" % byte
    if len(out) > MAX_KEY_BYTES:
        digest = hashlib.sha256(raw).hexdigest().encode("ascii")
        return bytes(out[:64]) + b"#" + digest
    return bytes(out)


class _Handle:
    """The one open environment of a database file in this process."""

    def __init__(self, map_size: int, sync: bool) -> None:
        self.sync = sync
        self.lock = threading.Lock()
        self.env: lmdb.Environment | None = None
        self.pid = 0
        self.inode: tuple[int, int] | None = None
        # The file LMDB has mapped, open for the checks before each use (a pread and an fstat
        # instead of an open, a read and a close of the path, and a second stat of it).
        self.fd: int | None = None
        self.map_size = map_size


_HANDLES: dict[str, _Handle] = {}
_HANDLES_LOCK = threading.Lock()
# This process's id, kept up to date across fork (below): os.getpid() is a system call, and every
# use of a database asks whether its environment was inherited.
_PID = os.getpid()


def _handle_for(path: str, map_size: int, sync: bool) -> _Handle:
    with _HANDLES_LOCK:
        handle = _HANDLES.get(path)
        if handle is None:
            handle = _HANDLES[path] = _Handle(map_size, sync)
        return handle


def _after_fork_in_child() -> None:
    # A lock held by another thread of the parent at fork time would never be released here.
    global _HANDLES_LOCK, _PID
    _HANDLES_LOCK = threading.Lock()
    _PID = os.getpid()
    for handle in _HANDLES.values():
        handle.lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


_PATHS: dict[tuple[str, str], str] = {}


def _database_path(directory: str, name: str) -> str:
    """The file's absolute name; made once for an absolute directory (a delivery makes a HintsDb
    of the retry and wait- databases for every message)."""
    path = _PATHS.get((directory, name))
    if path is None:
        path = os.path.join(os.path.abspath(directory), name)
        if os.path.isabs(directory) and len(_PATHS) < 256:
            _PATHS[(directory, name)] = path
    return path


class HintsDb:
    """One hints database; see the module docstring."""

    def __init__(
        self,
        directory: str,
        name: str,
        panic: Callable[[str], None] | None = None,
        map_size: int = _INITIAL_MAP_SIZE,
        sync: bool = False,
    ) -> None:
        """`sync` flushes each commit to disk: off by default, because a hint lost in a
        crash costs one extra attempt at most (the spool, not this file, must survive
        power loss); the first HintsDb of a path in a process decides."""
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"bad hints database name {name!r}")
        self.directory = directory
        self.name = name
        self.path = _database_path(directory, name)
        self._panic = panic
        self._handle = _handle_for(self.path, map_size, sync)

    # -- public ---------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        def read(env: lmdb.Environment) -> bytes | None:
            with env.begin() as txn:
                value = txn.get(_checked(key))
                return bytes(value) if value is not None else None

        return self._run(read)

    def put(self, key: bytes, value: bytes) -> None:
        def write(env: lmdb.Environment) -> None:
            with env.begin(write=True) as txn:
                txn.put(_checked(key), value)

        self._run(write)

    def delete(self, key: bytes) -> bool:
        def remove(env: lmdb.Environment) -> bool:
            with env.begin(write=True) as txn:
                return bool(txn.delete(_checked(key)))

        return self._run(remove)

    def update(self, key: bytes, change: Callable[[bytes | None], tuple[bytes | None, _R]]) -> _R:
        """Read `key`, call ``change(old)`` and store what it returns, in one write transaction.

        `change` returns ``(new_value, result)``; a new value of None leaves the
        record as it was.  Other processes' writers wait meanwhile, so no update
        is lost.  `change` may be called again if the database had to be
        recreated half-way, so it must not have side effects of its own.
        """
        checked = _checked(key)

        def transact(env: lmdb.Environment) -> _R:
            with env.begin(write=True) as txn:
                old = txn.get(checked)
                new, result = change(bytes(old) if old is not None else None)
                if new is not None:
                    txn.put(checked, new)
                return result

        return self._run(transact)

    def get_many(self, keys: list[bytes]) -> dict[bytes, bytes]:
        """The values of those `keys` that exist, read in one transaction (one consistent view)."""
        checked = [_checked(key) for key in keys]

        def read(env: lmdb.Environment) -> dict[bytes, bytes]:
            found: dict[bytes, bytes] = {}
            with env.begin() as txn:
                for key in checked:
                    value = txn.get(key)
                    if value is not None:
                        found[key] = bytes(value)
            return found

        return self._run(read)

    def update_many(
        self, keys: list[bytes], change: Callable[[dict[bytes, bytes]], tuple[dict[bytes, bytes | None], _R]]
    ) -> _R:
        """`update` for several keys: ``change(old)`` sees the existing values of `keys` and
        returns ``(writes, result)``, where `writes` maps a key to its new value, or to None
        to delete it; keys it leaves out stay as they are.  One write transaction, so a
        record that depends on the one before it (a retry record's first failure) is never
        lost to another process's update.  As with `update`, `change` may be called again
        and must not have side effects of its own.
        """
        checked = [_checked(key) for key in keys]

        def transact(env: lmdb.Environment) -> _R:
            with env.begin(write=True) as txn:
                old: dict[bytes, bytes] = {}
                for key in checked:
                    value = txn.get(key)
                    if value is not None:
                        old[key] = bytes(value)
                writes, result = change(old)
                for key, value in writes.items():
                    if value is None:
                        txn.delete(_checked(key))
                    else:
                        txn.put(_checked(key), value)
                return result

        return self._run(transact)

    def items(self, prefix: bytes = b"") -> list[tuple[bytes, bytes]]:
        """Every (key, value) whose key starts with `prefix`, in key order (a snapshot)."""

        def scan(env: lmdb.Environment) -> list[tuple[bytes, bytes]]:
            found: list[tuple[bytes, bytes]] = []
            with env.begin() as txn:
                cursor = txn.cursor()
                if not cursor.set_range(prefix):
                    return found
                for key, value in cursor:
                    if not bytes(key).startswith(prefix):
                        break
                    found.append((bytes(key), bytes(value)))
            return found

        return self._run(scan)

    def get_record(self, key: bytes, decode: Callable[[bytes], _T]) -> _T | None:
        """The record at `key` decoded by `decode`, which raises ValueError for a bad one.

        A record that does not decode is deleted, with a panic-log line, and
        None returned: a hints record is never trusted as it lies on disk.
        """
        data = self.get(key)
        if data is None:
            return None
        try:
            return decode(data)
        except ValueError as exc:
            self._report(f"hints database {self.path}: invalid record for key {key!r} deleted ({exc})")
            self.delete(key)
            return None

    def close(self) -> None:
        """Close the file (for every HintsDb of this path in the process); the next use reopens it."""
        with self._handle.lock:
            self._drop()

    # -- opening, checking and recreating --------------------------------------

    def _run(self, operation: Callable[[lmdb.Environment], _T]) -> _T:
        import lmdb

        with self._handle.lock:
            for attempt in range(3):
                env = self._open()
                try:
                    return operation(env)
                except lmdb.MapFullError:
                    self._grow(env)
                except (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError, lmdb.PanicError) as exc:
                    if attempt:
                        raise HintsError(f"hints database {self.path}: {exc}") from None
                    self._recreate(f"corrupt ({exc})")
                except lmdb.Error as exc:
                    raise HintsError(f"hints database {self.path}: {exc}") from None
            raise HintsError(f"hints database {self.path}: cannot be written")

    def _open(self) -> lmdb.Environment:
        """The open environment, (re)opened when missing, replaced, damaged or inherited."""
        handle = self._handle
        if handle.env is not None and handle.pid != _PID:
            self._drop()  # inherited across fork: the child makes its own
        problem = self._file_problem()
        if problem == "replaced":
            self._drop()
        elif problem is not None:
            self._recreate(problem)
        if handle.env is None:
            handle.env = self._make_env()
        return handle.env

    def _file_problem(self) -> str | None:
        """Why the file behind an open environment cannot be used as it is, or None.

        An LMDB file that shrank below what was mapped, or whose header was
        overwritten, would crash the process (SIGBUS) or mislead LMDB when it
        is next read, so it is looked at before every use: a stat of the path
        (is it still the file that is mapped?), then an 8-byte read and an
        fstat of the mapped file through the descriptor kept open for it
        (three system calls; the path is looked up once, not three times).
        """
        handle = self._handle
        env, fd = handle.env, handle.fd
        if env is None or fd is None:
            return None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return "replaced"
        except OSError as exc:
            raise HintsError(f"hints database {self.path}: {exc.strerror}") from None
        if (st.st_dev, st.st_ino) != handle.inode:
            return "replaced"
        if st.st_size < 2 * _PAGE_SIZE:
            return "truncated"
        try:
            magic = os.pread(fd, len(_META_MAGIC), _META_MAGIC_OFFSET)
        except OSError as exc:
            raise HintsError(f"hints database {self.path}: {exc.strerror}") from None
        if magic != _META_MAGIC:
            return "not an LMDB file any more"
        # The meta pages are there (read safely now): the last page in use, then the size again.
        # Another process may commit and grow the file meanwhile, and a size read before the last
        # page would then look truncated, and the database would be "recreated" under its writers.
        pages_in_use = env.info()["last_pgno"] + 1
        try:
            size = os.fstat(fd).st_size
        except OSError as exc:
            raise HintsError(f"hints database {self.path}: {exc.strerror}") from None
        if size < pages_in_use * _PAGE_SIZE:
            return "truncated"
        return None

    def _make_env(self) -> lmdb.Environment:
        import lmdb

        try:
            os.makedirs(self.directory, mode=0o750, exist_ok=True)
        except OSError as exc:
            raise HintsError(f"cannot create hints directory {self.directory}: {exc.strerror}") from None
        for attempt in range(2):
            try:
                env = lmdb.open(
                    self.path,
                    subdir=False,
                    map_size=self._handle.map_size,
                    max_dbs=0,
                    mode=0o640,
                    sync=self._handle.sync,
                    metasync=self._handle.sync,
                    readahead=False,
                )
            except (lmdb.InvalidError, lmdb.VersionMismatchError, lmdb.CorruptedError, lmdb.IncompatibleError) as exc:
                if attempt:
                    raise HintsError(f"hints database {self.path}: {exc}") from None
                self._remove_files(f"unusable ({exc})")
                continue
            except lmdb.Error as exc:
                raise HintsError(f"cannot open hints database {self.path}: {exc}") from None
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                env.close()
                raise HintsError(f"cannot open hints database {self.path}: {exc.strerror}") from None
            st = os.fstat(fd)
            self._handle.fd = fd
            self._handle.inode = (st.st_dev, st.st_ino)
            self._handle.pid = os.getpid()
            self._give_to_directory_owner(st)
            return env
        raise HintsError(f"cannot open hints database {self.path}")  # pragma: no cover - loop returns or raises

    def _give_to_directory_owner(self, st: os.stat_result) -> None:
        """As root, make the files the db/ directory's owner's (mta_user's, where the daemon runs).

        The daemon's delivery workers are root, but talk to remote hosts as
        mta_user, and the smtp transport reads the retry database then: a
        root-only file would be unreadable to it.  The files are changed
        through a descriptor opened without following links, so a link put
        in their place cannot make root give away another file.
        """
        if os.geteuid() != 0:
            return
        try:
            owner = os.stat(self.directory)
        except OSError:
            return
        if (st.st_uid, st.st_gid) == (owner.st_uid, owner.st_gid):
            return
        for path in (self.path, self.path + "-lock"):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                os.fchown(fd, owner.st_uid, owner.st_gid)
            except OSError:
                pass  # a file we cannot give away stays root's; readers as root still work
            finally:
                os.close(fd)

    def _recreate(self, why: str) -> None:
        self._drop()
        self._remove_files(why)

    def _remove_files(self, why: str) -> None:
        self._report(f"hints database {self.path} was {why}: recreated")
        for path in (self.path, self.path + "-lock"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise HintsError(f"cannot remove damaged hints database {path}: {exc.strerror}") from None

    def _grow(self, env: lmdb.Environment) -> None:
        size = env.info()["map_size"] * 2
        if size > _MAX_MAP_SIZE:
            raise HintsError(f"hints database {self.path} is full ({size // 2} bytes)")
        env.set_mapsize(size)
        self._handle.map_size = size

    def _drop(self) -> None:
        handle = self._handle
        env, handle.env, handle.inode = handle.env, None, None
        fd, handle.fd = handle.fd, None
        if fd is not None:
            os.close(fd)
        if env is not None:
            # Also right in a child after fork: closing touches only this process's
            # reader slots and fcntl locks, and the child has none.
            env.close()

    def _report(self, text: str) -> None:
        if self._panic is not None:
            self._panic(text)


def _checked(key: bytes) -> bytes:
    if not key or len(key) > 511:
        raise ValueError(f"hints key of {len(key)} bytes (1 to 511 allowed; use hints_key)")
    return key
