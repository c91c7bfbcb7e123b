"""Reading an Exim filter file into commands (Exim's filter.c, read_command and read_condition).

Public API
----------
parse_filter(text, *, system=False, allowed=frozenset()) -> list[Command]
    The commands of a filter file.  Raises FilterSyntaxError, whose message
    is Exim's, with the line number ("unknown filtering command "foo" near
    line 2 of filter file").  `system` permits ``headers add``/``remove``;
    `allowed` names the commands among defer, fail and freeze that may be
    used (a system filter allows all three).
Command, Condition, MAIL_KEYWORDS
    The parsed form, read by mta.route.filter.

The language
------------
Words are separated by white space; a ``#`` after a separator starts a
comment to the end of the line.  A data value is a word, or a double-quoted
string with backslash escapes (``\\n``, ``\\t``, octal, ``\\x``; a backslash
before a line end continues the string on the next line).  Conditions also
end a word at a bracket.  Values are expanded later, when the command is
obeyed, never here: parsing reads the file and nothing else.

Line numbers in messages are Exim's: where Exim reads ahead and then goes
back (``is`` followed by a value, an optional keyword), the lines read ahead
stay counted, so that a message names the same line as exim -bf does.
"""

from __future__ import annotations

from mta import record
from mta.expand.escapes import interpret_escape

MAX_WORD = 1024  # Exim's buffer: a word or string of 1024 characters or more is an error
# Limits Exim has only in its C stack: nested "if"s and brackets, and "and"/"or" in one condition.
# A filter past them is an error naming its line, never a Python recursion failure (a traceback,
# a delivery process that dies); no real filter comes near them.
MAX_NESTING = 50
MAX_CONDITIONS = 200

# The string arguments of mail and vacation, in Exim's order (the -bf output follows it).
MAIL_KEYWORDS = (
    "to",
    "cc",
    "bcc",
    "from",
    "reply_to",
    "subject",
    "extra_headers",
    "text",
    "file",
    "log",
    "once",
    "once_repeat",
)
_HEADER_LIKE = frozenset(MAIL_KEYWORDS[: MAIL_KEYWORDS.index("extra_headers")])

# Commands, and whether each is "seen" (significant) unless told otherwise.
_DELIVERING = frozenset({"deliver", "save", "pipe"})
COMMANDS = frozenset(
    {
        "add",
        "defer",
        "deliver",
        "elif",
        "else",
        "endif",
        "finish",
        "fail",
        "freeze",
        "headers",
        "if",
        "logfile",
        "logwrite",
        "mail",
        "noerror",
        "pipe",
        "save",
        "seen",
        "testprint",
        "unseen",
        "vacation",
    }
)

# Condition words after the left operand; the capitalised ones are case-sensitive.
_COND_WORDS = {
    "BEGIN": "BEGINS",
    "BEGINS": "BEGINS",
    "CONTAIN": "CONTAINS",
    "CONTAINS": "CONTAINS",
    "END": "ENDS",
    "ENDS": "ENDS",
    "IS": "IS",
    "MATCH": "MATCHES",
    "MATCHES": "MATCHES",
    "above": "above",
    "begin": "begins",
    "begins": "begins",
    "below": "below",
    "contain": "contains",
    "contains": "contains",
    "end": "ends",
    "ends": "ends",
    "is": "is",
    "match": "matches",
    "matches": "matches",
}
_KEYWORD_CONDITIONS = frozenset({"delivered", "error_message", "first_delivery", "manually_thawed"})


