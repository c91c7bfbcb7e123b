"""The ``ratelimit`` ACL condition, as Exim's acl_ratelimit() computes it.

``ratelimit = <limit> / <period> / [options] / [key]`` is true when the
client's smoothed rate is at or over the limit (so ``deny ratelimit = ...``
reads naturally).  Options: what is counted (``per_mail`` by default,
``per_rcpt``, ``per_byte``, ``per_cmd``, ``per_conn``, ``per_addr``,
``count=N``, ``unique=EVENT``), how the record is updated (``leaky`` by
default: an over-limit client's attempts are not counted, so it gets through
again once it slows down; ``strict``: every attempt counts; ``readonly`` /
``noupdate``: only look), and the key (default: the client's IP address).

The rate is kept in the LMDB hints database ``<spool>/db/ratelimit`` under
``<period>/<per_what>/[unique/]<key>`` made by `mta.hints.db.hints_key`
(the key is often network data).  The arithmetic is mta.hints.ratelimit's,
a pure function of the time, which the context may fix (`AclContext.now`).
Results are remembered as Exim does: for the command (per_rcpt, per_cmd,
per_addr and readonly), the message (per_mail, per_byte) or the connection
(per_conn), so that two statements with the same parameters count once.

A database that cannot be opened makes the condition defer
("ratelimit database not available"), as in Exim.
"""

from __future__ import annotations

import re

from mta import record
from mta.hints import ratelimit as rl
from mta.hints.db import HintsDb, HintsError, hints_key
from mta.receive.acl_types import AclStage, Rc
from mta.values import parse_time, split_fixed

_LIMIT = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([kKmMgG]?)$")
_MULTIPLIER = {"": 1.0, "k": 1024.0, "m": 1024.0**2, "g": 1024.0**3}
_PER = ("per_cmd", "per_conn", "per_mail", "per_rcpt", "per_byte", "per_addr")
# Stages "in a message" for the per_* rules (Exim's where <= ACL_WHERE_NOTSMTP).
_AFTER_RCPT = (AclStage.PREDATA, AclStage.MIME, AclStage.DATA, AclStage.NOT_SMTP)


@record.dataclass(frozen=True, slots=True)
class RatelimitSpec:
    """A ratelimit condition resolved for one stage."""

    limit_text: str
    limit: float
    period_text: str
    period: float
    per: str  # the per_* word in the key
    cache: str  # "cmd", "mail" or "conn": how long a result is remembered
    count: float
    leaky: bool
    strict: bool
    readonly: bool
    unique: str | None
    key: str | None  # None: the client's address


@record.dataclass(frozen=True, slots=True)
class RatelimitFacts:
    """What the stage-dependent options need from the session."""

    recipients_count: int = 0
    message_size: int | None = None
    recipient: str | None = None  # RCPT: local_part@domain, for per_addr


