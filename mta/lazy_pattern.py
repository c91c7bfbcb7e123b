"""Regular expressions compiled the first time they are used, not when their module is imported.

Why: compiling a pattern costs 0.05-0.6 ms, and a module-level ``re.compile``
is paid by every process that imports the module, used or not: a `sendmail`
in mua_wrapper mode compiled some twenty patterns it never used (2-3 ms of
its start-up).  A pattern that most runs of a command use gains nothing from
this; one kept for a rarer branch (a macro definition, a lookup in a list, an
error path) should be a `lazy_compile`.

After its first use each attribute looked up (``match``, ``sub`` ...) is the
compiled pattern's own, kept on the instance: later calls cost what they cost
on a compiled pattern.  It is not a `re.Pattern`: pass it to no `re` function.

A pattern that a short command uses on its way (a `sendmail -t` reads header
names and a plain address or two) can be given `without_re`: functions in `str`
methods for the methods its callers use, returning what the callers read of a
match (`None`, or a tuple whose items 1, 2 ... are the groups, with `end()` if
they call it).  They stand for the pattern in a process that has not imported
`re` when the pattern is first used: importing `re` (with enum, functools,
collections) costs a short command some 5 ms.  A process that has it (the
daemon and the delivery processes: asyncio imports it) gets the compiled
pattern, which is faster in C than a few `str` methods called from Python.
Each stand-in has a test that it accepts, refuses and splits what its pattern
does (tests/message/test_str_forms.py).
"""

from __future__ import annotations

import sys

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class LazyPattern:
    """Stands for ``re.compile(pattern, flags)``; see the module's docstring."""

    def __init__(
        self, pattern: str | bytes, flags: int = 0, without_re: dict[str, Callable[..., Any]] | None = None
    ) -> None:
        self._source = (pattern, flags)
        self._compiled: Any = None
        self._without_re = without_re

    def __getattr__(self, name: str) -> Any:
        # Only for names not yet on the instance: the first use of each method.
        if name.startswith("__"):
            raise AttributeError(name)
        if self._compiled is None:
            if self._without_re is not None and name in self._without_re and "re" not in sys.modules:
                stand_in = self.__dict__[name] = self._without_re[name]
                return stand_in
            import re

            self._compiled = re.compile(*self._source)
        value = getattr(self._compiled, name)
        self.__dict__[name] = value
        return value

    def __repr__(self) -> str:
        return f"lazy_compile({self._source[0]!r})"


def lazy_compile(
    pattern: str | bytes, flags: int = 0, without_re: dict[str, Callable[..., Any]] | None = None
) -> LazyPattern:
    """A pattern compiled when it is first used (flags from `re`, e.g. ``re.S`` = 16, as integers
    or taken from an `re` already imported); `without_re` as the module's docstring says."""
    return LazyPattern(pattern, flags, without_re)
