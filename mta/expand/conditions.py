"""Evaluation of the conditions of ``${if ...}``.

Each condition is a tree node from `parser.py`.  When `skip` is true the
condition sits in a branch that is not taken: its arguments are walked (so
an unknown variable name is still an error, as in Exim) but nothing is
computed, no file is looked at and the result is meaningless.
"""

from __future__ import annotations

import functools
import os
import re

from mta.errors import ExpansionError
from mta.expand.operators import parse_number
from mta.expand.parser import Combine, Cond, Defined, Not, Seq, Test
from mta.taint import Tainted, is_tainted
from mta.values import split_list

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    from mta.expand.context import ExpandContext


if TYPE_CHECKING:

    class Evaluator(Protocol):
        """The part of the expander that conditions call back into."""

        ctx: ExpandContext

        def text(self, seq: Seq, skip: bool) -> str: ...

        def variable(self, name: str, skip: bool) -> str: ...

        def set_captures(self, captures: list[str]) -> None: ...


@functools.lru_cache(maxsize=512)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def compile_regex(pattern: str, where: str) -> re.Pattern[str]:
    """Compile a configuration regex; a tainted one is refused.

    A regex taken from message data could be made to run for ever (ReDoS),
    and it would let a sender steer a condition, so it must come from the
    configuration or a trusted lookup.
    """
    if is_tainted(pattern):
        raise ExpansionError(f'tainted regular expression "{pattern}" refused in {where}')
    try:
        return _compile(str.__str__(pattern))
    except re.error as exc:
        raise ExpansionError(f'regular expression error in "{pattern}" ({where}): {exc}') from None


def captures_of(match: re.Match[str], subject: str) -> list[str]:
    """$0..$n of a match; captures of tainted text are tainted too."""
    groups = [match.group(0), *(g or "" for g in match.groups())]
    if is_tainted(subject):
        return [Tainted(g) for g in groups]
    return groups


def parse_bool(text: str, lax: bool) -> bool:
    """Exim's bool{} and bool_lax{} conditions."""
    word = text.strip()
    lowered = word.lower()
    if lax:
        return lowered not in ("", "0", "no", "false")
    if not word:
        return False
    if re.fullmatch(r"[-+]?\d+", word):
        return int(word) != 0
    if lowered in ("true", "yes"):
        return True
    if lowered in ("false", "no"):
        return False
    raise ExpansionError(f'unrecognised boolean value "{word}"')


def _is_ip(text: str, version: int | None) -> bool:
    import ipaddress  # only isip{} needs it; keep start-up lean

    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        return False
    return version is None or address.version == version


def _untainted_path(path: str, where: str) -> str:
    if is_tainted(path):
        raise ExpansionError(f'Tainted filename "{path}" refused in {where}')
    return path


_NUMERIC = {
    "=": lambda a, b: a == b,
    "==": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
}

_LEXICAL = {
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
}

_LIST_KINDS = {
    "match_domain": "domain",
    "match_address": "address",
    "match_local_part": "localpart",
    "match_ip": "host",
}


def evaluate(ev: Evaluator, cond: Cond, skip: bool) -> bool:
    """Return the truth of `cond` (meaningless when `skip` is true)."""
    if isinstance(cond, Not):
        return not evaluate(ev, cond.cond, skip)
    if isinstance(cond, Combine):
        return _combine(ev, cond, skip)
    if isinstance(cond, Defined):
        return _defined(ev, cond, skip)
    args = [ev.text(arg, skip) for arg in cond.args]
    if skip:
        return False
    return _test(ev, cond, args)


def _combine(ev: Evaluator, cond: Combine, skip: bool) -> bool:
    # Once the answer is known the remaining sub-conditions are only walked,
    # not evaluated: "or" must not look up a file it does not need.
    want = cond.name == "or"
    decided = skip
    result = not want
    for sub in cond.conds:
        value = evaluate(ev, sub, decided)
        if not decided and value == want:
            decided = True
            result = want
    return result


def _defined(ev: Evaluator, cond: Defined, skip: bool) -> bool:
    if cond.header is not None:
        if skip or ev.ctx.headers is None:
            return False
        return ev.ctx.headers(cond.header) is not None
    assert cond.var is not None
    try:
        value = ev.variable(cond.var, skip)
    except ExpansionError as exc:
        if exc.message.startswith("unknown variable name"):
            raise ExpansionError(f'unknown variable "{cond.var}" after "def:"') from None
        raise
    return value != ""


def _test(ev: Evaluator, cond: Test, args: list[str]) -> bool:
    name = cond.name
    if name == "eq":
        return args[0] == args[1]
    if name == "ne":
        return args[0] != args[1]
    if name == "eqi":
        return args[0].lower() == args[1].lower()
    if name in _NUMERIC:
        return bool(_NUMERIC[name](parse_number(args[0]), parse_number(args[1])))
    if name[:2] in _LEXICAL and name[2:] in ("", "i"):
        a, b = args
        if name.endswith("i"):
            a, b = a.lower(), b.lower()
        return bool(_LEXICAL[name[:2]](a, b))
    if name == "match":
        regex = compile_regex(args[1], '"match" condition')
        m = regex.search(args[0])
        if m is None:
            return False
        ev.set_captures(captures_of(m, args[0]))
        return True
    if name == "inlist":
        return args[0] in split_list(args[1])
    if name == "inlisti":
        subject = args[0].lower()
        return any(item.lower() == subject for item in split_list(args[1]))
    if name in _LIST_KINDS:
        if ev.ctx.match_list is None:
            raise ExpansionError(f'condition "{name}" cannot be used here (no lists are available)')
        return bool(ev.ctx.match_list(_LIST_KINDS[name], args[0], args[1]))
    if name == "exists":
        return os.path.exists(_untainted_path(args[0], '"exists" condition'))
    if name in ("isip", "isip4", "isip6"):
        version = {"isip": None, "isip4": 4, "isip6": 6}[name]
        return _is_ip(args[0], version)
    if name in ("bool", "bool_lax"):
        return parse_bool(args[0], lax=name == "bool_lax")
    raise AssertionError(f"condition {name} passed the parser but has no implementation")
