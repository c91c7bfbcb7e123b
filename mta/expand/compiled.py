"""Expansion strings parsed once: the common subset, evaluated without re-reading the text.

Why: the expander (expander.py) is a port of Exim's one-pass interpreter,
which reads the text afresh at every expansion.  Some strings are expanded
for every message with the same text each time: ``received_header_text``
(a dozen ``${if def:...}`` items), ``smtp_banner``.  Reading them was a
tenth of the CPU a receiving process spends on a message.  Here such a
string is parsed once into a `Template` (cached by its text) and then only
evaluated.

Only a subset is compiled: literal text, backslash escapes, ``$name`` and
``${name}`` variables, and ``${if def:name {yes}{no}}`` (with ``!``, and
without either branch) nested to any depth.  Anything else (another item
or condition, an operator, a header variable, $value, $item, $runrc, digit
captures, a syntax error) makes `compile_template` return None, and the
interpreter expands the string as before.  Evaluation falls back the same
way (`evaluate` returns None) whenever the interpreter would raise: a
variable that does not exist, in a branch taken or skipped.  So the result
of a template is, character for character and taint span for taint span,
what the interpreter returns; tests/expand/test_compiled.py compares the two.

Security: templates are made only from untainted text (a tainted string is
never expanded; the interpreter refuses it).  Variable values are inserted
as they are, never read as expansion syntax.
"""

from __future__ import annotations

from mta.expand.escapes import expansion_escape
from mta.expand.textcodecs import normalise
from mta.expand.variables import FILTER_VARIABLES, is_known_variable, variable_value
from mta.memo import lru_cache
from mta.taint import Tainted, concat, like

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from mta.expand.context import ExpandContext

HEADER_PREFIXES = ("h_", "header_", "rh_", "rheader_", "lh_", "lheader_", "bh_", "bheader_")
_C_SPACE = " \t\n\r\f\v"
# Variables the interpreter treats specially (lookup results, iteration, ${run}): never compiled.
_SPECIAL = frozenset({"value", "item", "runrc"})
_MAX_DEPTH = 50  # levels of ${if} nesting compiled (the interpreter allows 150)


def join_level(out: list[str]) -> str:
    """The end of one level of expansion (Exim's expand_string_internal): join the pieces,
    keeping taint spans; cut at a NUL (Exim's strings are C strings); re-read escaped
    bytes that form UTF-8."""
    result = concat(out)
    if "\0" in result:
        result = like(result, result[: result.index("\0")])
    if isinstance(result, Tainted):
        fixed = normalise(result)
        return result if fixed == result else Tainted(fixed)
    return normalise(result)


class _Unsupported(Exception):
    """The text uses something outside the compiled subset (or is malformed)."""


class _Var:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class _IfDef:
    """``${if [!]def:name {yes}{no}}``; `yes`/`no` None when absent; `bare` for ``${if def:x}``."""

    __slots__ = ("bare", "name", "no", "testfor", "yes")

    def __init__(self, testfor: bool, name: str, yes: Template | None, no: Template | None, bare: bool) -> None:
        self.testfor, self.name, self.yes, self.no, self.bare = testfor, name, yes, no, bare


class Template:
    """One level of a parsed expansion string: literal pieces, variables and ${if def:} items."""

    __slots__ = ("names", "parts")

    def __init__(self, parts: list[str | _Var | _IfDef]) -> None:
        self.parts = parts
        # Every variable named at this level or below: what a skipped branch must be able to find.
        names: set[str] = set()
        for part in parts:
            if isinstance(part, _Var):
                names.add(part.name)
            elif isinstance(part, _IfDef):
                names.add(part.name)
                for branch in (part.yes, part.no):
                    if branch is not None:
                        names |= branch.names
        self.names = frozenset(names)

    def evaluate(self, ctx: ExpandContext) -> str | None:
        """The expansion, or None where the interpreter would raise (let it, for its message)."""
        return self._run(ctx, {})

    def _run(self, ctx: ExpandContext, cache: dict[str, str]) -> str | None:
        out: list[str] = []
        tainted = False  # (join_level's own test, made as the pieces come)
        for part in self.parts:
            if type(part) is str:
                out.append(part)
                continue
            if type(part) is _Var:
                value = variable_value(ctx, part.name, cache)
                if value is None:
                    return None
                out.append(value)
                tainted = tainted or isinstance(value, Tainted)
                continue
            assert isinstance(part, _IfDef)
            value = variable_value(ctx, part.name, cache)
            if value is None:
                return None
            yes = (value != "") == part.testfor
            if part.bare:
                if yes:
                    out.append("true")
                continue
            taken, skipped = (part.yes, part.no) if yes else (part.no, part.yes)
            # The branch not taken is read all the same: an unknown name there is an error.
            if skipped is not None and not _all_known(skipped.names, ctx):
                return None
            if taken is not None:
                text = taken._run(ctx, cache)
                if text is None:
                    return None
                out.append(text)
                tainted = tainted or isinstance(text, Tainted)
        if tainted:
            return join_level(out)
        text = "".join(out)
        return normalise(text if "\0" not in text else text[: text.index("\0")])


