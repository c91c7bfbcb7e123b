"""Obeying an Exim filter file (Exim's filter.c, interpret_commands and test_condition).

Public API
----------
run_filter(text, env) -> FilterResult
    Parse (mta.route.filter_parse) and obey a filter.  Nothing is delivered
    here: `deliver`, `save`, `pipe`, `mail` and `vacation` become
    `FilterAction`s for the caller (forwardfile, the system filter) to turn
    into addresses.  Only `logwrite` acts at once, as in Exim.  With
    ``env.test`` (-bf, -bF) each command says what it would do on
    ``env.output``, in exim -bf's words, and the end of filtering is
    reported there too.
FilterEnv, FilterResult, FilterAction, FilterStatus
The checks of messages and values (personal, the RFC 3834 check of
`vacation`, numbers) are in mta.route.filter_checks.

Expansion: every argument Exim expands is expanded by ``env.expand(text,
variables)``, with $n0..$n9, $sn0..$sn9, $thisaddress and the numeric
variables of the last ``matches`` given as variables.  The filter's text is
the user's (or the administrator's) own; message data reaches it only as
variable values, and what comes back is Tainted where message data went in:
a `save` or `logfile` path made from message data is refused unless its
data is one checked component under a fixed directory (mta.taint), and a
`pipe` command is never expanded here (the pipe transport expands its
arguments one by one, as for any pipe).
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Callable, Mapping, Sequence

from mta import record
from mta.errors import ExpansionError
from mta.expand.addresses import AddressError, GroupState, extract_address_or_error, find_address_end
from mta.expand.conditions import _compile, captures_of, pcre_message
from mta.expand.textcodecs import to_bytes
from mta.message.headers import fold_message_data
from mta.route.filter_checks import (
    automatic_reply_refusal,
    extract_one,
    get_number,
    int32,
    like_taint,
    mail_value_problem,
    personal,
    reply_log_address,
    shown,
    strtol,
)
from mta.route.filter_parse import MAIL_KEYWORDS, Command, Condition, FilterSyntaxError, parse_filter
from mta.route.item import ReplyItem
from mta.taint import concat, file_name_refusal, is_tainted
from mta.values import parse_time, split_list

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class FilterStatus(enum.Enum):
    DELIVERED = "delivered"  # a significant action was taken: no normal delivery
    NOT_DELIVERED = "not delivered"
    DEFER = "defer"
    FAIL = "fail"
    FREEZE = "freeze"
    ERROR = "error"


@record.dataclass
class FilterAction:
    """A delivery the filter asked for.  `kind` is deliver, save, pipe or mail (mail and vacation);
    `value` the address, path (home prepended) or command (with its leading "|")."""

    kind: str
    value: str
    seen: bool = True
    noerror: bool = False
    errors_to: str | None = None
    mode: int = -1
    reply: ReplyItem | None = None
    vacation: bool = False
    # For a pipe: $thisaddress and $0..$n at the time, for the pipe transport's expansion of its arguments.
    pipe_variables: dict[str, str] = record.field(default_factory=dict)


@record.dataclass
class FilterResult:
    status: FilterStatus
    message: str | None = None  # the error, or the text of defer/fail/freeze
    actions: list[FilterAction] = record.field(default_factory=list)
    n: list[int] = record.field(default_factory=lambda: [0] * 10)


@record.dataclass
class FilterEnv:
    """What a filter run may see and do.

    expand        (text, variables) -> expanded text; ExpansionError on failure.  The variables
                  given are added to the caller's own (message, address, configuration).
    headers       the message's live header lines ("Name: value\\n"); a system filter's
                  ``headers add``/``remove`` change this very list, and `expand` must read it.
    removed       a system filter's ``headers remove`` marks names here (the caller drops them).
    local_part, domain, prefix, suffix
                  the address being filtered ($local_part ...; empty for a system filter).
    sender        the envelope sender ("" for a bounce); return_path likewise.
    home          prepended to a relative `save` path (and reply files) when set.
    qualify_domain  for `deliver` of an unqualified address.
    system        a system filter: headers add/remove, $sn0.. not set, personal is false.
    allowed       which of defer, fail and freeze may be used.
    test          -bf/-bF: say what would be done on `output` instead.
    log_writes    logwrite writes (delivery; not when verifying or -bt); `forbid_log`: it is an error.
    first_delivery, manually_thawed: the conditions of those names.
    has_message   a message is being delivered (not -bt or verification, where error_message
                  and manually_thawed are false and first_delivery true, as in Exim).
    sn            $sn0..$sn9 (what the system filter left).
    """

    expand: Callable[[str, Mapping[str, Any]], str]
    headers: list[str] = record.field(default_factory=list)
    removed: list[str] = record.field(default_factory=list)
    local_part: str = ""
    domain: str = ""
    prefix: str = ""
    suffix: str = ""
    sender: str = ""
    return_path: str = ""
    home: str | None = None
    qualify_domain: str = ""
    system: bool = False
    allowed: frozenset[str] = frozenset()
    test: bool = False
    output: Callable[[str], None] | None = None
    log_writes: bool = False
    forbid_log: bool = False
    first_delivery: bool = True
    manually_thawed: bool = False
    has_message: bool = True
    sn: list[int] = record.field(default_factory=lambda: [0] * 10)


class _Error(Exception):
    """Ends filtering with FF_ERROR and this message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Ended(Exception):
    """finish, defer, fail or freeze: filtering stops with this status."""

    def __init__(self, status: FilterStatus, message: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def run_filter(text: str, env: FilterEnv) -> FilterResult:
    """Parse and obey `text`; see the module docstring."""
    run = _Run(env)
    try:
        commands = parse_filter(text, system=env.system, allowed=env.allowed)
        run.obey(commands)
        status: FilterStatus = FilterStatus.DELIVERED if run.delivered else FilterStatus.NOT_DELIVERED
        message = None
    except FilterSyntaxError as exc:
        status, message = FilterStatus.ERROR, exc.message
    except _Error as exc:
        status, message = FilterStatus.ERROR, exc.message
    except _Ended as end:
        status, message = end.status, end.message
    finally:
        run.close_log()
    if env.test:
        run.say(_ENDINGS[status] if status is not FilterStatus.ERROR else f"Filter error: {message}")
    return FilterResult(status, message, run.actions, run.n)


# The mail/vacation values that are not header lines: the body text and the names of files.
_NOT_HEADERS = frozenset(MAIL_KEYWORDS[MAIL_KEYWORDS.index("text") :])

_ENDINGS = {
    FilterStatus.DEFER: 'Filtering ended by "defer".',
    FilterStatus.FREEZE: 'Filtering ended by "freeze".',
    FilterStatus.FAIL: 'Filtering ended by "fail".',
    FilterStatus.DELIVERED: "Filtering set up at least one significant delivery or other action.\n"
    "No other deliveries will occur.",
    FilterStatus.NOT_DELIVERED: "Filtering did not set up a significant delivery.\nNormal delivery will occur.",
}


class _Run:
    def __init__(self, env: FilterEnv) -> None:
        self.env = env
        self.n = [0] * 10
        self.delivered = False
        self.actions: list[FilterAction] = []
        self.thisaddress: str | None = None
        self.captures: list[str] = []
        self.log_name: str | None = None
        self.log_mode = 0o600
        self.log_fd = -1

    # -- output and expansion --------------------------------------------------------------
    def say(self, line: str) -> None:
        if self.env.output is not None:
            self.env.output(line + "\n")

    def variables(self) -> dict[str, Any]:
        names: dict[str, Any] = {f"n{k}": str(v) for k, v in enumerate(self.n)}
        names.update({f"sn{k}": str(v) for k, v in enumerate(self.env.sn)})
        names["thisaddress"] = self.thisaddress if self.thisaddress is not None else ""
        for k in range(10):
            names[str(k)] = self.captures[k] if k < len(self.captures) else None
        return names

    def expand(self, text: str, where: str) -> str:
        try:
            return self.env.expand(text, self.variables())
        except ExpansionError as exc:
            raise _Error(f'failed to expand "{text}" in {where}: {exc.message}') from None

    # -- commands ----------------------------------------------------------------------------
    def obey(self, commands: Sequence[Command]) -> None:
        for command in commands:
            if command.seen:
                self.delivered = True
            getattr(self, "do_" + command.name)(command)

    def do_add(self, c: Command) -> None:
        value_text, variable = (self.expand(a or "", '"add" command') for a in c.args)
        if len(variable) != 2 or variable[0] != "n":
            raise _Error(f'unknown variable "{variable}" in "add" command')
        index = strtol(variable[1:])
        value_text = str(value_text)
        while value_text.startswith("--"):
            value_text = value_text[2:]
        value = strtol(value_text)
        if index is None:
            raise _Error(f'malformed number "{variable[1:]}" in "add" command')
        if value is None:
            raise _Error(f'malformed number "{value_text}" in "add" command')
        self.n[index] = int32(self.n[index] + value)
        if self.env.test:
            self.say(f"Add {value} to n{index}")

    def do_deliver(self, c: Command) -> None:
        expanded: list[str | None] = []
        for text in c.args:
            if text is None:
                expanded.append(None)
                continue
            value = self.expand(text, "deliver command")
            try:
                found = extract_address_or_error(value)
            except AddressError as exc:
                raise _Error(f'malformed address "{value}" in filter file: {exc}') from None
            address = like_taint(value, found.address)
            if not found.domain and address:
                address = like_taint(value, f"{address}@{self.env.qualify_domain}")
            expanded.append(address)
        address, errors_to = expanded
        assert address is not None
        if errors_to is not None and not self.env.system:
            own = f"{self.env.local_part}@{self.env.domain}"
            if own.lower() != errors_to.lower():
                raise _Error("errors_to must point to the caller's address")
        if self.env.test:
            self.say(
                f"{'D' if c.seen else 'Unseen d'}eliver message to: {address}{' (noerror)' if c.noerror else ''}"
                f"{' errors_to ' + errors_to if errors_to else ''}"
            )
            return
        self.actions.append(FilterAction("deliver", address, c.seen, c.noerror, errors_to=errors_to))

    def do_save(self, c: Command) -> None:
        path = self.expand(c.args[0] or "", "save command")
        if self.env.test:
            mode = f" {c.mode:04o}" if c.mode >= 0 else ""
            self.say(f"{'S' if c.seen else 'Unseen s'}ave message to: {path}{mode}{' (noerror)' if c.noerror else ''}")
            return
        if not path.startswith("/") and self.env.home:
            path = _join(self.env.home, path)
        refusal = file_name_refusal(path)
        if refusal is not None:
            raise _Error(f'tainted file name "{path}" refused in save command ({refusal})')
        self.actions.append(FilterAction("save", path, c.seen, c.noerror, mode=c.mode))

    def do_pipe(self, c: Command) -> None:
        command = c.args[0] or ""
        if self.env.test:
            self.say(f"{'P' if c.seen else 'Unseen p'}ipe message to: {command}{' (noerror)' if c.noerror else ''}")
            return
        if not command.startswith("|"):
            command = "|" + command
        variables = {"thisaddress": self.thisaddress or ""}
        variables.update({str(k): value for k, value in enumerate(self.captures)})
        self.actions.append(FilterAction("pipe", command, c.seen, c.noerror, pipe_variables=variables))

    def do_logfile(self, c: Command) -> None:
        name = self.expand(c.args[0] or "", "logfile command")
        self.close_log()
        self.log_mode = 0o600 if c.mode < 0 else c.mode
        self.log_name = name
        if self.env.test:
            self.say(f"{'Seen l' if c.seen else 'L'}ogfile {name}")

    def do_logwrite(self, c: Command) -> None:
        text = self.expand(c.args[0] or "", "logwrite command")
        if self.env.test:
            self.say(f'{"Seen l" if c.seen else "L"}ogwrite "{shown(text)}"')
        elif self.env.forbid_log:
            raise _Error("logwrite command forbidden")
        elif self.env.log_writes:
            self.write_log(text)

    def write_log(self, text: str) -> None:
        if self.log_fd < 0:
            name = self.log_name
            if name is None:
                raise _Error('attempt to obey "logwrite" command without a previous "logfile"')
            refusal = file_name_refusal(name)
            if refusal is not None or not name.startswith("/"):
                reason = refusal or "it is not an absolute path"
                raise _Error(f'filter log file "{name}" refused: {reason}')
            try:
                self.log_fd = os.open(
                    name, os.O_CREAT | os.O_APPEND | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, self.log_mode
                )
            except OSError as exc:
                raise _Error(f'failed to open filter log file "{name}": {exc.strerror}') from None
        data = text.encode("utf-8", "surrogateescape")
        try:
            written = os.write(self.log_fd, data)
        except OSError as exc:
            raise _Error(f'write error on file "{self.log_name}": {exc.strerror}') from None
        if written != len(data):
            raise _Error(f'write error on file "{self.log_name}": short write')

    def close_log(self) -> None:
        if self.log_fd >= 0:
            os.close(self.log_fd)
            self.log_fd = -1

    def do_headers(self, c: Command) -> None:
        # A line break from message data ($h_subject: decoded from =0A, a folded header) must not
        # start a header line of its own: it becomes a fold, as for add_header (security.md).
        value = fold_message_data(self.expand(c.args[0] or "", "headers command"))
        if self.env.test:
            self.say(f'Headers {c.header_action} "{shown(value)}"')
        if c.header_action == "add":
            text = value.lstrip(" \t\n\r\f\v")
            if text:
                self.env.headers.append(like_taint(value, text if text.endswith("\n") else text + "\n"))
        elif c.header_action == "remove":
            for name in split_list(value):
                if name:
                    self.remove_header(name)
        # "headers charset" chooses the character set of $h_ decoding; mta decodes to UTF-8 always.

    def remove_header(self, name: str) -> None:
        wanted = name.rstrip(":").strip().lower()
        kept = [line for line in self.env.headers if line.split(":", 1)[0].strip().lower() != wanted]
        if len(kept) != len(self.env.headers):
            self.env.headers[:] = kept
            self.env.removed.append(wanted)

    def do_defer(self, c: Command) -> None:
        self.end(c, FilterStatus.DEFER)

    def do_fail(self, c: Command) -> None:
        self.end(c, FilterStatus.FAIL)

    def do_freeze(self, c: Command) -> None:
        self.end(c, FilterStatus.FREEZE)

    def end(self, c: Command, status: FilterStatus) -> None:
        text = self.expand(c.args[0] or "", f"{c.name} command")
        if len(text) > 1024:
            text = text[:1000] + " ... (truncated)"
        message = shown(text[:-1] if text.endswith("\n") else text)
        if self.env.test:
            self.say(f'{c.name.capitalize()} text "{message}"')
        raise _Ended(status, message)

    def do_finish(self, c: Command) -> None:
        if self.env.test:
            self.say("Seen finish" if c.seen else "Finish")
        raise _Ended(FilterStatus.DELIVERED if self.delivered else FilterStatus.NOT_DELIVERED)

    def do_testprint(self, c: Command) -> None:
        text = self.expand(c.args[0] or "", "testprint command")
        if self.env.test:
            self.say(f"Testprint: {shown(text)}")

    def do_if(self, c: Command) -> None:
        saved = self.thisaddress
        try:
            for condition, commands in c.branches:
                if self.test(condition):
                    self.obey(commands)
                    return
            self.obey(c.otherwise)
        finally:
            self.thisaddress = saved

    def do_mail(self, c: Command) -> None:
        if not self.env.return_path:
            if self.env.test:
                self.say(f"{c.name} command ignored because return_path is empty")
            return
        values: dict[str, str] = {}
        for keyword in MAIL_KEYWORDS:
            if keyword in c.mail:
                values[keyword] = self.expand(c.mail[keyword], f"{c.name} command")
                if keyword not in _NOT_HEADERS:
                    # Message data's line breaks become folds first: a hostile Subject: must not make
                    # the check below fail the filter (and defer the user's mail) or add a header.
                    values[keyword] = fold_message_data(values[keyword])
                problem = mail_value_problem(keyword, values[keyword], c.name)
                if problem is not None:
                    raise _Error(problem)
        if c.name == "vacation":
            reason = automatic_reply_refusal(self.env.headers)
            if reason is not None:
                if self.env.test:
                    self.say(f"vacation command ignored because {reason}")
                return
        if self.env.test:
            self.say_mail(c, values)
            return
        self.actions.append(self.reply_action(c, values))

    do_vacation = do_mail

    def say_mail(self, c: Command, values: dict[str, str]) -> None:
        to = values.get("to")
        self.say(
            f"{'Seen m' if c.seen else 'M'}ail to: {to if to is not None else '<default>'}"
            f"{' (vacation)' if c.name == 'vacation' else ''}{' (noerror)' if c.noerror else ''}"
        )
        for keyword in MAIL_KEYWORDS[1:]:
            if keyword in values:
                expanded = " (expanded)" if c.expand_file and keyword == "file" else ""
                self.say(f"{keyword:>7}: {shown(values[keyword])}{expanded}")
        if c.return_message:
            self.say("Return original message")

    def reply_action(self, c: Command, values: dict[str, str]) -> FilterAction:
        to = values.get("to")
        if to is None:
            to = self.expand("$reply_address", f"{c.name} command")
        to = like_taint(to, to.lstrip(" \t\n\r\f\v").replace("\n", " "))
        once_repeat = 0
        if "once_repeat" in values:
            try:
                once_repeat = parse_time(values["once_repeat"])
            except ValueError:
                raise _Error(
                    f'Bad time value for "once_repeat" in mail or vacation command: {values["once_repeat"]}'
                ) from None
        files = {}
        for keyword in ("file", "log", "once"):
            path = values.get(keyword)
            if path is not None and not path.startswith("/") and self.env.home:
                path = _join(self.env.home, path)
            if path is not None:
                refusal = file_name_refusal(path)
                if refusal is not None:
                    raise _Error(f'tainted file name "{path}" refused in {c.name} command ({refusal})')
            files[keyword] = path
        reply = ReplyItem(
            to=to,
            cc=values.get("cc"),
            bcc=values.get("bcc"),
            from_=values.get("from"),
            reply_to=values.get("reply_to"),
            subject=values.get("subject"),
            headers=values.get("extra_headers"),
            text=values.get("text"),
            file=files["file"],
            file_expand=c.expand_file,
            return_message=c.return_message,
            once=files["once"],
            once_repeat=once_repeat,
            log=files["log"],
        )
        return FilterAction(
            "mail", reply_log_address(to), c.seen, c.noerror, reply=reply, vacation=c.name == "vacation"
        )

    # -- conditions ----------------------------------------------------------------------------
    def test(self, c: Condition) -> bool:
        kind = c.kind
        if kind == "and":
            result = self.test(c.sub[0]) and self.test(c.sub[1])
        elif kind == "or":
            result = self.test(c.sub[0]) or self.test(c.sub[1])
        elif kind == "personal":
            env = self.env
            result = not env.system and personal(
                env.headers, c.aliases, env.local_part, env.domain, env.prefix, env.suffix, env.sender
            )
        elif kind == "delivered":
            result = self.delivered
        elif kind == "error_message":
            result = self.env.has_message and not self.env.sender
        elif kind == "first_delivery":
            result = self.env.test or not self.env.has_message or self.env.first_delivery
        elif kind == "manually_thawed":
            result = not self.env.test and self.env.has_message and self.env.manually_thawed
        elif kind == "foranyaddress":
            result = self.for_any_address(c)
        else:
            result = self.compare(c)
        return result == c.testfor

    def for_any_address(self, c: Condition) -> bool:
        text = self.expand(c.left, "filter file")
        groups = GroupState(allow=True)
        pos = 0
        while pos < len(text):
            end = find_address_end(text, pos)
            found = extract_one(text[pos:end], groups)
            if found is not None:
                self.thisaddress = like_taint(text, found)
                if self.test(c.sub[0]):
                    return True
            if end >= len(text):
                break
            pos = end + 1
        return False

    def compare(self, c: Condition) -> bool:
        left, right = (self.expand(text, "filter file") for text in (c.left, c.right))
        kind = c.kind
        if kind in ("is", "contains", "begins", "ends"):
            a, b = left.lower(), right.lower()
        else:
            a, b = left, right
        if kind in ("is", "IS"):
            return a == b
        if kind in ("contains", "CONTAINS"):
            return bool(b) and b in a  # Exim's strstr finds no empty string
        if kind in ("begins", "BEGINS"):
            return a.startswith(b)
        if kind in ("ends", "ENDS"):
            return a.endswith(b)
        if kind in ("matches", "MATCHES"):
            return self.matches(left, right, caseless=kind == "matches")
        numbers = []
        for value in (left, right):
            number = get_number(value)
            if number is None:
                raise _Error(f'malformed numerical string "{value}"')
            numbers.append(number)
        return numbers[0] > numbers[1] if kind == "above" else numbers[0] < numbers[1]

    def matches(self, subject: str, pattern: str, caseless: bool) -> bool:
        if is_tainted(pattern):
            raise _Error(f'tainted regular expression "{pattern}" refused in filter file')
        try:
            regex = _compile(("(?i)" if caseless else "") + str.__str__(pattern))
        except re.error as exc:
            message, offset = pcre_message(exc, pattern)
            raise _Error(
                f'error while compiling regular expression "{pattern}": {message} at offset {offset}'
            ) from None
        m = regex.search(to_bytes(subject))
        if m is None:
            return False
        self.captures = captures_of(m, subject)
        return True


def _join(home: str, path: str) -> str:

    return concat([home, "/", path])
