"""exipick's selection conditions, parsed by a small parser of our own and tested on values.

One condition per command-line word, as exipick takes them:

    $message_size > 10K          numeric: <  <=  >  >=  ==  !=   (suffixes d h m s, K M B)
    $sender_address eq a@b.c     text: eq ne (exact; quotes around the value are dropped)
    $sender_address =~ /^bob@/i  regular expression between slashes (flags i m s x); !~ negates
    $recipients = example.org    regular expression without slashes, case-insensitive
                                 unless --caseful
    $deliver_freeze              boolean: true when set (1, or non-empty text)
    !$deliver_freeze             any condition may be negated with a leading !
    $each_recipients = \\.org$   the test on every recipient on its own (all of them with
                                 --and, any with --or); also each_recipients_del/_undel

Nothing here is ever evaluated as code: a condition becomes a `Criterion`
(a variable name, an operator, a number, a string or a compiled regular
expression) and `matches` compares it with a message's values, which are
data.  Regular expressions are Python's (`re`), close to Perl's for what
conditions need.  A condition that does not parse, names an unknown
variable, compares text with a number or holds a bad regular expression is
refused before any message is read (ConditionError, one line).
"""

from __future__ import annotations

import re

from mta import record
from mta.spool.ids import is_message_id
from spool_tools.admin_command import UsageError
from spool_tools.qgrep_vars import EACH_LISTS, NUMBER, MessageVariables, Value, as_text, variable_type

NUMERIC_OPERATORS = ("<=", ">=", "==", "!=", "<", ">")
REGEX_OPERATORS = ("=~", "!~")
# Longest first, so that "<=" is not read as "<" followed by "=...".
_SYMBOLS = ("<=", ">=", "==", "!=", "=~", "!~", "<", ">", "=")
_NAME = re.compile(r"\$([^\s<>=!~]+)")
_NUMBER = re.compile(r"(-?(?:\d+(?:\.\d*)?|\.\d+))([dhmsKMB]?)\Z")
_UNITS = {"": 1, "s": 1, "B": 1, "m": 60, "h": 3600, "d": 86400, "K": 1024, "M": 1024 * 1024}
_REGEX_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}


class ConditionError(UsageError):
    """A condition that cannot be used; `str()` says which and why."""


@record.dataclass(frozen=True, slots=True)
class Criterion:
    text: str  # as given, for messages
    variable: str  # lower case, without "$", ":" or "each_"
    operator: str | None  # None: a boolean test
    value: float | str | re.Pattern[str] | None
    negate: bool = False
    # "each" (exipick's each_recipients...): the test on every address of the list, joined like
    # the criteria (all with --and, any with --or); "any" (exiqgrep's -r): one address is enough.
    each: str = ""
    bracketed: bool = False  # exiqgrep's -f: the sender is matched as "<sender>"


def parse_condition(text: str, caseful: bool = False) -> Criterion:
    """One condition word into a Criterion (ConditionError if it cannot be used)."""
    rest = text.strip()
    negate = rest.startswith("!")
    if negate:
        rest = rest[1:].lstrip()
    name_match = _NAME.match(rest)
    if name_match is None:
        raise ConditionError(f'condition "{text}" did not parse: it must start with a $variable')
    name = name_match[1].lower()
    rest = rest[name_match.end() :].strip()
    each = name.startswith("each_")
    variable = name[len("each_") :] if each else name
    if each and variable not in EACH_LISTS:
        raise ConditionError(f'condition "{text}": ${name} is not one of $each_recipients, '
                             "$each_recipients_del, $each_recipients_undel")
    kind = variable_type(variable)
    if kind is None:
        raise ConditionError(f'condition "{text}": unknown variable ${name}')
    if not rest:
        if each:
            raise ConditionError(f'condition "{text}": ${name} needs a comparison (eq, ne, =, =~ or !~)')
        return Criterion(text, variable, None, None, negate)
    operator, value_text = _split_operator(text, rest)
    value = _value(text, name, kind, operator, value_text, caseful, each)
    return Criterion(text, variable, operator, value, negate, "each" if each else "")


def _split_operator(text: str, rest: str) -> tuple[str, str]:
    for symbol in _SYMBOLS:
        if rest.startswith(symbol):
            return symbol, rest[len(symbol) :].strip()
    word, _, value = rest.partition(" ")
    if word in ("eq", "ne"):
        return word, value.strip()
    raise ConditionError(f'condition "{text}" did not parse: expected an operator '
                         "(< <= > >= == != eq ne = =~ !~) after the variable, not \"{rest}\"")


