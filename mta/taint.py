"""Tainted strings: data that came from outside (the network, a message, a
command-line argument naming an address) and so may never name a file, a
command or be expanded as a string.

A tainted value is a `Tainted` instance, a `str` subclass, so it can be used
anywhere a string is read.  Operations on it return plain `str` (Python's
rules), which is why the expander tracks taint itself and re-wraps its
result; code that builds a file name or argv from an expansion asks
`is_tainted()` of the expander's result, never of its pieces.
"""

from __future__ import annotations


class Tainted(str):
    """A string whose content came from an untrusted source."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Tainted({str.__repr__(self)})"


def is_tainted(value: object) -> bool:
    return isinstance(value, Tainted)


def taint(value: str) -> Tainted:
    return value if isinstance(value, Tainted) else Tainted(value)


def untainted(value: str) -> str:
    """Return the same text as a plain, trusted string.

    Only call this on text that has been checked against a trusted source,
    as Exim does when a lookup in a local file matches it.
    """
    return str.__str__(value)
