"""lmdb: a keyed LMDB file, and the compiler that builds one from lsearch.

The database is a single file (``subdir=False``) holding one unnamed
database of UTF-8 key -> UTF-8 value.  Readers open it read-only without
a lock file: it is only ever replaced whole, by rename, never updated in
place, so a reader holding the old file keeps reading a consistent copy.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import lmdb

from mta.errors import ExpansionError
from mta.expand.lookups._common import LookupDeferError, decode
from mta.expand.lookups.lsearch import load

# LMDB's default maximum key size.
MAX_KEY_BYTES = 511


def find(path: str, key: str, options: str | None = None) -> str | None:
    """Exact key first, then its lower-cased form (how the compiler stores keys)."""
    try:
        os.stat(path)
        env = lmdb.open(path, subdir=False, readonly=True, lock=False)
    except OSError as exc:
        raise LookupDeferError(
            f"failed to open {path} as an LMDB database: {exc.strerror}", path, exc.errno or 0, opening=True
        ) from None
    except lmdb.Error as exc:
        raise LookupDeferError(f"failed to open {path} as an LMDB database: {exc}", path, opening=True) from None
    try:
        with env.begin() as txn:
            for candidate in dict.fromkeys((key, key.lower())):
                raw_key = candidate.encode("utf-8")
                if not raw_key or len(raw_key) > MAX_KEY_BYTES:
                    continue  # LMDB cannot hold such a key, so it is not there
                value = txn.get(raw_key)
                if value is not None:
                    return decode(bytes(value))
        return None
    except lmdb.Error as exc:
        raise LookupDeferError(f"lookup in LMDB database {path} failed: {exc}", path) from None
    finally:
        env.close()


def _fsync_directory(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(tmp: str, records: dict[bytes, bytes], map_size: int) -> None:
    env = lmdb.open(tmp, subdir=False, lock=False, map_size=map_size, max_dbs=0)
    try:
        with env.begin(write=True) as txn:
            for key, value in records.items():
                txn.put(key, value)
        env.sync(True)
    finally:
        env.close()


def build_from_lsearch(source: str, target: str) -> int:
    try:
        like = os.stat(source)
    except OSError:
        like = None  # load() below says why it cannot be read
    return build_from_entries(load(source).entries, source, target, like)


def build_from_entries(
    entries: Iterable[tuple[str, str]], source: str, target: str, like: os.stat_result | None = None
) -> int:
    """Write (key, data) pairs, as parse_lsearch gives them, to LMDB file `target`: a new file,
    synced, then renamed into place.  With `like` (the source's stat) the database gets the
    source's permission bits without execute, and its owner and group when we are root, so
    that the checks an aliasfile director makes of the source (modemask, owners) pass for it."""
    records: dict[bytes, bytes] = {}
    for key, data in entries:
        raw_key = key.lower().encode("utf-8")
        if not raw_key:
            raise ExpansionError(f"{source}: an empty key cannot be stored in an LMDB database")
        if len(raw_key) > MAX_KEY_BYTES:
            raise ExpansionError(f'{source}: key "{key[:40]}..." is longer than {MAX_KEY_BYTES} bytes')
        records.setdefault(raw_key, data.encode("utf-8"))
    tmp = target + ".tmp"
    payload = sum(len(k) + len(v) for k, v in records.items())
    # Generous first guess (B-tree pages are rarely full); doubled on MapFull.
    map_size = max(1 << 20, 4 * payload + 64 * len(records) + (1 << 16))
    try:
        while True:
            for leftover in (tmp, tmp + "-lock"):
                if os.path.lexists(leftover):
                    os.unlink(leftover)
            try:
                _write(tmp, records, map_size)
                break
            except lmdb.MapFullError:
                map_size *= 2
        if like is not None:
            os.chmod(tmp, like.st_mode & 0o666)
            if os.geteuid() == 0:
                os.chown(tmp, like.st_uid, like.st_gid)
        # The rename is the commit point: readers see the old file or the new one.
        os.replace(tmp, target)
        _fsync_directory(target)
    except OSError as exc:
        raise LookupDeferError(f"failed to build {target}: {exc.strerror}", target, exc.errno or 0) from None
    except lmdb.Error as exc:
        raise LookupDeferError(f"failed to build {target}: {exc}", target) from None
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return len(records)
