"""Turning option lines into option tables, and tables back into text.

The same walk over an options dataclass serves the parser (`build_options`),
`mta -bP` (`format_option`) and the generated configuration reference
(`reference_markdown`), so the three cannot disagree.
"""

from __future__ import annotations

from mta import record
from mta.drivers import Kind, OptionSpec, is_generic, option_fields, option_specs
from mta.errors import ConfigError
from mta.values import (
    format_size,
    format_time,
    parse_bool,
    parse_octal,
    parse_size,
    parse_time,
    split_list,
)

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from mta.drivers import OptionField


@record.dataclass(frozen=True, slots=True)
class OptionSetting:
    """One option line as read from the file: ``name = value`` or a bare boolean."""

    name: str
    value: str | None  # None for a bare "name" / "no_name"
    path: str
    line: int
    hidden: bool = False  # "hide name = value"


def convert_value(name: str, spec: OptionSpec, text: str) -> Any:
    """Convert the text of one option to its typed value; ValueError says why not."""
    kind = spec.kind
    if kind is Kind.BOOL:
        return parse_bool(text)
    if kind in (Kind.INT, Kind.OCTAL, Kind.TIME, Kind.SIZE):
        if kind is Kind.INT:
            try:
                value = int(text.strip(), 0) if text.strip().startswith("0x") else int(text.strip())
            except ValueError:
                raise ValueError(f'"{text}" is not an integer') from None
        elif kind is Kind.OCTAL:
            value = parse_octal(text)
        elif kind is Kind.TIME:
            value = parse_time(text)
        else:
            value = parse_size(text)
        if spec.minimum is not None and value < spec.minimum:
            # build_options prefixes the option name; do not repeat it here.
            raise ValueError(f"{text.strip()} is too small (the minimum is {format_value(spec, spec.minimum)})")
        if spec.maximum is not None and value > spec.maximum:
            raise ValueError(f"{text.strip()} is too large (the maximum is {format_value(spec, spec.maximum)})")
        return value
    if kind is Kind.TIMELIST:
        return parse_timelist(text)
    if spec.choices is not None and not spec.expand and text not in spec.choices:
        raise ValueError(f'"{text}" is not one of: {", ".join(spec.choices)}')
    return text


def parse_timelist(text: str) -> tuple[int, ...]:
    """``4h:8h:24h`` as a tuple of seconds; ``0`` (or any zero item) means none at all: ()."""
    values = tuple(parse_time(item) for item in split_list(text))
    if not values or 0 in values:
        return ()
    import itertools  # here: a builtin module that takes a sendmail 50-100 us to set up, for one rare option kind

    if any(b <= a for a, b in itertools.pairwise(values)):
        raise ValueError(f'"{text.strip()}": the times must increase')
    return values


def _lookup_spec(fields: dict[str, OptionField], raw_name: str) -> tuple[str, OptionSpec, bool | None]:
    """Resolve ``no_x``/``not_x`` prefixes; return (name, spec, forced bool).  Only the options
    set are asked for their spec (made at first use: mta.drivers.OptionField)."""
    field = fields.get(raw_name)
    if field is not None:
        return raw_name, field.spec, None
    for prefix in ("no_", "not_"):
        if raw_name.startswith(prefix):
            base = raw_name[len(prefix) :]
            field = fields.get(base)
            if field is not None and field.spec.kind is Kind.BOOL:
                return base, field.spec, False
    raise KeyError(raw_name)


