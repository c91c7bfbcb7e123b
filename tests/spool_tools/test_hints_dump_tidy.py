"""mta-dumpdb and mta-tidydb over hints written by the real mta (tests/support/hints_world.py),
compared with exim_dumpdb's output on the research samples, and the tidying rules one by one."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mta.hints import ratelimit
from mta.hints.db import HintsDb, hints_key
from mta.hints.misc import serialize_start
from mta.hints.retry_db import RetryDb, RetryRecord
from spool_tools.hints_records import HostKey, dump_lines
from spool_tools.tidydb import Verdict, apply
from tests.support.hints_world import HintsWorld, built, run_tool, sample_epoch, utc, without_exit_line, world
from tests.support.retry_time import age_hints, retry_records
from tests.support.samples import sample_text

__all__ = ["built", "world"]  # fixtures


# -- mta-dumpdb -------------------------------------------------------------------------------


def test_dumpdb_shows_the_retry_record_a_refused_connection_left(world: HintsWorld) -> None:
    (rec,) = retry_records(world.spool).values()
    result = run_tool("dumpdb", str(world.spool), "retry")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"  {world.host_key} 111 {rec.more_errno} Connection refused",
        f"{utc(rec.first_failed)}  {utc(rec.last_try)}  {utc(rec.next_try)} ",
    ]
    # 15 minutes on, by the rule F,2h,15m; not past the final cutoff (no "*").
    assert rec.next_try - rec.last_try == 15 * 60


def test_dumpdb_shows_the_messages_waiting_for_the_host_oldest_first(world: HintsWorld) -> None:
    result = run_tool("dumpdb", "-C", str(world.env.config), "wait-remote_smtp")
    assert result.returncode == 0, result.stderr
    # The second message was tried first (a queue run goes newest first here) and the other
    # was left waiting behind it; both are named, each followed by a space as in Exim.
    (line,) = result.stdout.splitlines()
    host, *ids = line.split(" ")
    assert host == f"127.0.0.1:{world.port}"
    assert ids[-1] == "" and sorted(ids[:-1]) == sorted(world.message_ids)


def test_dumpdb_keys_only_and_utc(world: HintsWorld) -> None:
    keys = run_tool("dumpdb", "-k", "--spool", str(world.spool), "retry")
    assert keys.stdout == f"{world.host_key}\n"
    (rec,) = retry_records(world.spool).values()
    tokyo = run_tool("dumpdb", str(world.spool), "retry", tz="JST-9").stdout.splitlines()[1]
    assert tokyo.startswith(time.strftime("%d-%b-%Y %H:%M:%S", time.gmtime(rec.first_failed + 9 * 3600)))
    in_utc = run_tool("dumpdb", "-z", str(world.spool), "retry", tz="JST-9").stdout.splitlines()[1]
    assert in_utc.startswith(utc(rec.first_failed))


def test_dumpdb_matches_exim_dumpdb_on_the_samples(tmp_path: Path) -> None:
    """The sample's records, written with Exim 4.96's key and 16-character ids, dump as Exim's."""
    spool = tmp_path / "spool"
    first, last, nxt = (sample_epoch(t) for t in ("22-Nov-2026 12:43:32", "22-Nov-2026 12:43:53",
                                                 "22-Nov-2026 12:58:53"))
    RetryDb.for_spool(str(spool)).put("T:127.0.0.3:127.0.0.3:2526", RetryRecord(
        first, last, nxt, False, 111, 65, "refused_A", "Connection refused", last))
    HintsDb(str(spool / "db"), "wait-remote_smtp").put(b"127.0.0.3", b"1xV6uq-0005Vj-1t\n1xV6v2-0005WW-1k")
    retry = run_tool("dumpdb", str(spool), "retry")
    assert retry.stdout == without_exit_line(sample_text("dumpdb-retry.txt"))
    wait = run_tool("dumpdb", str(spool), "wait-remote_smtp")
    assert wait.stdout == without_exit_line(sample_text("dumpdb-wait-remote_smtp.txt"))


