"""Reading ACLs: verbs, conditions and modifiers, as Exim's acl_read() does.

An ACL is a list of statements.  A statement starts with a verb (accept,
defer, deny, discard, drop, require, warn), which may be followed on the same
line by its first condition or modifier; every further one is on a line of
its own (the loader has already joined backslash continuations).  A line is
``[!]name = value``; only conditions may be negated; ``set acl_m_x = value``
names the variable before the ``=``; ``endpass`` has no value.

Everything that can be checked without the session is checked here, at
start-up: unknown verbs, conditions and modifiers, negated modifiers, bad
variable names, the arguments of verify, ratelimit, control, delay,
logwrite and log_reject_target when they contain no expansion, the syntax
of every expansion, and named lists that do not exist.  Each problem is a
ConfigError naming the file and line.  What depends on the stage an ACL
runs at is checked by `check_stage` for the ACLs the main options name, so
that ``hosts`` in ``acl_not_smtp`` is refused at start-up too.
"""

from __future__ import annotations

import re

from mta import record
from mta.config.loader import Config, SourceLine
from mta.errors import ConfigError, ExpansionError
from mta.expand import check as check_expansion
from mta.receive.acl_dnslists import parse_dnslist_item
from mta.receive.acl_ratelimit import parse_ratelimit
from mta.receive.acl_types import AclStage
from mta.values import parse_time, split_fixed, split_list

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

VERBS = ("accept", "defer", "deny", "discard", "drop", "require", "warn")

_ALL = frozenset(AclStage)
_S = AclStage


def _only(*stages: AclStage) -> frozenset[AclStage]:
    return frozenset(stages)


def _but(*stages: AclStage) -> frozenset[AclStage]:
    return _ALL - frozenset(stages)


_MESSAGE = (_S.MAIL, _S.RCPT, _S.PREDATA, _S.DATA, _S.MIME, _S.NOT_SMTP)


@record.dataclass(frozen=True, slots=True)
class ItemKind:
    """A condition or modifier: whether it is a modifier, whether its value is expanded
    before use (the others expand inside, as lists do), and the stages it may be used at."""

    modifier: bool
    expanded: bool
    stages: frozenset[AclStage]


# Exim's conditions[] table (acl.c), for the names mta implements.
ITEMS: dict[str, ItemKind] = {
    "acl": ItemKind(False, False, _ALL),
    "add_header": ItemKind(True, True, _only(*_MESSAGE)),
    "authenticated": ItemKind(False, False, _but(_S.NOT_SMTP, _S.CONNECT, _S.HELO)),
    "condition": ItemKind(False, True, _ALL),
    "continue": ItemKind(True, True, _ALL),
    "control": ItemKind(True, True, _ALL),
    "delay": ItemKind(True, True, _ALL),
    "dnslists": ItemKind(False, False, _ALL),
    "domains": ItemKind(False, False, _only(_S.RCPT, _S.VRFY)),
    "encrypted": ItemKind(False, False, _but(_S.NOT_SMTP, _S.CONNECT)),
    "endpass": ItemKind(True, False, _ALL),
    "hosts": ItemKind(False, False, _but(_S.NOT_SMTP)),
    "local_parts": ItemKind(False, False, _only(_S.RCPT, _S.VRFY)),
    "log_message": ItemKind(True, False, _ALL),  # expanded when the verb's outcome is known
    "log_reject_target": ItemKind(True, True, _ALL),
    "logwrite": ItemKind(True, True, _ALL),
    "message": ItemKind(True, False, _ALL),  # likewise
    "ratelimit": ItemKind(False, True, _ALL),
    "recipients": ItemKind(False, False, _only(_S.RCPT)),
    "sender_domains": ItemKind(
        False, False, _but(_S.AUTH, _S.CONNECT, _S.HELO, _S.QUIT, _S.ETRN, _S.EXPN, _S.STARTTLS, _S.VRFY)
    ),
    "senders": ItemKind(
        False, False, _but(_S.AUTH, _S.CONNECT, _S.HELO, _S.QUIT, _S.ETRN, _S.EXPN, _S.STARTTLS, _S.VRFY)
    ),
    "set": ItemKind(True, True, _ALL),
    "verify": ItemKind(False, True, _ALL),
}
# Exim conditions and modifiers that mta does not have: named in the error, so that
# an Exim configuration fails clearly instead of as a typo.
NOT_SUPPORTED = frozenset(
    {
        "atrn_domains", "dcc", "decode", "dkim_signers", "dkim_status", "dmarc_status", "malware",
        "mime_regex", "queue", "regex", "remove_header", "seen", "spam", "spf", "spf_guess", "udpsend",
    }
)  # fmt: skip
LIST_CONDITIONS = {
    "hosts": "hostlist",
    "domains": "domainlist",
    "sender_domains": "domainlist",
    "local_parts": "localpartlist",
    "senders": "addresslist",
    "recipients": "addresslist",
}

