"""mta.memo: functools' memo decorators without importing functools (start-up time)."""

from __future__ import annotations

from mta.memo import cache, cached_property, lru_cache, per_second


def test_lru_cache_keeps_the_latest_results_and_cache_serves_all() -> None:
    calls: list[int] = []

    @lru_cache(maxsize=2)
    def square(n: int) -> int:
        """The square of n."""
        calls.append(n)
        return n * n

    assert [square(2), square(2), square(3), square(4), square(2)] == [4, 4, 9, 16, 4]
    assert calls == [2, 3, 4, 2]  # 2 was the least recently used when 4 came
    assert square.__name__ == "square" and square.__doc__ == "The square of n." and square.__wrapped__
    assert square.cache_info() == (1, 4, 2, 2)

    @cache
    def double(n: int) -> int:
        calls.append(n)
        return 2 * n

    calls.clear()
    assert [double(n) for n in (1, 2, 1, 2)] == [2, 4, 2, 4] and calls == [1, 2]


def test_cached_property_is_computed_once_per_instance() -> None:
    class Runtime:
        computed = 0

        @cached_property
        def rules(self) -> list[str]:
            Runtime.computed += 1
            return ["rule"]

    first, second = Runtime(), Runtime()
    assert first.rules is first.rules and second.rules == ["rule"]
    assert Runtime.computed == 2 and first.__dict__["rules"] == ["rule"]
    assert isinstance(Runtime.__dict__["rules"], cached_property)


def test_per_second_formats_each_second_once() -> None:
    calls: list[int] = []

    def stamp(second: int) -> str:
        calls.append(second)
        return f"s{second}"

    formatted = per_second(stamp)
    assert [formatted(t) for t in (10.0, 10.2, 10.999, 11.0, 10.5, -0.5, -1.0)] == [
        "s10", "s10", "s10", "s11", "s10", "s-1", "s-1"
    ]
    assert calls == [10, 11, 10, -1]  # again only when the second changes; the floor before 1970
