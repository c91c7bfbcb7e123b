"""Backslash escapes, as Exim's string_interpret_escape() reads them.

Shared by the expander (``\\n`` in an expansion string) and by the lsearch
reader (escapes inside a double-quoted key), so both agree on what a
backslash sequence means.
"""

from __future__ import annotations

_SIMPLE = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_OCTAL = "01234567"
_HEX = "0123456789abcdefABCDEF"


def interpret_escape(text: str, pos: int) -> tuple[str, int]:
    """Decode the escape whose backslash is at ``text[pos]``.

    Returns the character it stands for and the index just after the
    sequence.  ``\\ddd`` is up to three octal digits, ``\\xhh`` up to two hex
    digits, ``\\b \\f \\n \\r \\t \\v`` the usual controls, and a backslash
    before anything else stands for that character.  A backslash at the very
    end stands for itself.

    A code stands for one byte, as in Exim: ``\\351`` is the byte 0xE9, not
    "é", so it is returned as the surrogateescape code point U+DCE9; callers
    re-read such bytes as UTF-8 where they form it (textcodecs.normalise), so
    ``\\303\\251`` is "é".
    """
    nxt = pos + 1
    if nxt >= len(text):
        return "\\", nxt
    ch = text[nxt]
    if ch in _OCTAL:
        end = nxt + 1
        while end < len(text) and end < nxt + 3 and text[end] in _OCTAL:
            end += 1
        return _byte(int(text[nxt:end], 8)), end
    if ch == "x":
        end = nxt + 1
        while end < len(text) and end < nxt + 3 and text[end] in _HEX:
            end += 1
        if end == nxt + 1:
            return "\0", end  # as Exim: a NUL, which then ends the string (see Expander.internal)
        return _byte(int(text[nxt + 1 : end], 16)), end
    return _SIMPLE.get(ch, ch), nxt + 1


def expansion_escape(text: str, pos: int) -> tuple[str, int] | None:
    """What the backslash at ``text[pos]`` of an expansion string stands for, and the index after
    it: ``\\N...\\N`` is literal text, anything else an escape as above.  None for a backslash at
    the very end (an error in an expansion string)."""
    n = len(text)
    if pos + 1 >= n:
        return None
    if text[pos + 1] == "N":
        start = pos + 2
        end = text.find("\\N", start)
        end = n if end < 0 else end
        return text[start:end], min(end + 2, n)
    return interpret_escape(text, pos)


def _byte(value: int) -> str:
    value &= 0xFF  # "\\777" is one byte in Exim too
    return chr(value) if value < 0x80 else chr(0xDC00 + value)


def dequote(text: str, pos: int) -> tuple[str, int]:
    """Exim's string_dequote(): a "quoted" string with escapes, or up to white space.

    Returns the string and the index just after it (after the closing quote).
    """
    n = len(text)
    if pos < n and text[pos] == '"':
        out: list[str] = []
        pos += 1
        while pos < n and text[pos] != '"':
            if text[pos] == "\\":
                ch, pos = interpret_escape(text, pos)
                out.append(ch)
            else:
                out.append(text[pos])
                pos += 1
        return "".join(out), min(pos + 1, n)
    start = pos
    while pos < n and text[pos] not in " \t\n\r\f\v":
        pos += 1
    return text[start:pos], pos
