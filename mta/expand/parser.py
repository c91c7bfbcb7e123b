"""Parse an expansion string into a small tree.

The tree is what `expander.py` evaluates.  Parsing is separate from
evaluation for two reasons: a configuration string is expanded many times
(once per address, say), so its tree is cached; and every syntax error is
found even in a branch that a particular evaluation does not take, as in
Exim.

Only configuration text is ever parsed.  The value of a variable is data:
it is inserted into the result and never handed to this module, which is the
whole defence against CVE-2019-10149-style attacks.
"""

from __future__ import annotations

import functools
import re

from mta import record
from mta.errors import ExpansionError
from mta.expand import lookups, operators
from mta.expand.escapes import interpret_escape

WHITE = " \t\n\r\f\v"


# -- the tree -------------------------------------------------------------


@record.dataclass(frozen=True, slots=True)
class Literal:
    text: str


@record.dataclass(frozen=True, slots=True)
class Var:
    """``$name`` or ``${name}``; digits for the regex captures ``$1``..."""

    name: str


@record.dataclass(frozen=True, slots=True)
class Header:
    """``$h_name:`` (form "h"), ``$rh_name:`` ("rh") or ``$bh_name:`` ("bh")."""

    form: str
    name: str


@record.dataclass(frozen=True, slots=True)
class Operator:
    """``${name:arg}``; `params` holds the numbers of ``length_3``/``substr_1_2``."""

    name: str
    params: tuple[int, ...]
    arg: Seq


@record.dataclass(frozen=True, slots=True)
class Item:
    """``${name{a}{b}...}``: sg, tr, extract, readfile, length, substr."""

    name: str
    args: tuple[Seq, ...]
    fail: bool


@record.dataclass(frozen=True, slots=True)
class If:
    cond: Cond
    yes: Seq | None
    no: Seq | None
    fail: bool


@record.dataclass(frozen=True, slots=True)
class Lookup:
    key: Seq
    search_type: str
    filename: Seq
    yes: Seq | None
    no: Seq | None
    fail: bool


@record.dataclass(frozen=True, slots=True)
class Test:
    """A condition with braced arguments: ``eq{a}{b}``, ``exists{f}``, ``<{a}{b}``."""

    name: str
    args: tuple[Seq, ...]


@record.dataclass(frozen=True, slots=True)
class Defined:
    """``def:name`` (header is None) or ``def:h_name:`` (var is None)."""

    var: str | None
    header: str | None


@record.dataclass(frozen=True, slots=True)
class Combine:
    name: str  # "and" or "or"
    conds: tuple[Cond, ...]


@record.dataclass(frozen=True, slots=True)
class Not:
    cond: Cond


Part = Literal | Var | Header | Operator | Item | If | Lookup
Seq = tuple[Part, ...]
Cond = Test | Defined | Combine | Not


# -- the grammar's vocabulary ----------------------------------------------

# Item name -> (least, most) braced arguments, not counting yes/no strings
# for the items that have them (if, lookup, extract: see below).
ITEM_ARITY: dict[str, tuple[int, int]] = {
    "sg": (3, 3),
    "tr": (3, 3),
    "extract": (2, 5),  # key form 2 (+yes/no), numeric form 3 (+yes/no); settled at run time
    "readfile": (1, 2),
    "length": (2, 2),
    "substr": (2, 3),
}

# Items Exim has that we refuse on purpose: each of them runs something,
# talks to something, or re-expands data.
UNSUPPORTED_ITEMS = frozenset(
    {
        "run", "perl", "readsocket", "dlfunc", "acl", "certextract", "env", "hash", "nhash",
        "hmac", "listextract", "map", "filter", "reduce", "forall", "forany", "sort", "prvs",
        "prvscheck", "srs_encode", "authresults", "imapfolder", "lookup_json", "expand",
    }
)

# Conditions and how many braced arguments each takes.
CONDITION_ARITY: dict[str, int] = {
    "eq": 2, "eqi": 2, "ne": 2,
    "lt": 2, "lti": 2, "le": 2, "lei": 2, "gt": 2, "gti": 2, "ge": 2, "gei": 2,
    "=": 2, "==": 2, "<": 2, ">": 2, "<=": 2, ">=": 2,
    "match": 2, "inlist": 2, "inlisti": 2,
    "match_domain": 2, "match_address": 2, "match_local_part": 2, "match_ip": 2,
    "exists": 1, "isip": 1, "isip4": 1, "isip6": 1, "bool": 1, "bool_lax": 1,
}  # fmt: skip

