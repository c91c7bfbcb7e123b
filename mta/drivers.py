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

import dataclasses
import enum
import importlib
from abc import ABC
from collections.abc import Mapping
from typing import Any, ClassVar


class Kind(enum.Enum):
    """The value type of an option, as Exim's documentation names them."""

    BOOL = "boolean"
    INT = "integer"
    OCTAL = "octal integer"
    TIME = "time"
    SIZE = "size"
    STRING = "string"
    LIST = "string list"


@dataclasses.dataclass(frozen=True, slots=True)
class OptionSpec:
    kind: Kind
    expand: bool = False
    doc: str = ""
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] | None = None
    hidden: bool = False


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
    spec = OptionSpec(kind, expand, doc, minimum, maximum, choices, hidden)
    return dataclasses.field(default=default, metadata={"option": spec})


def option_specs(cls: type) -> list[tuple[str, OptionSpec, Any, type]]:
    """(name, spec, default, declaring class) for every option of an options class.

    The declaring class is the most basic class that defines the field, so
    generic options can be told apart from a driver's private ones.
    """
    result = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("option")
        if spec is None:
            continue
        owner = cls
        for base in reversed(cls.__mro__):
            if dataclasses.is_dataclass(base) and f.name in getattr(base, "__dataclass_fields__", {}):
                owner = base
                break
        result.append((f.name, spec, f.default, owner))
    return result


def is_generic(options_class: type) -> bool:
    """True for the option classes shared by every driver of a kind.

    Such a class says so with ``_generic: ClassVar[bool] = True`` in its own
    body; -bP lists generic options before a driver's private ones.
    """
    return bool(options_class.__dict__.get("_generic", False))


@dataclasses.dataclass(frozen=True, slots=True)
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
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name)
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        raise TypeError(f"{target} is not a Driver")
    return cls