def _value(text: str, name: str, kind: str, operator: str, value_text: str, caseful: bool,
           each: bool) -> float | str | re.Pattern[str]:
    if operator in NUMERIC_OPERATORS:
        if kind != NUMBER or each:
            raise ConditionError(f'condition "{text}": ${name} is not a number; compare it with eq, ne, = or =~')
        number = _NUMBER.match(value_text)
        if number is None:
            raise ConditionError(f'condition "{text}": "{value_text}" is not a number '
                                 "(examples: 1000, 2.5K, 3M, 90m, 2h, 1d)")
        return float(number[1]) * _UNITS[number[2]]
    if operator in ("eq", "ne"):
        if len(value_text) >= 2 and value_text[0] == value_text[-1] and value_text[0] in "'\"":
            value_text = value_text[1:-1]
        if name in ("message_id", "message_exim_id") and not is_message_id(value_text):
            raise ConditionError(f'condition "{text}": "{value_text}" is not a message id '
                                 "(23 characters as mta makes them, or Exim 4.96's 16)")
        return value_text
    if operator == "=":
        return _compile(text, value_text, 0 if caseful else re.IGNORECASE)
    # =~ and !~ take /regex/flags, as Perl's operators do.
    if len(value_text) < 2 or not value_text.startswith("/"):
        raise ConditionError(f'condition "{text}": {operator} takes a regular expression between slashes, '
                             "like /example\\.org$/")
    end = value_text.rfind("/")
    pattern, flag_letters = value_text[1:end], value_text[end + 1 :]
    if end == 0 or any(letter not in _REGEX_FLAGS for letter in flag_letters):
        raise ConditionError(f'condition "{text}": after the closing / only the flags i, m, s and x may come')
    flags = 0
    for letter in flag_letters:
        flags |= _REGEX_FLAGS[letter]
    return _compile(text, pattern.replace("\\/", "/"), flags)


def _compile(text: str, pattern: str, flags: int) -> re.Pattern[str]:
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise ConditionError(f'condition "{text}": bad regular expression "{pattern}": {exc}') from None


def compile_regex(option: str, pattern: str, flags: int = re.IGNORECASE) -> re.Pattern[str]:
    """An exiqgrep option's regular expression (-f, -r, -s); UsageError if it does not compile."""
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise UsageError(f'{option}: bad regular expression "{pattern}": {exc}') from None


def matches(criteria: list[Criterion], variables: MessageVariables, any_of: bool = False,
            negate_all: bool = False) -> bool:
    """True when the message passes: all the criteria (any of them with `any_of`, exipick's
    --or), each negated when `negate_all` (--not).  No criteria: every message passes."""
    if not criteria:
        return True
    results = (_test(c, variables, any_of, negate_all) for c in criteria)
    return any(results) if any_of else all(results)


def _test(criterion: Criterion, variables: MessageVariables, any_of: bool, negate_all: bool) -> bool:
    flip = criterion.negate != negate_all
    if criterion.each:
        # exipick turns the test into one per address, joined like the other criteria.
        results = (_compare(criterion, address) != flip for address in variables.addresses(criterion.variable))
        return any(results) if any_of or criterion.each == "any" else all(results)
    value = variables.value(criterion.variable)
    if criterion.bracketed:
        value = f"<{value}>"
    return _compare(criterion, value) != flip


def _compare(criterion: Criterion, value: Value) -> bool:
    operator, wanted = criterion.operator, criterion.value
    if operator is None:
        return _truth(value)
    if operator in NUMERIC_OPERATORS:
        assert isinstance(wanted, float)
        number = float(value)  # only numeric variables get here: bool and int
        return {
            "<": number < wanted, "<=": number <= wanted, ">": number > wanted,
            ">=": number >= wanted, "==": number == wanted, "!=": number != wanted,
        }[operator]
    text = as_text(value)
    if operator == "eq":
        return text == wanted
    if operator == "ne":
        return text != wanted
    assert isinstance(wanted, re.Pattern)
    found = wanted.search(text) is not None
    return not found if operator == "!~" else found


def _truth(value: Value) -> bool:
    """Perl's truth, which exipick's booleans follow: false for 0, "" and "0"."""
    if isinstance(value, str):
        return value not in ("", "0")
    return bool(value)

