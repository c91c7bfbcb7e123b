"""Exim string expansion: ``$local_part``, ``${lookup...}``, ``${if ...}``, ``${lc:...}``.

Public API
----------
expand(text, ctx=None) -> str
    Expand configuration text.  Returns a `Tainted` string if any tainted
    value (a Tainted variable, a header, a capture of tainted text) went
    into the result, a plain `str` otherwise; a Tainted result knows which
    of its characters are tainted (mta.taint).  Raises ExpansionError on any
    error; ``forced`` is true only for an explicit ``fail`` (and the other
    forced failures Exim has).  A LookupDeferError (an ExpansionError
    subclass) means a lookup file could not be read: defer.
check(text) -> None
    Walk the whole string without evaluating anything (Exim's "skipping"
    mode): raises ExpansionError for a syntax error, an unknown item,
    operator, condition, variable or lookup type.  For checking a
    configuration at start-up.
ExpandContext, ExpandPolicy, HeaderLines (context.py), time_variables()
KNOWN_VARIABLES, is_known_variable(name) (variables.py)

How it works
------------
This is a port of Exim 4.96's expand_string_internal(): one pass over the
text, reading and evaluating at once, with a "skipping" flag for the parts
whose value is not wanted (the branch of an ${if} not taken).  Skipped parts
are still read in full, so a syntax error or an unknown variable anywhere
is an error, and errors are found in the order Exim finds them, with
Exim's words.  The items live in items.py, listops.py and external.py, the
conditions in conditions.py, the operators in operators.py.

Security
--------
Only configuration text is expanded.  A variable's value is inserted as it
is, never read as expansion syntax, so a local part like ``${run{...}}``
stays that text (CVE-2019-10149).  Expanding a Tainted string is refused,
also by ${expand:} (CVE-2019-13917 class).  Taint follows the data through
every operator, item and list operation; a tainted value never names a
command or socket, and names a file only as one checked path component
(mta.taint.file_name_refusal).  ${run} and ${readsocket} exist only when the
configuration's policy allows them.
"""

from __future__ import annotations

from mta import debug as _debug
from mta.errors import ExpansionError
from mta.expand.compiled import HEADER_PREFIXES, compile_template, join_level
from mta.expand.context import ExpandContext, ExpandPolicy, HeaderLines, time_variables
from mta.expand.escapes import expansion_escape
from mta.expand.failures import CurlyError
from mta.expand.lookups import LookupDeferError
from mta.expand.variables import (
    FILTER_VARIABLES,
    KNOWN_VARIABLES,
    find_header,
    is_known_variable,
    unknown_variable_detail,
    variable_value,
)
from mta.lazy_pattern import lazy_compile
from mta.memo import cache
from mta.taint import Tainted, is_tainted
from mta.values import bounded_int

__all__ = [
    "KNOWN_VARIABLES",
    "ExpandContext",
    "ExpandPolicy",
    "Expander",
    "ExpansionError",
    "HeaderLines",
    "LookupDeferError",
    "check",
    "expand",
    "is_known_variable",
    "time_variables",
]

_EMPTY_CONTEXT = ExpandContext()
# check() reads ${run} and ${readsocket} without running them: whether they are
# allowed is the configuration's policy, applied when the string is expanded.
_CHECK_CONTEXT = ExpandContext(policy=ExpandPolicy(run=True, readsocket=True))
_C_SPACE = " \t\n\r\f\v"
_MAX_DEPTH = 150
_DIGITS = tuple(str(n) for n in range(10))
_DIGIT_NAMES = frozenset(_DIGITS)
_NAME = lazy_compile(r"[A-Za-z0-9_]*")
_NAME_WITH_HYPHEN = lazy_compile(r"[A-Za-z0-9_-]*")
_TEXT = lazy_compile(r"[^$}\\\\]*")
# $h_ (decoded), $rh_ (raw), $lh_ (raw, as a list), $bh_ (decoded, charset not converted)
_HEADER_FORMS = {
    "h": "h",
    "header": "h",
    "rh": "rh",
    "rheader": "rh",
    "lh": "lh",
    "lheader": "lh",
    "bh": "b",
    "bheader": "b",
}


def expand(text: str, ctx: ExpandContext | None = None) -> str:
    """Expand `text`; see the module docstring."""
    if "$" not in text and "\\" not in text:
        if is_tainted(text):
            raise ExpansionError(f"attempt to expand tainted string '{text}'")
        return text  # Exim's expand_cstring() shortcut: nothing to expand
    if "expand" in _debug.active:
        return _expand_debugged(text, ctx)
    if not isinstance(text, Tainted):
        # Strings expanded again and again (received_header_text for every message) are parsed
        # once; the template gives exactly the interpreter's result, or None to let it speak.
        template = compile_template(text)
        if template is not None:
            result = template.evaluate(ctx or _EMPTY_CONTEXT)
            if result is not None:
                return result
    return Expander(ctx or _EMPTY_CONTEXT).run(text, skipping=False)