def test_dumpdb_misc_and_ratelimit_records(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    db_dir = str(spool / "db")
    assert serialize_start(db_dir, "etrn-example.net", 1_800_000_000, 3600)
    HintsDb(db_dir, "ratelimit").put(hints_key("1h/per_rcpt/192.0.2.7"),
                                     ratelimit.encode(ratelimit.RatelimitRecord(1_800_000_000.25, 2.5)))
    HintsDb(db_dir, "ratelimit").put(hints_key("1d/per_rcpt/unique/192.0.2.8"), ratelimit.encode(
        ratelimit.RatelimitRecord(1_800_000_060.0, 1.0, 1_799_990_000, bytes(14))))
    misc = run_tool("dumpdb", str(spool), "misc")
    assert misc.stdout == f"{utc(1_800_000_000)} etrn-example.net\n"
    rates = run_tool("dumpdb", str(spool), "ratelimit")
    assert rates.stdout.splitlines() == [
        f"{utc(1_800_000_060)}.000000 rate:      1.000 epoch: {utc(1_799_990_000)} size: 14 "
        "key: 1d/per_rcpt/unique/192.0.2.8",
        f"{utc(1_800_000_000)}.250000 rate:      2.500 key: 1h/per_rcpt/192.0.2.7",
    ]


def test_dumpdb_reports_a_damaged_record_and_lists_the_rest(world: HintsWorld) -> None:
    HintsDb(str(world.spool / "db"), "retry").put(b"R:example.org", b"garbage")
    result = run_tool("dumpdb", str(world.spool), "retry")
    assert result.returncode == 1
    assert "**** Data for R:example.org corrupted" in result.stderr
    assert world.host_key in result.stdout


def test_a_key_from_the_network_is_shown_escaped(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    RetryDb.for_spool(str(spool)).put("R:evil\x1b[2J@example.net", RetryRecord(1, 2, 3, True, text="x"))
    result = run_tool("dumpdb", str(spool), "retry")
    assert "\x1b" not in result.stdout
    assert "R:evil\\033[2J@example.net" in result.stdout
    assert result.stdout.splitlines()[1].endswith(" *")  # expired: past the final cutoff


# -- mta-tidydb -------------------------------------------------------------------------------


def test_tidydb_drops_messages_no_longer_on_the_spool_from_wait_records(world: HintsWorld) -> None:
    first, second = world.message_ids
    assert world.env.run("-Mrm", first).returncode == 0
    result = run_tool("tidydb", str(world.spool), "wait-remote_smtp")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"Tidying mta hints database {world.spool / 'db' / 'wait-remote_smtp'}",
        f"updated 127.0.0.1:{world.port}: removed {first}",
        "Tidying complete",
    ]
    assert run_tool("dumpdb", str(world.spool), "wait-remote_smtp").stdout == f"127.0.0.1:{world.port} {second} \n"
    assert world.env.run("-Mrm", second).returncode == 0
    result = run_tool("tidydb", "-f", str(world.spool), "wait-remote_smtp")
    assert f"deleted 127.0.0.1:{world.port} (empty)" in result.stdout.splitlines()
    assert run_tool("dumpdb", str(world.spool), "wait-remote_smtp").stdout == ""


def test_tidydb_removes_old_retry_records_and_those_of_vanished_messages(world: HintsWorld) -> None:
    db = RetryDb.for_spool(str(world.spool))
    now = int(time.time())
    kept_id, gone_id, old_gone_id = world.message_ids[0], "1xZ4Vb-000000009Zz-0000", "1xV6uq-0005Vj-1t"
    for message_id in (kept_id, gone_id, old_gone_id):
        db.put(f"{world.host_key}:{message_id}", RetryRecord(now, now, now + 900, False, -44, 451,
                                                             "mail_4xx", "451 try later", now))
    fresh = run_tool("tidydb", str(world.spool), "retry").stdout.splitlines()
    assert sorted(fresh[1:-1]) == sorted(f"deleted {world.host_key}:{i} (no message)" for i in (gone_id, old_gone_id))
    assert set(retry_records(world.spool)) == {world.host_key, f"{world.host_key}:{kept_id}"}
    # Eight days without a write: past retry_data_expire (7 days), which delivery ignores already.
    age_hints(world.spool, 8 * 86400)
    result = run_tool("tidydb", "-C", str(world.env.config), "retry")
    assert f"deleted {world.host_key} (past retry_data_expire)" in result.stdout.splitlines()
    assert retry_records(world.spool) == {}


def test_tidydb_time_option(world: HintsWorld) -> None:
    age_hints(world.spool, 2 * 3600)
    assert run_tool("tidydb", "-t", "3h", str(world.spool), "retry").stdout.count("deleted") == 0
    result = run_tool("tidydb", "-t", "1h", str(world.spool), "retry")
    assert f"deleted {world.host_key} (too old)" in result.stdout.splitlines()


def test_tidydb_ages_misc_and_ratelimit_records_and_drops_damaged_ones(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    db_dir = str(spool / "db")
    now = time.time()
    serialize_start(db_dir, "etrn-old.example", now - 40 * 86400, 3600)
    serialize_start(db_dir, "etrn-new.example", now, 3600)
    HintsDb(db_dir, "misc").put(b"etrn-bad", b"not a time")
    result = run_tool("tidydb", str(spool), "misc")
    assert result.stdout.splitlines()[1:-1] == ["deleted etrn-bad (not a valid record)",
                                                "deleted etrn-old.example (too old)"]
    rates = HintsDb(db_dir, "ratelimit")
    rates.put(b"1h/per_mail/a", ratelimit.encode(ratelimit.RatelimitRecord(now - 31 * 86400, 1.0)))
    rates.put(b"1h/per_mail/b", ratelimit.encode(ratelimit.RatelimitRecord(now, 1.0)))
    result = run_tool("tidydb", str(spool), "ratelimit")
    assert result.stdout.splitlines()[1:-1] == ["deleted 1h/per_mail/a (too old)"]


def test_a_record_rewritten_after_the_scan_is_not_deleted(tmp_path: Path) -> None:
    """The decision is taken on a snapshot; a delivery that writes the record meanwhile wins."""
    gone, waiting, arrived = "1xZ4Vb-000000005o0-3Nsi", "1xZ4Vc-000000005o3-0BeL", "1xV6uq-0005Vj-1t"
    db = HintsDb(str(tmp_path), "wait-remote_smtp")
    db.put(b"a", b"old")
    db.put(b"b", b"old")
    db.put(b"c", f"{gone}\n{waiting}".encode())
    verdicts = [Verdict(b"a", b"old", "too old"), Verdict(b"b", b"old", "too old"),
                Verdict(b"c", f"{gone}\n{waiting}".encode(), gone_ids=(gone,))]
    db.put(b"a", b"fresh")
    db.put(b"c", f"{gone}\n{waiting}\n{arrived}".encode())  # a message that came meanwhile stays
    assert apply(db, verdicts) == ["deleted b (too old)", f"updated c: removed {gone}"]
    assert db.get(b"a") == b"fresh"
    assert db.get(b"b") is None
    assert db.get(b"c") == f"{waiting}\n{arrived}".encode()


# -- record parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "parts"), [
    ("T:mx.example.net:192.0.2.5", ("mx.example.net", "192.0.2.5", None, None)),
    ("T:[127.0.0.3]:127.0.0.3:2526", ("127.0.0.3", "127.0.0.3", 2526, None)),
    ("T:127.0.0.3:127.0.0.3:2526", ("127.0.0.3", "127.0.0.3", 2526, None)),
    ("T:mx6.example.net:[2001:db8::1]:2525:1xZ4Vb-000000005o0-3Nsi",
     ("mx6.example.net", "2001:db8::1", 2525, "1xZ4Vb-000000005o0-3Nsi")),
    ("T:mx.example.net:192.0.2.5:1xV6uq-0005Vj-1t", ("mx.example.net", "192.0.2.5", None, "1xV6uq-0005Vj-1t")),
    ("T:mx.example.net", ("mx.example.net", None, None, None)),
    ("T:bob@example.net", None),
    ("R:example.net", None),
    ("T:a:b:c:d", None),
])
def test_host_keys_are_read_in_both_exim_forms(key: str, parts: tuple[object, ...] | None) -> None:
    parsed = HostKey.parse(key)
    assert (None if parsed is None else (parsed.host, parsed.ip, parsed.port, parsed.message_id)) == parts


def test_a_wait_record_with_something_not_an_id_is_damaged() -> None:
    with pytest.raises(ValueError):
        dump_lines("wait", "host", b"1xV6uq-0005Vj-1t\n../../etc/passwd")
