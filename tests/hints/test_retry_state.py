"""mta.hints.retry_state: what the retry data lets a delivery try, and what it writes after.

A real retry database in a tmp directory and fixed times; the rule finder
is the simplest one (one rule for everything), since rule matching is
mta.deliver.retrying's and is tested there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mta.hints.retry import RetryRule, parse_params
from mta.hints.retry_db import RetryDb, RetryRecord
from mta.hints.retry_state import (
    ADDRESS,
    ERRNO_HRETRY,
    ERRNO_LRETRY,
    ERRNO_RRETRY,
    HOST,
    MESSAGE,
    RetryItem,
    RetryState,
    host_key,
)

T0 = 1_800_000_000
M, H, D = 60, 3600, 86400
RULE = RetryRule("*", "*", None, parse_params("F,2h,15m; F,4d,6h"))


class Owner:
    """Stands for an address item: retry items belong to owners by identity."""

    def __init__(self, name: str) -> None:
        self.name = name


@pytest.fixture
def db(tmp_path: Path) -> RetryDb:
    return RetryDb(str(tmp_path / "db"), data_expire=7 * D, interval_max=D)


def state(db: RetryDb, now: int, *, received: int | None = None, rule: RetryRule | None = RULE,
          **kwargs: object) -> RetryState:
    return RetryState(db, lambda subject, domain, error: rule, message_id="1xZ2cX-000000001go-2Wop",
                      received_time=now if received is None else received, now=now, **kwargs)  # type: ignore[arg-type]


def host_failure(st: RetryState, owners: list[Owner], key: str = "T:mx.example.net:192.0.2.1") -> None:
    st.add(owners, RetryItem(key, HOST, "mx.example.net", "example.net", error="refused_A", errno=111,
                             text="Connection refused"))


@pytest.mark.parametrize(
    ("name", "address", "port", "include_ip", "want"),
    [
        ("MX.Example.NET", "192.0.2.1", 25, True, "T:mx.example.net:192.0.2.1"),
        ("mx.example.net", "192.0.2.1", 2526, True, "T:mx.example.net:192.0.2.1:2526"),
        ("127.0.0.3", "127.0.0.3", 2526, True, "T:[127.0.0.3]:127.0.0.3:2526"),
        ("mx.example.net", "2001:db8::1", 25, True, "T:mx.example.net:[2001:db8::1]"),
        ("mx.example.net", "192.0.2.1", 25, False, "T:mx.example.net"),
    ],
)
def test_host_keys(name: str, address: str, port: int, include_ip: bool, want: str) -> None:
    assert host_key(name, address, port, include_ip) == want


def test_a_failed_host_waits_for_its_retry_time_for_every_message(db: RetryDb) -> None:
    first = state(db, T0)
    assert first.host_check("mx.example.net", "192.0.2.1", 25, "example.net").usable
    owner = Owner("a")
    host_failure(first, [owner])
    # Within the same attempt the host is not tried again (Exim's "unusable tree").
    assert not first.host_check("mx.example.net", "192.0.2.1", 25, "example.net").usable
    assert first.update([], [], [owner]) == {}
    for now, usable in ((T0 + 1, False), (T0 + 15 * M - 1, False), (T0 + 15 * M, True)):
        check = state(db, now).host_check("mx.example.net", "192.0.2.1", 25, "example.net")
        assert check.usable is usable, now - T0
        assert check.had_record and not check.expired
    # Forced (-M): tried whatever the time.
    assert state(db, T0 + 1, ignore_retry=True).host_check("mx.example.net", "192.0.2.1", 25, "x").usable


def test_a_forced_run_does_not_retry_a_host_that_failed_during_it(db: RetryDb) -> None:
    run_started = T0 - 10
    first = state(db, T0, ignore_retry=True, run_started=run_started)
    owner = Owner("a")  # one object: items belong to owners by identity (a second Owner("a") may not share its id)
    host_failure(first, [owner])
    first.update([], [], [owner])
    later = state(db, T0 + 5, ignore_retry=True, run_started=run_started)
    assert not later.host_check("mx.example.net", "192.0.2.1", 25, "example.net").usable
    # The next run (started after the failure) tries it again.
    assert state(db, T0 + 60, ignore_retry=True, run_started=T0 + 30).host_check(
        "mx.example.net", "192.0.2.1", 25, "example.net").usable


def test_timeout_after_the_final_cutoff_then_expired_host(db: RetryDb) -> None:
    key = "T:mx.example.net:192.0.2.1"
    failing_since = T0 - 4 * D - 60  # a minute past the final cutoff at T0
    db.put(key, RetryRecord(failing_since, T0 - 6 * H, T0, False, 111, 65, "refused_A", "refused", T0 - 6 * H))
    st = state(db, T0, received=T0 - H)
    check = st.host_check("mx.example.net", "192.0.2.1", 25, "example.net")
    assert check.usable and not check.expired
    owner = Owner("bob")
    host_failure(st, [owner])
    timeouts = st.update([], [], [owner])
    assert timeouts[id(owner)].first_failed == failing_since
    rec = db.read([key], T0)[key]
    assert rec.expired and rec.next_try == T0 + 6 * H
    # A new message: the host is past its cutoff and not due: unusable, expired (bounce at once).
    check = state(db, T0 + 60).host_check("mx.example.net", "192.0.2.1", 25, "example.net")
    assert not check.usable and check.expired and check.last_try == T0
    # Once due, it is tried again (as an expired host).
    check = state(db, T0 + 6 * H).host_check("mx.example.net", "192.0.2.1", 25, "example.net")
    assert check.usable and check.expired


def test_a_message_older_than_the_schedule_is_tried_despite_the_retry_time(db: RetryDb) -> None:
    key = "T:mx.example.net:192.0.2.1"
    db.put(key, RetryRecord(T0 - H, T0 - 60, T0 + 14 * M, False, time_stamp=T0 - 60))
    young = state(db, T0, received=T0 - D)
    assert not young.host_check("mx.example.net", "192.0.2.1", 25, "example.net").usable
    old = state(db, T0, received=T0 - 5 * D)
    assert old.host_check("mx.example.net", "192.0.2.1", 25, "example.net").usable
    # No rule at all: nothing can be computed, so the message is "older than the schedule".
    assert state(db, T0, rule=None).host_check("mx.example.net", "192.0.2.1", 25, "example.net").usable


def test_skipped_hosts_keep_an_address_from_timing_out(db: RetryDb) -> None:
    db.put("T:a:192.0.2.1", RetryRecord(T0 - 5 * D, T0 - 6 * H, T0, False, time_stamp=T0 - 6 * H))
    st = state(db, T0)
    owner = Owner("bob")
    host_failure(st, [owner], "T:a:192.0.2.1")
    st.mark_skipped([owner])
    assert st.update([], [], [owner]) == {}
    assert db.read(["T:a:192.0.2.1"], T0)["T:a:192.0.2.1"].expired


def test_an_address_times_out_only_when_every_item_has(db: RetryDb) -> None:
    db.put("T:a:192.0.2.1", RetryRecord(T0 - 5 * D, T0 - 6 * H, T0, False, time_stamp=T0 - 6 * H))
    st = state(db, T0)
    owner = Owner("bob")
    host_failure(st, [owner], "T:a:192.0.2.1")
    host_failure(st, [owner], "T:b:192.0.2.2")  # fresh: its first failure is now
    assert st.update([], [], [owner]) == {}
    assert not db.read(["T:b:192.0.2.2"], T0)["T:b:192.0.2.2"].expired


def test_success_deletes_stale_records_and_a_completed_message_its_message_record(db: RetryDb) -> None:
    for key in ("T:mx:192.0.2.1", "T:mx:192.0.2.1:1xZ2cX-000000001go-2Wop", "R:bob@example.net:<a@b>"):
        db.put(key, RetryRecord(T0 - H, T0 - H, T0 - 1, False, time_stamp=T0 - H))
    st = state(db, T0)
    owner = Owner("bob")
    st.add([owner], RetryItem("T:mx:192.0.2.1", HOST, "mx", "example.net", delete=True))
    st.add([owner], RetryItem("T:mx:192.0.2.1:1xZ2cX-000000001go-2Wop", MESSAGE, "mx", "example.net", error="mail_451"))
    st.add([owner], RetryItem("R:bob@example.net:<a@b>", ADDRESS, "bob@example.net", delete=True))
    assert st.update([owner], [], []) == {}
    assert db.dump() == []


def test_nothing_to_delete_needs_no_write(db: RetryDb) -> None:
    st = state(db, T0)
    owner = Owner("bob")
    st.add([owner], RetryItem("R:example.net", ADDRESS, "*@example.net", delete=True))
    assert st.update([owner], [], []) == {}
    assert db.dump() == []


def test_routing_and_local_checks(db: RetryDb) -> None:
    db.put("R:example.net", RetryRecord(T0 - H, T0 - 60, T0 + 14 * M, False, time_stamp=T0 - 60))
    db.put("R:bob@example.org:<alice@example.com>",
           RetryRecord(T0 - H, T0 - 60, T0 + 14 * M, False, error="rcpt_451", time_stamp=T0 - 60))
    db.put("T:carol@example.com", RetryRecord(T0 - H, T0 - 60, T0 + 14 * M, False, error="quota", time_stamp=T0 - 60))
    st = state(db, T0)
    held = st.routing_check("R:example.net", "R:x@example.net", "alice@example.com", "x@example.net", "example.net")
    assert held is not None and held.errno == ERRNO_RRETRY and held.message == "retry time not reached"
    assert held.log_kind == "routing"
    held = st.routing_check("R:example.org", "R:bob@example.org", "alice@example.com", "bob@example.org",
                            "example.org")
    assert held is not None
    # Another sender's mail to the same address goes on (address_retry_include_sender).
    assert st.routing_check("R:example.org", "R:bob@example.org", "zed@example.com", "bob@example.org",
                            "example.org") is None
    held = st.local_check("T:carol@example.com", "carol@example.com", "example.com")
    assert held is not None and held.errno == ERRNO_LRETRY and held.message == "Retry time not yet reached"
    assert state(db, T0 + 15 * M).local_check("T:carol@example.com", "carol@example.com", "example.com") is None
    assert state(db, T0, ignore_retry=True).local_check("T:carol@example.com", "carol@example.com", "x") is None


def test_the_database_gone_means_no_retry_data(tmp_path: Path) -> None:
    (tmp_path / "db").write_text("not a directory")
    panics: list[str] = []
    st = state(RetryDb(str(tmp_path / "db"), panic=panics.append), T0)
    assert st.host_check("mx", "192.0.2.1", 25, "example.net").usable
    owner = Owner("bob")
    host_failure(st, [owner])
    assert st.update([], [], [owner]) == {}
    assert panics and ERRNO_HRETRY == -54
