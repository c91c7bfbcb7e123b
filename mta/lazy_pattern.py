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
"""

from __future__ import annotations

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class LazyPattern:
    """Stands for ``re.compile(pattern, flags)``; see the module's docstring."""

    def __init__(self, pattern: str | bytes, flags: int = 0) -> None:
        self._source = (pattern, flags)
        self._compiled: Any = None

    def __getattr__(self, name: str) -> Any:
        # Only for names not yet on the instance: the first use of each method.
        if name.startswith("__"):
            raise AttributeError(name)
        if self._compiled is None:
            import re

            self._compiled = re.compile(*self._source)
        value = getattr(self._compiled, name)
        self.__dict__[name] = value
        return value

    def __repr__(self) -> str:
        return f"lazy_compile({self._source[0]!r})"


def lazy_compile(pattern: str | bytes, flags: int = 0) -> LazyPattern:
    """A pattern compiled when it is first used (flags from `re`, e.g. ``re.S`` = 16, as integers
    or taken from an `re` already imported)."""
    return LazyPattern(pattern, flags)