def _expand_debugged(text: str, ctx: ExpandContext | None) -> str:
    """expand() under -d+expand: the string in, the result out (or the failure), on stderr.

    Both go through mta.printable (message data may hold control characters).  A string
    holding a secret (a ``hide`` option's value) is shown as <hidden>, and so is all that
    its expansion looks up."""
    from mta.printable import printable

    if _debug.is_secret(text):
        _debug.write("expanding: <hidden>")
        with _debug.hidden():
            try:
                return Expander(ctx or _EMPTY_CONTEXT).run(text, skipping=False)
            except ExpansionError:
                _debug.write("failed to expand: <hidden>")
                raise
    _debug.write("expanding: " + printable(text))
    try:
        result = Expander(ctx or _EMPTY_CONTEXT).run(text, skipping=False)
    except ExpansionError as exc:
        _debug.write("failed to expand: " + printable(text))
        _debug.write("   " + ("forced failure" if exc.forced else "error message: " + printable(exc.message)))
        raise
    _debug.write("   result: " + printable(result))
    return result


def check(text: str) -> None:
    """Raise ExpansionError if `text` would fail to expand for reasons of syntax.

    Variable names are not checked: the code that expands an option may add
    names of its own ($pipe_addresses in a pipe command, say).
    """
    if "$" in text or "\\" in text:
        checker = Expander(_CHECK_CONTEXT)
        checker.checking = True
        checker.run(str.__str__(text), skipping=True)


@cache
def _handlers():  # type: ignore[no-untyped-def]
    # Imported on first use: items and operators import this module.
    from mta.expand import items, operators

    return items, operators


def is_header_name(name: str) -> bool:
    return name.startswith(HEADER_PREFIXES)