_NAME = re.compile(r"[A-Za-z0-9_]+")
_VARIABLE = re.compile(r"acl_[cm][0-9_][A-Za-z0-9_]*")


@record.dataclass(frozen=True, slots=True)
class AclItem:
    """One condition or modifier of a statement, as written."""

    name: str
    value: str
    negated: bool
    path: str
    line: int
    variable: str | None = None  # set: the full variable name, "acl_m_x"

    @property
    def kind(self) -> ItemKind:
        return ITEMS[self.name]

    def describe(self) -> str:
        """The item as Exim's debug output shows it: ``!verify = sender``."""
        target = f" {self.variable}" if self.variable else ""
        if self.name == "endpass":
            return "endpass"
        return f"{'!' if self.negated else ''}{self.name}{target} = {self.value}"


@record.dataclass(frozen=True, slots=True)
class AclStatement:
    verb: str
    items: tuple[AclItem, ...]
    path: str
    line: int


@record.dataclass(frozen=True, slots=True)
class Acl:
    name: str
    statements: tuple[AclStatement, ...]


def parse_acl(name: str, lines: list[SourceLine], config: Config | None = None) -> Acl:
    """Parse the lines of one ACL; ConfigError names the file and line of the first problem.

    With `config`, the values are checked as far as they can be without a
    session (see the module docstring).
    """
    statements: list[AclStatement] = []
    verb: str | None = None
    start: SourceLine | None = None
    items: list[AclItem] = []

    def finish() -> None:
        if verb is not None and start is not None:
            statements.append(AclStatement(verb, tuple(items), start.path, start.line))

    for src in lines:
        text = src.text.strip()
        negated, word, rest = _split_word(text)
        if word in VERBS:
            if negated:
                raise ConfigError(f'malformed ACL line "{text}" (a verb cannot be negated)', src.path, src.line)
            finish()
            verb, start, items = word, src, []
            if not rest:
                continue
            negated, word, rest = _split_word(rest)
        elif verb is None:
            raise ConfigError(f'unknown ACL verb "{word}" in "{text}"', src.path, src.line)
        items.append(_parse_item(verb, negated, word, rest, src, text))
    finish()
    acl = Acl(name, tuple(statements))
    if config is not None:
        for statement in acl.statements:
            for item in statement.items:
                check_item(item, config)
    return acl


def _split_word(text: str) -> tuple[bool, str, str]:
    negated = text.startswith("!")
    if negated:
        text = text[1:].lstrip()
    m = _NAME.match(text)
    if m is None:
        return negated, "", text
    return negated, m.group(0), text[m.end() :].lstrip()


def _parse_item(verb: str, negated: bool, word: str, rest: str, src: SourceLine, text: str) -> AclItem:
    where = (src.path, src.line)
    if word not in ITEMS:
        if word in NOT_SUPPORTED:
            raise ConfigError(f'ACL condition/modifier "{word}" is not supported by mta', *where)
        raise ConfigError(f'unknown ACL condition/modifier in "{text}"', *where)
    kind = ITEMS[word]
    if negated and kind.modifier:
        raise ConfigError(f'ACL error: negation is not allowed with "{word}"', *where)
    if word == "endpass":
        if verb not in ("accept", "discard"):
            raise ConfigError(f'ACL error: "endpass" is not allowed with "{verb}"', *where)
        if rest:
            raise ConfigError('"endpass" takes no value', *where)
        return AclItem(word, "", False, src.path, src.line)
    variable = None
    if word == "set":
        m = _VARIABLE.match(rest)
        if m is None or (rest[m.end() :] and rest[m.end()] not in "= \t"):
            raise ConfigError(
                f'invalid variable name after "set" in ACL modifier "set {rest}" '
                "(must be acl_c or acl_m, then a digit or underscore, then letters, digits and underscores)",
                *where,
            )
        variable = m.group(0)
        rest = rest[m.end() :].lstrip()
    if not rest.startswith("="):
        what = "modifier" if kind.modifier else "condition"
        raise ConfigError(f'"=" missing after ACL "{word}" {what}', *where)
    return AclItem(word, rest[1:].strip(), negated, src.path, src.line, variable)


# -- start-up checks of values -----------------------------------------------------