UNSUPPORTED_CONDITIONS = frozenset(
    {
        "acl", "crypteq", "pam", "radius", "ldapauth", "pwcheck", "saslauthd", "queue_running",
        "first_delivery", "forall", "forany", "forall_json", "forany_json", "authenticated",
        "encrypted", "inbound_srs",
    }
)  # fmt: skip

_SYMBOL_CONDITIONS = frozenset({"=", "==", "<", ">", "<=", ">="})

# $h_subject:, $header_subject:, $rh_..., $rheader_..., $bh_..., $bheader_...
_HEADER_PREFIX = re.compile(r"(r|b)?h(?:eader)?_")
# Characters allowed in a header name after the prefix: RFC 5322 ftext minus
# the characters that would make the expansion string ambiguous.
_HEADER_CHARS = frozenset(chr(c) for c in range(33, 127)) - set(":{}$\\")
# Operator names that carry numbers may contain "-": ${substr_-3_2:...}.
_NUMBERED_OP_START = re.compile(r"(?:substr|length)(?:_-?\d+)*_$")
_NUMBERED_OP = re.compile(r"(substr|length)((?:_-?\d+)+)")


def header_prefix(name: str) -> tuple[str, str] | None:
    """Split ``h_subject`` into ("h", "subject"); None if not a header name."""
    m = _HEADER_PREFIX.match(name)
    if m is None:
        return None
    return (m.group(1) or "") + "h", name[m.end() :]