def build_options(
    cls: type,
    settings: Iterable[OptionSetting],
    what: str,
    overrides: dict[str, Any] | None = None,
) -> tuple[Any, set[str]]:
    """Build an options instance of `cls` from option lines.

    `what` names the thing being configured for error messages ("router
    smarthost", "main").  Returns the instance and the set of option names
    marked ``hide``.  Raises ConfigError with file and line for an unknown
    option, a value of the wrong type, or an option set twice.
    """
    fields = option_fields(cls)
    values: dict[str, Any] = dict(overrides or {})
    seen: dict[str, OptionSetting] = {}
    hidden: set[str] = set()
    for setting in settings:
        try:
            name, spec, forced = _lookup_spec(fields, setting.name)
        except KeyError:
            raise ConfigError(f'unknown option "{setting.name}" for {what}', setting.path, setting.line) from None
        if name in seen:
            first = seen[name]
            raise ConfigError(
                f'"{name}" is set twice for {what} (first at {first.path}:{first.line})',
                setting.path,
                setting.line,
            )
        seen[name] = setting
        if setting.hidden:
            hidden.add(name)
        if forced is not None:
            if setting.value is not None:
                raise ConfigError(f'"{setting.name}" takes no value', setting.path, setting.line)
            values[name] = forced
            continue
        if setting.value is None:
            if spec.kind is not Kind.BOOL:
                raise ConfigError(f'"{name}" needs a value ("{name} = ...")', setting.path, setting.line)
            values[name] = True
            continue
        try:
            values[name] = convert_value(name, spec, setting.value)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}", setting.path, setting.line) from None
    return cls(**values), hidden


def format_value(spec: OptionSpec, value: Any) -> str:
    if value is None:
        return ""
    kind = spec.kind
    if kind is Kind.TIME:
        return format_time(value)
    if kind is Kind.TIMELIST:
        return ":".join(format_time(v) for v in value) if value else "0s"
    if kind is Kind.SIZE:
        return format_size(value)
    if kind is Kind.OCTAL:
        return "0" + format(value, "o") if value else "0"
    return str(value)


def format_option(name: str, spec: OptionSpec, value: Any, hide_value: bool = False, with_name: bool = True) -> str:
    """One line of -bP output, in Exim's form (``no_x`` for false booleans)."""
    if spec.kind is Kind.BOOL:
        return name if value else f"no_{name}"
    text = "<value not displayable>" if hide_value else format_value(spec, value)
    return f"{name} = {text}" if with_name else text


def format_all(instance: Any, hidden: set[str] | None = None, show_hidden: bool = True) -> list[str]:
    """All options of an instance for -bP: generic ones first, then private, each sorted."""
    hidden = hidden or set()
    rows: list[tuple[bool, str, str]] = []
    for name, spec, _default, owner in option_specs(type(instance)):
        value = getattr(instance, name)
        masked = (name in hidden or spec.hidden) and not show_hidden
        rows.append((not is_generic(owner), name, format_option(name, spec, value, masked)))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [text for _g, _n, text in rows]


def reference_markdown(title: str, cls: type, intro: str = "", private_only: bool = False, heading: str = "###") -> str:
    """A Markdown section for docs/config-reference.md: a table of the options of `cls`.

    Columns: name, type, default (in -bP form), description.  With
    `private_only`, options declared in a generic class (those every driver
    of a kind shares) are left out.  A class with nothing to list says so
    instead of printing an empty table.
    """
    lines = [f"{heading} {title}", ""]
    if intro:
        lines += [intro, ""]
    rows = [row for row in sorted(option_specs(cls), key=lambda r: r[0]) if not (private_only and is_generic(row[3]))]
    if not rows:
        lines += ["No options of its own." if private_only else "No options.", ""]
        return "\n".join(lines)
    lines += ["| option | type | default | description |", "| --- | --- | --- | --- |"]
    for name, spec, default, _owner in rows:
        kind = spec.kind.value + (", expanded" if spec.expand else "")
        if spec.kind is Kind.BOOL and default is not None:
            shown = "true" if default else "false"
        elif spec.kind is Kind.BOOL:
            shown = "unset"  # decided at run time (the doc line says how)
        else:
            shown = format_value(spec, default)
            shown = f"`{shown}`" if shown else "unset"
        doc = spec.doc.replace("|", "\\|")
        if spec.choices:
            doc += " One of: " + ", ".join(f"`{c}`" for c in spec.choices) + "."
        lines.append(f"| `{name}` | {kind} | {shown.replace('|', chr(92) + '|')} | {doc} |")
    lines.append("")
    return "\n".join(lines)
