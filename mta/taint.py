"""Tainted strings: data that came from outside (the network, a message, a
user's file, a command-line argument naming an address) and so may never name
a command or a socket, never be expanded as a string, and name a file only as
one checked path component.

A tainted value is a `Tainted` instance, a `str` subclass, so it can be used
anywhere a string is read.  Operations on it return plain `str` (Python's
rules), which is why the expander tracks taint itself and re-wraps its
result; code that builds a file name or argv from an expansion asks
`is_tainted()` or `file_name_refused()` of the expander's result, never of
its pieces.

Spans
-----
A `Tainted` knows which of its characters came from outside: `spans` is a
tuple of (start, end) ranges.  A value made by `Tainted(text)` is tainted
throughout; `concat()` joins pieces and keeps each tainted piece's range, so
``/var/mail/$local_part`` expands to a string whose only tainted range is the
local part.  That is what lets `file_name_refused()` allow the classic
``file = /var/spool/mail/${local_part}`` while refusing
``/var/mail/$domain/../x`` or a local part of ``..``.  A range may be empty
(a tainted empty string was inserted there): it still counts, so an empty
local part cannot quietly turn a mailbox path into its directory.
"""

from __future__ import annotations

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


Span = tuple[int, int]


class Tainted(str):
    """A string some or all of whose characters came from an untrusted source."""

    # No __slots__: a str subclass cannot have non-empty ones; a value made from
    # whole cloth stores nothing and reports one span covering all of it.

    def __repr__(self) -> str:
        return f"Tainted({str.__repr__(self)})"

    @property
    def spans(self) -> tuple[Span, ...]:
        spans = self.__dict__.get("_spans")
        return ((0, len(self)),) if spans is None else spans


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


def tainted_spans(text: str, spans: Iterable[Span]) -> Tainted:
    """`text` as a Tainted whose tainted characters are exactly `spans`."""
    result = Tainted(text)
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            # Touching or overlapping ranges are one tainted run: "$local_part$domain"
            # is one component made wholly of outside data.
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    if merged != [(0, len(text))]:
        result.__dict__["_spans"] = tuple(merged)
    return result


def concat(pieces: Iterable[str]) -> str:
    """Join `pieces`; the result is Tainted (with each tainted piece's spans) if any piece is."""
    parts = pieces if isinstance(pieces, list) else list(pieces)  # (only read here)
    text = "".join(parts)
    # One pass, no generator per piece: an expansion's result (a Received: header) is built
    # from a dozen pieces or more at every message.
    spans: list[Span] = []
    tainted = False
    offset = 0
    for part in parts:
        if isinstance(part, Tainted):
            tainted = True
            own = part.__dict__.get("_spans")
            if own is None:
                spans.append((offset, offset + len(part)))
            else:
                spans += [(offset + a, offset + b) for a, b in own]
        offset += len(part)
    return tainted_spans(text, spans) if tainted else text


def like(source: str, result: str) -> str:
    """`result`, wholly tainted if `source` is tainted at all (operators keep their input's taint)."""
    return Tainted(result) if isinstance(source, Tainted) else result


def _component_refusal(component: str) -> str | None:
    if not component:
        return "it is empty"
    if "/" in component:
        return 'it contains "/"'
    if component in (".", ".."):
        return f'it is "{component}"'
    if component.startswith("."):
        return 'it starts with "."'
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in component):
        return "it contains a control character"
    return None


def file_name_refusal(path: str) -> str | None:
    """Why `path` may not name a file, or None if it may.

    An untainted path may.  A tainted one may only when its tainted text is
    exactly one whole path component below an untainted absolute directory:
    ``/var/spool/mail/${local_part}`` or ``/etc/exim/lists/${local_part}/members``.
    The component must not contain "/", be "." or "..", start with "." or
    hold a control character.  Every place that opens a file named by an
    expansion asks this one function (issue 11, point 6).
    """
    if not isinstance(path, Tainted):
        return None
    spans = path.spans
    if len(spans) != 1:
        return "tainted data forms more than one part of it" if spans else None
    start, end = spans[0]
    directory = path[:start]
    if not directory.startswith("/") or not directory.endswith("/"):
        return "the tainted part does not follow an absolute directory"
    if end < len(path) and path[end] != "/":
        return "the tainted part is not a whole path component"
    return _component_refusal(str.__str__(path[start:end]))


def file_name_refused(path: str) -> bool:
    """True if `path` may not name a file (see file_name_refusal)."""
    return file_name_refusal(path) is not None
