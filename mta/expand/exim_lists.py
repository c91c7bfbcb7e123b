"""Exim's list syntax inside expansions: string_nextinlist() and string_append_listele().

A list is items separated by ":" (or by the character after a leading
``<``, which must be punctuation or a control character: ``<;``, ``<,``).  A
doubled separator stands for one separator character inside an item
(unless the separator is a control character); leading white space of an
item is skipped and trailing white space removed.  An empty list, or a list
of only white space, has no items, and a separator at the very end does not
start another item ("a:b:" has two).

The list operators (listcount, listextract, map, filter, reduce, sort,
forany, forall, inlist) all go through `items()`, so they agree on every
corner.  Items keep the taint of the list they came from.
"""

from __future__ import annotations

from collections.abc import Iterator

from mta.taint import Tainted

_C_SPACE = " \t\n\r\f\v"


def _ispunct(ch: str) -> bool:
    return len(ch) == 1 and 33 <= ord(ch) <= 126 and not ch.isalnum()


def _iscntrl(ch: str) -> bool:
    return len(ch) == 1 and (ord(ch) < 32 or ord(ch) == 127)


class ListReader:
    """Exim's string_nextinlist() over one list; `sep` is the separator in use.

    `separator` is Exim's *separator argument: 0 means "look for <x, else
    colon"; a negative value -c means "look for <x, else c"; a positive value
    is used as it is.
    """

    def __init__(self, text: str, separator: int = 0) -> None:
        self.s = text
        self.i = 0
        self.sep = separator
        self.tainted = isinstance(text, Tainted)

    def next(self) -> str | None:
        s, i, n = self.s, self.i, len(self.s)
        sep = self.sep
        sep_ch = chr(sep) if sep > 0 else ""
        while i < n and s[i] in _C_SPACE and s[i] != sep_ch:
            i += 1
        if sep <= 0:
            if i < n and s[i] == "<" and i + 1 < n and (_ispunct(s[i + 1]) or _iscntrl(s[i + 1])):
                sep = ord(s[i + 1])
                i += 2
                while i < n and s[i] in _C_SPACE and s[i] != chr(sep):
                    i += 1
            else:
                sep = -sep if sep else ord(":")
            self.sep = sep
        sep_ch = chr(sep)
        if i >= n:
            self.i = i
            return None
        special = _iscntrl(sep_ch)
        if s[i] == sep_ch:
            i += 1
            if i >= n or s[i] != sep_ch or special:
                self.i = i
                return self._taint("")
        out: list[str] = []
        while True:
            j = s.find(sep_ch, i + 1)
            j = n if j < 0 else j
            out.append(s[i:j])
            i = j
            if i >= n:
                break
            i += 1
            if i >= n or s[i] != sep_ch or special:
                break
        item = "".join(out)
        # Trailing white space goes, unless escaped by a backslash (Exim's rule).
        end = len(item)
        while end > 0 and item[end - 1] in _C_SPACE and (end == 1 or item[end - 2] != "\\"):
            end -= 1
        self.i = i
        return self._taint(item[:end])

    def _taint(self, item: str) -> str:
        return Tainted(item) if self.tainted else item

    def __iter__(self) -> Iterator[str]:
        while (item := self.next()) is not None:
            yield item


def items(text: str, separator: int = 0) -> list[str]:
    return list(ListReader(text, separator))


def append_element(current: str, sep: str, element: str) -> str:
    """Exim's string_append_listele(): add `element`, doubling any `sep` in it."""
    prefix = current + sep if current else current
    return prefix + element.replace(sep, sep + sep)
