"""Numbers in expansions: ${eval}, the numeric conditions, and Exim time values.

Ported from Exim 4.96's expand.c (eval_expr and friends,
expanded_string_integer) and readconf.c (readconf_readtime,
readconf_printtime), with 64-bit signed arithmetic that wraps as C's does
on the platforms Exim runs on.  Nothing here evaluates Python.
"""

from __future__ import annotations

import re

from mta.values import bounded_int

INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
_C_SPACE = " \t\n\r\f\v"
_SUFFIX = {"k": 1024, "m": 1024 * 1024, "g": 1024 * 1024 * 1024}
_DECIMAL = re.compile(r"[-+]?\d+")
# sscanf("%lli"): glibc takes "0x" even with no hex digit after it (value 0).
_CNUMBER = re.compile(r"[-+]?(?:0[xX][0-9a-fA-F]*|0[0-7]*|[1-9]\d*)")


def wrap(value: int) -> int:
    """Reduce to int64 as C arithmetic would (two's complement wrap-around)."""
    value &= 2**64 - 1
    return value - 2**64 if value > INT_MAX else value


class _Eval:
    """Exim's eval_expr(): one expression; `error` set on failure, as in C."""

    def __init__(self, text: str, decimal: bool) -> None:
        self.s = text
        self.i = 0
        self.decimal = decimal
        self.error: str | None = None

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def skip(self) -> str:
        while self.i < len(self.s) and self.s[self.i] in _C_SPACE:
            self.i += 1
        return self.peek()

    def expr(self, endket: bool) -> int:
        x = self.op_or()
        if self.error is None:
            if endket:
                if self.peek() != ")":
                    self.error = "expecting closing parenthesis"
                else:
                    self.i += 1
                    self.skip()
            elif self.i < len(self.s):
                self.error = "expecting operator"
        return x

    def number(self) -> int:
        c = self.skip()
        if c.isdigit() and c.isascii():
            pattern = _DECIMAL if self.decimal else _CNUMBER
            m = pattern.match(self.s, self.i)
            assert m is not None
            digits = m.group(0)
            if self.decimal:
                n = bounded_int(digits)
            elif digits.lower().startswith("0x"):
                n = bounded_int(digits[2:] or "0", 16)
            elif len(digits) > 1 and digits.startswith("0"):
                n = bounded_int(digits, 8)
            else:
                n = bounded_int(digits)
            n = max(INT_MIN, min(INT_MAX, n))  # sscanf saturates like strtoll
            self.i = m.end()
            factor = _SUFFIX.get(self.peek().lower())
            if factor:
                n = wrap(n * factor)
                self.i += 1
            self.skip()
            return n
        if c == "(":
            self.i += 1
            return self.expr(endket=True)
        self.error = "expecting number or opening parenthesis"
        return 0

    def unary(self) -> int:
        c = self.skip()
        if c in ("+", "-", "~") and c:
            self.i += 1
            x = self.unary()
            return wrap(-x) if c == "-" else ~x if c == "~" else x
        return self.number()

    def mult(self) -> int:
        x = self.unary()
        while self.error is None and self.peek() in ("*", "/", "%") and self.peek():
            op = self.peek()
            self.i += 1
            y = self.unary()
            if self.error is not None:
                break
            if y == -1 and x == INT_MIN and op != "*":
                x = INT_MAX  # Exim's "integer exception dodging"
                continue
            if op == "*":
                x = wrap(x * y)
            elif y == 0:
                self.error = "divide by zero" if op == "/" else "modulo by zero"
                return 0
            else:
                q = abs(x) // abs(y)
                q = q if (x < 0) == (y < 0) else -q
                x = wrap(q) if op == "/" else wrap(x - q * y)
        return x

    def sum(self) -> int:
        x = self.mult()
        while self.error is None and self.peek() in ("+", "-") and self.peek():
            op = self.peek()
            self.i += 1
            y = self.mult()
            if self.error is not None:
                break
            # Exim's deliberately over-cautious test (it compares x with itself).
            if x >= INT_MAX // 2 or (x <= -(INT_MAX // 2) and y <= -(INT_MAX // 2)):
                self.error = "overflow in sum" if op == "+" else "overflow in difference"
                break
            x = wrap(x + y if op == "+" else x - y)
        return x

    def shift(self) -> int:
        x = self.sum()
        while self.error is None and self.s[self.i : self.i + 2] in ("<<", ">>"):
            op = self.s[self.i]
            self.i += 2
            y = self.sum()
            if self.error is not None:
                break
            # C leaves over-wide shifts undefined; x86-64 masks the count to 6 bits.
            y &= 63
            x = wrap(x << y) if op == "<" else x >> y
        return x

    def binary(self, operand, op: str):  # type: ignore[no-untyped-def]
        x = operand()
        while self.error is None and self.peek() == op:
            self.i += 1
            y = operand()
            if self.error is not None:
                break
            x = x & y if op == "&" else x ^ y if op == "^" else x | y
        return x

    def op_and(self) -> int:
        return self.binary(self.shift, "&")  # type: ignore[no-any-return]

    def op_xor(self) -> int:
        return self.binary(self.op_and, "^")  # type: ignore[no-any-return]

    def op_or(self) -> int:
        return self.binary(self.op_xor, "|")  # type: ignore[no-any-return]


