"""The ``${op:string}`` operators, and number parsing shared with conditions.

Every function here is pure: text in, text out, no I/O.  Taint is not
handled here; the expander re-applies its input's taint to the result (a
Python string operation on a `Tainted` returns a plain `str`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from mta.errors import ExpansionError
from mta.values import split_list

# 64-bit signed range, as Exim's int_eximarith_t.
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1

_NUMBER = re.compile(r"\s*([-+]?\d+)([KkMmGg]?)\s*")
_SUFFIX = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_number(text: str) -> int:
    """A decimal integer with an optional K, M or G suffix (1K = 1024).

    As in Exim, an empty string is zero.
    """
    if not text.strip():
        return 0
    m = _NUMBER.fullmatch(text)
    if m is None:
        raise ExpansionError(f'"{text}" is not a number')
    value = int(m.group(1)) * _SUFFIX[m.group(2).lower()]
    if not INT_MIN <= value <= INT_MAX:
        raise ExpansionError(f'"{text}" is too large')
    return value


# -- substrings ------------------------------------------------------------


def substr(subject: str, start: int, length: int | None) -> str:
    """Exim's extract_substr(): a negative start counts from the end.

    With a negative start and no length the result is everything *before*
    that position, which is what Exim does (``${substr_-3:abcdef}`` is "abc").
    """
    size = len(subject)
    if start < 0:
        start += size
        if start < 0:
            length = max(0, (length if length is not None else 0) + start)
            start = 0
        elif length is None:
            length, start = start, 0
    else:
        if start > size:
            return ""
        if length is None:
            length = size
    if start + length > size:
        length = size - start
    return subject[start : start + length]


def length(subject: str, count: int) -> str:
    if count < 0:
        raise ExpansionError(f'length "{count}" must not be negative')
    return subject[:count]


# -- addresses -------------------------------------------------------------


def _address(text: str) -> str:
    import email.utils  # only the few configurations that use ${address:} pay for it

    return email.utils.parseaddr(text)[1]


def _local_part(text: str) -> str:
    address = _address(text)
    at = address.rfind("@")
    return address if at < 0 else address[:at]


def _domain(text: str) -> str:
    address = _address(text)
    at = address.rfind("@")
    return "" if at < 0 else address[at + 1 :]


def _addresses(text: str) -> str:
    """A list of the addresses in a header value, colon-separated.

    ``${addresses:>& a@b, c@d}`` uses "&" as the separator instead; a
    separator character inside an address is doubled, as in any Exim list.
    """
    import email.utils

    sep = ":"
    stripped = text.lstrip()
    if len(stripped) >= 2 and stripped[0] == ">" and not stripped[1].isspace():
        sep = stripped[1]
        text = stripped[2:]
    found = [addr for _name, addr in email.utils.getaddresses([text]) if addr]
    return sep.join(addr.replace(sep, sep + sep) for addr in found)


# -- quoting ---------------------------------------------------------------

_QUOTE_SAFE = re.compile(r"[A-Za-z0-9_.\-]+")
_CONTROL_NAMES = {"\n": "n", "\r": "r", "\b": "b", "\v": "v", "\f": "f", "\t": "t"}


def _quote(text: str) -> str:
    if _QUOTE_SAFE.fullmatch(text):
        return text
    out = ['"']
    for ch in text:
        if ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch in '\\"':
            out.append("\\" + ch)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _escape(text: str) -> str:
    """Make non-printing characters visible, as Exim's string_printing().

    Characters outside printable ASCII are written as octal escapes of
    their UTF-8 bytes: Exim's default (print_topbitchars is false).
    """
    out = []
    for ch in text:
        if " " <= ch <= "~":
            out.append(ch)
        elif ch in _CONTROL_NAMES:
            out.append("\\" + _CONTROL_NAMES[ch])
        else:
            out.extend(f"\\{byte:03o}" for byte in ch.encode("utf-8"))
    return "".join(out)


def _rxquote(text: str) -> str:
    return "".join(ch if ch.isascii() and ch.isalnum() else "\\" + ch for ch in text)


# -- encodings and hashes --------------------------------------------------
# base64 and hashlib are imported when an operator needs them: most commands
# never expand a hash, and hashlib's import costs milliseconds at start-up.


def _hash(name: str, text: str) -> str:
    import hashlib

    return hashlib.new(name, text.encode("utf-8")).hexdigest()


def _base64d(text: str) -> str:
    import base64
    import binascii

    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        raise ExpansionError(f'"{text}" is not valid base64 (in "base64d" operator)') from None
    # Decoded bytes that are not UTF-8 become U+FFFD rather than failing the
    # whole expansion; mta strings are text throughout.
    return raw.decode("utf-8", errors="replace")


def _hex2b64(text: str) -> str:
    import base64

    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raise ExpansionError(f'"{text}" is not a hexadecimal string (in "hex2b64" operator)') from None
    return base64.b64encode(raw).decode("ascii")


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode("utf-8")).decode("ascii")


# -- arithmetic ------------------------------------------------------------


class _Arithmetic:
    """Exim's ${eval}: C-like integer expressions, 64-bit, no Python eval.

    Precedence, lowest first: | ^ & (<< >>) (+ -) (* / %) unary(- + ~).
    Division truncates towards zero and % takes the sign of the dividend,
    as in C.  Numbers are decimal, 0x hex or (not in eval10) 0-prefixed
    octal, with an optional K/M/G suffix.
    """

    def __init__(self, text: str, decimal_only: bool) -> None:
        self.s = text
        self.i = 0
        self.decimal_only = decimal_only

    def fail(self, reason: str) -> ExpansionError:
        return ExpansionError(
            f'error in expression evaluation: {reason} (after processing "{self.s[: self.i]}")'
        )

    def check(self, value: int) -> int:
        if not INT_MIN <= value <= INT_MAX:
            raise self.fail("overflow")
        return value

    def skip(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def take(self, *tokens: str) -> str | None:
        self.skip()
        for token in tokens:
            if self.s.startswith(token, self.i):
                self.i += len(token)
                return token
        return None

    def evaluate(self) -> int:
        value = self.bitor()
        self.skip()
        if self.i < len(self.s):
            raise self.fail("extra characters at end of expression")
        return value

    def binary(self, operand: Callable[[], int], ops: dict[str, Callable[[int, int], int]]) -> int:
        value = operand()
        while (op := self.take(*ops)) is not None:
            value = self.check(ops[op](value, operand()))
        return value

    def bitor(self) -> int:
        return self.binary(self.bitxor, {"|": lambda a, b: a | b})

    def bitxor(self) -> int:
        return self.binary(self.bitand, {"^": lambda a, b: a ^ b})

    def bitand(self) -> int:
        return self.binary(self.shift, {"&": lambda a, b: a & b})

    def shift(self) -> int:
        return self.binary(self.sum, {"<<": self.lshift, ">>": self.rshift})

    def sum(self) -> int:
        return self.binary(self.product, {"+": lambda a, b: a + b, "-": lambda a, b: a - b})

    def product(self) -> int:
        return self.binary(self.unary, {"*": lambda a, b: a * b, "/": self.divide, "%": self.modulo})

    def lshift(self, a: int, b: int) -> int:
        if b < 0 or b > 63:
            raise self.fail("shift count out of range")
        return a << b

    def rshift(self, a: int, b: int) -> int:
        if b < 0 or b > 63:
            raise self.fail("shift count out of range")
        return a >> b

    def divide(self, a: int, b: int) -> int:
        if b == 0:
            raise self.fail("divide by zero")
        quotient = abs(a) // abs(b)
        return quotient if (a < 0) == (b < 0) else -quotient

    def modulo(self, a: int, b: int) -> int:
        return a - self.divide(a, b) * b

    def unary(self) -> int:
        op = self.take("-", "+", "~")
        if op is None:
            return self.atom()
        value = self.unary()
        return self.check(-value if op == "-" else ~value if op == "~" else value)

    def atom(self) -> int:
        self.skip()
        if self.take("("):
            value = self.bitor()
            if not self.take(")"):
                raise self.fail("expecting closing parenthesis")
            return value
        if self.decimal_only:
            m = re.compile(r"(\d+)([KkMmGg]?)").match(self.s, self.i)
            base = 10
        else:
            m = re.compile(r"(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9]\d*)([KkMmGg]?)").match(self.s, self.i)
            base = 0
        if m is None:
            raise self.fail("expecting number or opening parenthesis")
        digits = m.group(1)
        if base == 0 and len(digits) > 1 and digits[0] == "0" and digits[1] not in "xX":
            digits = "0o" + digits[1:]  # C-style octal, which int(x, 0) spells 0o
        self.i = m.end()
        if self.i < len(self.s) and self.s[self.i].isalnum():
            raise self.fail("bad number")
        return self.check(int(digits, base) * _SUFFIX[m.group(2).lower()])


def evaluate(text: str, decimal_only: bool = False) -> int:
    return _Arithmetic(text, decimal_only).evaluate()


# -- the table -------------------------------------------------------------

OPERATORS: dict[str, Callable[[str], str]] = {
    "lc": str.lower,
    "uc": str.upper,
    "address": _address,
    "addresses": _addresses,
    "domain": _domain,
    "local_part": _local_part,
    "strlen": lambda s: str(len(s)),
    # ${length:x} without a number is an alias of strlen, kept for symmetry
    # with ${length_N:x}; Exim itself requires the number.
    "length": lambda s: str(len(s)),
    "md5": lambda s: _hash("md5", s),
    # Exim prints SHA-1 and SHA-256 in upper case, MD5 in lower case.
    "sha1": lambda s: _hash("sha1", s).upper(),
    "sha256": lambda s: _hash("sha256", s).upper(),
    "base64": _b64,
    "str2b64": _b64,
    "base64d": _base64d,
    "hex2b64": _hex2b64,
    "quote": _quote,
    "escape": _escape,
    "rxquote": _rxquote,
    "listcount": lambda s: str(len(split_list(s))),
    "eval": lambda s: str(evaluate(s)),
    "eval10": lambda s: str(evaluate(s, decimal_only=True)),
}

UNSUPPORTED_OPERATORS = frozenset({"expand"})


def apply(name: str, params: tuple[int, ...], arg: str) -> str:
    """Apply operator `name` (already checked by the parser) to `arg`."""
    if name == "substr" and params:
        return substr(arg, params[0], params[1] if len(params) > 1 else None)
    if name == "length" and params:
        return length(arg, params[0])
    return OPERATORS[name](arg)
