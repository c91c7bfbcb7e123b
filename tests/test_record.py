"""mta.record: the specialised __init__ made once a class is in use behaves as the generic one.

Every call below is made through the class (whose __init__ is made from its
field table once it has made SPECIALISE_AFTER instances; each call is
repeated until it has) and through record._init, the generic
version that reads the table at each call.  The fields set and the
__post_init__ calls must be the same, and a call one refuses the other refuses
too, with a TypeError naming the class (the specialised __init__ lets Python
bind the arguments, so its wording is Python's).
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from mta import record


@record.dataclass
class Plain:
    name: str
    count: int = 0
    tags: list[str] = record.field(default_factory=list)
    hidden: str = record.field(default="h", init=False)
    unset: int = record.field(init=False)
    kind: ClassVar[str] = "plain"


@record.dataclass(frozen=True, kw_only=True)
class Frozen:
    a: int
    b: str = "b"


@record.dataclass
class WithPost:
    value: int
    seen: list[int] = record.field(default_factory=list)

    def __post_init__(self) -> None:
        self.seen.append(self.value)


@record.dataclass(frozen=True)
class Child(Frozen):
    c: tuple[int, ...] = ()


class NotARecord(Plain):
    pass


CALLS: list[tuple[type, tuple[Any, ...], dict[str, Any]]] = [
    (Plain, ("x",), {}),
    (Plain, ("x", 3), {"tags": ["t"]}),
    (Plain, (), {"name": "x", "count": 2}),
    (Plain, (), {}),  # missing a required field
    (Plain, ("x", 1, [], 9), {}),  # too many positional
    (Plain, ("x",), {"name": "y"}),  # twice
    (Plain, (), {"name": "x", "colour": "red"}),  # unknown
    (Plain, (), {"name": "x", "hidden": "no"}),  # init=False is not an argument
    (Frozen, (), {"a": 1}),
    (Frozen, (1,), {}),  # keyword-only
    (Child, (), {"a": 1, "c": (2,)}),
    (Child, (), {"b": "x"}),
    (WithPost, (5,), {}),
    (NotARecord, ("x",), {"count": 4}),
]


def state(obj: object) -> dict[str, Any]:
    return dict(vars(obj))


def outcome(make: Any, cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    obj = cls.__new__(cls)
    try:
        make(obj, *args, **dict(kwargs))
    except TypeError as exc:
        return ("error", cls.__name__ in str(exc))
    return ("ok", state(obj))


@pytest.mark.parametrize(("cls", "args", "kwargs"), CALLS, ids=range(len(CALLS)))
def test_specialised_init_is_the_generic_one(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    # The first calls use the generic __init__, a later one makes the specialised one, the last uses it.
    for _ in range(record.SPECIALISE_AFTER + 2):
        got = outcome(cls.__init__, cls, args, kwargs)
        want = outcome(record._init, cls, args, kwargs)
        assert got == want


def test_a_class_gets_its_specialised_init_only_once_in_use() -> None:
    @record.dataclass
    class Fresh:
        a: int

    first = Fresh.__init__
    for n in range(record.SPECIALISE_AFTER):
        assert Fresh(n).a == n
    assert Fresh.__init__ is first  # not compiled yet: a short-lived command never pays for it
    Fresh(0)
    assert Fresh.__init__ is not first and Fresh.__init__.__qualname__.endswith("Fresh.__init__")


def test_a_required_field_after_a_default_keeps_the_generic_rules() -> None:
    # No signature can list these fields in order: the specialised __init__ takes any arguments.
    @record.dataclass
    class Late(Plain):
        late: str = record.field(default_factory=str)
        needed: int = record.field(default=0)

    @record.dataclass
    class Disordered:
        first: int = 1
        second: int = record.field()  # required, after a default

    for _ in range(record.SPECIALISE_AFTER + 2):
        assert vars(Disordered(second=2)) == {"first": 1, "second": 2}
        assert vars(Disordered(5, 6)) == {"first": 5, "second": 6}
        with pytest.raises(TypeError, match="missing required argument: 'second'"):
            Disordered(5)
        assert Late("x", late="y").late == "y"


def test_defaults_are_not_shared_and_frozen_stays_frozen() -> None:
    one, two = Plain("a"), Plain("b")
    one.tags.append("x")
    assert two.tags == [] and two.hidden == "h" and not hasattr(two, "unset")
    with pytest.raises(record.FrozenInstanceError):
        Frozen(a=1).a = 2  # type: ignore[misc]
    assert Child(a=1) == Child(a=1) and hash(Child(a=1)) == hash(Child(a=1))
    assert record.replace(Child(a=1, c=(1,)), b="z") == Child(a=1, b="z", c=(1,))
