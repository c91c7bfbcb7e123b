"""`functools.lru_cache`, `cache` and `cached_property` without importing functools; and
`per_second`, a time stamp made once a second.

Why: functools imports collections (for the one namedtuple of ``cache_info()``),
with keyword, operator and reprlib: 2-3 ms of every short command's start-up
(a `sendmail -t` in mua_wrapper mode), for three decorators.  The memo is
functools' own, the C ``_lru_cache_wrapper`` that ``functools.lru_cache``
wraps, so a cached call costs what it did; only ``cache_info()`` returns a
plain tuple (hits, misses, maxsize, currsize).  ``cached_property`` is
Python 3.12's (3.11's takes a lock on every first use, which nothing here
needs: the values are computed again, not corrupted, if two threads race).

Type checkers see functools' own, for their exact signatures.
"""

from __future__ import annotations

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from functools import cache, cached_property, lru_cache
else:
    try:
        from _functools import _lru_cache_wrapper
    except ImportError:  # an interpreter without functools' C half: its Python one
        from functools import cache, cached_property, lru_cache
    else:

        def _cache_info(hits: int, misses: int, maxsize: int | None, currsize: int) -> tuple[int, ...]:
            return (hits, misses, maxsize, currsize)

        def lru_cache(maxsize=128):
            """``functools.lru_cache(maxsize)``: as a decorator factory only (no ``typed``)."""

            def decorate(function):
                wrapper = _lru_cache_wrapper(function, maxsize, False, _cache_info)
                for name in ("__module__", "__name__", "__qualname__", "__doc__"):
                    setattr(wrapper, name, getattr(function, name))
                wrapper.__wrapped__ = function
                return wrapper

            return decorate

        def cache(function):
            """``functools.cache``: an unbounded memo."""
            return lru_cache(None)(function)

        class cached_property:
            """``functools.cached_property``: computed on first use, then kept in the instance's __dict__."""

            def __init__(self, function):
                self.function = function
                self.attrname = None
                self.__doc__ = function.__doc__
                self.__module__ = function.__module__

            def __set_name__(self, owner, name):
                self.attrname = name

            def __get__(self, instance, owner=None):
                if instance is None:
                    return self
                value = instance.__dict__[self.attrname] = self.function(instance)
                return value


def per_second(format_second: Callable[[int], str]) -> Callable[[float], str]:
    """`format_second(second)` of a time, made once a second: for time stamps a process writes
    many times a second (log lines, the Received: and Date: of each message).  Safe across
    threads: the remembered pair is read and replaced whole."""
    memo: tuple[int | None, str] = (None, "")

    def formatted(when: float) -> str:
        nonlocal memo
        second = int(when // 1)  # (the floor, for a time before 1970 too)
        known = memo
        if known[0] == second:
            return known[1]
        text = format_second(second)
        memo = (second, text)
        return text

    return formatted
