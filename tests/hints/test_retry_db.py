"""mta.hints.retry_db: the retry record round trip, what is refused, and a damaged database.

Real LMDB files in a tmp directory; damage is done as an administrator or
a crash would do it (truncate, overwrite, delete) while the database is open.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mta.hints.db import HintsDb, hints_key
from mta.hints.retry_db import (
    MAX_TEXT,
    RetryDb,
    RetryRecord,
    clamp_record,
    decode_record,
    dumpdb_lines,
    encode_record,
    key_text,
)

NOW = 1_800_000_000
H, D = 3600, 86400
REC = RetryRecord(NOW - H, NOW - 15 * 60, NOW + 15 * 60, False, 111, 65, "refused_A", "Connection refused", NOW)


@pytest.fixture
def panics() -> list[str]:
    return []


@pytest.fixture
def db(tmp_path: Path, panics: list[str]) -> RetryDb:
    return RetryDb(str(tmp_path / "db"), panic=panics.append, data_expire=7 * D, interval_max=D)


def test_round_trip() -> None:
    data = encode_record(REC)
    assert data == b"R1 1800000000 1799996400 1799999100 1800000900 0 111 65 refused_A Connection refused"
    assert decode_record(data) == REC
    bare = RetryRecord(1, 2, 3, True)
    assert decode_record(encode_record(bare)) == bare


def test_text_is_kept_printable_and_short() -> None:
    rec = RetryRecord(1, 2, 3, False, text="bad\r\nline \x00 caf\u00e9 " + "x" * 300)
    back = decode_record(encode_record(rec))
    assert back.text.startswith("bad\\x0d\\nline \\x00 caf\\xe9 ")
    assert len(back.text) == MAX_TEXT


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"R1",
        b"R2 1 1 1 1 0 0 0 - text",
        b"R1 1 1 1 1 2 0 0 - expired is not 0 or 1",
        b"R1 1 1 1 -5 0 0 0 - negative time",
        b"R1 1 1 1 99999999999999 0 0 0 - time too far",
        b"R1 1 1 x 1 0 0 0 - not a number",
        b"R1 1 1 1 1 0 0 0 bad$name text",
        b"R1 1 1 1 1 0 0 0 - control\x01char",
        b"R1 1 1 1 1 0 0 0 - \xff not ascii",
        b"R1 1 1 1 1 0 99999999999 0 - errno too big",
        b"R1 1 1 1 1 0 0 0 - " + b"y" * 200,
        b"\x00" * 64,
    ],
)
def test_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_record(data)


def test_update_keeps_the_first_failure_and_stamps_the_write(db: RetryDb) -> None:
    def fail(old: dict[str, RetryRecord]) -> tuple[dict[str, RetryRecord | None], str]:
        prev = old.get("T:mx:192.0.2.1")
        first = prev.first_failed if prev else NOW
        return {"T:mx:192.0.2.1": RetryRecord(first, NOW, NOW + 900, False, text="down")}, "ok"

    assert db.update(["T:mx:192.0.2.1"], NOW - 100, fail) == "ok"
    assert db.update(["T:mx:192.0.2.1"], NOW, fail) == "ok"
    rec = db.read(["T:mx:192.0.2.1"], NOW)["T:mx:192.0.2.1"]
    assert rec.time_stamp == NOW and rec.text == "down"
    # A write of None deletes; an absent key is left alone.
    assert db.update(["T:mx:192.0.2.1", "R:x"], NOW, lambda old: ({"T:mx:192.0.2.1": None, "R:x": None}, 1)) == 1
    assert db.read(["T:mx:192.0.2.1"], NOW) == {}


def test_retry_data_expire_ignores_old_records(db: RetryDb) -> None:
    db.put("R:example.net", REC)
    assert "R:example.net" in db.read(["R:example.net"], NOW + 7 * D)
    assert db.read(["R:example.net"], NOW + 7 * D + 1) == {}


@pytest.mark.parametrize(
    ("rec", "want"),
    [
        # Written in the future (the clock was set back a day): due now, failing since now.
        (RetryRecord(NOW + D - H, NOW + D, NOW + D + 900, False, time_stamp=NOW + D),
         RetryRecord(NOW, NOW, NOW, False, time_stamp=NOW)),
        # Set back, but not past the last try: only the first failure and the stamp were ahead.
        (RetryRecord(NOW + 60, NOW - 60, NOW + 900, False, time_stamp=NOW + 60),
         RetryRecord(NOW, NOW - 60, NOW + 900, False, time_stamp=NOW)),
        # A next try beyond retry_interval_max from now (retry_interval_max was lowered): capped.
        (RetryRecord(NOW - H, NOW - 60, NOW + 10 * D, False, time_stamp=NOW - 60),
         RetryRecord(NOW - H, NOW - 60, NOW + D, False, time_stamp=NOW - 60)),
        # Nothing odd: unchanged.
        (REC, REC),
    ],
)
def test_clock_rule(rec: RetryRecord, want: RetryRecord) -> None:
    assert clamp_record(rec, NOW, D) == want


def test_a_bad_record_is_ignored_deleted_and_rewritten(db: RetryDb, panics: list[str]) -> None:
    raw = HintsDb(db.db.directory, "retry")
    raw.put(hints_key("T:mx:192.0.2.1"), b"R1 not a record")
    assert db.read(["T:mx:192.0.2.1"], NOW) == {}
    assert any("invalid record" in p for p in panics)
    assert raw.get(hints_key("T:mx:192.0.2.1")) is None
    raw.put(hints_key("R:a@b"), b"\xff\xfe")
    seen = db.update(["R:a@b"], NOW, lambda old: ({"R:a@b": REC}, dict(old)))
    assert seen == {}  # the bad one was not shown to the change
    assert decode_record(raw.get(hints_key("R:a@b")) or b"").text == REC.text


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete"])
def test_database_damaged_while_open(db: RetryDb, panics: list[str], damage: str) -> None:
    db.put("T:mx:192.0.2.1", REC)
    assert db.read(["T:mx:192.0.2.1"], NOW)
    path = db.db.path
    if damage == "truncate":
        os.truncate(path, 100)
    elif damage == "garbage":
        with open(path, "r+b") as f:
            f.write(b"\x00garbage" * 512)
    else:
        os.unlink(path)
    # The spool is the truth: nothing is known any more, nothing fails, and the next write works.
    assert db.read(["T:mx:192.0.2.1"], NOW) == {}
    db.update(["T:mx:192.0.2.1"], NOW, lambda old: ({"T:mx:192.0.2.1": REC}, None))
    assert db.read(["T:mx:192.0.2.1"], NOW)["T:mx:192.0.2.1"].text == REC.text
    if damage != "delete":
        assert any("recreated" in p for p in panics), panics


def test_unusable_database_reads_as_empty(tmp_path: Path, panics: list[str]) -> None:
    (tmp_path / "db").write_text("a file where the directory should be")
    db = RetryDb(str(tmp_path / "db"), panic=panics.append)
    assert db.read(["R:x"], NOW) == {}
    assert db.update(["R:x"], NOW, lambda old: ({"R:x": REC}, "done")) is None
    assert len(panics) == 2 and "not available" in panics[0]


def test_keys_with_odd_bytes_and_the_dump(db: RetryDb) -> None:
    key = "R:\"odd local\"@example.net:<alice@example.com>"
    db.put(key, REC)
    db.put("T:[192.0.2.7]:192.0.2.7:2526", RetryRecord(NOW - 60, NOW, NOW + 900, True, 111, 65, None, "refused"))
    assert [k for k, _ in db.dump()] == [key, "T:[192.0.2.7]:192.0.2.7:2526"]
    assert key_text(hints_key(key)) == key
    lines = dumpdb_lines("T:[192.0.2.7]:192.0.2.7:2526", db.dump()[1][1])
    assert lines[0] == "  T:[192.0.2.7]:192.0.2.7:2526 111 65 refused"
    assert lines[1].endswith(" *") and lines[1].count("-") == 6  # three DD-Mon-YYYY times, expired


def test_root_gives_the_files_to_the_owner_of_the_directory(tmp_path: Path) -> None:
    """The daemon's workers read the retry data as mta_user: a file root made must be theirs."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    directory = tmp_path / "db"
    directory.mkdir()
    os.chown(directory, 65534, 65534)
    db = RetryDb(str(directory))
    db.put("R:x", REC)
    for name in ("retry", "retry-lock"):
        st = os.stat(directory / name)
        assert (st.st_uid, st.st_gid) == (65534, 65534), name