class Expander:
    """One expansion, with the state Exim keeps in globals.

    s, i           the text being read and the position in it
    msg            Exim's expand_string_message: reset to "" by every nested
                   expansion, so an error path that sets nothing reports ""
                   exactly where Exim does
    lookup_value   $value; iterate_item: $item; nstrings: $0..$n
    """

    def __init__(self, ctx: ExpandContext) -> None:
        self.ctx = ctx
        self.s = ""
        self.i = 0
        self.msg = ""
        self.lookup_value: str | None = None
        self.iterate_item: str | None = None
        self.nstrings: list[str] = []
        self.runrc = 0
        self.malformed_header = False
        self.cache: dict[str, str] = {}
        self.extra: dict[str, str | None] = {}  # prvscheck_*, srs_recipient set by items
        self.depth = 0
        self.checking = False  # check(): any variable name is accepted
        # $0..$9 may come from the caller (a router's pattern captures), as
        # Exim's expand_nstring is set before a router expands its host list.
        if ctx.variables.keys() & _DIGIT_NAMES:
            captures = [ctx.variables.get(name) for name in _DIGITS]
            while captures and captures[-1] is None:
                captures.pop()
            self.nstrings = ["" if c is None else c if isinstance(c, str) else str(c) for c in captures]

    # -- entry points --------------------------------------------------------------------

    def run(self, text: str, skipping: bool) -> str:
        try:
            return self.expand_other(text, skipping)
        except RecursionError:
            # Only a pathological configuration nests this deep; report it like
            # any other expansion problem rather than crash the caller.
            raise ExpansionError("expansion string is nested too deeply") from None

    def expand_other(self, text: str, skipping: bool) -> str:
        """Expand a whole other string (Exim's expand_string() from inside an item)."""
        saved = self.s, self.i
        self.s, self.i = text, 0
        try:
            return self.internal(ket_ends=False, skipping=skipping)
        finally:
            self.s, self.i = saved

    # -- small helpers -------------------------------------------------------------------

    def at(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def skip_white(self) -> str:
        """Exim's Uskip_whitespace(): skip C white space, return the next character."""
        s, n = self.s, len(self.s)
        while self.i < n and s[self.i] in _C_SPACE:
            self.i += 1
        return s[self.i] if self.i < n else ""

    def take(self) -> str:
        """`*s++`: the current character (or "" at the end), moving on by one."""
        ch = self.at()
        self.i += 1
        return ch

    def read_name(self, extras: str) -> str:
        """Exim's read_name(): letters, digits and `extras` ("_" or "_-"); at most 255 kept."""
        m = (_NAME if extras == "_" else _NAME_WITH_HYPHEN).match(self.s, self.i)
        assert m is not None
        self.i = m.end()
        return m.group(0)[:255]

    def fail(self, msg: str | None = None, forced: bool = False) -> ExpansionError:
        if msg is not None:
            self.msg = msg
        return ExpansionError(self.msg, forced=forced)

    def curly(self, msg: str | None = None) -> ExpansionError:
        """Exim's EXPAND_FAILED_CURLY exit."""
        if msg is not None:
            self.msg = msg
        if self.malformed_header:
            self.msg = "missing or misplaced { or } - could be header name not terminated by colon"
        elif not self.msg:
            self.msg = "missing or misplaced { or }"
        return CurlyError(self.msg)

    def sub(self, skipping: bool, honour_dollar: bool = True) -> str:
        """Expand a braced argument whose "{" has been read; leaves "}" to the caller."""
        return self.internal(ket_ends=True, skipping=skipping, honour_dollar=honour_dollar)

    def scan(self, start: int, skipping: bool, honour_dollar: bool = True) -> str:
        """Expand from `start` of the current text up to the closing brace, then come back."""
        saved = self.i
        self.i = start
        try:
            return self.sub(skipping, honour_dollar)
        finally:
            self.i = saved

    # -- variables -----------------------------------------------------------------------

    def find_variable(self, name: str, skipping: bool) -> str | None:
        if name in self.extra:
            value = self.extra[name]
            return "" if skipping or value is None else value
        if name == "value":
            if "value" not in self.ctx.variables or self.lookup_value is not None:
                return "" if skipping or self.lookup_value is None else self.lookup_value
        if name == "item" and "item" not in self.ctx.variables:
            return "" if skipping or self.iterate_item is None else self.iterate_item
        if name == "runrc" and "runrc" not in self.ctx.variables:
            return str(self.runrc)
        if skipping:
            known = (
                (self.checking and bool(name))
                or name in self.ctx.variables
                or is_known_variable(name)
                or name in FILTER_VARIABLES
            )
            return "" if known else None
        return variable_value(self.ctx, name, self.cache)

    def header(self, name: str) -> str | None:
        """$h_name: (and its forms); `name` as read, prefix included, ending in ":"."""
        prefix, _, rest = name.partition("_")
        return find_header(self.ctx, rest, _HEADER_FORMS[prefix])

    def read_header_name(self, name: str) -> str:
        """Exim's read_header_name(): the rest of a header name, with ":" added."""
        s, n = self.s, len(self.s)
        out = [name.split("_", 1)[1]]
        while self.i < n and 33 <= ord(s[self.i]) <= 126 and s[self.i] != ":":
            out.append(s[self.i])
            self.i += 1
        if self.at() == ":":
            self.i += 1
        return name.split("_", 1)[0] + "_" + "".join(out)[:254] + ":"

    def capture(self, n: int) -> str | None:
        return self.nstrings[n] if 0 <= n < len(self.nstrings) else None

    # -- the main loop -------------------------------------------------------------------

    def internal(self, ket_ends: bool, skipping: bool, honour_dollar: bool = True) -> str:
        """Exim's expand_string_internal() from the current position.

        With `ket_ends`, stops at the first unmatched "}" (left unread).
        """
        items, operators = _handlers()
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise ExpansionError("expansion string is nested too deeply")
        try:
            self.msg = ""
            if is_tainted(self.s):
                raise self.fail(f"attempt to expand tainted string '{self.s[self.i :]}'")
            out: list[str] = []
            s, n = self.s, len(self.s)
            while self.i < n:
                ch = s[self.i]
                if ch == "\\":
                    self.backslash(out)
                    continue
                if ket_ends and ch == "}":
                    break
                if ch != "$" or not honour_dollar:
                    m = _TEXT.match(s, self.i + 1)
                    assert m is not None
                    out.append(s[self.i : m.end()])
                    self.i = m.end()
                    continue
                self.i += 1
                ch = self.at()
                if ch.isascii() and ch.isalpha():
                    self.dollar_name(out, skipping)
                    continue
                if ch.isascii() and ch.isdigit():
                    value = self.capture(self.read_number())
                    if value is not None:
                        out.append(value)
                    continue
                if ch != "{":
                    raise self.fail("$ not followed by letter, digit, or {")
                self.i += 1
                ch = self.at()
                if ch.isascii() and ch.isdigit():
                    number = self.read_number()
                    if self.take() != "}":
                        raise self.fail("} expected after number")
                    value = self.capture(number)
                    if value is not None:
                        out.append(value)
                    continue
                if not (ch.isascii() and ch.isalpha()):
                    raise self.fail("letter or digit expected after ${")
                name = self.read_name("_-")
                handler = items.ITEMS.get(name)
                if handler is not None:
                    out.append(handler(self, name, skipping))
                    continue
                if self.at() == ":":
                    out.append(operators.operate(self, name, skipping))
                    continue
                if self.take() == "}":
                    value = self.find_variable(name, skipping)
                    if value is None:
                        raise self.fail(f'unknown variable in "${{{name}}}"' + unknown_variable_detail(name))
                    out.append(value)
                    continue
                raise self.fail(f'"${{{name}" is not a known operator (or a }} is missing in a variable reference)')
            if ket_ends and self.i >= n:
                raise self.fail(
                    "missing } at end of string - could be header name not terminated by colon"
                    if self.malformed_header
                    else "missing } at end of string"
                )
            return join_level(out)
        finally:
            self.depth -= 1

    def read_number(self) -> int:
        start = self.i
        while self.at().isascii() and self.at().isdigit():
            self.i += 1
        return bounded_int(self.s[start : self.i])

    def backslash(self, out: list[str]) -> None:
        escaped = expansion_escape(self.s, self.i)
        if escaped is None:
            raise self.fail("\\ at end of string")
        decoded, self.i = escaped
        out.append(decoded)

    def dollar_name(self, out: list[str], skipping: bool) -> None:
        name = self.read_name("_")
        if is_header_name(name):
            name = self.read_header_name(name)
            value = None if skipping else self.header(name)
            if value is None:
                if "}" in name:
                    self.malformed_header = True
                return
            out.append(value)
            return
        value = self.find_variable(name, skipping)
        if value is None:
            raise self.fail(f'unknown variable name "{name}"' + unknown_variable_detail(name))
        out.append(value)

    # -- shared pieces of items ----------------------------------------------------------

    def read_subs(self, n: int, m: int, skipping: bool, check_end: bool, name: str) -> list[str | None]:
        """Exim's read_subs(): up to `n` braced arguments, at least `m`.

        Raises the curly error (Exim's return 1) or an ordinary one (2, 3).
        """
        subs: list[str | None] = []
        self.skip_white()
        for k in range(n):
            if self.at() != "{":
                if k < m:
                    raise self.curly(f"Not enough arguments for '{name}' (min is {m})")
                subs.append(None)
                break
            self.i += 1
            try:
                subs.append(self.sub(skipping))
            except CurlyError as exc:
                # A bracket problem inside the argument is the argument's failure
                # (read_subs returns 3), not a bracket problem of this item (1).
                raise ExpansionError(exc.message, forced=exc.forced) from None
            if self.take() != "}":
                raise self.curly()
            self.skip_white()
        subs += [None] * (n - len(subs))
        if check_end:
            ch = self.take()
            if ch != "}":
                if ch == "{":
                    raise self.fail(f"Too many arguments for '{name}' (max is {n})")
                raise self.curly(f"missing '}}' after '{name}'")
        return subs

    def yesno(self, skipping: bool, yes: bool, save_lookup: str | None, kind: str) -> str:
        """Exim's process_yesno(): the {yes}{no} / {yes}fail / nothing tail of an item.

        Returns the text to insert.  $value is reset to `save_lookup` before
        the second string, as in Exim.
        """
        out = ""
        if self.skip_white() == "}":
            if kind == "if":
                if yes and not skipping:
                    out = "true"
            else:
                if yes and self.lookup_value is not None and not skipping:
                    out = self.lookup_value
                self.lookup_value = save_lookup
            self.i += 1
            return out
        if self.take() != "{":
            raise self._yesno_curly("'yes' part did not start with '{'")
        try:
            first = self.sub(skipping=not yes or skipping)
        except ExpansionError as exc:
            if yes or not exc.forced:
                raise
            first = ""
        if self.take() != "}":
            raise self._yesno_curly("'yes' part did not end with '}'")
        if yes:
            out = first
        self.lookup_value = save_lookup
        if self.skip_white() == "{":
            self.i += 1
            try:
                second = self.sub(skipping=yes or skipping)
            except ExpansionError as exc:
                if not yes or not exc.forced:
                    raise
                second = ""
            if self.take() != "}":
                raise self._yesno_curly("'no' part did not start with '{'")
            if not yes:
                out = second
        elif self.at() != "}":
            word = self.read_name("_")
            if word == "fail":
                if not yes and not skipping:
                    self.skip_white()
                    if self.take() != "}":
                        raise self._yesno_curly("did not close with '}' after forcedfail")
                    raise self.fail(f'"{kind}" failed and "fail" requested', forced=True)
            else:
                raise self.fail(f'syntax error in "{kind}" item - "fail" expected')
        self.skip_white()
        if self.take() != "}":
            raise self._yesno_curly("did not close with '}'")
        return out

    def _yesno_curly(self, where: str) -> ExpansionError:
        rest = self.s[max(self.i - 1, 0) :] if self.i <= len(self.s) else ""
        return self.curly(
            f"curly-bracket problem in conditional yes/no parsing: {where}\n remaining string is '{rest}'"
        )
