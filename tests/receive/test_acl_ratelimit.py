"""ratelimit: Exim's smoothed rate, kept in the LMDB hints database, with the time passed in."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mta.hints import ratelimit as rl
from mta.hints.db import HintsDb, hints_key
from mta.receive.acl import AclStage
from mta.receive.acl_ratelimit import RatelimitFacts, parse_ratelimit
from tests.receive.acl_support import acl_world

T0 = 1_800_000_000.0

# -- the arithmetic (mta.hints.ratelimit), pure functions of the time -------------------


def test_a_first_event_counts_as_its_size_per_period() -> None:
    assert rl.next_rate(None, T0, 3600, 1.0) == 1.0
    assert rl.next_rate(None, T0, 3600, 5.0) == 5.0


def test_a_burst_reaches_the_limit_on_the_limit_th_event() -> None:
    record, rates = None, []
    for n in range(12):
        rate = rl.next_rate(record, T0 + n * 0.001, 3600, 1.0)
        record = rl.RatelimitRecord(T0 + n * 0.001, rate)
        rates.append(rate)
    # Exim: "limit serves as both the rate and the burst": ten quick events stay under a
    # limit of 10 (a client *at* the limit is over it), the eleventh does not.
    assert rates[9] < 10 <= rates[10]


def test_the_rate_decays_with_the_smoothing_period() -> None:
    previous = rl.RatelimitRecord(T0, 100.0)
    one_period_later = rl.next_rate(previous, T0 + 3600, 3600, 1.0)
    assert one_period_later == pytest.approx((1 - math.exp(-1)) * 1.0 + math.exp(-1) * 100.0)
    # An isolated event long after counts as one per period, never as nearly nothing.
    assert rl.next_rate(previous, T0 + 100 * 3600, 3600, 1.0) == 1.0


def test_the_clock_going_backwards_does_not_break_the_rate() -> None:
    rate = rl.next_rate(rl.RatelimitRecord(T0, 3.0), T0 - 60, 3600, 1.0)
    assert math.isfinite(rate) and rate >= 1.0


@pytest.mark.parametrize(
    "record",
    [rl.RatelimitRecord(T0, 2.5), rl.RatelimitRecord(T0, 0.0, 1_800_000_000, bytes(20))],
)
def test_records_round_trip(record: rl.RatelimitRecord) -> None:
    assert rl.decode(rl.encode(record)) == record


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"RL1",
        b"XX1" + bytes(17),
        rl.encode(rl.RatelimitRecord(T0, 1.0)) + b"junk",
        rl.encode(rl.RatelimitRecord(T0, 1.0))[:-1],
        rl.encode(rl.RatelimitRecord(T0, 1.0)).replace(b"RL1\x00", b"RL1\x07"),
        rl.encode(rl.RatelimitRecord(T0, float("nan"))),
        rl.encode(rl.RatelimitRecord(T0, -1.0)),
        rl.encode(rl.RatelimitRecord(T0, 1.0, 5, b"")),  # a filter too small to be Exim's
    ],
)
def test_records_read_back_are_validated(data: bytes) -> None:
    with pytest.raises(ValueError):
        rl.decode(data)


def test_bloom_filter_sees_repeats() -> None:
    _epoch, bloom = rl.new_bloom(10, T0)
    bloom, seen = rl.bloom_add(bloom, "a@example.com")
    assert not seen
    bloom, seen = rl.bloom_add(bloom, "a@example.com")
    assert seen
    assert not rl.bloom_add(bloom, "b@example.com")[1]


# -- parsing per stage ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "stage", "want"),
    [
        ("100 / 1h", AclStage.RCPT, ("1h", "per_mail", "mail", 1.0, True, False, False)),
        ("100/1h/per_rcpt/strict", AclStage.RCPT, ("1h", "per_rcpt", "cmd", 1.0, False, True, False)),
        ("100/1h/per_rcpt", AclStage.DATA, ("1h", "per_rcpt", "mail", 3.0, True, False, False)),
        ("100/1h/per_rcpt", AclStage.MAIL, ("1h", "per_rcpt", "cmd", 0.0, False, False, True)),
        ("1M/1d/per_byte", AclStage.DATA, ("1d", "per_byte", "mail", 2048.0, True, False, False)),
        ("100/1h/per_conn", AclStage.CONNECT, ("1h", "per_conn", "conn", 1.0, True, False, False)),
        ("100/1h/per_cmd/count=5", AclStage.RCPT, ("1h", "per_cmd", "cmd", 5.0, True, False, False)),
        ("100/1h/readonly", AclStage.RCPT, ("1h", "per_mail", "cmd", 0.0, False, False, True)),
        ("100/1h/noupdate/strict", AclStage.RCPT, ("1h", "per_mail", "cmd", 0.0, False, False, True)),
    ],
)
def test_parse_ratelimit(text: str, stage: AclStage, want: tuple[object, ...]) -> None:
    spec = parse_ratelimit(text, stage, RatelimitFacts(recipients_count=3, message_size=2048))
    assert (spec.period_text, spec.per, spec.cache, spec.count, spec.leaky, spec.strict, spec.readonly) == want


def test_per_rcpt_strict_cannot_be_used_before_the_recipients_are_known() -> None:
    with pytest.raises(ValueError, match='"per_rcpt" must not have /leaky or /strict option'):
        parse_ratelimit("10/1h/per_rcpt/strict", AclStage.MAIL)


def test_limit_multipliers_and_key() -> None:
    spec = parse_ratelimit("2k / 1h / per_mail / $sender_address/x", AclStage.RCPT)
    assert (spec.limit, spec.key) == (2048.0, "$sender_address/x")


# -- the condition, through the engine and a real LMDB file -----------------------------

LIMITED = """\
check:
  defer   ratelimit = 3 / 1h / per_rcpt / {mode}
          message = rate $sender_rate over $sender_rate_limit per $sender_rate_period
  accept
