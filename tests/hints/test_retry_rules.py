"""mta.hints.retry: parsing rules, matching errors, and Exim's retry arithmetic, with fixed times.

The schedules are tables: a rule, the times at which a destination that
always fails is tried, and when it times out.  Times are seconds from the
first failure; nothing here reads the clock.
"""

from __future__ import annotations

import itertools
import random

import pytest

from mta.errors import ConfigError
from mta.hints.retry import (
    RetryRule,
    RetryTimes,
    compute_retry,
    default_rule,
    error_matches,
    parse_params,
    parse_retry_rules,
    retry_schedule,
)
from mta.record import dataclass

M, H, D = 60, 3600, 86400


@dataclass
class Line:
    text: str
    path: str = "/etc/mta/mta.conf"
    line: int = 7


def rule(params: str, pattern: str = "*", error: str = "*") -> RetryRule:
    return RetryRule(pattern, error, None, parse_params(params))


# -- parsing --------------------------------------------------------------------


def test_rules_parse_with_senders_and_quotes() -> None:
    [r1, r2, r3] = parse_retry_rules([
        Line("wonder.example   quota_5d"),
        Line('"^\\N.*@x\\d+\\.example$\\N"  rcpt_4xx  senders=:  F,1h,30m'),
        Line("*  *  F,2h,15m; G,16h,1h,1.5; F,4d,6h"),
    ])
    assert r1.params == () and r1.final_cutoff == 0 and r1.error == "quota_5d"
    assert r2.pattern == "^\\N.*@x\\d+\\.example$\\N" and r2.senders == ":" and r2.params[0].interval == 30 * M
    assert [(p.algorithm, p.cutoff, p.interval, p.multiplier) for p in r3.params] == [
        ("F", 2 * H, 15 * M, 1.0), ("G", 16 * H, 1 * H, 1.5), ("F", 4 * D, 6 * H, 1.0)
    ]
    assert str(r3) == "* * F,2h,15m; G,16h,1h,1.5; F,4d,6h"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("* * F,2h", "F needs a cutoff and an interval"),
        ("* * F,2h,15m,3", "F needs a cutoff and an interval"),
        ("* * G,16h,1h", "G needs a cutoff, an interval and a multiplier"),
        ("* * G,16h,1h,x", '"x" is not a number'),
        ("* * G,16h,1h,1", "the multiplier must be greater than 1"),
        ("* * H,16h,1h,0.5", "the multiplier must be greater than 1"),
        ("* * X,1h,5m", 'unknown retry algorithm "X"'),
        ("* * F,2x,15m", "is not a time"),
        ("* * F,2h,0s", "the interval must be more than zero"),
        ("* * F,4d,6h; F,2h,15m", "each cutoff must be later"),
        ("* timeout_soon F,2h,15m", 'unknown error type "timeout_soon"'),
        ("justapattern", "needs at least a pattern and an error type"),
    ],
    ids=lambda v: v if isinstance(v, str) and v.startswith("*") else None,
)
def test_a_bad_rule_is_a_config_error_naming_file_and_line(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_retry_rules([Line(text)])
    assert info.value.path == "/etc/mta/mta.conf" and info.value.line == 7, info.value
    assert str(info.value).startswith("/etc/mta/mta.conf:7: ")
    assert says in str(info.value), f"got {info.value} want {says}"


# -- errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule_error", "error", "matches"),
    [
        ("*", None, True),
        ("*", "refused_MX", True),
        ("refused", "refused_MX", True),
        ("refused", "refused_A", True),
        ("refused_A", "refused_MX", False),
        ("refused_MX", "refused_MX", True),
        ("timeout", "timeout_connect_A", True),
        ("timeout", "timeout_MX", True),
        ("timeout_connect", "timeout_connect_MX", True),
        ("timeout_connect", "timeout_A", False),
        ("timeout_A", "timeout_connect_A", True),
        ("timeout_A", "timeout_A", True),
        ("timeout_A", "timeout_MX", False),
        ("timeout_MX", "timeout_connect_MX", True),
        ("timeout_connect_A", "timeout_A", False),
        ("rcpt_4xx", "rcpt_451", True),
        ("rcpt_45x", "rcpt_451", True),
        ("rcpt_45x", "rcpt_421", False),
        ("rcpt_452", "rcpt_451", False),
        ("rcpt_4xx", "mail_451", False),
        ("mail_4xx", "mail_452", True),
        ("data_4xx", "data_450", True),
        ("quota", "quota", True),
        ("quota_5d", "quota", False),  # how long unread is not known: such a rule does not apply
        ("quota_5d", "quota_500000s", True),
        ("quota_5d", "quota_3600s", False),
        ("auth_failed", "auth_failed", True),
        ("lookup", "lookup", True),
        ("lost_connection", "lost_connection", True),
        ("tls_required", "tls_required", True),
        ("refused", None, False),
    ],
)
def test_error_names(rule_error: str, error: str | None, matches: bool) -> None:
    assert error_matches(rule_error, error) is matches, f"{rule_error} vs {error}: got {not matches}"


# -- the arithmetic ---------------------------------------------------------------


def fmt(seconds: list[int]) -> list[str]:
    from mta.values import format_time

    return [format_time(s) for s in seconds]


