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


def _stand_in(text: str) -> tuple[str, str] | None:
    return (text, text[:1]) if text[:1] == "a" else None


def test_a_stand_in_serves_a_process_without_re_and_the_pattern_one_with_it() -> None:
    import sys

    # A `sendmail` that has not imported re gets the str version, kept as the pattern's method.
    without = lazy_compile("(a)", without_re={"match": _stand_in})
    saved = sys.modules.pop("re")
    try:
        m = without.match("abc")
        assert m is not None and m[1] == "a" and without.match("b") is None
    finally:
        sys.modules["re"] = saved
    assert without.__dict__["match"] is _stand_in and without._compiled is None
    # A method without a stand-in, or a process that has re (the daemon), compiles the pattern.
    assert without.fullmatch("a") is not None and isinstance(without._compiled, re.Pattern)
    with_re = lazy_compile("(a)", without_re={"match": _stand_in})
    m = with_re.match("abc")
    assert isinstance(m, re.Match) and m[1] == "a" and with_re.__dict__["match"] == with_re._compiled.match