class FilterSyntaxError(Exception):
    """A filter file that cannot be read; `message` is Exim's text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@record.dataclass(slots=True)
class Condition:
    """One node of a condition: `kind` is "and", "or", "personal", "foranyaddress", a keyword
    condition, or a comparison ("is", "IS", "contains", ..., "above", "below").

    `left`/`right` are the operand texts (unexpanded) of a comparison; for and/or the
    sub-conditions are `sub`; `aliases` are personal's ``alias`` strings, `left` the address list of
    foranyaddress with `sub` = [its condition].  `testfor` is False for a negated condition."""

    kind: str
    testfor: bool = True
    left: str = ""
    right: str = ""
    sub: list[Condition] = record.field(default_factory=list)
    aliases: list[str] = record.field(default_factory=list)
    parent: Condition | None = None


@record.dataclass(slots=True)
class Command:
    """One command.  `args` are unexpanded strings (None where absent); for ``mail`` and ``vacation``
    `mail` maps the keywords given to their values.  `branches` holds an ``if``'s
    (condition, commands) pairs, ``elif``s included, and `otherwise` its ``else`` commands."""

    name: str
    line: int
    seen: bool = False
    noerror: bool = False
    args: list[str | None] = record.field(default_factory=list)
    mode: int = -1  # save, logfile: the octal mode given, or -1
    header_action: str = ""  # headers: add, remove or charset
    mail: dict[str, str] = record.field(default_factory=dict)
    expand_file: bool = False
    return_message: bool = False
    branches: list[tuple[Condition, list[Command]]] = record.field(default_factory=list)
    otherwise: list[Command] = record.field(default_factory=list)


def parse_filter(text: str, *, system: bool = False, allowed: frozenset[str] = frozenset()) -> list[Command]:
    """The commands of `text`; see the module docstring."""
    parser = _Parser(text, system, allowed)
    parser.next_significant()
    commands, _ = parser.command_list(conditional=False)
    return commands


class _Parser:
    def __init__(self, text: str, system: bool, allowed: frozenset[str]) -> None:
        self.s = text
        self.i = 0
        self.line = 1
        self.system = system
        self.allowed = allowed
        self.expect_endif = 0
        self.seen_force = False
        self.seen_value = False
        self.noerror_force = False
        self.depth = 0  # "if"s and brackets open around the current position
        self.operators = 0  # "and"s and "or"s in the condition being read

    # -- characters, words, items ---------------------------------------------------------
    def at(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def next_significant(self) -> None:
        """Exim's nextsigchar(): white space (counting lines) and comments."""
        s, n = self.s, len(self.s)
        while True:
            while self.i < n and s[self.i].isspace():
                if s[self.i] == "\n":
                    self.line += 1
                self.i += 1
            if self.i < n and s[self.i] == "#":
                while self.i < n and s[self.i] != "\n":
                    self.i += 1
            else:
                return

    def word(self, bracket: bool = False) -> str:
        """Exim's nextword(): up to white space (or a bracket), then the next significant character."""
        s, n = self.s, len(self.s)
        start = self.i
        while self.i < n and not s[self.i].isspace() and not (bracket and s[self.i] in "()"):
            self.i += 1
        text = s[start : self.i]
        if len(text) >= MAX_WORD:
            raise FilterSyntaxError(f"word is too long in line {self.line} of filter file (max = {MAX_WORD} chars)")
        self.next_significant()
        return text

    def item(self, bracket: bool = False) -> str:
        """Exim's nextitem(): a word, or a quoted string with escapes."""
        if self.at() != '"':
            return self.word(bracket)
        s, n = self.s, len(self.s)
        out: list[str] = []
        self.i += 1
        while self.i < n and s[self.i] not in '"\n':
            if len(out) >= MAX_WORD - 1:
                raise FilterSyntaxError(
                    f"string is too long in line {self.line} of filter file (max = {MAX_WORD} chars)"
                )
            ch = s[self.i]
            if ch != "\\":
                out.append(ch)
                self.i += 1
                continue
            if self.i + 1 < n and s[self.i + 1].isspace():
                # Backslash, white space to the end of the line: the string goes on after the
                # leading white space of the next line.
                p = self.i + 1
                while p < n and s[p] != "\n" and s[p].isspace():
                    p += 1
                if p < n and s[p] == "\n":
                    self.line += 1
                    p += 1
                    while p < n and s[p] != "\n" and s[p].isspace():
                        p += 1
                    self.i = p
                    continue
            ch, self.i = interpret_escape(s, self.i)
            out.append(ch)
        if self.at() == '"':
            self.i += 1
        else:
            raise FilterSyntaxError(f"quote missing at end of string in line {self.line}")
        self.next_significant()
        return "".join(out)

    # -- command lists ------------------------------------------------------------------------
    def command_list(self, conditional: bool) -> tuple[list[Command], str]:
        """Commands up to the end, or (`conditional`) up to elif/else/endif, which is returned."""
        if conditional:
            self.expect_endif += 1
        commands: list[Command] = []
        ended = ""
        while self.i < len(self.s) and not ended:
            ended = self.command(commands)
            self.next_significant()
        if conditional:
            self.expect_endif -= 1
            if not ended:
                raise FilterSyntaxError('"endif" missing at end of filter file')
        return commands, ended

    def command(self, commands: list[Command]) -> str:
        """Read one command onto `commands`; returns "elif", "else" or "endif" for those words."""
        if self.s.startswith("if(", self.i):
            name = "if"
            self.i += 2
        elif self.s.startswith("elif(", self.i):
            name = "elif"
            self.i += 4
        else:
            name = self.word()
        keep_flags = False
        ended = ""
        line = self.line
        if name not in COMMANDS:
            raise FilterSyntaxError(f'unknown filtering command "{name}" near line {self.line} of filter file')
        if name in ("add", "headers") and (self.seen_force or self.noerror_force):
            raise FilterSyntaxError(
                f'"seen", "unseen", or "noerror" found before an "{name}" command near line {self.line}'
            )
        if name in ("add", "headers", "deliver", "logfile", "logwrite", "pipe", "save", "testprint"):
            commands.append(self.simple(name, line))
        elif name in ("elif", "else", "endif"):
            if self.seen_force or self.noerror_force:
                raise FilterSyntaxError(
                    f'"seen", "unseen", or "noerror" near line {self.line} is not followed by a command'
                )
            if self.expect_endif <= 0:
                raise FilterSyntaxError(f'unexpected "{name}" command near line {self.line} of filter file')
            ended = name
        elif name in ("defer", "fail", "freeze", "finish"):
            commands.append(self.ending(name, line))
        elif name == "if":
            commands.append(self.if_command(line))
        elif name in ("mail", "vacation"):
            commands.append(self.mail(name, line))
        elif name in ("seen", "unseen"):
            if not self.at():
                raise FilterSyntaxError(f'"seen" or "unseen" near line {self.line} is not followed by a command')
            if self.seen_force:
                raise FilterSyntaxError(f'"seen" or "unseen" repeated near line {self.line}')
            self.seen_value = name == "seen"
            self.seen_force = keep_flags = True
        else:  # noerror
            if not self.at():
                raise FilterSyntaxError(f'"noerror" near line {self.line} is not followed by a command')
            self.noerror_force = keep_flags = True
        if not keep_flags:
            self.seen_force = self.noerror_force = False
        return ended

    def simple(self, name: str, line: int) -> Command:
        """add, headers, deliver, logfile, logwrite, pipe, save, testprint: one argument and extras."""
        first = self.item()
        if not first:
            raise FilterSyntaxError(f'"{name}" requires an argument near line {self.line} of filter file')
        command = Command(name, line, noerror=self.noerror_force)
        command.seen = self.seen_value if self.seen_force else name in _DELIVERING
        if name == "add":
            to = self.item()
            if to != "to":
                raise FilterSyntaxError(f'"to" expected in "add" command near line {self.line} of filter file')
            variable = self.item()
            if not variable:
                raise FilterSyntaxError(f'value missing after "to" near line {self.line} of filter file')
            command.args = [first, variable]
        elif name == "headers":
            if first not in ("add", "remove", "charset"):
                raise FilterSyntaxError(
                    f'"add", "remove", or "charset" expected after "headers" near line {self.line} of filter file'
                )
            if not self.system and first != "charset":
                raise FilterSyntaxError(
                    "header addition and removal is available only in system filters: "
                    f"near line {self.line} of filter file"
                )
            value = self.item()
            if not value:
                raise FilterSyntaxError(
                    f'value missing after "add", "remove", or "charset" near line {self.line} of filter file'
                )
            command.header_action, command.args = first, [value]
        else:
            if name == "logwrite" and not first.endswith("\n"):
                first += "\n"
            command.args = [first, None]
            if name in ("save", "logfile") and self.at().isdigit():
                digits = self.word()
                command.mode = _octal_prefix(digits)
            elif name == "deliver":
                saved = self.i
                if self.word() == "errors_to":
                    command.args[1] = self.word()
                else:
                    self.i = saved
        return command

    def ending(self, name: str, line: int) -> Command:
        """defer, fail, freeze (each with an optional text) and finish."""
        text: str | None = None
        seen = self.seen_value if self.seen_force else False
        if name != "finish":
            if name not in self.allowed:
                raise FilterSyntaxError(f'filtering command "{name}" is disabled: near line {self.line} of filter file')
            saved = self.i
            quoted = self.at() == '"'
            value = self.item()
            if not quoted and value != "text":
                self.i = saved
                text = ""
            else:
                text = value if quoted else self.item()
            seen = False  # as Exim: defer, fail and freeze are never "seen", whatever comes before
        return Command(name, line, seen=seen, args=[text])

    def if_command(self, line: int) -> Command:
        if self.seen_force or self.noerror_force:
            raise FilterSyntaxError(
                f'"seen", "unseen", or "noerror" found before an "if" command near line {self.line}'
            )
        command = Command("if", line)
        self.nest()
        while True:
            self.operators = 0
            condition = self.condition(toplevel=True)
            body, ended = self.command_list(conditional=True)
            command.branches.append((condition, body))
            if ended != "elif":
                break
        if ended == "else":
            command.otherwise, ended = self.command_list(conditional=True)
            if ended != "endif":
                raise FilterSyntaxError(f'"endif" missing near line {self.line} of filter file')
        self.depth -= 1
        return command

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise FilterSyntaxError(
                f'"if" commands and brackets nested more than {MAX_NESTING} deep near line {self.line} of filter file'
            )

    def mail(self, name: str, line: int) -> Command:
        command = Command(name, line, noerror=self.noerror_force)
        command.seen = self.seen_value if self.seen_force else False
        while True:
            saved = self.i
            keyword = self.word()
            if keyword == "return":
                command.return_message = True
                if self.word() != "message":
                    raise FilterSyntaxError(f'"return" not followed by "message"  near line {self.line} of filter file')
                continue
            if keyword == "expand":
                command.expand_file = True
                keyword = self.word()
                if keyword != "file":
                    raise FilterSyntaxError(f'"expand" not followed by "file"  near line {self.line} of filter file')
            if keyword not in MAIL_KEYWORDS:
                self.i = saved
                break
            command.mail[keyword] = self.item()
        if name == "vacation":
            defaults = {"log": ".vacation.log", "once": ".vacation", "once_repeat": "7d", "subject": "On vacation"}
            if "file" not in command.mail:
                command.mail["file"] = ".vacation.msg"
                command.expand_file = True
            for keyword, value in defaults.items():
                command.mail.setdefault(keyword, value)
        return command

    # -- conditions ----------------------------------------------------------------------------
    def condition(self, toplevel: bool) -> Condition:
        """Exim's read_condition(): up to "then" (top level) or ")" (left unread for the caller)."""
        testfor = True
        root: Condition | None = None
        current_parent: Condition | None = None
        # Where the next condition goes: a function that stores it.
        store = _Store()
        while True:
            if not self.at():
                raise FilterSyntaxError('"then" missing at end of filter file')
            if self.at() == "(":
                self.i += 1
                self.next_significant()
                self.nest()
                c = self.condition(toplevel=False)
                self.depth -= 1
                if self.at() != ")":
                    raise FilterSyntaxError(f'expected ")" in line {self.line} of filter file')
                if not testfor:
                    c.testfor = not c.testfor
                    testfor = True
                self.i += 1
                self.next_significant()
            elif self.at() == ")":
                raise FilterSyntaxError(f'unexpected ")" in line {self.line} of filter file')
            else:
                word = self.item(bracket=True)
                if word == "then":
                    raise FilterSyntaxError(f'unexpected "then" near line {self.line} of filter file')
                if word == "not":
                    testfor = not testfor
                    continue
                c = Condition("", testfor=testfor)
                testfor = True
                self.simple_condition(c, word)
            root = store.put(c, root)
            if self.at() == ")":
                if toplevel:
                    raise FilterSyntaxError(f'unexpected ")" in line {self.line} of filter file')
                break
            if self.at() == "(":
                raise FilterSyntaxError(f'unexpected "(" in line {self.line} of filter file')
            word = self.word()
            if word == "then":
                if not toplevel:
                    raise FilterSyntaxError(f'missing ")" at end of condition near line {self.line} of filter file')
                break
            if word in ("and", "or"):
                self.operators += 1
                if self.operators > MAX_CONDITIONS:
                    raise FilterSyntaxError(
                        f'more than {MAX_CONDITIONS} "and"s and "or"s in a condition near line {self.line} '
                        "of filter file"
                    )
            if word == "and":
                and_c = Condition("and", sub=[c], parent=current_parent)
                root = store.put(and_c, root)
                store.target = (and_c, 1)
                current_parent = and_c
            elif word == "or":
                # "and" binds more tightly: climb to the top of the run of "and"s.
                or_parent: Condition | None = None
                if current_parent is not None:
                    while current_parent.parent is not None and current_parent.parent.kind == "and":
                        current_parent = current_parent.parent
                    or_parent = current_parent.parent
                or_c = Condition("or", sub=[current_parent if current_parent is not None else c], parent=or_parent)
                if or_parent is None:
                    root = or_c
                else:
                    or_parent.sub[1:] = [or_c]
                store.target = (or_c, 1)
                current_parent = or_c
            else:
                expected = "then" if toplevel else ")"
                raise FilterSyntaxError(
                    f'"and" or "or" or "{expected}" expected near line {self.line} of filter file, but found "{word}"'
                )
        self.next_significant()
        assert root is not None
        return root

    def simple_condition(self, c: Condition, word: str) -> None:
        if word in _KEYWORD_CONDITIONS:
            c.kind = word
        elif word == "personal":
            c.kind = "personal"
            while True:
                saved = self.i
                if self.word(bracket=True) != "alias":
                    self.i = saved
                    break
                c.aliases.insert(0, self.item(bracket=True))
        elif word == "foranyaddress":
            c.kind = "foranyaddress"
            c.left = self.item(bracket=True)
            if self.at() != "(":
                raise FilterSyntaxError(f'"(" expected after "foranyaddress" near line {self.line} of filter file')
            self.i += 1
            self.next_significant()
            self.nest()
            c.sub = [self.condition(toplevel=False)]
            self.depth -= 1
            if self.at() != ")":
                raise FilterSyntaxError(f'expected ")" in line {self.line} of filter file')
            self.i += 1
            self.next_significant()
        else:
            c.left = word
            after_is: int | None = None
            op = self.word(bracket=True)
            if op.lower() in ("does", "is"):
                if op[0] == "i":
                    c.kind = "is"
                elif op[0] == "I":
                    c.kind = "IS"
                if c.kind:
                    after_is = self.i
                op = self.word(bracket=True)
                if op.lower() == "not":
                    c.testfor = not c.testfor
                    if after_is is not None:
                        after_is = self.i
                    op = self.word(bracket=True)
            kind = _COND_WORDS.get(op)
            if kind is not None:
                c.kind = kind
            elif after_is is None:
                raise FilterSyntaxError(f'unrecognized condition word "{op}" near line {self.line} of filter file')
            else:
                # "is <value>": the word read was the right operand.
                self.i = after_is
            c.right = self.item(bracket=True)


class _Store:
    """Where read_condition() hangs the next condition it reads: the root, or the right-hand
    side of the last "and"/"or"."""

    def __init__(self) -> None:
        self.target: tuple[Condition, int] | None = None

    def put(self, c: Condition, root: Condition | None) -> Condition:
        """Store `c` where the next condition goes; also used when a new "and" takes the place of
        the condition just stored (which became its left side).  Returns the root."""
        if self.target is None:
            return c
        node, index = self.target
        node.sub[index:] = [c]
        assert root is not None
        return root


def _octal_prefix(digits: str) -> int:
    """C's strtol(s, NULL, 8): the leading octal digits ("0640" -> 0o640; "9" -> 0)."""
    end = 0
    while end < len(digits) and digits[end] in "01234567":
        end += 1
    return int(digits[:end], 8) if end else 0
