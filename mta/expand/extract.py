"""${extract} (keyed, numbered, json, jsons) and ${listextract}, as Exim 4.96.

Also the JSON helpers (dewrap, json_nextinlist) shared with the
forall_json / forany_json conditions.  These are Exim's light-weight
readers, not a JSON parser: they split on commas outside brackets and take
off one level of wrapping, exactly as Exim does, so odd input gives Exim's
odd answers.
"""

from __future__ import annotations

import re

from mta.expand.escapes import dequote
from mta.expand.exim_lists import ListReader
from mta.taint import like
from mta.values import bounded_int

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mta.expand.expander import Expander

_C_SPACE = " \t\n\r\f\v"


class WrapError(Exception):
    pass


def dewrap(text: str, wrap: str) -> str:
    """Exim's dewrap(): the text inside the outer `wrap` pair; backslashes protect."""
    opener, closer = wrap[0], wrap[1]
    quotes = opener == closer
    i = 0
    while i < len(text) and text[i] in _C_SPACE:
        i += 1
    if i >= len(text) or text[i] != opener:
        raise WrapError(f"missing '{opener}'")
    start = i = i + 1
    depth = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 1
        elif not quotes and ch == opener:
            depth += 1
        elif ch == closer:
            if depth == 0:
                return like(text, text[start:i])
            depth -= 1
        i += 1
    raise WrapError(f"missing '{closer}'")


def json_items(text: str) -> list[str]:
    """Exim's json_nextinlist() repeated: the top-level comma-separated elements."""
    out: list[str] = []
    i = 0
    n = len(text)
    while True:
        while i < n and text[i] in _C_SPACE:
            i += 1
        start = i
        arrays = objects = 0
        while i < n and (text[i] != "," or arrays or objects):
            ch = text[i]
            arrays += (ch == "[") - (ch == "]")
            objects += (ch == "{") - (ch == "}")
            i += 1
        if i == start:
            return out
        out.append(like(text, text[start:i]))
        if i < n:
            i += 1


def getkeyed(key: str, data: str) -> str | None:
    """Exim's expand_getkeyed(): ``key=value`` pairs, values optionally quoted."""
    i, n = 0, len(data)
    while i < n and data[i] in _C_SPACE:
        i += 1
    while i < n:
        start = i
        while i < n and data[i] != "=" and data[i] not in _C_SPACE:
            i += 1
        found = data[start:i]
        while i < n and data[i] in _C_SPACE:
            i += 1
        if i < n and data[i] == "=":
            i += 1
            while i < n and data[i] in _C_SPACE:
                i += 1
        value, i = dequote(data, i)
        if found.lower() == key.lower():
            return like(data, value)
        while i < n and data[i] in _C_SPACE:
            i += 1
    return None


def gettokened(field: int, separators: str, data: str) -> str | None:
    """Exim's expand_gettokened(): field N (1-based; negative from the end; 0 all)."""
    if field == 0:
        return data
    fields: list[str] = []
    pos = 0
    while True:
        end = pos
        while end < len(data) and data[end] not in separators:
            end += 1
        fields.append(data[pos:end])
        if end >= len(data):
            break
        pos = end + 1
    index = field - 1 if field > 0 else len(fields) + field
    if not 0 <= index < len(fields):
        return None
    return like(data, fields[index])


def item_extract(ex: Expander, name: str, skipping: bool) -> str:
    saved_value = ex.lookup_value
    saved_n = ex.nstrings
    fmt = "basic"
    if ex.skip_white() != "{" and ex.s.startswith("json", ex.i):
        ex.i += 4
        fmt = "basic"
        if ex.at() == "s":
            fmt = "jsons"
            ex.i += 1
        else:
            fmt = "json"
    if skipping:
        for _ in range(5):
            if ex.at() != "{":
                break
            ex.i += 1
            ex.sub(skipping)
            if ex.take() != "}":
                raise ex.curly("missing '{' for arg of extract")
            ex.skip_white()
        if ex.s.startswith("fail", ex.i) and ex.at(4) in ("}", " ", "\t", ""):
            ex.i += 4
            ex.skip_white()
        if ex.at() != "}":
            raise ex.curly("missing '}' closing extract")
        ex.lookup_value = None
        out = ex.yesno(skipping, False, saved_value, "extract")
        ex.nstrings = saved_n
        return out
    subs: list[str] = []
    field: int | None = None
    wanted = 2
    while len(subs) < wanted:
        subs.append(_read_arg(ex, len(subs), "extract", skipping))
        if len(subs) == 1:
            subs[0] = subs[0].strip(_C_SPACE)
            if not subs[0]:
                raise ex.fail('first argument of "extract" must not be empty')
            field = _field_number(subs[0])
            if field is not None and fmt == "basic":
                wanted = 3
    ex.lookup_value = _extract_value(ex, fmt, field, subs)
    out = ex.yesno(skipping, ex.lookup_value is not None, saved_value, "extract")
    ex.nstrings = saved_n
    return out