def check_item(item: AclItem, config: Config) -> None:
    """Check what can be checked of an item's value before any session; ConfigError if bad."""
    where = (item.path, item.line)
    try:
        check_expansion(item.value)
    except ExpansionError as exc:
        raise ConfigError(f'{item.name}: bad expansion in "{item.value}": {exc.message}', *where) from None
    if "$" in item.value:
        return  # the rest depends on what the expansion gives
    try:
        _check_value(item, config)
    except ValueError as exc:
        raise ConfigError(f"{item.name}: {exc}", *where) from None


def _check_value(item: AclItem, config: Config) -> None:
    value = item.value
    if item.name in LIST_CONDITIONS:
        _check_named_lists(value, LIST_CONDITIONS[item.name], config)
    elif item.name == "verify":
        parse_verify(value)
    elif item.name == "ratelimit":
        parse_ratelimit(value, None)
    elif item.name == "control":
        parse_control(value)
    elif item.name == "delay":
        parse_time(value)
    elif item.name == "logwrite":
        split_logwrite(value)
    elif item.name == "log_reject_target":
        parse_log_targets(value)
    elif item.name == "dnslists":
        for entry in split_list(value):
            if entry:
                parse_dnslist_item(entry)


def _check_named_lists(value: str, list_type: str, config: Config) -> None:
    for entry in split_list(value):
        name = entry.lstrip("!").strip()
        if name.startswith("+") and len(name) > 1 and not name[1:].startswith(("caseful", "include_", "ignore_")):
            if config.named_list(list_type, name[1:]) is None and not (
                name == "+local_domains" and list_type == "domainlist"
            ):
                raise ValueError(f"unknown named list {name} (no {list_type} {name[1:]} is defined)")


def check_stage(acl: Acl, stage: AclStage, option: str) -> None:
    """ConfigError for an item that cannot be used at `stage` (Exim finds these when the ACL runs)."""
    for statement in acl.statements:
        for item in statement.items:
            if stage not in item.kind.stages:
                verb = "use" if item.kind.modifier else "test"
                raise ConfigError(
                    f"cannot {verb} {item.name} condition in {stage.where_name} ACL (named by {option})",
                    item.path,
                    item.line,
                )
            if item.name in _STAGED_ARGUMENTS and "$" not in item.value:
                try:
                    parse_at(item.name, item.value, stage)
                except ValueError as exc:
                    raise ConfigError(f"{exc} (named by {option})", item.path, item.line) from None


def parse_at(name: str, text: str, stage: AclStage) -> VerifySpec | ControlSpec:
    """Parse the argument of ``verify`` or ``control`` for use at `stage`; ValueError says why it cannot be."""
    parse, problem_at = _STAGED_ARGUMENTS[name]
    spec = parse(text)
    problem = problem_at(spec, stage)
    if problem:
        raise ValueError(problem)
    return spec


# -- verify ------------------------------------------------------------------------

VERIFY_SUPPORTED = ("recipient", "sender", "helo", "header_syntax", "certificate")
_VERIFY_NOT_SUPPORTED = ("reverse_host_lookup", "csa", "not_blind", "header_sender", "header_names_ascii", "arc")
_VERIFY_STAGES = {
    "recipient": _only(_S.RCPT),
    "sender": _only(_S.MAIL, _S.RCPT, _S.PREDATA, _S.DATA, _S.NOT_SMTP),
    "helo": _ALL,
    "certificate": _ALL,
    "header_syntax": _only(_S.DATA, _S.MIME, _S.NOT_SMTP),
}


@record.dataclass(frozen=True, slots=True)
class VerifySpec:
    what: str  # recipient, sender, helo, header_syntax, certificate
    address: str | None = None  # sender=ADDRESS
    defer_ok: bool = False
    no_details: bool = False
    success_on_redirect: bool = False


def parse_verify(text: str) -> VerifySpec:
    """Parse the argument of ``verify``; ValueError says what is wrong."""
    parts = split_fixed(text, "/")
    head = parts[0] if parts else ""
    what = head.lower()
    address = None
    if what.startswith("sender") and what != "sender":
        rest = head[6:].lstrip()
        if not rest.startswith("="):
            raise ValueError(f'expected "sender[=address]", "recipient", "helo", ... in "verify = {text}"')
        what, address = "sender", rest[1:].strip()
    if what in _VERIFY_NOT_SUPPORTED:
        raise ValueError(f'"verify = {what}" is not supported by mta')
    if what not in VERIFY_SUPPORTED:
        raise ValueError(
            f'expected "sender[=address]", "recipient", "helo", "header_syntax" or "certificate" '
            f'at start of ACL condition "verify = {text}"'
        )
    options = [p.lower() for p in parts[1:]]
    if options and what in ("helo", "header_syntax", "certificate"):
        raise ValueError(f"unexpected '/' found in \"{text}\" (this verify item has no options)")
    for option in options:
        if option.startswith(("callout", "callout_defer_ok", "check_postmaster", "quota")):
            raise ValueError(f'"{option}" (callout verification) is not supported by mta')
        if option not in ("defer_ok", "no_details", "success_on_redirect"):
            raise ValueError(f'unknown option "{option}" in ACL condition "verify = {text}"')
    return VerifySpec(what, address, "defer_ok" in options, "no_details" in options, "success_on_redirect" in options)


