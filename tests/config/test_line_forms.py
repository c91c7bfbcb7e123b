"""The loader tells configuration lines apart with str methods (start-up time): they must accept
and split exactly what the regular expressions they replaced did."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from mta.config.loader import _begun_section, _instance, _named_list, _option

# The regular expressions the loader used before, applied as it applied them.
BEGIN = re.compile(r"begin\s+([A-Za-z_]+)\s*$", re.I)
OPTION = re.compile(r"(hide\s+)?([a-z][a-z0-9_]*)\s*(?:=\s*(.*))?$", re.S)
NAMED_LIST = re.compile(
    r"(domainlist|hostlist|addresslist|localpartlist)(?:_cache)?\s+([A-Za-z0-9_]+)\s*=\s*(.*)$", re.S
)
INSTANCE = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_.-]*)\s*:\s*(.*)$", re.S)

PIECES = [
    "begin",
    "BEGIN",
    "hide",
    "domainlist",
    "hostlist_cache",
    "localpartlist",
    "routers",
    "name",
    "Ab_9",
    " ",
    "  ",
    "\t",
    "\n",
    "\xa0",
    "=",
    "==",
    ":",
    "-",
    ".",
    "_",
    "x",
    "é",
    "\u017f",
    "\u212a",
    "1",
    '"q"',
    "$",
]
lines = st.lists(st.sampled_from(PIECES), max_size=8).map("".join).map(str.strip)


@settings(max_examples=400, deadline=None)
@given(lines)
def test_the_line_forms_agree_with_the_old_regular_expressions(line: str) -> None:
    m = BEGIN.match(line)
    # re.I let U+017F (long s) and U+212A (Kelvin) match [A-Za-z]: only in a section name no section has.
    if not (m and not m.group(1).isascii()):
        assert _begun_section(line) == (m.group(1) if m else None)
    m = OPTION.match(line)
    expected = (bool(m.group(1)), m.group(2), m.group(3) and m.group(3).strip()) if m else None
    got = _option(line)
    assert (got and (got[0], got[1], got[2] and got[2].strip())) == expected
    m = NAMED_LIST.match(line)
    got_list = _named_list(line)
    assert (got_list and (got_list[0], got_list[1], got_list[2].strip())) == (
        (m.group(1), m.group(2), m.group(3).strip()) if m else None
    )
    m = INSTANCE.match(line)
    got_instance = _instance(line)
    assert (got_instance and (got_instance[0], got_instance[1].strip())) == (
        (m.group(1), m.group(2).strip()) if m else None
    )