def evaluate(text: str, decimal: bool) -> tuple[int, str | None, int]:
    """Evaluate `text`: (value, error or None, characters consumed)."""
    ev = _Eval(text, decimal)
    value = ev.expr(endket=False)
    return value, ev.error, ev.i


def string_integer(text: str, isplus: bool) -> tuple[int, str | None]:
    """Exim's expanded_string_integer(): (value, None) or (0, error message)."""
    s = text
    if s[:1] in _C_SPACE and s[:1]:
        s = s.lstrip(_C_SPACE)  # and the messages below then show it without (Exim moves its pointer)
        if not s:
            return 0, None
        text = s
    m = re.match(r"[ \t\n\r\f\v]*([-+]?\d+)", s)
    if m is None:
        return 0, f'integer expected but "{text}" found'
    value = bounded_int(m.group(1))
    overflow = not INT_MIN <= value <= INT_MAX
    value = max(INT_MIN, min(INT_MAX, value))
    rest = s[m.end() :]
    if value < 0 and isplus:
        return 0, f'non-negative integer expected but "{text}" found'
    factor = _SUFFIX.get(rest[:1].lower()) if rest else None
    if factor:
        if value > INT_MAX // factor or value < INT_MIN // factor:
            overflow = True
        else:
            value *= factor
        rest = rest[1:]
    if overflow:
        return 0, f'absolute value of integer "{text}" is too large (overflow)'
    if rest.strip(_C_SPACE) == "":
        return value, None
    return 0, f'invalid integer "{text}"'


def readtime(text: str) -> int:
    """Exim's readconf_readtime(text, 0, FALSE): seconds, or -1 if malformed."""
    total = 0
    i = 0
    while True:
        m = re.match(r"\d+", text[i:])
        if m is None:
            return -1
        value = bounded_int(m.group(0))
        i += m.end()
        unit = text[i : i + 1]
        multiplier = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}.get(unit)
        if multiplier is None:
            return -1
        i += 1
        total += value * multiplier
        if i >= len(text):
            return total


def printtime(seconds: int) -> str:
    """Exim's readconf_printtime(): 1w2d3h4m5s, "0s" for zero."""
    out = "-" if seconds < 0 else ""
    t = abs(seconds)
    s, t = t % 60, t // 60
    m, t = t % 60, t // 60
    h, t = t % 24, t // 24
    d, w = t % 7, t // 7
    parts = [f"{w}w" if w else "", f"{d}d" if d else "", f"{h}h" if h else "", f"{m}m" if m else ""]
    body = "".join(parts)
    if s or not body:
        body += f"{s}s"
    return out + body
