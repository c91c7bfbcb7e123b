"""wait-<transport>: ids noted for a host are taken once, and a record emptied is removed."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from mta.deliver.waiting import record_waiting, take_waiting
from mta.hints.db import HintsDb, hints_key

IDS = [f"1xZ3HZ-000000{n:03d}S5-2PnR" for n in range(3)]


def fake_runtime(spool: Path) -> SimpleNamespace:
    # _database reads only the spool directory and the panic log.
    panics: list[str] = []
    return SimpleNamespace(config=SimpleNamespace(main=SimpleNamespace(spool_directory=str(spool))),
                           logger=SimpleNamespace(panic=panics.append), panics=panics)


def test_taking_every_id_removes_the_record(tmp_path: Path) -> None:
    runtime = fake_runtime(tmp_path)
    for message_id in IDS:
        record_waiting(runtime, [("remote_smtp", "mx.example.com")], message_id)  # type: ignore[arg-type]
    assert take_waiting(runtime, "remote_smtp", "MX.example.com", 2) == IDS[:2]  # type: ignore[arg-type]
    assert take_waiting(runtime, "remote_smtp", "mx.example.com", 5) == IDS[2:]  # type: ignore[arg-type]
    # Nothing is offered twice, and the emptied record is gone, not left empty.
    assert take_waiting(runtime, "remote_smtp", "mx.example.com", 5) == []  # type: ignore[arg-type]
    db = HintsDb(str(tmp_path / "db"), "wait-remote_smtp")
    assert db.get(hints_key("mx.example.com")) is None
    assert runtime.panics == []
