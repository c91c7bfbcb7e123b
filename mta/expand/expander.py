"""Exim string expansion: ``$local_part``, ``${lookup...}``, ``${if ...}``, ``${lc:...}``.

Public API
----------
expand(text, ctx=None) -> str
    Expand configuration text.  Returns a `Tainted` string if any tainted
    value (a Tainted variable, a header, a capture of tainted text) went
    into the result, a plain `str` otherwise.  Raises ExpansionError on
    any error; ``forced`` is true only for an explicit ``fail``.  A
    LookupDeferError (an ExpansionError subclass) means a lookup file could
    not be read: defer.
check(text) -> None
    Parse only: raises ExpansionError for a syntax error, an unknown item,
    operator, condition or lookup type.  For checking a configuration at
    start-up; variable names are checked when expanding.
ExpandContext(variables={}, headers=None, match_list=None)
    What the expansion can see (see context.py).
time_variables(now=None) -> dict[str, str]
    The $tod_* variables, to merge into ExpandContext.variables.
KNOWN_VARIABLES, is_known_variable(name)
    The variable names the language knows.  A known name with no value
    expands to ""; an unknown name not in ctx.variables is an error.

A caller like ``mta -be`` does::

    ctx = ExpandContext({"primary_hostname": host, **time_variables(), ...})
    print(expand(argument, ctx))

Security
--------
Only configuration text is parsed.  A variable's value is inserted as it
is, never parsed, so a local part like ``${run{...}}`` stays that text
(CVE-2019-10149).  Expanding a Tainted string is refused.  Nothing here runs
a program, opens a socket or re-expands a result: ${run}, ${perl},
${readsocket}, ${dlfunc} and ${expand:} are errors.  A tainted file name in
${lookup}, ${readfile} or exists{} is an error, and so is a tainted regex.
"""

from __future__ import annotations

import re

from mta.errors import ExpansionError
from mta.expand import conditions, lookups, operators
from mta.expand.context import KNOWN_VARIABLES, ExpandContext, is_known_variable, time_variables
from mta.expand.lookups import LookupDeferError
from mta.expand.lookups._common import decode
from mta.expand.parser import Header, If, Item, Literal, Lookup, Operator, Part, Seq, Var, parse
from mta.taint import Tainted, is_tainted

__all__ = [
    "KNOWN_VARIABLES",
    "ExpandContext",
    "ExpansionError",
    "LookupDeferError",
    "check",
    "expand",
    "is_known_variable",
    "time_variables",
]

_EMPTY_CONTEXT = ExpandContext()
_CAPTURE_REF = re.compile(r"\$(\d)|\$\{(\d+)\}")
_INTEGER = re.compile(r"-?\d+")


def expand(text: str, ctx: ExpandContext | None = None) -> str:
    """Expand `text`; see the module docstring."""
    if is_tainted(text):
        raise ExpansionError(f'attempt to expand tainted string "{text[:60]}"')
    if "$" not in text and "\\" not in text:
        return text  # the common case: a plain option value
    try:
        seq = parse(text)
        return _Evaluator(ctx or _EMPTY_CONTEXT).text(seq, skip=False)
    except RecursionError:
        # Only a pathological configuration nests this deep; report it like
        # any other expansion problem rather than crash the caller.
        raise ExpansionError("expansion string is nested too deeply") from None


def check(text: str) -> None:
    """Raise ExpansionError if `text` is not a well-formed expansion string."""
    try:
        parse(str.__str__(text))
    except RecursionError:
        raise ExpansionError("expansion string is nested too deeply") from None


def _join(parts: list[str]) -> str:
    out = "".join(parts)
    if any(isinstance(p, Tainted) for p in parts):
        return Tainted(out)
    return out


def _like(source: str, result: str) -> str:
    """`result` with the taint of `source` (operators keep their input's taint)."""
    return Tainted(result) if is_tainted(source) else result


def _number(text: str, where: str) -> int:
    if not _INTEGER.fullmatch(text.strip()):
        raise ExpansionError(f'"{text}" is not a number (in {where})')
    return int(text.strip())


def _untainted_path(path: str, where: str) -> str:
    if is_tainted(path):
        raise ExpansionError(f'Tainted filename "{path}" refused in {where}')
    return path


def _forced(where: str) -> ExpansionError:
    return ExpansionError(f'"{where}" failed and "fail" requested', forced=True)


