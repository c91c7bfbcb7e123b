"""Option tables and the driver base class.

Every configurable thing (the main section, each director, router,
transport, authenticator) declares its options once, as fields of a frozen
dataclass made with `option()`.  That table is the single source for parsing
the configuration file, for `mta -bP` and for docs/config-reference.md.

A driver is an instance named in the configuration (``localuser:``) of a
driver kind (``driver = localuser``); the registry of kinds is a dict of
``name -> "module:Class"`` strings in each kind's package, imported lazily so
that start-up imports only the drivers a configuration uses.
"""

from __future__ import annotations

import sys
from abc import ABC

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, ClassVar, TypeVar

    _T = TypeVar("_T")


class Kind:
    """The value type of an option, as Exim's documentation names them: ``Kind.BOOL`` and so on,
    each with a ``name`` and a ``value`` as an enum member has (not an `enum.Enum`: importing enum
    costs a short command about 1 ms of start-up)."""

    __slots__ = ("name", "value")

    BOOL: ClassVar[Kind]
    INT: ClassVar[Kind]
    OCTAL: ClassVar[Kind]
    TIME: ClassVar[Kind]
    TIMELIST: ClassVar[Kind]
    SIZE: ClassVar[Kind]
    STRING: ClassVar[Kind]
    LIST: ClassVar[Kind]

    def __init__(self, name: str, value: str) -> None:
        self.name, self.value = name, value

    def __repr__(self) -> str:
        return f"<Kind.{self.name}: {self.value!r}>"


Kind.BOOL = Kind("BOOL", "boolean")
Kind.INT = Kind("INT", "integer")
Kind.OCTAL = Kind("OCTAL", "octal integer")
Kind.TIME = Kind("TIME", "time")
Kind.TIMELIST = Kind("TIMELIST", "time list")  # Exim's timelist: times separated by colons, in increasing order
Kind.SIZE = Kind("SIZE", "size")
Kind.STRING = Kind("STRING", "string")
Kind.LIST = Kind("LIST", "string list")


class OptionSpec:
    """What an option is: its type, whether it is expanded, its doc line and bounds."""

    __slots__ = ("choices", "doc", "expand", "hidden", "kind", "maximum", "minimum")

    def __init__(
        self,
        kind: Kind,
        expand: bool = False,
        doc: str = "",
        minimum: int | None = None,
        maximum: int | None = None,
        choices: tuple[str, ...] | None = None,
        hidden: bool = False,
    ) -> None:
        self.kind, self.expand, self.doc = kind, expand, doc
        self.minimum, self.maximum, self.choices, self.hidden = minimum, maximum, choices, hidden

    def __repr__(self) -> str:
        return f"OptionSpec({self.kind.name}, expand={self.expand})"


class OptionField:
    """An option declared in a table class body; replaced by its default once the class is built.

    Its OptionSpec is made when first asked for (-bP, the reference, a value being set): a
    sendmail declares some two hundred options and reads the specs of a handful."""

    __slots__ = ("_spec", "_spec_args", "default", "name", "owner")

    def __init__(self, default: Any, spec_args: tuple[Any, ...]) -> None:
        self.default = default
        self._spec_args = spec_args
        self._spec: OptionSpec | None = None
        self.name = ""
        self.owner: type | None = None

    @property
    def spec(self) -> OptionSpec:
        if self._spec is None:
            self._spec = OptionSpec(*self._spec_args)
        return self._spec


def option(
    default: Any,
    kind: Kind,
    doc: str,
    *,
    expand: bool = False,
    minimum: int | None = None,
    maximum: int | None = None,
    choices: tuple[str, ...] | None = None,
    hidden: bool = False,
) -> Any:
    """Declare one option: its default, type, whether it is expanded, and its doc line."""
    return OptionField(default, (kind, expand, doc, minimum, maximum, choices, hidden))


def options_table(cls: type[_T]) -> type[_T]:
    """Make `cls` an option table: a read-only record of the options declared with option().

    The options of the base classes come first, in declaration order.  The
    class gets one shared keyword __init__ (defaults for options not given,
    TypeError for unknown names), equality, a repr and read-only attributes.
    This is what a frozen dataclass would give, built without generating
    code for each class: mta has dozens of these tables, and generating
    their methods was most of the start-up time of a `sendmail` call.
    """
    fields: dict[str, OptionField] = {}
    for base in reversed(cls.__mro__[1:]):
        fields.update(base.__dict__.get("__option_fields__", {}))
    for name, value in list(cls.__dict__.items()):
        if isinstance(value, OptionField):
            value.name, value.owner = name, cls
            fields[name] = value
            setattr(cls, name, value.default)
    cls.__option_fields__ = fields  # type: ignore[attr-defined]
    cls.__init__ = _table_init  # type: ignore[misc]
    cls.__setattr__ = _table_setattr  # type: ignore[method-assign,assignment]
    cls.__delattr__ = _table_setattr  # type: ignore[method-assign,assignment]
    cls.__eq__ = _table_eq  # type: ignore[method-assign,assignment]
    cls.__hash__ = _table_hash  # type: ignore[method-assign,assignment]
    cls.__repr__ = _table_repr  # type: ignore[method-assign]
    return cls


