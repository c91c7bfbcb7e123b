"""mta.hints.db: LMDB hints databases that survive damage, and the one key helper.

Real LMDB files in a tmp directory; damage is done to the files as an
administrator or a crash would (truncate, overwrite, delete) while the
database is open.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from mta.hints.db import MAX_KEY_BYTES, HintsDb, HintsError, hints_key


@pytest.fixture
def panics() -> list[str]:
    return []


@pytest.fixture
def db(tmp_path: Path, panics: list[str]) -> HintsDb:
    return HintsDb(str(tmp_path / "db"), "test", panic=panics.append)


def test_a_missing_database_and_directory_are_created(db: HintsDb, panics: list[str]) -> None:
    assert db.get(b"k") is None
    db.put(b"k", b"v")
    assert db.get(b"k") == b"v"
    assert Path(db.path).is_file() and Path(db.path + "-lock").is_file()
    assert panics == []


def test_put_get_delete_and_items_by_prefix(db: HintsDb) -> None:
    for key in (b"R:a", b"R:b", b"T:h:1.2.3.4", b"Z"):
        db.put(key, key.lower())
    assert db.items(b"R:") == [(b"R:a", b"r:a"), (b"R:b", b"r:b")]
    assert [k for k, _ in db.items()] == [b"R:a", b"R:b", b"T:h:1.2.3.4", b"Z"]
    assert db.items(b"Q") == []
    assert db.delete(b"R:a") is True
    assert db.delete(b"R:a") is False
    assert db.get(b"R:a") is None


def test_update_is_one_read_modify_write(db: HintsDb) -> None:
    def increment(old: bytes | None) -> tuple[bytes | None, int]:
        value = int(old or b"0") + 1
        return str(value).encode(), value

    threads = [threading.Thread(target=lambda: [db.update(b"n", increment) for _ in range(50)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert db.get(b"n") == b"200"
    # A change that returns None writes nothing.
    assert db.update(b"n", lambda old: (None, old)) == b"200"


def test_update_from_several_processes_loses_nothing_while_the_file_grows(tmp_path: Path) -> None:
    """Writers in other processes grow the file between one process's checks of it: a size read
    before the last page in use once looked like truncation, and the database was "recreated"."""
    directory = str(tmp_path / "db")

    def increment(old: bytes | None) -> tuple[bytes | None, None]:
        return str(int(old or b"0") + 1).encode(), None

    HintsDb(directory, "shared").put(b"n", b"0")
    pids = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            status = 1
            try:
                child_db = HintsDb(directory, "shared")
                for i in range(150):
                    child_db.update(b"n", increment)
                    child_db.put(b"grow-%d-%d" % (os.getpid(), i), b"x" * 600)
                status = 0
            finally:
                os._exit(status)
        pids.append(pid)
    for pid in pids:
        assert os.waitpid(pid, 0)[1] == 0
    assert HintsDb(directory, "shared").get(b"n") == b"450"


def test_a_child_after_fork_opens_its_own_environment(db: HintsDb) -> None:
    db.put(b"parent", b"1")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            db.put(b"child", b"2")
            os.write(write, db.get(b"parent") or b"?")
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 10) == b"1"
    os.waitpid(pid, 0)
    assert db.get(b"child") == b"2"  # the parent's handle still works and sees the child's write


@pytest.mark.parametrize(
    ("damage", "reported"),
    [
        pytest.param(lambda p: p.write_bytes(b"this is not an lmdb file" * 500), True, id="overwritten"),
        pytest.param(lambda p: os.truncate(p, 0), True, id="truncated-to-zero"),
        pytest.param(lambda p: os.truncate(p, 5000), True, id="truncated-mid-page"),
        # Deleting is not damage: a new database is made without a word.
        pytest.param(lambda p: p.unlink(), False, id="deleted"),
    ],
)
def test_damage_while_open_is_repaired_not_fatal(db: HintsDb, panics: list[str], damage, reported: bool) -> None:
    for n in range(200):
        db.put(f"key{n}".encode(), b"x" * 100)
    damage(Path(db.path))
    assert db.get(b"key1") is None  # what was lost is lost: hints only
    db.put(b"after", b"ok")
    assert db.get(b"after") == b"ok"
    assert bool(panics) == reported
    assert HintsDb(db.directory, db.name).get(b"after") == b"ok"


def test_the_descriptor_kept_for_the_checks_is_not_leaked(db: HintsDb) -> None:
    """The mapped file is kept open for the checks before each use: closed with the database,
    and when a replaced or damaged file makes it reopen, so a long-lived worker does not collect
    descriptors."""

    def open_files() -> int:
        return len(os.listdir("/proc/self/fd"))

    db.put(b"k", b"v")
    db.close()
    before = open_files()
    for damage in (lambda p: p.unlink(), lambda p: p.write_bytes(b"garbage" * 2000), lambda p: None):
        db.put(b"k", b"v")
        damage(Path(db.path))
        assert db.get(b"k") in (None, b"v")
    db.close()
    assert open_files() == before


def test_a_relative_directory_is_taken_from_the_current_one_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Absolute database names are remembered per directory; a relative directory's are not,
    since they depend on where the process is."""
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        monkeypatch.chdir(tmp_path / sub)
        assert HintsDb("db", "retry").path == str(tmp_path / sub / "db" / "retry")
        assert HintsDb(str(tmp_path / "db"), "retry").path == str(tmp_path / "db" / "retry")