class _Evaluator:
    """One expansion: walks the parsed tree with the state Exim keeps globally.

    `value` is $value inside a lookup's or extract's yes/no strings;
    `captures` are $0..$9 after a successful match condition.  Both are
    saved and restored around the item that sets them.  Computed variables
    are called at most once per expansion.
    """

    def __init__(self, ctx: ExpandContext) -> None:
        self.ctx = ctx
        self.value: str | None = None
        self.captures: list[str] | None = None
        self.computed: dict[str, str] = {}

    # -- the Evaluator protocol of conditions.py --

    def set_captures(self, captures: list[str]) -> None:
        self.captures = captures

    def variable(self, name: str, skip: bool) -> str:
        if name.isdigit():
            if skip:
                return ""
            if self.captures is not None:
                n = int(name)
                return self.captures[n] if n < len(self.captures) else ""
            return self._from_context(name)
        if name not in self.ctx.variables and not is_known_variable(name):
            raise ExpansionError(f'unknown variable name "{name}"')
        if skip:
            return ""
        if name == "value" and self.value is not None:
            return self.value
        return self._from_context(name)

    def text(self, seq: Seq, skip: bool) -> str:
        parts = [self.part(node, skip) for node in seq]
        return "" if skip else _join(parts)

    # -- internals --

    def _from_context(self, name: str) -> str:
        if name in self.computed:
            return self.computed[name]
        raw = self.ctx.variables.get(name)
        if callable(raw):
            raw = raw()
            value = "" if raw is None else raw if isinstance(raw, str) else str(raw)
            self.computed[name] = value
            return value
        if raw is None:
            return ""
        return raw if isinstance(raw, str) else str(raw)

    def part(self, node: Part, skip: bool) -> str:
        if isinstance(node, Literal):
            return node.text
        if isinstance(node, Var):
            return self.variable(node.name, skip)
        if isinstance(node, Header):
            return "" if skip else self.header(node)
        if isinstance(node, Operator):
            arg = self.text(node.arg, skip)
            return "" if skip else _like(arg, operators.apply(node.name, node.params, arg))
        if isinstance(node, If):
            return self.if_item(node, skip)
        if isinstance(node, Lookup):
            return self.lookup_item(node, skip)
        if isinstance(node, Item):
            return self.item(node, skip)
        raise AssertionError(f"unexpected node {node!r}")

    def header(self, node: Header) -> str:
        raw = self.ctx.headers(node.name) if self.ctx.headers is not None else None
        if raw is None:
            return ""
        # $rh_ is the raw text; $h_ and $bh_ lose surrounding white space as in
        # Exim ($h_ would also decode RFC 2047 words there; mta does not).
        return Tainted(raw if node.form == "rh" else raw.strip(" \t\r\n"))

    def branches(
        self, found: bool, yes: Seq | None, no: Seq | None, fail: bool, where: str, skip: bool,
        default: str,
    ) -> str:
        """The common tail of if, lookup and extract: pick and expand a string.

        The string not chosen is still walked, so errors in it are errors
        (as in Exim).  `default` is the result when the test succeeded and
        no yes string was given.
        """
        if skip or not found:
            if yes is not None:
                self.text(yes, skip=True)
        if skip or found:
            if no is not None:
                self.text(no, skip=True)
        if skip:
            return ""
        if found:
            return self.text(yes, skip=False) if yes is not None else default
        if no is not None:
            return self.text(no, skip=False)
        if fail:
            raise _forced(where)
        return ""

    def with_value(
        self, value: str | None, yes: Seq | None, no: Seq | None, fail: bool, where: str, skip: bool
    ) -> str:
        """Branches of lookup and extract: $value is the result ("" if none)."""
        saved = self.value
        self.value = "" if value is None else value
        try:
            return self.branches(value is not None, yes, no, fail, where, skip, self.value)
        finally:
            self.value = saved

    def if_item(self, node: If, skip: bool) -> str:
        saved = self.captures
        try:
            truth = conditions.evaluate(self, node.cond, skip)
            return self.branches(truth, node.yes, node.no, node.fail, "if", skip, "true")
        finally:
            self.captures = saved

    def lookup_item(self, node: Lookup, skip: bool) -> str:
        key = self.text(node.key, skip)
        filename = self.text(node.filename, skip)
        result = None
        if not skip:
            _untainted_path(filename, f'"{node.search_type}" lookup')
            result = lookups.lookup(node.search_type, filename, key)
        return self.with_value(result, node.yes, node.no, node.fail, "lookup", skip)

    def item(self, node: Item, skip: bool) -> str:
        if node.name == "extract":
            return self.extract(node, skip)
        args = [self.text(arg, skip) for arg in node.args]
        if skip:
            return ""
        name = node.name
        if name == "sg":
            return self.sg(*args)
        if name == "tr":
            return _like(args[0], _translate(*args))
        if name == "readfile":
            return _readfile(args[0], args[1] if len(args) > 1 else None)
        if name == "length":
            return _like(args[1], operators.length(args[1], _number(args[0], '"length" item')))
        if name == "substr":
            start = _number(args[0], '"substr" item')
            size = _number(args[1], '"substr" item') if len(args) == 3 else None
            if size is not None and size < 0:
                raise ExpansionError(f'"substr" length "{size}" must not be negative')
            return _like(args[-1], operators.substr(args[-1], start, size))
        raise AssertionError(f"item {name} passed the parser but has no implementation")

    def sg(self, subject: str, pattern: str, replacement: str) -> str:
        regex = conditions.compile_regex(pattern, '"sg" item')

        def substitute(m: re.Match[str]) -> str:
            groups = conditions.captures_of(m, subject)
            return _CAPTURE_REF.sub(
                lambda ref: _group(groups, int(ref.group(1) or ref.group(2))), replacement
            )

        result = regex.sub(substitute, subject)
        return Tainted(result) if is_tainted(subject) or is_tainted(replacement) else result

    def extract(self, node: Item, skip: bool) -> str:
        args = node.args
        if skip:
            # Which form this is depends on a value we do not compute here.
            for arg in args:
                self.text(arg, skip=True)
            return ""
        first = self.text(args[0], skip=False).strip(" \t\r\n")
        if not first:
            raise ExpansionError('first argument of "extract" must not be empty')
        numeric = _INTEGER.fullmatch(first) is not None
        fixed = 3 if numeric else 2
        if len(args) < fixed:
            raise ExpansionError(f"missing '{{' for arg {fixed} of extract")
        if len(args) > fixed + 2:
            raise ExpansionError('too many arguments for "extract" (the key form is {key}{string}{yes}{no})')
        middle = [self.text(arg, skip=False) for arg in args[1:fixed]]
        yes = args[fixed] if len(args) > fixed else None
        no = args[fixed + 1] if len(args) > fixed + 1 else None
        if numeric:
            field = _field(int(first), middle[0], middle[1])
        else:
            field = _keyed(first, middle[0])
        return self.with_value(field, yes, no, node.fail, "extract", skip=False)