def _table_init(*args: Any, **values: Any) -> None:
    # The instance comes positionally only: "self" is also the name of a router option.
    table, args = args[0], args[1:]
    fields = type(table).__option_fields__
    if args:
        if len(args) > len(fields):
            raise TypeError(f"{type(table).__name__} takes at most {len(fields)} positional arguments")
        values.update(zip(fields, args, strict=False))
    set_value = object.__setattr__
    for name, field in fields.items():
        set_value(table, name, values.pop(name) if name in values else field.default)
    if values:
        raise TypeError(f"{type(table).__name__} has no option(s) {', '.join(sorted(values))}")


def _table_setattr(self: Any, name: str, *value: Any) -> None:
    raise AttributeError(f"{type(self).__name__} options are read-only (cannot change {name})")


def _table_values(self: Any) -> tuple[Any, ...]:
    return tuple(getattr(self, name) for name in type(self).__option_fields__)


def _table_eq(self: Any, other: object) -> bool:
    if type(other) is not type(self):
        return NotImplemented
    return _table_values(self) == _table_values(other)


def _table_hash(self: Any) -> int:
    return hash((type(self), _table_values(self)))


def _table_repr(self: Any) -> str:
    fields = type(self).__option_fields__
    shown = ", ".join(f"{n}={getattr(self, n)!r}" for n, f in fields.items() if getattr(self, n) != f.default)
    return f"{type(self).__name__}({shown})"


def option_fields(cls: type) -> dict[str, OptionField]:
    """Option name -> its OptionField (`.spec`, `.default`, `.owner`) for an options class."""
    fields: dict[str, OptionField] = cls.__dict__.get("__option_fields__") or getattr(cls, "__option_fields__", {})
    return fields


def option_specs(cls: type) -> list[tuple[str, OptionSpec, Any, type]]:
    """(name, spec, default, declaring class) for every option of an options class.

    The declaring class tells generic options from a driver's private ones.
    """
    return [(name, f.spec, f.default, f.owner or cls) for name, f in option_fields(cls).items()]


def is_generic(options_class: type) -> bool:
    """True for the option classes shared by every driver of a kind.

    Such a class says so with ``_generic: ClassVar[bool] = True`` in its own
    body; -bP lists generic options before a driver's private ones.
    """
    return bool(options_class.__dict__.get("_generic", False))


@options_table
class DriverOptions:
    """Options every driver has."""

    _generic: ClassVar[bool] = True

    driver: str = option("", Kind.STRING, "The kind of driver this instance is.")
    debug_print: str | None = option(
        None, Kind.STRING, "Expanded and written to stderr when debugging this driver.", expand=True
    )


class Driver(ABC):  # noqa: B024 - each kind's base adds the abstract method
    """Base of directors, routers, transports and authenticators.

    `name` is the instance name from the configuration, `options` the parsed
    option table, `source` the (file, line) where the instance was defined,
    used in error messages.
    """

    kind_name: ClassVar[str] = "driver"
    options_class: ClassVar[type[DriverOptions]] = DriverOptions

    def __init__(self, name: str, options: DriverOptions, source: tuple[str, int]) -> None:
        self.name = name
        self.options = options
        self.source = source

    def check(self, config: Any) -> None:
        """Start-up checks of links to other parts of the configuration.

        Raises ConfigError naming this instance's file and line.  The base
        class has nothing to check.
        """
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def load_driver_class(registry: Mapping[str, str], driver_name: str) -> type[Driver] | None:
    """Import and return the class registered as `driver_name`, or None."""
    target = registry.get(driver_name)
    if target is None:
        return None
    module_name, _, class_name = target.partition(":")
    # Not importlib.import_module: importing importlib (and warnings) costs start-up time.
    __import__(module_name)
    module = sys.modules[module_name]
    cls = getattr(module, class_name)
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        raise TypeError(f"{target} is not a Driver")
    return cls