@pytest.mark.parametrize(
    ("params", "interval_max", "want"),
    [
        # F: a fixed interval until the cutoff; the try after the cutoff times out.
        ("F,1h,15m", D, ["0s", "15m", "30m", "45m", "1h", "1h15m"]),
        # G: the interval, then times the multiplier (from the last gap).
        ("G,8h,1h,2", D, ["0s", "1h", "3h", "7h", "15h"]),
        # retry_interval_max caps every gap.
        ("G,8h,1h,2", 3 * H, ["0s", "1h", "3h", "6h", "9h"]),
        # Sets follow each other; G starts from its own interval when the last gap was shorter.  A cutoff
        # is "failing for no longer than": the try at exactly 3h still uses G, whose gap overshoots 5h.
        ("F,30m,10m; G,3h,20m,2; F,5h,1h", D,
         ["0s", "10m", "20m", "30m", "40m", "1h", "1h40m", "3h", "5h40m"]),
        ("F,30m,10m; G,2h,20m,2; F,5h,1h", D,
         ["0s", "10m", "20m", "30m", "40m", "1h", "1h40m", "3h", "4h", "5h", "6h"]),
    ],
)
def test_schedules(params: str, interval_max: int, want: list[str]) -> None:
    got = fmt(retry_schedule(rule(params), interval_max=interval_max))
    assert got == want, f"got {got} want {want}"


def test_the_default_rule_laid_out() -> None:
    """F,2h,15m; G,16h,1h,1.5; F,4d,6h: the table of docs/retry.md."""
    times = retry_schedule(default_rule(), interval_max=D)
    assert fmt(times[:12]) == ["0s", "15m", "30m", "45m", "1h", "1h15m", "1h30m", "1h45m", "2h", "2h15m", "3h15m",
                               "4h45m"]
    assert fmt(times[12:16]) == ["7h", "10h22m30s", "15h26m15s", "23h1m52s"]
    gaps = [b - a for a, b in itertools.pairwise(times[15:])]
    assert set(gaps) == {6 * H}
    assert times[-2] <= 4 * D < times[-1]  # the last try inside the cutoff, then the one that times out
    assert len(times) == 29


def test_first_failure_starts_the_record() -> None:
    d = compute_retry(rule("F,2h,15m"), None, 1000, message_age=0, host_item=True, interval_max=D)
    assert d.times == RetryTimes(1000, 1000, 1000 + 15 * M, False) and not d.timed_out


def test_after_the_last_cutoff_the_record_expires_and_times_out() -> None:
    old = RetryTimes(0, 2 * H - 60, 2 * H + 14 * M)
    d = compute_retry(rule("F,2h,15m"), old, 2 * H + 15 * M, message_age=0, host_item=True, interval_max=D)
    assert d.timed_out and d.times.expired
    assert d.times.next_try == 2 * H + 30 * M  # a post-cutoff retry time is still computed (delay_after_cutoff)
    assert d.times.first_failed == 0


def test_g_grows_from_the_smaller_of_predicted_and_actual_gap() -> None:
    r = rule("G,1d,1h,2")
    # Predicted 4h, but tried 2h after the last try (a forced delivery): the next gap is 4h, not 8h.
    old = RetryTimes(0, 10 * H, 14 * H)
    d = compute_retry(r, old, 12 * H, message_age=0, host_item=True, interval_max=D)
    assert d.times.next_try == 12 * H + 4 * H
    # Tried late (a queue run every 6h): the gap predicted counts.
    d = compute_retry(r, RetryTimes(0, 10 * H, 11 * H), 17 * H, message_age=0, host_item=True, interval_max=D)
    assert d.times.next_try == 17 * H + 2 * H


def test_h_is_randomised_between_half_and_all_of_the_growth() -> None:
    r = rule("H,1d,1h,3")
    old = RetryTimes(0, 10 * H, 12 * H)  # last gap 2h: G would give 6h
    seen = set()
    for seed in range(40):
        d = compute_retry(r, old, 12 * H, message_age=0, host_item=True, interval_max=D, rng=random.Random(seed))
        gap = d.times.next_try - 12 * H
        assert 1 * H + (5 * H) // 2 <= gap < 6 * H, gap
        seen.add(gap)
    assert len(seen) > 10


def test_message_age_counts_for_an_address_but_not_for_a_host() -> None:
    r = rule("F,2h,15m; F,1d,1h")
    old = RetryTimes(100 * D, 100 * D, 100 * D + 15 * M)
    now = 100 * D + 15 * M
    host = compute_retry(r, old, now, message_age=5 * H, host_item=True, interval_max=D)
    assert host.times.next_try == now + 15 * M and not host.timed_out
    address = compute_retry(r, old, now, message_age=5 * H, host_item=False, interval_max=D)
    assert address.times.next_try == now + 1 * H  # failing "since" the message arrived: second set


def test_a_message_older_than_the_schedule_times_out_at_a_new_failure() -> None:
    """A destination that works for most messages keeps resetting its record; a message that
    has waited longer than the final cutoff must still go, and the next message be tried at once."""
    r = rule("F,2h,15m; F,4d,6h")
    d = compute_retry(r, None, 10 * D, message_age=5 * D, host_item=True, interval_max=D)
    assert d.timed_out and d.times.next_try == 10 * D and not d.times.expired


def test_a_rule_without_parameters_times_out_at_once() -> None:
    d = compute_retry(rule(""), None, 500, message_age=0, host_item=False, interval_max=D)
    assert d.timed_out and d.times.expired and d.times.next_try == 500


def test_clock_behind_the_record_never_gives_a_negative_or_huge_gap() -> None:
    """A record written before the clock was set back: its last try is in the future."""
    r = rule("G,1d,1h,2")
    old = RetryTimes(0, 50 * H, 52 * H)
    d = compute_retry(r, old, 10 * H, message_age=0, host_item=True, interval_max=D)
    assert d.times.next_try == 10 * H + 1 * H