def _group(groups: list[str], n: int) -> str:
    return groups[n] if n < len(groups) else ""


def _translate(subject: str, source: str, target: str) -> str:
    if not target:
        return subject
    table: dict[str, str] = {}
    for i, ch in enumerate(source):
        # Later occurrences win, as Exim finds them with strrchr().
        table[ch] = target[i] if i < len(target) else target[-1]
    return "".join(table.get(ch, ch) for ch in subject)


def _readfile(path: str, eol: str | None) -> str:
    _untainted_path(path, '"readfile" item')
    try:
        with open(path, "rb") as f:
            content = decode(f.read())
    except OSError as exc:
        raise ExpansionError(f"failed to open {path} (in readfile item): {exc.strerror}") from None
    return content if eol is None else content.replace("\n", eol)


def _dequote(text: str, pos: int) -> tuple[str, int]:
    """Exim's string_dequote(): a quoted string with escapes, or up to white space."""
    from mta.expand.escapes import interpret_escape

    if pos < len(text) and text[pos] == '"':
        out: list[str] = []
        pos += 1
        while pos < len(text) and text[pos] != '"':
            if text[pos] == "\\":
                ch, pos = interpret_escape(text, pos)
                out.append(ch)
            else:
                out.append(text[pos])
                pos += 1
        return "".join(out), min(pos + 1, len(text))
    end = pos
    while end < len(text) and not text[end].isspace():
        end += 1
    return text[pos:end], end


def _keyed(key: str, data: str) -> str | None:
    """``key=value`` pairs: Exim's expand_getkeyed(); the key is caseless."""
    i, n = 0, len(data)
    wanted = key.lower()
    while True:
        while i < n and data[i].isspace():
            i += 1
        if i >= n:
            return None
        start = i
        while i < n and data[i] != "=" and not data[i].isspace():
            i += 1
        found = data[start:i]
        while i < n and data[i].isspace():
            i += 1
        if i < n and data[i] == "=":
            i += 1
            while i < n and data[i].isspace():
                i += 1
        value, i = _dequote(data, i)
        if found.lower() == wanted:
            return _like(data, value)


def _field(number: int, separators: str, data: str) -> str | None:
    """Field `number` (1-based; negative counts from the end; 0 is all)."""
    if number == 0:
        return data
    if not separators:
        fields = [data]
    else:
        fields = re.split("[" + re.escape(separators) + "]", data)
    index = number - 1 if number > 0 else len(fields) + number
    if not 0 <= index < len(fields):
        return None
    return _like(data, fields[index])