def parse_ratelimit(text: str, stage: AclStage | None, facts: RatelimitFacts | None = None) -> RatelimitSpec:
    """Parse (and, with a stage, resolve) a ratelimit argument; ValueError says what is wrong.

    Without a stage only the syntax is checked (start-up); the rules that
    depend on the ACL (per_rcpt in a MAIL ACL, ...) are applied with one.
    """
    facts = facts or RatelimitFacts()
    items = split_fixed(text, "/")
    if not items:
        raise ValueError('error in arguments to "ratelimit" condition: sender rate limit not set')
    m = _LIMIT.match(items[0])
    if m is None:
        raise ValueError(f'error in arguments to "ratelimit" condition: "{items[0]}" is not a positive number')
    limit = float(m.group(1)) * _MULTIPLIER[m.group(2).lower()]
    period_text = items[1] if len(items) > 1 else ""
    try:
        period = float(parse_time(period_text)) if period_text else -1.0
    except ValueError:
        period = -1.0
    if period <= 0:
        raise ValueError(f'error in arguments to "ratelimit" condition: "{period_text}" is not a time value')

    per: str | None = None
    clash = False
    leaky = strict = readonly = noupdate = badacl = False
    count = 1.0
    unique: str | None = None
    key: str | None = None
    for item in items[2:]:
        word = item.lower()
        if word in ("leaky", "strict", "readonly", "noupdate"):
            leaky |= word == "leaky"
            strict |= word == "strict"
            readonly |= word == "readonly"
            noupdate |= word == "noupdate"
        elif word in _PER:
            clash |= per is not None
            per = word
            if stage is None:
                continue
            if word == "per_conn":
                badacl |= stage is AclStage.NOT_SMTP
            elif word in ("per_mail", "per_byte"):
                badacl |= not stage.in_message
                if word == "per_byte" and stage.in_message:
                    count = float(max(facts.message_size or 0, 0))
            elif word == "per_rcpt":
                if stage in _AFTER_RCPT:
                    per, count = "per_allrcpts", float(facts.recipients_count)
                elif stage is not AclStage.RCPT:
                    badacl = True
            elif word == "per_addr":
                if stage is AclStage.RCPT:
                    unique = facts.recipient or ""
                else:
                    badacl, unique = True, "*"
        elif word.startswith("count="):
            m = re.fullmatch(r"\d+(?:\.\d*)?|\.\d+", item[6:].strip())
            if m is None:
                raise ValueError(f'error in arguments to "ratelimit" condition: "{item}" is not a positive number')
            count = float(item[6:])
        elif word.startswith("unique="):
            unique = item[7:]
        else:
            key = item if key is None else f"{key}/{item}"
    if clash:
        raise ValueError('error in arguments to "ratelimit" condition: conflicting per_* options')
    if leaky + strict + readonly > 1:
        raise ValueError('error in arguments to "ratelimit" condition: conflicting update modes')
    if badacl and (leaky or strict) and not noupdate and stage is not None:
        raise ValueError(
            f'error in arguments to "ratelimit" condition: "{per}" must not have /leaky or /strict option, '
            f"or cannot be used in {stage.where_name} ACL"
        )
    if noupdate:
        readonly, leaky, strict = True, False, False
    if badacl:
        readonly = True
    if readonly:
        count = 0.0
    if not strict and not readonly:
        leaky = True
    per = per or "per_mail"
    key_per = "per_rcpt" if per == "per_allrcpts" else per
    if per == "per_addr":
        key_per = "per_rcpt"  # Exim counts per_addr in per_rcpt mode, with a filter of addresses
    if readonly:
        cache = "cmd"
    elif per == "per_conn":
        cache = "conn"
    elif per in ("per_mail", "per_byte", "per_allrcpts"):
        cache = "mail"
    else:
        cache = "cmd"
    return RatelimitSpec(
        items[0], limit, period_text, period, key_per, cache, count, leaky, strict, readonly, unique, key
    )


def store_key(spec: RatelimitSpec, host_address: str | None) -> str:
    """The record's key as text: ``<period>/<per_what>/[unique/]<key>``, Exim's form."""
    key = spec.key if spec.key is not None else (host_address or "")
    return f"{spec.period_text}/{spec.per}/{'unique/' if spec.unique is not None else ''}{key}"


def ratelimit_update(db: HintsDb, spec: RatelimitSpec, key_text: str, now: float) -> tuple[Rc, float]:
    """Compute the rate at `now`, store it when Exim would, and say whether it is over the limit.

    Blocking (LMDB): call it in a thread from an event loop.  HintsError
    propagates (the caller defers).
    """

    def change(old: bytes | None) -> tuple[bytes | None, tuple[Rc, float]]:
        previous: rl.RatelimitRecord | None = None
        if old is not None:
            try:
                previous = rl.decode(old)
            except ValueError:
                previous = None  # a damaged record is a missing one
        count = spec.count
        bloom_epoch: int | None = None
        bloom = b""
        if spec.unique is not None:
            # A filter older than the period is forgotten, so that a repeated event
            # counts once per period; the rate itself (longer memory) is kept.
            if previous is not None and previous.bloom_epoch is not None and now <= previous.bloom_epoch + spec.period:
                bloom_epoch, bloom = previous.bloom_epoch, previous.bloom
            else:
                bloom_epoch, bloom = rl.new_bloom(spec.limit, now)
            if not spec.readonly:
                bloom, seen = rl.bloom_add(bloom, spec.unique)
                if seen:
                    count = 0.0
        rate = rl.next_rate(previous, now, spec.period, count)
        # A client sending at the limit is over it: a limit of 0 blocks everything.
        rc = Rc.FAIL if rate < spec.limit else Rc.OK
        if (rc is Rc.FAIL and spec.leaky) or spec.strict:
            return rl.encode(rl.RatelimitRecord(now, rate, bloom_epoch, bloom)), (rc, rate)
        return None, (rc, rate)

    return db.update(hints_key(key_text), change)


__all__ = ["HintsError", "RatelimitFacts", "RatelimitSpec", "parse_ratelimit", "ratelimit_update", "store_key"]