@functools.lru_cache(maxsize=2048)
def parse(text: str) -> Seq:
    """Parse a whole expansion string; raises ExpansionError on a syntax error."""
    return _Parser(str.__str__(text)).sequence(in_braces=False)


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.n = len(text)

    # -- low-level helpers --

    def peek(self) -> str:
        return self.s[self.i] if self.i < self.n else ""

    def skip_white(self) -> None:
        while self.i < self.n and self.s[self.i] in WHITE:
            self.i += 1

    def read_name(self, extra: str = "_") -> str:
        start = self.i
        while self.i < self.n and (
            (self.s[self.i].isascii() and self.s[self.i].isalnum()) or self.s[self.i] in extra
        ):
            self.i += 1
        return self.s[start : self.i]

    def expect(self, ch: str, where: str) -> None:
        if self.i >= self.n:
            raise ExpansionError(f"missing {ch} at end of string (in {where})")
        if self.s[self.i] != ch:
            raise ExpansionError(f'syntax error in {where}: expected "{ch}" but found "{self.rest()}"')
        self.i += 1

    def rest(self) -> str:
        tail = self.s[self.i : self.i + 20]
        return tail + ("..." if self.i + 20 < self.n else "")

    def at_keyword(self, word: str) -> bool:
        end = self.i + len(word)
        if not self.s.startswith(word, self.i):
            return False
        return end >= self.n or not (self.s[end].isalnum() or self.s[end] == "_")

    # -- sequences --

    def sequence(self, in_braces: bool) -> Seq:
        """Read text up to the end (top level) or up to an unescaped ``}``.

        At top level a brace is an ordinary character, as in Exim; inside an
        argument the first ``}`` not consumed by a nested ``${...}`` ends it.
        The closing brace is left for the caller.
        """
        parts: list[Part] = []
        buf: list[str] = []
        while self.i < self.n:
            ch = self.s[self.i]
            if ch == "}" and in_braces:
                break
            if ch == "\\":
                if self.s.startswith("\\N", self.i):
                    end = self.s.find("\\N", self.i + 2)
                    end = self.n if end < 0 else end
                    buf.append(self.s[self.i + 2 : end])
                    self.i = min(end + 2, self.n)
                else:
                    decoded, self.i = interpret_escape(self.s, self.i)
                    buf.append(decoded)
                continue
            if ch == "$":
                if buf:
                    parts.append(Literal("".join(buf)))
                    buf = []
                parts.append(self.dollar())
                continue
            buf.append(ch)
            self.i += 1
        if in_braces and self.i >= self.n:
            raise ExpansionError("missing } at end of string")
        if buf:
            parts.append(Literal("".join(buf)))
        return tuple(parts)

    def braced(self, where: str) -> Seq:
        """Read ``{...}`` (the current character must be ``{``)."""
        self.expect("{", where)
        seq = self.sequence(in_braces=True)
        self.i += 1  # the closing brace sequence() stopped at
        return seq

    def braced_args(self, limit: int) -> list[Seq]:
        args: list[Seq] = []
        while len(args) < limit:
            self.skip_white()
            if self.peek() != "{":
                break
            args.append(self.braced("argument"))
        return args

    # -- $ forms --

    def dollar(self) -> Part:
        self.i += 1  # the "$"
        ch = self.peek()
        if ch == "{":
            self.i += 1
            return self.braced_dollar()
        if ch.isascii() and ch.isdigit():
            start = self.i
            while self.i < self.n and self.s[self.i].isascii() and self.s[self.i].isdigit():
                self.i += 1
            return Var(self.s[start : self.i])
        name = self.read_name()
        if not name:
            raise ExpansionError(f'"$" is not followed by a variable name or "{{" (at "${self.rest()}")')
        header = header_prefix(name)
        if header is not None:
            return self.header_var(header[0], header[1], braced=False)
        return Var(name)

    def header_var(self, form: str, start: str, braced: bool) -> Header:
        name = start
        while self.i < self.n and self.s[self.i] in _HEADER_CHARS:
            name += self.s[self.i]
            self.i += 1
        if not name:
            raise ExpansionError(f'header name missing after "{form}_"')
        if self.peek() == ":":
            self.i += 1
        elif not braced and self.i < self.n and self.s[self.i] not in WHITE:
            # Exim would read the brace or "$" into the header name and fail
            # later with a puzzling message; say what is wrong instead.
            raise ExpansionError(f'header name "{name}" not terminated by ":"')
        return Header(form, name.lower())

    def braced_dollar(self) -> Part:
        name = self.read_name()
        if not name:
            raise ExpansionError(f'missing variable or item name after "${{" (at "{self.rest()}")')
        if name.isdigit():
            self.expect("}", f'"${{{name}}}"')
            return Var(name)
        header = header_prefix(name)
        if header is not None:
            part = self.header_var(header[0], header[1], braced=True)
            self.expect("}", f'"${{{name}"')
            return part
        ch = self.peek()
        if ch == "}":
            self.i += 1
            return Var(name)
        if ch == ":" or (ch == "-" and _NUMBERED_OP_START.fullmatch(name)):
            return self.operator(name)
        if name == "if":
            return self.if_item()
        if name == "lookup":
            return self.lookup_item()
        if name in ITEM_ARITY:
            return self.item(name)
        if name in UNSUPPORTED_ITEMS:
            raise ExpansionError(
                f'expansion item "{name}" is not supported: mta never runs commands, '
                "opens sockets or re-expands data"
            )
        if ch == "":
            raise ExpansionError("missing } at end of string")
        raise ExpansionError(f'unknown expansion item "{name}"')

    def operator(self, name: str) -> Operator:
        if self.peek() == "-":
            name += self.read_name(extra="_-")
        self.expect(":", f'"${{{name}:"')
        params: tuple[int, ...] = ()
        m = _NUMBERED_OP.fullmatch(name)
        if m is not None:
            params = tuple(int(p) for p in m.group(2)[1:].split("_"))
            name = m.group(1)
            if (name == "length" and len(params) != 1) or (name == "substr" and len(params) > 2):
                raise ExpansionError(f'wrong number of numbers in operator "{m.group(0)}"')
        elif name in operators.UNSUPPORTED_OPERATORS:
            raise ExpansionError(
                f'expansion operator "{name}" is not supported: mta never re-expands data'
            )
        elif name not in operators.OPERATORS:
            raise ExpansionError(f'unknown expansion operator "{name}"')
        arg = self.sequence(in_braces=True)
        self.i += 1
        return Operator(name, params, arg)

    def yes_no(self, where: str) -> tuple[Seq | None, Seq | None, bool]:
        """The optional ``{yes}{no}`` strings, ``{yes} fail`` or nothing."""
        self.skip_white()
        yes = no = None
        fail = False
        if self.peek() == "{":
            yes = self.braced(where)
            self.skip_white()
            if self.peek() == "{":
                no = self.braced(where)
            elif self.at_keyword("fail"):
                self.i += 4
                fail = True
        self.skip_white()
        self.expect("}", where)
        return yes, no, fail

    def item(self, name: str) -> Item:
        where = f'"{name}" item'
        least, most = ITEM_ARITY[name]
        args = self.braced_args(most)
        fail = False
        self.skip_white()
        if self.at_keyword("fail"):
            if name != "extract":
                raise ExpansionError(f'"fail" is not allowed in the {where}')
            self.i += 4
            fail = True
            self.skip_white()
        if len(args) < least:
            if self.i >= self.n:
                raise ExpansionError("missing } at end of string")
            raise ExpansionError(f"{where} needs at least {least} arguments in braces")
        self.expect("}", where)
        return Item(name, tuple(args), fail)

    def if_item(self) -> If:
        cond = self.condition()
        yes, no, fail = self.yes_no('"if" item')
        return If(cond, yes, no, fail)

    def lookup_item(self) -> Lookup:
        where = '"lookup" item'
        self.skip_white()
        if self.peek() != "{":
            raise ExpansionError(
                "missing {key} in lookup item: mta supports single-key lookups only"
                " (${lookup{key}type{file}})"
            )
        key = self.braced(where)
        self.skip_white()
        start = self.i
        while self.i < self.n and self.s[self.i] not in WHITE and self.s[self.i] not in "{}":
            self.i += 1
        search_type = self.s[start : self.i]
        if not search_type:
            raise ExpansionError("missing lookup type after {key} in lookup item")
        lookups.parse_search_type(search_type)  # unknown types are syntax errors
        self.skip_white()
        if self.peek() != "{":
            raise ExpansionError(f'missing {{filename}} after lookup type "{search_type}"')
        filename = self.braced(where)
        yes, no, fail = self.yes_no(where)
        return Lookup(key, search_type, filename, yes, no, fail)

    # -- conditions --

    def condition(self) -> Cond:
        self.skip_white()
        negate = False
        while self.peek() == "!":
            negate = not negate
            self.i += 1
            self.skip_white()
        cond = self.condition_body()
        return Not(cond) if negate else cond

    def condition_body(self) -> Cond:
        if self.peek() in ("=", "<", ">"):
            start = self.i
            while self.i < self.n and not (
                self.s[self.i] in WHITE or self.s[self.i] in "{}" or self.s[self.i].isalnum()
            ):
                self.i += 1
            name = self.s[start : self.i]
            if name not in _SYMBOL_CONDITIONS:
                raise ExpansionError(f'unknown condition "{name}"')
        else:
            name = self.read_name()
        if not name:
            if self.i >= self.n:
                raise ExpansionError("missing } at end of string")
            raise ExpansionError(f'condition name expected after "if" (at "{self.rest()}")')
        if name == "def":
            return self.def_condition()
        if name in ("and", "or"):
            return self.combine(name)
        if name in UNSUPPORTED_CONDITIONS:
            raise ExpansionError(f'condition "{name}" is not supported by mta')
        arity = CONDITION_ARITY.get(name)
        if arity is None:
            raise ExpansionError(f'unknown condition "{name}"')
        args = self.braced_args(arity)
        if len(args) < arity:
            if self.i >= self.n:
                raise ExpansionError("missing } at end of string")
            raise ExpansionError(f'condition "{name}" needs {arity} argument(s) in braces')
        return Test(name, tuple(args))

    def def_condition(self) -> Defined:
        if self.peek() != ":":
            raise ExpansionError('":" expected after "def"')
        self.i += 1
        name = self.read_name()
        if not name:
            raise ExpansionError('variable name omitted after "def:"')
        header = header_prefix(name)
        if header is not None:
            part = self.header_var(header[0], header[1], braced=True)
            return Defined(None, part.name)
        return Defined(name, None)

    def combine(self, name: str) -> Combine:
        where = f'"{name}" condition'
        self.skip_white()
        self.expect("{", where)
        conds: list[Cond] = []
        while True:
            self.skip_white()
            if self.peek() == "}":
                self.i += 1
                break
            self.expect("{", where)
            conds.append(self.condition())
            self.skip_white()
            self.expect("}", where)
        if not conds:
            raise ExpansionError(f"{where} has no sub-conditions")
        return Combine(name, tuple(conds))