def _extract_value(ex: Expander, fmt: str, field: int | None, subs: list[str]) -> str | None:
    if fmt == "basic":
        return gettokened(field, subs[1], subs[2]) if field is not None else getkeyed(subs[0], subs[1])
    try:
        inner = dewrap(subs[1], "[]" if field is not None else "{}")
    except WrapError as exc:
        what = "array" if field is not None else "object"
        raise ex.curly(f"{exc} wrapping {what} for extract json") from None
    value: str | None = None
    if field is not None:
        if field <= 0:
            raise ex.fail('first argument of "extract" must be greater than zero')
        elements = json_items(inner)
        value = elements[field - 1].rstrip(_C_SPACE) if field <= len(elements) else None
    else:
        for element in json_items(inner):
            try:
                key = dewrap(element, '""')
            except WrapError as exc:
                raise ex.curly(f"{exc} wrapping string key for extract json") from None
            if key == subs[0]:
                rest = element[element.index('"') + len(key) + 2 :].lstrip(_C_SPACE)
                if not rest.startswith(":"):
                    raise ex.curly("missing object value-separator for extract json")
                value = like(element, rest[1:].lstrip(_C_SPACE))
                break
    if fmt == "jsons" and value is not None:
        try:
            value = dewrap(value, '""')
        except WrapError as exc:
            raise ex.curly(f"{exc} wrapping string result for extract jsons") from None
    return value


def item_listextract(ex: Expander, name: str, skipping: bool) -> str:
    saved_value = ex.lookup_value
    saved_n = ex.nstrings
    field = 1
    subs: list[str] = []
    for k in range(2):
        subs.append(_read_arg(ex, k, "listextract", skipping))
        if k == 0:
            first = subs[0].strip(_C_SPACE)
            if not first and not skipping:
                raise ex.fail('first argument of "listextract" must not be empty')
            number = _field_number(first)
            if number is None:
                raise ex.fail('first argument of "listextract" must be numeric')
            field = number
    ex.lookup_value = None if skipping else _list_element(field, subs[1])
    out = ex.yesno(skipping, ex.lookup_value is not None, saved_value, "listextract")
    ex.nstrings = saved_n
    return out


def _read_arg(ex: Expander, k: int, item: str, skipping: bool) -> str:
    """Braced argument k (from 0) of extract or listextract."""
    if ex.skip_white() != "{":
        raise ex.curly(f"missing '{{' for arg {k + 1} of {item}")
    ex.i += 1
    value = ex.sub(skipping)
    if ex.take() != "}":
        raise ex.curly(f"missing '}}' closing arg {k + 1} of {item}")
    return value


def _field_number(text: str) -> int | None:
    """Exim's reading of a field number: optional "-", then only digits (none is 0); else None."""
    numeric = re.fullmatch(r"(-?)([0-9]*)", text)
    if numeric is None:
        return None
    return (-1 if numeric.group(1) else 1) * bounded_int(numeric.group(2) or "0")


def _list_element(field: int, text: str) -> str | None:
    """Exim's expand_getlistele()."""
    elements = list(ListReader(text))
    if field < 0:
        field += len(elements) + 1
        if field < 0:
            field = 1  # Exim's loop then stops at once and hands back the first item
    if field == 0 or field > len(elements):
        return None
    return elements[field - 1]
