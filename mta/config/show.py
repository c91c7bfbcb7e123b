"""`mta -bP`: print configuration options the way Exim does.

``-bP`` alone prints every main option; ``-bP name ...`` the named ones;
``-bP router NAME`` (or director, transport, authenticator) one driver's
options; ``-bP routers`` (etc.) every driver of that kind; ``-bP +name`` a
named list; ``-bP config_file`` the file in use; ``-bP config`` the whole
file without comments.  Options marked ``hide`` show as
``<value not displayable>`` to callers who are not administrators.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from mta.config.loader import DRIVER_SECTIONS, Config, DriverSpec
from mta.config.main import MainOptions
from mta.config.options import format_option
from mta.drivers import option_specs
from mta.errors import ConfigError

# Singular keyword -> section, for "-bP router smarthost".
_KINDS = {s[:-1]: s for s in DRIVER_SECTIONS}

DriverFormatter = Callable[[DriverSpec], list[str]]


class ShowError(str):
    """A line of -bP output that is an error message (printed on stderr)."""

    __slots__ = ()


def _main_value(config: Config, name: str) -> object:
    resolved = {
        "primary_hostname": config.primary_hostname,
        "qualify_domain": config.qualify_domain,
        "qualify_recipient": config.qualify_recipient,
        "local_domains": config.local_domains,
    }
    return resolved.get(name, getattr(config.main, name))


def show_options(
    config: Config,
    words: list[str],
    format_driver: DriverFormatter,
    admin: bool = True,
    with_names: bool = True,
) -> tuple[list[str], int]:
    """Lines to print for ``-bP words`` and the exit status (1 if anything was unknown)."""
    specs = {name: spec for name, spec, _d, _o in option_specs(MainOptions)}
    out: list[str] = []
    status = 0
    if not words:
        return _all_main(config, specs, admin), 0
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word in _KINDS:
            if i >= len(words):
                out.append(ShowError(f"mta: -bP {word} needs the name of a {word}"))
                status = 1
                continue
            name = words[i]
            i += 1
            spec = next((d for d in config.drivers[_KINDS[word]] if d.name == name), None)
            if spec is None:
                out.append(ShowError(f"mta: {word} {name} not found"))
                status = 1
                continue
            out.extend(format_driver(spec))
        elif word in DRIVER_SECTIONS:
            for spec in config.drivers[word]:
                out.append(f"{spec.name}:")
                out.extend("  " + line for line in format_driver(spec))
                out.append("")
        elif word.startswith("+"):
            entry = config.named_lists.get(word[1:])
            if entry is None:
                out.append(ShowError(f"mta: no named list called {word[1:]}"))
                status = 1
            else:
                out.append(f"{entry.list_type} {entry.name} = {entry.value}")
        elif word in ("config_file", "configure_file"):
            # The name as asked for (Exim knows both), and the absolute path: a relative
            # -C would tell nothing to someone reading the output elsewhere.
            path = os.path.abspath(config.path)
            out.append(path if not with_names else f"{word} = {path}")
        elif word == "config":
            out.extend(_config_text(config.path))
        elif word in specs:
            value = _main_value(config, word)
            masked = (word in config.main_hidden or specs[word].hidden) and not admin
            out.append(format_option(word, specs[word], value, masked, with_name=with_names))
        else:
            out.append(ShowError(f'mta: unknown option "{word}"'))
            status = 1
    return out, status


def _all_main(config: Config, specs: dict, admin: bool) -> list[str]:  # type: ignore[type-arg]
    lines = []
    for name in sorted(specs):
        masked = (name in config.main_hidden or specs[name].hidden) and not admin
        lines.append(format_option(name, specs[name], _main_value(config, name), masked))
    return lines


def _config_text(path: str) -> Iterable[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                stripped = line.rstrip("\n")
                if stripped.strip() and not stripped.lstrip().startswith("#"):
                    yield stripped
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file: {exc.strerror}", path) from None

