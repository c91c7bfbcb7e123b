"""Addresses inside text: where the working part of an address is, and the mailboxes of a header.

    extract_address(text, allow_empty=False) -> Extracted   # ``Name <a@b> (c)``: a@b and where it is
    header_items(text, start) -> [(start, end), ...]        # the mailboxes of an address header
    top_level(text) -> [bool, ...]                          # outside quotes, comments, literals?

Used by address rewriting (mta.message.rewrite), which replaces an address
in a header or a rewriting result while keeping the text around it.
"""

from __future__ import annotations

from mta import record
from mta.errors import AddressError
from mta.message.address import parse_envelope_address


@record.dataclass(frozen=True, slots=True)
class Extracted:
    """The working part of an address written as RFC 5322 allows (``Name <a@b> (comment)``).

    `address` is its internal form (mta.message.address), "" for ``<>``;
    `start`/`end` delimit it in the text it was found in.
    """

    address: str
    start: int
    end: int

    @property
    def qualified(self) -> bool:
        return "@" in self.address


def top_level(text: str) -> list[bool]:
    """For each character: is it outside quoted strings, comments and domain literals?"""
    mask = [True] * len(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            mask[i] = False
            if i + 1 < n:
                mask[i + 1] = False
            i += 2
            continue
        if c == '"' or c == "[":
            close = '"' if c == '"' else "]"
            j = i + 1
            while j < n and text[j] != close:
                j += 2 if text[j] == "\\" else 1
            for k in range(i, min(j + 1, n)):
                mask[k] = False
            i = j + 1
            continue
        if c == "(":
            depth, j = 1, i + 1
            while j < n and depth:
                if text[j] == "\\":
                    j += 1
                elif text[j] == "(":
                    depth += 1
                elif text[j] == ")":
                    depth -= 1
                j += 1
            for k in range(i, min(j, n)):
                mask[k] = False
            i = j
            continue
        i += 1
    return mask


def extract_address(text: str, allow_empty: bool = False) -> Extracted:
    """The one address in `text` and where it is; AddressError if there is not exactly one.

    As Exim's parse_extract_address: ``Phrase <addr>``, ``addr (comment)`` and
    a bare addr-spec are accepted; ``<>`` (and an empty text) only with
    `allow_empty` (an envelope sender).
    """
    mask = top_level(text)
    lt = next((i for i, c in enumerate(text) if c == "<" and mask[i]), -1)
    if lt >= 0:
        gt = next((i for i in range(lt + 1, len(text)) if text[i] == ">" and mask[i]), -1)
        if gt < 0:
            raise AddressError("missing > after address")
        start, end = lt + 1, gt
    else:
        start = len(text) - len(text.lstrip(" \t\n"))
        paren = next((i for i, c in enumerate(text) if c == "(" and not mask[i] and (i == 0 or mask[i - 1])), len(text))
        end = start + len(text[start:paren].rstrip(" \t\n"))
    if not text[start:end].strip(" \t\n"):
        if allow_empty:
            return Extracted("", start, end)
        raise AddressError("empty address")
    return Extracted(parse_envelope_address(text[start:end]), start, end)


def top_level_text(text: str) -> str:
    """`text` without its quoted strings, comments and domain literals (to look for a real @)."""
    mask = top_level(text)
    return "".join(c for c, top in zip(text, mask, strict=True) if top)


def header_items(text: str, start: int) -> list[tuple[int, int]]:
    """Where the mailboxes of an address header are: (start, end) of each, without a group's
    ``name:`` before it or the ``;`` after it, and without the white space around it."""
    mask = top_level(text)
    items: list[tuple[int, int]] = []
    angle = 0
    begin = start
    address_seen = False  # an @ or < in this item: a colon after it is not a group's
    for i in range(start, len(text) + 1):
        c = text[i] if i < len(text) else ","
        if i < len(text) and not mask[i]:
            continue
        if c in "<@":
            address_seen = True
        if c == "<":
            angle += 1
        elif c == ">":
            angle = max(0, angle - 1)
        elif c == ":" and not angle and not address_seen:
            begin = i + 1  # a group's name
        elif (c == "," or c == ";") and not angle:
            address_seen = False
            a, b = begin, i
            while a < b and text[a] in " \t\n":
                a += 1
            while b > a and text[b - 1] in " \t\n":
                b -= 1
            if a < b:
                items.append((a, b))
            begin = i + 1
    return items
