"""mta.lazy_pattern: a pattern compiled at its first use, then as fast as a compiled one."""

from __future__ import annotations

import re

import pytest

from mta.lazy_pattern import lazy_compile


def test_compiled_at_first_use_with_its_flags_and_then_kept() -> None:
    pattern = lazy_compile(r"begin\s+(\w+)", re.I)
    assert pattern._compiled is None  # nothing compiled at import time
    m = pattern.match("BEGIN routers")
    assert m is not None and m.group(1) == "routers"
    compiled = pattern._compiled
    assert isinstance(compiled, re.Pattern) and compiled.flags & re.I
    # The bound method is now the instance's own: no __getattr__ on later calls.
    assert pattern.__dict__["match"] == compiled.match
    assert pattern.sub("x", "begin a, Begin b") == "x, x"
    assert pattern.pattern == r"begin\s+(\w+)" and pattern.groups == 1
    assert pattern._compiled is compiled


def test_a_bad_pattern_fails_at_its_first_use_and_dunders_are_not_forwarded() -> None:
    broken = lazy_compile("(")
    with pytest.raises(re.error):
        broken.match("x")
    with pytest.raises(AttributeError):
        broken.__wrapped__  # noqa: B018 - what copy/pickle/inspect probe must not compile or forward