def _all_known(names: frozenset[str], ctx: ExpandContext) -> bool:
    # Expander.find_variable's test in skipping mode.
    variables = ctx.variables
    return all(name in variables or is_known_variable(name) or name in FILTER_VARIABLES for name in names)


# The names of mta.expand.items.ITEMS (a test keeps them equal): that module, with the
# conditions and signing code under it, costs a `sendmail -t` 4 ms to import, and the
# Received: header's expansion needs only to know which ${name} is an item.
ITEM_NAMES = frozenset(
    {
        "acl",
        "authresults",
        "certextract",
        "dlfunc",
        "env",
        "extract",
        "filter",
        "hash",
        "hmac",
        "if",
        "imapfolder",
        "length",
        "listextract",
        "listquote",
        "lookup",
        "map",
        "nhash",
        "perl",
        "prvs",
        "prvscheck",
        "readfile",
        "readsocket",
        "reduce",
        "run",
        "sg",
        "sort",
        "srs_encode",
        "substr",
        "tr",
    }
)


@lru_cache(maxsize=512)
def compile_template(text: str) -> Template | None:
    """`text` parsed, or None if it is outside the subset.  Cached: call it with configuration
    text only (never a Tainted string: the caller checks)."""
    parser = _Parser(text, ITEM_NAMES)
    try:
        template = parser.level(ket_ends=False)
    except _Unsupported:
        return None
    return template


class _Parser:
    """Reads the subset exactly as Expander.internal/item_if/yesno read it; anything else: _Unsupported."""

    def __init__(self, text: str, items: frozenset[str]) -> None:
        self.s = text
        self.i = 0
        self.items = items  # ${name} with one of these names is an item, never a variable
        self.depth = 0

    def at(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def skip_white(self) -> str:
        s, n = self.s, len(self.s)
        while self.i < n and s[self.i] in _C_SPACE:
            self.i += 1
        return self.at()

    def name(self, extras: str) -> str:
        start = self.i
        s, n = self.s, len(self.s)
        while self.i < n and ((s[self.i].isascii() and s[self.i].isalnum()) or s[self.i] in extras):
            self.i += 1
        name = s[start : self.i]
        if len(name) > 255 or name in _SPECIAL or not name or name.startswith(HEADER_PREFIXES):
            raise _Unsupported
        return name

    def level(self, ket_ends: bool) -> Template:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise _Unsupported  # the interpreter's "nested too deeply" is its to say
        s, n = self.s, len(self.s)
        parts: list[str | _Var | _IfDef] = []
        text: list[str] = []  # literal characters since the last variable or item
        while self.i < n:
            ch = s[self.i]
            if ch == "\\":
                escaped = expansion_escape(s, self.i)
                if escaped is None:
                    raise _Unsupported  # "\ at end of string"
                decoded, self.i = escaped
                text.append(decoded)
                continue
            if ket_ends and ch == "}":
                break
            if ch != "$":
                text.append(ch)
                self.i += 1
                continue
            self.i += 1
            ch = self.at()
            if ch.isascii() and ch.isalpha():
                item: _Var | _IfDef = _Var(self.name("_"))
            elif ch == "{":
                self.i += 1
                if not (self.at().isascii() and self.at().isalpha()):
                    raise _Unsupported
                name = self.name("_-")
                if name == "if":
                    item = self.if_def()
                elif self.at() == "}" and name not in self.items:
                    self.i += 1
                    item = _Var(name)
                else:
                    raise _Unsupported  # another item, an operator, or an error
            else:
                raise _Unsupported  # digits, or "$ not followed by letter, digit, or {"
            if text:
                parts.append("".join(text))
                text = []
            parts.append(item)
        if ket_ends and self.i >= n:
            raise _Unsupported  # "missing } at end of string"
        if text:
            parts.append("".join(text))
        self.depth -= 1
        return Template(parts)

    def if_def(self) -> _IfDef:
        testfor = True
        while self.skip_white() == "!":
            testfor = not testfor
            self.i += 1
        if self.s[self.i : self.i + 4] != "def:":
            raise _Unsupported  # another condition (or "def" misspelt: the interpreter says so)
        self.i += 4
        name = self.name("_")
        # Expander.yesno
        if self.skip_white() == "}":
            self.i += 1
            return _IfDef(testfor, name, None, None, bare=True)
        yes = self.branch()
        no = None
        if self.skip_white() == "{":
            no = self.branch()
        elif self.at() != "}":
            raise _Unsupported  # "fail", or a syntax error
        self.skip_white()
        if self.at() != "}":
            raise _Unsupported
        self.i += 1
        return _IfDef(testfor, name, yes, no, bare=False)

    def branch(self) -> Template:
        if self.at() != "{":
            raise _Unsupported
        self.i += 1
        template = self.level(ket_ends=True)
        if self.at() != "}":
            raise _Unsupported
        self.i += 1
        return template
