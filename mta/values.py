"""Exim value syntax: booleans, times, sizes and separated lists.

These are the scalar types of the configuration file (and of retry rules and
`-bP` output).  Parsing and formatting live together so that a value printed
by `-bP` reads back as the same value.
"""

from __future__ import annotations

TRUE_WORDS = frozenset({"true", "yes"})
FALSE_WORDS = frozenset({"false", "no"})

_TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024 * 1024, "g": 1024 * 1024 * 1024}


# Beyond 64 bits every caller saturates or refuses; 20 digits are past 2**64 in any base >= 10.
_BEYOND_64_BITS = 2**64


def bounded_int(text: str, base: int = 10) -> int:
    """int(text, base) for digits that came from outside (a message, a client, a file), without
    Python's ValueError for strings of over 4,300 digits: a number too long for 64 bits is
    returned as 2**64 with its sign, which every caller then saturates (as C's strtoll) or
    refuses as too big."""
    stripped = text.strip()
    body = stripped[1:] if stripped[:1] in ("+", "-") else stripped
    if not (body.isascii() and body.isalnum()):
        return int(text, base)  # not a number: int() says so, as it always did
    sign = -1 if stripped[:1] == "-" else 1
    significant = body.lstrip("0") or "0"  # leading zeros count against int()'s limit too
    if len(significant) > 22:  # 22 octal digits are 66 bits: past 64 in every base used here
        return sign * _BEYOND_64_BITS
    return sign * int(significant, base)


def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f'"{text}" is not a boolean (use true, false, yes or no)')


def parse_time(text: str) -> int:
    """Parse an Exim time such as ``30s``, ``1h30m`` or a bare number of seconds."""
    s = text.strip()
    if not s:
        raise ValueError("empty time value")
    if s.isdigit():
        return int(s)
    # Parts of digits and a unit, read with str methods: the pattern (\d+)([smhdw]) cost a short
    # command the import of `re` (tests/test_values_forms.py checks that they agree).
    pos = total = 0
    while pos < len(s):
        end = pos
        while end < len(s) and s[end].isdecimal():
            end += 1
        if end == pos or end == len(s) or s[end] not in _TIME_UNITS:
            raise ValueError(f'"{text}" is not a time (examples: 30s, 15m, 2h, 4d, 1w, 1h30m)')
        total += int(s[pos:end]) * _TIME_UNITS[s[end]]
        pos = end + 1
    return total


def format_time(seconds: int) -> str:
    """Format seconds the way Exim's -bP does: ``1h30m``, ``4d``, ``0s``."""
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            n, seconds = divmod(seconds, size)
            parts.append(f"{n}{unit}")
    return "".join(parts)


def parse_size(text: str) -> int:
    """Parse a size such as ``50M``, ``1K`` or ``1024``."""
    # Digits, white space, a unit letter, with str methods as parse_time.
    s = text.strip()
    unit = s[-1:] if s[-1:] and s[-1:] in "KkMmGg" else ""
    number = s[: len(s) - len(unit)].rstrip()
    if not number.isdecimal():
        raise ValueError(f'"{text}" is not a size (examples: 1024, 64K, 50M, 1G)')
    return int(number) * _SIZE_UNITS[unit.lower()]


def format_size(size: int) -> str:
    """Format a size as -bP does: the largest exact unit."""
    for unit, factor in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def parse_octal(text: str) -> int:
    s = text.strip()
    try:
        return int(s, 8)
    except ValueError:
        raise ValueError(f'"{text}" is not an octal number (example: 0600)') from None


def split_list(text: str, default_sep: str = ":") -> list[str]:
    """Split an Exim list into its items.

    Items are separated by `default_sep` (``:`` unless told otherwise); a
    doubled separator stands for one literal separator character; a leading
    ``<c`` (for example ``<;`` or ``<,``) changes the separator to ``c``.
    Leading and trailing white space of each item is removed, and a list that
    is empty or only white space has no items.  An empty item between two
    separators is kept (``a : : b`` has three items): in host lists an empty
    item means "local submission".
    """
    s = text.strip()
    sep = default_sep
    if len(s) >= 2 and s[0] == "<" and not s[1].isalnum() and not s[1].isspace():
        sep = s[1]
        s = s[2:].lstrip()
    if not s:
        return []
    items: list[str] = []
    current: list[str] = []
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if c == sep:
            if i + 1 < n and s[i + 1] == sep:
                current.append(sep)
                i += 2
                continue
            items.append("".join(current).strip())
            current = []
            i += 1
            continue
        current.append(c)
        i += 1
    items.append("".join(current).strip())
    return items


def split_fixed(text: str, sep: str) -> list[str]:
    """Split at `sep` only (no ``<c`` prefix; a doubled `sep` is a literal one), items
    stripped and empty ones dropped: the option lists Exim reads with a fixed
    separator, such as ``verify = sender/defer_ok`` or ``ratelimit = 10 / 1h / per_rcpt``."""
    items: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != sep:
            current.append(c)
        elif text[i + 1 : i + 2] == sep:
            current.append(sep)
            i += 1
        else:
            items.append("".join(current).strip())
            current = []
        i += 1
    items.append("".join(current).strip())
    return [item for item in items if item]


def join_list(items: list[str], sep: str = ":") -> str:
    """Inverse of split_list for simple items: double any separator inside."""
    return f" {sep} ".join(item.replace(sep, sep + sep) for item in items)