def test_damage_is_reported_in_the_panic_log(db: HintsDb, panics: list[str]) -> None:
    db.put(b"k", b"v")
    Path(db.path).write_bytes(b"garbage" * 2000)
    db.put(b"k2", b"v2")
    assert len(panics) == 1
    assert f"hints database {db.path} was not an LMDB file any more: recreated" in panics[0]


def test_a_damaged_file_found_at_open_is_recreated(tmp_path: Path, panics: list[str]) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "retry").write_bytes(os.urandom(9000))
    db = HintsDb(str(tmp_path / "db"), "retry", panic=panics.append)
    db.put(b"k", b"v")
    assert db.get(b"k") == b"v"
    assert "unusable" in panics[0] and "recreated" in panics[0]


def test_an_unwritable_directory_is_a_hints_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    db = HintsDb(str(tmp_path / "file" / "db"), "ratelimit")
    with pytest.raises(HintsError, match="cannot create hints directory"):
        db.get(b"k")


def test_an_invalid_record_is_dropped_with_a_panic_line(db: HintsDb, panics: list[str]) -> None:
    db.put(b"good", b"42")
    db.put(b"bad", b"forty-two")

    def decode(data: bytes) -> int:
        if not data.isdigit():
            raise ValueError("not a number")
        return int(data)

    assert db.get_record(b"good", decode) == 42
    assert db.get_record(b"bad", decode) is None
    assert db.get(b"bad") is None
    assert "invalid record" in panics[0] and "not a number" in panics[0]
    assert db.get_record(b"missing", decode) is None


def test_the_database_grows_past_its_first_map_size(tmp_path: Path) -> None:
    db = HintsDb(str(tmp_path), "big", map_size=64 * 1024)
    for n in range(100):
        db.put(f"{n:04d}".encode(), b"y" * 4000)
    assert len(db.items()) == 100


@pytest.mark.parametrize(
    ("parts", "want"),
    [
        (("1h", "per_rcpt", "192.0.2.7"), b"1h/per_rcpt/192.0.2.7"),
        (("R:", "user@example.com"), b"R:/user@example.com"),
        (("1h", "per_mail", "a b"), b"1h/per_mail/a%20b"),
        (("x", "evil\r\nR:forged"), b"x/evil%0D%0AR:forged"),
        (("x", "100%"), b"x/100%25"),
        (("x", "caf\u00e9"), b"x/caf%C3%A9"),
        (("x", "\udcff"), b"x/%FF"),
    ],
    ids=["plain", "address", "space", "crlf", "percent", "utf8", "undecodable"],
)
def test_hints_key_escapes_what_a_client_sent(parts: tuple[str, ...], want: bytes) -> None:
    assert hints_key(*parts) == want


def test_hints_key_escapes_every_byte_but_the_printable_ones() -> None:
    for byte in range(256):
        text = bytes([byte]).decode("utf-8", "surrogateescape")
        safe = 0x21 <= byte <= 0x7E and byte != ord("%")
        assert hints_key("k", text) == b"k/" + (bytes([byte]) if safe else b"%%%02X" % byte), byte


def test_hints_key_hashes_what_is_too_long_and_stays_unique() -> None:
    long_a = hints_key("1h", "per_mail", "a" * 1000)
    long_b = hints_key("1h", "per_mail", "a" * 999 + "b")
    assert len(long_a) <= MAX_KEY_BYTES and len(long_b) <= MAX_KEY_BYTES
    assert long_a != long_b
    assert long_a.startswith(b"1h/per_mail/aaa") and b"#" in long_a


def test_keys_lmdb_would_refuse_are_a_programming_error(db: HintsDb) -> None:
    with pytest.raises(ValueError):
        db.put(b"", b"v")
    with pytest.raises(ValueError):
        db.get(b"k" * 600)
