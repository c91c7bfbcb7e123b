"""Records: the subset of `dataclasses` that mta uses, built without generating code at import.

Why: `import dataclasses` costs about 12 ms (it imports inspect, ast, dis,
tokenize) and each class it builds another 0.3-1 ms of generated and
compiled methods.  mta defines some sixty record classes, and every
`sendmail` call pays for them before it reads a byte: in mua_wrapper mode
that was most of its run time.  Here every record class shares one __eq__
and so on, driven by the class's field table; its __init__ is the generic
one until the class is in use (`_first_init`, `_make_init`).

Supported, with the standard library's meaning: ``@dataclass`` with
frozen, eq, order, repr, kw_only, slots (accepted; instances keep a
__dict__), ``field(default=..., default_factory=..., init=..., repr=...,
compare=..., metadata=...)``, ``__post_init__``, inheritance of fields,
ClassVar annotations (skipped), ``replace()``, ``fields()``,
``is_dataclass()`` and ``FrozenInstanceError``.
"""

from __future__ import annotations

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    _T = TypeVar("_T")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen record."""


class Field:
    __slots__ = ("compare", "default", "default_factory", "init", "metadata", "name", "repr")

    def __init__(
        self,
        default: Any = MISSING,
        default_factory: Any = MISSING,
        init: bool = True,
        repr: bool = True,
        compare: bool = True,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name = ""
        self.default, self.default_factory = default, default_factory
        self.init, self.repr, self.compare = init, repr, compare
        self.metadata = metadata or {}

    def __repr__(self) -> str:
        return f"Field({self.name!r})"


def field(
    *,
    default: Any = MISSING,
    default_factory: Any = MISSING,
    init: bool = True,
    repr: bool = True,
    compare: bool = True,
    metadata: dict[str, Any] | None = None,
) -> Any:
    return Field(default, default_factory, init, repr, compare, metadata)


_CLASSVAR = ("ClassVar", "typing.ClassVar", "Final")


def dataclass(
    cls: type[_T] | None = None,
    /,
    *,
    frozen: bool = False,
    eq: bool = True,
    order: bool = False,
    repr: bool = True,
    kw_only: bool = False,
    slots: bool = False,
    unsafe_hash: bool = False,
) -> Any:
    def build(target: type[_T]) -> type[_T]:
        return _build(
            target, frozen=frozen, eq=eq, order=order, want_repr=repr, kw_only=kw_only, unsafe_hash=unsafe_hash
        )

    return build if cls is None else build(cls)


def _build(
    cls: type[_T], *, frozen: bool, eq: bool, order: bool, want_repr: bool, kw_only: bool, unsafe_hash: bool
) -> type[_T]:
    table: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        inherited = base.__dict__.get("__record_fields__")
        if inherited:
            table.update(inherited)
    # Not inspect.get_annotations: importing inspect is the cost this module avoids.  Every
    # sendmail builds some fifty record classes: the loop is kept lean (no Field keywords, no
    # setattr of a default the class body has already set).
    namespace = cls.__dict__
    for name, annotation in namespace.get("__annotations__", {}).items():
        if (annotation if type(annotation) is str else repr(annotation)).startswith(_CLASSVAR):
            continue
        value = namespace.get(name, MISSING)
        if isinstance(value, Field):
            spec = value
            if spec.default is not MISSING:
                setattr(cls, name, spec.default)
            else:
                delattr(cls, name)  # a factory, or no default: no class attribute
        else:
            spec = Field(value)  # a plain default (or MISSING), already the class attribute
        spec.name = name
        table[name] = spec
    setattr(cls, "__record_fields__", table)  # noqa: B010 - a dunder set on a class being built
    setattr(cls, "__record_kw_only__", kw_only)  # noqa: B010
    setattr(cls, "__match_args__", tuple(n for n, f in table.items() if f.init))  # noqa: B010
    if "__init__" not in cls.__dict__:
        cls.__init__ = _first_init(cls)  # type: ignore[misc]
    if want_repr and "__repr__" not in cls.__dict__:
        cls.__repr__ = _repr  # type: ignore[method-assign]
    if eq and "__eq__" not in cls.__dict__:
        cls.__eq__ = _eq  # type: ignore[method-assign,assignment]
        if not frozen and not unsafe_hash:
            cls.__hash__ = None  # type: ignore[assignment]  # mutable and comparable: unhashable
    if (frozen and eq) or unsafe_hash:
        cls.__hash__ = _hash  # type: ignore[method-assign,assignment]
    if order:
        cls.__lt__ = _order(lambda a, b: a < b)  # type: ignore[method-assign,operator]
        cls.__le__ = _order(lambda a, b: a <= b)  # type: ignore[method-assign,operator]
        cls.__gt__ = _order(lambda a, b: a > b)  # type: ignore[method-assign,operator]
        cls.__ge__ = _order(lambda a, b: a >= b)  # type: ignore[method-assign,operator]
    if frozen:
        cls.__setattr__ = _frozen_setattr  # type: ignore[method-assign,assignment]
        cls.__delattr__ = _frozen_delattr  # type: ignore[method-assign,assignment]
    return cls


# Instances made through the generic _init before a class gets its specialised __init__.  Making
# one compiles Python source (about 0.3 ms a class): a command such as `sendmail -t` makes a
# few instances of forty classes, and compiling for each cost it 12 ms; a daemon's hot
# classes pass this count within its first message.
SPECIALISE_AFTER = 16


def _first_init(cls: type) -> Callable[..., None]:
    """An __init__ that, once the class has been instantiated SPECIALISE_AFTER times, puts a
    specialised one in its place (see _make_init)."""
    made = 0

    def __init__(*args: Any, **values: Any) -> None:
        nonlocal made
        made += 1
        if made <= SPECIALISE_AFTER or type(args[0]) is not cls:
            _init(*args, **values)
            return
        init = _make_init(cls)
        cls.__init__ = init  # type: ignore[misc]
        init(*args, **values)

    return __init__


def _make_init(cls: type) -> Callable[..., None]:
    """__init__ for `cls` as straight-line code, one statement per field.

    Why: a message received makes some forty records (address tokens, headers, the envelope),
    and the generic _init's loop over each field table was a seventh of a receiving process's
    CPU.  The code is made once the class has been instantiated a few times (SPECIALISE_AFTER),
    not when it is defined, so start-up (where this module exists to save time) pays nothing
    for classes it does not use much.
    Where the fields allow it, the function has the fields as its parameters, as the standard
    library's dataclasses make it, and Python itself binds the arguments and refuses a bad call
    (a TypeError naming the class and the argument).  Otherwise (a required field after one with
    a default, not keyword-only) it takes any arguments and leaves what it cannot handle to the
    generic _init.
    """
    table: dict[str, Field] = cls.__record_fields__  # type: ignore[attr-defined]
    init_fields = [name for name, spec in table.items() if spec.init]
    # A signature lists required parameters before those with defaults, unless all are keywords.
    defaults = [_has_default(table[name]) for name in init_fields]
    ordered = cls.__record_kw_only__ or defaults == sorted(defaults)  # type: ignore[attr-defined]
    if ordered and not any(name.startswith("_r_") for name in table):
        return _make_signature_init(cls, table)
    return _make_generic_init(cls, table)


def _default_text(names: dict[str, Any], prefix: str, n: int, spec: Field) -> str | None:
    """The expression, in generated code, for field number `n`'s default (its value is put in
    `names`); None if it has none."""
    if spec.default is not MISSING:
        names[f"{prefix}d{n}"] = spec.default
        return f"{prefix}d{n}"
    if spec.default_factory is not MISSING:
        names[f"{prefix}f{n}"] = spec.default_factory
        return f"{prefix}f{n}()"
    return None


def _has_default(spec: Field) -> bool:
    return spec.default is not MISSING or spec.default_factory is not MISSING


def _stores_in_dict(cls: type, table: dict[str, Field]) -> bool:
    """Whether every field can be stored straight into the instance's __dict__: no slots without
    a __dict__ and no descriptor that would see the assignment (a property named as a field)."""
    for klass in cls.__mro__[:-1]:
        slots = klass.__dict__.get("__slots__")
        if slots is not None and "__dict__" not in ((slots,) if isinstance(slots, str) else slots):
            return False
    for name in table:
        for klass in cls.__mro__:
            if name in klass.__dict__:
                if hasattr(type(klass.__dict__[name]), "__set__"):
                    return False
                break
    return True


def _make_signature_init(cls: type, table: dict[str, Field]) -> Callable[..., None]:
    names: dict[str, Any] = {"_r_set": object.__setattr__, "_r_factory": _FACTORY}
    parameters: list[str] = []
    body: list[str] = []
    direct = _stores_in_dict(cls, table)
    if direct:
        body.append("    _r_dict = _r_obj.__dict__")
    for n, (name, spec) in enumerate(table.items()):
        default = _default_text(names, "_r_", n, spec)
        if spec.init and spec.default_factory is not MISSING:
            parameters.append(f"{name}=_r_factory")
            value = f"{default} if {name} is _r_factory else {name}"
        elif spec.init:
            parameters.append(name if default is None else f"{name}={default}")
            value = name
        elif default is not None:
            value = default
        else:
            continue  # init=False and no default: left unset
        body.append(f"    _r_dict[{name!r}] = {value}" if direct else f"    _r_set(_r_obj, {name!r}, {value})")
    star = "*, " if cls.__record_kw_only__ and parameters else ""  # type: ignore[attr-defined]
    return _compile_init(cls, [f"def __init__(_r_obj, /, {star}{', '.join(parameters)}):", *body], "_r_obj", names)


def _compile_init(cls: type, lines: list[str], instance: str, names: dict[str, Any]) -> Callable[..., None]:
    """The __init__ whose first lines are `lines` (`instance` names the object being made), with
    the __post_init__ call after them."""
    lines = [
        *lines,
        f"    _post = getattr({instance}, '__post_init__', None)",
        "    if _post is not None:",
        "        _post()",
    ]
    exec("\n".join(lines), names)  # the text is made by the caller from the class's own field table
    init = names["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init  # type: ignore[no-any-return]


class _Factory:
    def __repr__(self) -> str:
        return "<factory>"


_FACTORY: Any = _Factory()  # the default of a parameter whose field has a default_factory


def _make_generic_init(cls: type, table: dict[str, Field]) -> Callable[..., None]:
    """_make_init's straight-line __init__ for fields a signature cannot list in their order.
    It handles the calls that succeed; anything else (too many positional arguments, a required
    field missing, an unknown name) goes to the generic _init, which does the same work and
    raises the same errors."""
    positional = tuple(name for name, spec in table.items() if spec.init)
    names: dict[str, Any] = {"_init": _init, "_set": object.__setattr__, "_positional": positional}
    lines = [
        "def __init__(_obj, /, *_args, **_values):",
        "    if _args:",
        # Positional arguments become keywords, unless the call is one the generic _init refuses.
        f"        if {cls.__record_kw_only__!r} or len(_args) > {len(positional)} "  # type: ignore[attr-defined]
        "or not _values.keys().isdisjoint(_positional[:len(_args)]):",
        "            return _init(_obj, *_args, **_values)",
        "        _values.update(zip(_positional, _args))",
        "    _given = 0",
    ]
    for n, (name, spec) in enumerate(table.items()):
        default = _default_text(names, "_", n, spec)
        if default is not None:
            fallback = f"_set(_obj, {name!r}, {default})"
        elif spec.init:
            fallback = "return _init(_obj, **_values)"  # missing: the generic error
        else:
            continue  # init=False and no default: left unset
        if spec.init:
            lines += [
                f"    if {name!r} in _values:",
                f"        _set(_obj, {name!r}, _values[{name!r}])",
                "        _given += 1",
                "    else:",
                f"        {fallback}",
            ]
        else:
            lines.append(f"    {fallback}")
    lines += ["    if _given != len(_values):", "        return _init(_obj, **_values)"]
    return _compile_init(cls, lines, "_obj", names)


def _init(*args: Any, **values: Any) -> None:
    # The instance comes positionally only, so that no field name can clash with it.
    obj, args = args[0], args[1:]
    cls = type(obj)
    table: dict[str, Field] = cls.__record_fields__
    if args:
        if cls.__record_kw_only__:
            raise TypeError(f"{cls.__name__}() takes keyword arguments only")
        names = [n for n, f in table.items() if f.init]
        if len(args) > len(names):
            raise TypeError(f"{cls.__name__}() takes at most {len(names)} positional arguments")
        for name, value in zip(names, args, strict=False):
            if name in values:
                raise TypeError(f"{cls.__name__}() got multiple values for {name!r}")
            values[name] = value
    set_value = object.__setattr__
    for name, spec in table.items():
        if spec.init and name in values:
            set_value(obj, name, values.pop(name))
        elif spec.default is not MISSING:
            set_value(obj, name, spec.default)
        elif spec.default_factory is not MISSING:
            set_value(obj, name, spec.default_factory())
        elif spec.init:
            raise TypeError(f"{cls.__name__}() missing required argument: {name!r}")
    if values:
        raise TypeError(f"{cls.__name__}() got unexpected argument(s): {', '.join(sorted(values))}")
    post_init = getattr(obj, "__post_init__", None)
    if post_init is not None:
        post_init()


def _compared(obj: Any) -> tuple[Any, ...]:
    return tuple(getattr(obj, n) for n, f in type(obj).__record_fields__.items() if f.compare)


def _eq(self: Any, other: object) -> bool:
    if type(other) is not type(self):
        return NotImplemented
    return _compared(self) == _compared(other)


def _hash(self: Any) -> int:
    return hash(_compared(self))


def _order(compare: Callable[[tuple[Any, ...], tuple[Any, ...]], bool]) -> Callable[[Any, Any], bool]:
    def method(self: Any, other: Any) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return compare(_compared(self), _compared(other))

    return method


def _repr(self: Any) -> str:
    shown = ", ".join(f"{n}={getattr(self, n)!r}" for n, f in type(self).__record_fields__.items() if f.repr)
    return f"{type(self).__qualname__}({shown})"


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def fields(obj: Any) -> tuple[Field, ...]:
    cls = obj if isinstance(obj, type) else type(obj)
    return tuple(cls.__record_fields__.values())


def is_dataclass(obj: Any) -> bool:
    cls = obj if isinstance(obj, type) else type(obj)
    return "__record_fields__" in cls.__dict__ or hasattr(cls, "__record_fields__")


def replace(obj: _T, **changes: Any) -> _T:
    """A copy of `obj` with some fields changed (fields with init=False are copied as they are)."""
    cls = type(obj)
    table: dict[str, Field] = cls.__record_fields__  # type: ignore[attr-defined]
    values = {n: getattr(obj, n) for n, f in table.items() if f.init}
    for name in changes:
        if name not in table or not table[name].init:
            raise TypeError(f"{cls.__name__} has no field {name!r} to replace")
    values.update(changes)
    new = cls(**values)
    for name, spec in table.items():
        if not spec.init:
            object.__setattr__(new, name, getattr(obj, name))
    return new
