"""Retry rules: parsing ``begin retry``, matching an error, and Exim's retry arithmetic.

A rule is ``pattern  error  [senders=list]  F,2h,15m; G,16h,1h,1.5; ...``.
Which rule applies to a failure is decided by mta.deliver.retrying (the
pattern is an address list, which needs the configuration's list matching);
this module holds what does not: the rule records, `error_matches`, and
`compute_retry`, which turns a rule, the old retry record and the time into
the new record, exactly as Exim's retry_update does.

Everything here is a pure function of the times passed in (never the
clock), so the schedules are tested with fixed times.

The arithmetic (Exim's retry.c, restated):

- The *failing interval* is ``now - first_failed`` (for an address or
  routing item: the message's age, if that is longer).  The first parameter
  set whose cutoff it has not passed (``<=``) computes the next try.  When
  it is past every cutoff, the last set is used and the record is
  *expired*: the item has timed out.
- ``F,cutoff,i``: next try ``now + i``.
- ``G,cutoff,i,m``: the last gap is the smaller of the gap the record
  predicted (``next_try - last_try``) and the one that happened
  (``now - last_try``); the next gap is ``i`` if the last was shorter than
  ``i``, else ``last * m``.
- ``H,cutoff,i,m``: like G, but the next gap is ``i`` plus a random part
  between half and all of ``last * m - i`` (so that many hosts that failed
  together do not all come back together).
- No gap is longer than retry_interval_max.
- A message on the queue longer than the last cutoff, whose record was
  made after it arrived, times out at once, with ``next_try = now``: a
  destination that works for some messages must not keep a failing one on
  the queue for ever.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from mta import record
from mta.errors import ConfigError
from mta.values import format_time, parse_time

if TYPE_CHECKING:
    import random

_ERROR_NAME = re.compile(
    r"\*|auth_failed|data_4[0-9x]{2}|mail_4[0-9x]{2}|rcpt_4[0-9x]{2}|lost_connection|lookup|"
    r"refused_MX|refused_A|refused|timeout_connect_MX|timeout_connect_A|timeout_connect|"
    r"timeout_MX|timeout_A|timeout|tls_required|quota(_\d+[smhdw])?"
)

# The rule of Exim's default configuration (and of a configuration without any
# retry rules: see mta.deliver.retrying).
DEFAULT_RULE_TEXT = "F,2h,15m; G,16h,1h,1.5; F,4d,6h"


class SourceText(Protocol):
    text: str
    path: str
    line: int


@record.dataclass(frozen=True, slots=True)
class RetryParams:
    """One parameter set: algorithm F, G or H, cutoff, first interval, multiplier."""

    algorithm: str
    cutoff: int
    interval: int
    multiplier: float = 1.0

    def __str__(self) -> str:
        text = f"{self.algorithm},{format_time(self.cutoff)},{format_time(self.interval)}"
        return text if self.algorithm == "F" else f"{text},{self.multiplier:g}"


@record.dataclass(frozen=True, slots=True)
class RetryRule:
    pattern: str
    error: str
    senders: str | None
    params: tuple[RetryParams, ...]
    path: str = ""
    line: int = 0

    @property
    def final_cutoff(self) -> int:
        """When the item times out, counted from its first failure (0 for a rule without sets)."""
        return self.params[-1].cutoff if self.params else 0

    def __str__(self) -> str:
        senders = f" senders={self.senders}" if self.senders is not None else ""
        return f"{self.pattern} {self.error}{senders} {'; '.join(str(p) for p in self.params)}".rstrip()


def _split_fields(text: str) -> list[str]:
    """Split a rule line into white-space separated fields; double quotes group."""
    fields: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in text.strip():
        if ch == '"':
            quoted = not quoted
            continue
        if ch.isspace() and not quoted:
            if current:
                fields.append("".join(current))
                current = []
            continue
        current.append(ch)
    if current:
        fields.append("".join(current))
    return fields


def parse_params(text: str) -> tuple[RetryParams, ...]:
    """Parse ``F,2h,15m; G,16h,1h,1.5`` into parameter sets; ValueError says what is wrong."""
    result: list[RetryParams] = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        pieces = [p.strip() for p in part.split(",")]
        algorithm = pieces[0].upper()
        if algorithm == "F":
            if len(pieces) != 3:
                raise ValueError(f'"{part}": F needs a cutoff and an interval (F,2h,15m)')
            result.append(RetryParams("F", parse_time(pieces[1]), parse_time(pieces[2])))
        elif algorithm in ("G", "H"):
            if len(pieces) != 4:
                raise ValueError(f'"{part}": {algorithm} needs a cutoff, an interval and a multiplier (G,16h,1h,1.5)')
            try:
                multiplier = float(pieces[3])
            except ValueError:
                raise ValueError(f'"{pieces[3]}" is not a number') from None
            if not multiplier > 1.0 or multiplier > 1000:
                raise ValueError(f'"{part}": the multiplier must be greater than 1 (and at most 1000)')
            result.append(RetryParams(algorithm, parse_time(pieces[1]), parse_time(pieces[2]), multiplier))
        else:
            raise ValueError(f'"{part}": unknown retry algorithm "{pieces[0]}" (use F, G or H)')
        if result[-1].interval <= 0:
            raise ValueError(f'"{part}": the interval must be more than zero')
        if len(result) > 1 and result[-1].cutoff <= result[-2].cutoff:
            # Exim would silently never use such a set; say so instead.
            raise ValueError(f'"{part}": each cutoff must be later than the one before it')
    return tuple(result)


def parse_retry_rules(lines: Iterable[SourceText]) -> list[RetryRule]:
    """The rules of ``begin retry``, in order; ConfigError (file:line) for a bad one."""
    rules = []
    for src in lines:
        fields = _split_fields(src.text)
        if len(fields) < 2:
            raise ConfigError("retry rule needs at least a pattern and an error type", src.path, src.line)
        pattern, error = fields[0], fields[1]
        if not _ERROR_NAME.fullmatch(error):
            raise ConfigError(f'unknown error type "{error}" in retry rule', src.path, src.line)
        rest = fields[2:]
        senders = None
        if rest and rest[0].startswith("senders="):
            senders = rest[0][len("senders=") :]
            rest = rest[1:]
        try:
            params = parse_params(" ".join(rest))
        except ValueError as exc:
            raise ConfigError(f"retry rule: {exc}", src.path, src.line) from None
        rules.append(RetryRule(pattern, error, senders, params, src.path, src.line))
    return rules


def default_rule() -> RetryRule:
    """The rule of a configuration without a retry section (parsed once: asked at every delivery)."""
    global _DEFAULT_RULE
    if _DEFAULT_RULE is None:
        _DEFAULT_RULE = RetryRule("*", "*", None, parse_params(DEFAULT_RULE_TEXT), "(default)", 0)
    return _DEFAULT_RULE


_DEFAULT_RULE: RetryRule | None = None


# -- errors -------------------------------------------------------------------


def error_matches(rule_error: str, error: str | None) -> bool:
    """Does the error name of a failure (``rcpt_451``, ``refused_MX``, None for none) match a rule's?

    Failures are named by the code that met them (DeliveryError.retry_error):
    ``refused_MX``/``refused_A`` (connection refused, host found by MX or A),
    ``timeout_connect_MX``/``_A`` (connect timed out), ``timeout_MX``/``_A``
    (a command timed out), ``lost_connection``, ``rcpt_4NN``, ``mail_4NN``,
    ``data_4NN``, ``auth_failed``, ``tls_required``, ``lookup``, ``quota``.
    As in Exim, ``refused`` covers both refusals, ``timeout`` every timeout,
    ``timeout_connect`` both connect timeouts, ``timeout_A``/``timeout_MX``
    the connect timeout of that kind too, and ``rcpt_4xx`` / ``rcpt_45x`` /
    ``rcpt_451`` a code by pattern.  ``quota_<time>`` ("mailbox not read for
    that long") matches only a failure that says how long, ``quota_<seconds>s``;
    the appendfile transport does not report that, so such rules never apply.
    """
    if rule_error == "*":
        return True
    if error is None:
        return False
    if rule_error == error:
        return True
    for prefix in ("rcpt_", "mail_", "data_"):
        if rule_error.startswith(prefix) and error.startswith(prefix):
            want, got = rule_error[len(prefix) :], error[len(prefix) :]
            return len(want) == len(got) and all(w in ("x", g) for w, g in zip(want, got, strict=True))
    if rule_error in ("refused", "timeout_connect") or rule_error == "timeout":
        return error.startswith(rule_error)
    if rule_error in ("timeout_A", "timeout_MX"):
        return error in (rule_error, rule_error.replace("timeout_", "timeout_connect_"))
    if rule_error == "quota":
        return error == "quota" or error.startswith("quota_")
    if rule_error.startswith("quota_") and error.startswith("quota_") and error.endswith("s"):
        try:
            return int(error[len("quota_") : -1]) >= parse_time(rule_error[len("quota_") :])
        except ValueError:
            return False
    return False


# -- the arithmetic -----------------------------------------------------------


@record.dataclass(frozen=True, slots=True)
class RetryTimes:
    """The times a retry record holds (what `compute_retry` reads and writes)."""

    first_failed: int
    last_try: int
    next_try: int
    expired: bool = False


@record.dataclass(frozen=True, slots=True)
class RetryDecision:
    """The new record's times, and whether this item has timed out (its address may fail)."""

    times: RetryTimes
    timed_out: bool


def compute_retry(
    rule: RetryRule,
    old: RetryTimes | None,
    now: int,
    *,
    message_age: int,
    host_item: bool,
    interval_max: int,
    rng: random.Random | None = None,
) -> RetryDecision:
    """The record after one more failure at `now` (Exim's retry_update for one item).

    `old` is the record as read (None: first failure); `message_age` is how
    long the message has been on the queue; `host_item` is true for a
    host or host+message record, whose failing interval is the host's own
    (a message's age says nothing about a host).  A rule without parameter
    sets times out at the first failure.
    """
    if old is None:
        old = RetryTimes(now, now, now)
    failing = now - old.first_failed
    if not host_item and message_age > failing:
        failing = message_age
    params: RetryParams | None = next((p for p in rule.params if failing <= p.cutoff), None)
    timed_out = params is None
    expired = timed_out
    if params is None and rule.params:
        params = rule.params[-1]
    received = now - message_age
    if not timed_out and received <= old.first_failed and message_age > rule.final_cutoff:
        # On the queue longer than the whole schedule: one more try for the next message at once.
        timed_out, params = True, None
    if params is None:
        next_try = now
    elif params.algorithm == "F":
        next_try = now + params.interval
    else:
        last_gap = max(0, min(old.next_try - old.last_try, now - old.last_try))
        next_gap = int(last_gap * params.multiplier)
        if params.algorithm == "G":
            next_try = now + (params.interval if last_gap < params.interval else next_gap)
        else:
            next_try = now + params.interval
            if next_gap > params.interval:
                spread = next_gap - params.interval
                if rng is None:
                    import random  # only for the randomised rules: milliseconds of start-up otherwise

                    rng = random.Random()
                next_try += rng.randrange(spread) // 2 + spread // 2
    next_try = min(next_try, now + interval_max)
    return RetryDecision(RetryTimes(old.first_failed, now, next_try, expired), timed_out)


def retry_schedule(rule: RetryRule, *, interval_max: int, first_failed: int = 0, limit: int = 200) -> list[int]:
    """The try times (from `first_failed`) of a destination that always fails and is tried
    exactly when due, up to and including the try at which it times out.

    For documentation and `-brt`-style display: real tries happen at queue runs, so
    the gaps are at least the queue-run interval, and G/H rules grow from the real gaps.
    H rules use their smallest choice here.
    """
    times: list[int] = []
    old: RetryTimes | None = None
    now = first_failed
    # H's smallest choice is G's interval: the schedule shown is the earliest one.
    as_g = tuple(record.replace(p, algorithm="G") if p.algorithm == "H" else p for p in rule.params)
    steady = record.replace(rule, params=as_g)
    for _ in range(limit):
        times.append(now - first_failed)
        decision = compute_retry(steady, old, now, message_age=0, host_item=True, interval_max=interval_max)
        if decision.timed_out:
            break
        old = decision.times
        now = decision.times.next_try
    return times