def verify_stage_problem(spec: VerifySpec, stage: AclStage) -> str | None:
    if stage in _VERIFY_STAGES[spec.what]:
        return None
    return f"cannot verify {spec.what} in ACL for {stage.where_name}"


# -- control -----------------------------------------------------------------------

_CONTROL_STAGES = {
    "submission": _only(_S.MAIL, _S.RCPT, _S.PREDATA),
    "no_pipelining": _but(_S.NOT_SMTP),
    "queue": _only(_S.MAIL, _S.RCPT, _S.PREDATA, _S.DATA, _S.NOT_SMTP, _S.MIME),
    "freeze": _only(_S.MAIL, _S.RCPT, _S.PREDATA, _S.DATA, _S.NOT_SMTP, _S.MIME),
    "caseful_local_part": _only(_S.RCPT),
    "caselower_local_part": _only(_S.RCPT),
    # mta verifies no DKIM signatures, so turning that off is always true; accepted
    # because Exim's default configuration uses it.
    "dkim_disable_verify": _but(_S.DATA, _S.NOT_SMTP),
}


@record.dataclass(frozen=True, slots=True)
class ControlSpec:
    name: str
    options: dict[str, str | None] = record.field(default_factory=dict)


def parse_control(text: str) -> ControlSpec:
    """Parse ``control = name[/option...]``; ValueError for an unknown or unsupported control."""
    name, _, tail = text.strip().partition("/")
    if name == "queue_only":
        name = "queue"
    if name not in _CONTROL_STAGES:
        raise ValueError(f'"control = {name}" is not supported by mta')
    options: dict[str, str | None] = {}
    if name == "submission":
        while tail:
            if tail.startswith("sender_retain") and tail[13:14] in ("", "/"):
                options["sender_retain"] = None
                tail = tail[14:]
            elif tail.startswith("domain="):
                value, _, tail = tail[7:].partition("/")
                options["domain"] = value
            elif tail.startswith("name="):
                options["name"] = tail[5:]  # it takes the rest of the string, as in Exim
                tail = ""
            else:
                raise ValueError(f'syntax error in "control={text}"')
    elif name == "freeze":
        if tail not in ("", "no_tell"):
            raise ValueError(f'syntax error in "control={text}"')
    elif tail:
        raise ValueError(f'"control = {name}" takes no options')
    return ControlSpec(name, options)


def control_stage_problem(spec: ControlSpec, stage: AclStage) -> str | None:
    if stage in _CONTROL_STAGES[spec.name]:
        return None
    return f'cannot use "control={spec.name}" in {stage.where_name} ACL'


# -- logwrite and log_reject_target ------------------------------------------------

_LOG_NAMES = ("main", "reject", "panic")


def split_logwrite(text: str) -> tuple[frozenset[str], str]:
    """``:main,reject: text`` -> ({"main", "reject"}, "text"); no prefix means the main log."""
    if not text.startswith(":"):
        return frozenset({"main"}), text
    names, sep, rest = text[1:].partition(":")
    if not sep:
        raise ValueError(f'missing ":" after the log names in "{text}"')
    logs = frozenset(n.strip() for n in names.split(",") if n.strip())
    unknown = logs - set(_LOG_NAMES)
    if unknown:
        raise ValueError(f'unknown log name "{sorted(unknown)[0]}" in "{text}"')
    return logs or frozenset({"main"}), rest.lstrip()


def parse_log_targets(text: str) -> frozenset[str]:
    logs = frozenset(split_list(text))
    unknown = logs - set(_LOG_NAMES)
    if unknown:
        raise ValueError(f'unknown log name "{sorted(unknown)[0]}" (main, reject or panic)')
    return logs


# The arguments whose meaning depends on the stage: (parser, the problem at a stage).
_STAGED_ARGUMENTS: dict[str, tuple[Any, Any]] = {
    "verify": (parse_verify, verify_stage_problem),
    "control": (parse_control, control_stage_problem),
}
