"""Retry rules: parsing ``begin retry`` and computing the next try time.

A rule is ``pattern  error  [senders=list]  F,2h,15m; G,16h,1h,1.5; ...``.
The computations are pure functions of the times passed in (never the
clock), so they are tested with fixed times.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from typing import Protocol

from mta import record
from mta.errors import ConfigError
from mta.values import parse_time

_ERROR_NAME = re.compile(
    r"\*|auth_failed|data_4[0-9x]{2}|mail_4[0-9x]{2}|rcpt_4[0-9x]{2}|lost_connection|lookup|"
    r"refused_MX|refused_A|refused|timeout_connect_MX|timeout_connect_A|timeout_connect|"
    r"timeout_MX|timeout_A|timeout|tls_required|quota(_\d+[smhdw])?"
)


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
        return max((p.cutoff for p in self.params), default=0)


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
    result = []
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
            if multiplier <= 1.0:
                raise ValueError(f'"{part}": the multiplier must be greater than 1')
            result.append(RetryParams(algorithm, parse_time(pieces[1]), parse_time(pieces[2]), multiplier))
        else:
            raise ValueError(f'"{part}": unknown retry algorithm "{pieces[0]}" (use F, G or H)')
        if result[-1].interval <= 0:
            raise ValueError(f'"{part}": the interval must be more than zero')
    return tuple(result)


def parse_retry_rules(lines: Iterable[SourceText]) -> list[RetryRule]:
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


def error_matches(rule_error: str, error: str) -> bool:
    """Does the error name of a failure (e.g. ``rcpt_451``, ``refused_MX``) match a rule's?"""
    if rule_error == "*":
        return True
    if rule_error == error:
        return True
    for prefix in ("rcpt_", "mail_", "data_"):
        if rule_error.startswith(prefix) and error.startswith(prefix):
            want, got = rule_error[len(prefix) :], error[len(prefix) :]
            return len(want) == len(got) and all(w in ("x", g) for w, g in zip(want, got, strict=True))
    if rule_error in ("refused", "timeout_connect", "timeout") and error.startswith(rule_error):
        return True
    return rule_error == "quota" and error.startswith("quota")


def next_try_time(
    rule: RetryRule, first_failed: float, now: float, previous_interval: float | None, rng: random.Random | None = None
) -> tuple[float, bool]:
    """When to try next after a failure at `now`; and whether the final cutoff has passed.

    The parameter set used is the first whose cutoff (measured from the
    first failure) has not passed.  After the last cutoff the address is
    past its retry time: the caller bounces it (returning expired=True).
    """
    age = now - first_failed
    for params in rule.params:
        if age < params.cutoff:
            interval = float(params.interval)
            if params.algorithm in ("G", "H") and previous_interval:
                grown = previous_interval * params.multiplier
                if params.algorithm == "G":
                    interval = max(interval, grown)
                else:
                    interval = (rng or random).uniform(interval, max(interval, grown))
            return now + interval, False
    last = rule.params[-1] if rule.params else None
    return now + (last.interval if last else 0), True