"""


def _rcpts(world, times: list[float], host: str = "203.0.113.9") -> list[str]:  # type: ignore[no-untyped-def]
    verbs = []
    for n, now in enumerate(times):
        result = world.rcpt(f"r{n}@example.com", host_address=host, now=now)
        verbs.append(result.verb)
    return verbs


def test_leaky_over_limit_attempts_do_not_count(tmp_path: Path) -> None:
    world = acl_world(tmp_path, LIMITED.format(mode="leaky"), "acl_smtp_rcpt = check\n")
    burst = [T0 + n for n in range(6)]
    assert _rcpts(world, burst) == ["accept", "accept", "accept", "defer", "defer", "defer"]
    # After a pause of two periods the client is let through again.
    assert _rcpts(world, [T0 + 2 * 3600 + 10]) == ["accept"]


def test_strict_counts_every_attempt(tmp_path: Path) -> None:
    world = acl_world(tmp_path, LIMITED.format(mode="strict"), "acl_smtp_rcpt = check\n")
    assert _rcpts(world, [T0 + n for n in range(4)]) == ["accept", "accept", "accept", "defer"]
    # Still over the limit where a leaky one would have recovered: the attempts counted.
    assert _rcpts(world, [T0 + 1800]) == ["defer"]


def test_the_message_reports_the_rate(tmp_path: Path) -> None:
    world = acl_world(tmp_path, LIMITED.format(mode="strict"), "acl_smtp_rcpt = check\n")
    _rcpts(world, [T0, T0 + 1, T0 + 2])
    result = world.rcpt("x@example.com", now=T0 + 3)
    assert (result.verb, result.user_message) == ("defer", "rate 4.0 over 3 per 1h")


def test_clients_are_counted_apart_and_the_key_is_the_one_helper(tmp_path: Path) -> None:
    world = acl_world(tmp_path, LIMITED.format(mode="leaky"), "acl_smtp_rcpt = check\n")
    _rcpts(world, [T0, T0 + 1, T0 + 2, T0 + 3])
    assert _rcpts(world, [T0 + 4], host="198.51.100.5") == ["accept"]
    db = HintsDb(str(tmp_path / "spool" / "db"), "ratelimit")
    keys = [key for key, _ in db.items()]
    assert keys == [hints_key("1h/per_rcpt/198.51.100.5"), hints_key("1h/per_rcpt/203.0.113.9")]
    record = db.get_record(keys[1], rl.decode)
    assert record is not None and record.time == T0 + 2


def test_a_key_from_the_network_cannot_break_the_database(tmp_path: Path) -> None:
    acl = "check:\n  deny ratelimit = 1 / 1h / per_cmd / strict / $sender_address\n  accept\n"
    world = acl_world(tmp_path, acl, "acl_smtp_rcpt = check\n")
    hostile = ("x" * 300 + "\r\n%00/" + "y" * 300) + "@example.net"
    assert world.rcpt("a@example.com", sender_address=hostile, now=T0).verb == "deny"  # limit 1: the first counts
    db = HintsDb(str(tmp_path / "spool" / "db"), "ratelimit")
    [(key, _value)] = db.items()
    assert len(key) <= 400 and b"\r" not in key and b"\n" not in key


def test_per_mail_is_counted_once_per_message(tmp_path: Path) -> None:
    acl = "check:\n  warn ratelimit = 10 / 1h / per_mail\n  warn set acl_m_rate = $sender_rate\n  accept\n"
    world = acl_world(tmp_path, acl, "acl_smtp_rcpt = check\n")
    ctx = world.context(now=T0)
    for n in range(3):
        world.rcpt(f"r{n}@example.com", ctx=ctx)
    assert ctx.message_vars["acl_m_rate"] == "1.0"
    ctx.new_message()
    world.rcpt("s@example.com", ctx=ctx)
    assert float(ctx.message_vars["acl_m_rate"]) > 1.0


def test_per_addr_counts_distinct_recipients(tmp_path: Path) -> None:
    acl = "check:\n  defer ratelimit = 2 / 1h / per_addr\n  accept\n"
    world = acl_world(tmp_path, acl, "acl_smtp_rcpt = check\n")
    recipients = ["a@example.com", "a@example.com", "A@example.com", "b@example.com", "c@example.com"]
    verbs = [world.rcpt(r, now=T0 + n).verb for n, r in enumerate(recipients)]
    # The same address again and again counts once: the third distinct one is over.
    assert verbs == ["accept", "accept", "accept", "accept", "defer"]


def test_an_unusable_database_defers(tmp_path: Path) -> None:
    world = acl_world(tmp_path, LIMITED.format(mode="leaky"), "acl_smtp_rcpt = check\n")
    (tmp_path / "spool").mkdir(exist_ok=True)
    (tmp_path / "spool" / "db").write_text("a file where the directory should be")
    result = world.rcpt("a@example.com", now=T0)
    assert (result.verb, result.user_message, result.log_message) == (
        "defer",
        None,
        "ratelimit database not available",
    )
