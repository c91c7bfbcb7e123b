"""Option tables: conversion of each value type, build_options, -bP formatting, the reference table.

A small options class declared here stands in for a driver's table, so the
tests do not depend on which drivers are registered.
"""

from __future__ import annotations

from typing import ClassVar

import pytest

from mta.config.main import MainOptions
from mta.config.options import (
    OptionSetting,
    build_options,
    convert_value,
    format_all,
    format_option,
    reference_markdown,
)
from mta.drivers import DriverOptions, Kind, OptionSpec, option, option_specs, options_table
from mta.errors import ConfigError


@options_table
class SampleOptions(DriverOptions):
    """A driver's private options, one of each kind."""

    _generic: ClassVar[bool] = False

    mode: int = option(0o600, Kind.OCTAL, "File mode.")
    quota: int = option(0, Kind.SIZE, "Quota.")
    timeout: int = option(300, Kind.TIME, "Timeout.", minimum=1, maximum=3600)
    tries: int = option(3, Kind.INT, "Tries.")
    flag: bool = option(False, Kind.BOOL, "A flag.")
    file: str | None = option(None, Kind.STRING, "A file | with a bar.", expand=True)
    protocol: str = option("smtp", Kind.STRING, "Protocol.", choices=("smtp", "lmtp"))
    hosts: str = option("", Kind.LIST, "Hosts.")


def setting(name: str, value: str | None, line: int = 1, hidden: bool = False) -> OptionSetting:
    return OptionSetting(name, value, "test.conf", line, hidden)


CONVERSIONS = [
    (Kind.BOOL, "true", True),
    (Kind.BOOL, "YES", True),
    (Kind.BOOL, " no ", False),
    (Kind.BOOL, "false", False),
    (Kind.TIME, "30s", 30),
    (Kind.TIME, "15m", 900),
    (Kind.TIME, "2h", 7200),
    (Kind.TIME, "4d", 345600),
    (Kind.TIME, "1w", 604800),
    (Kind.TIME, "1h30m", 5400),
    (Kind.TIME, "1w2d3h4m5s", 604800 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5),
    (Kind.TIME, "120", 120),
    (Kind.SIZE, "50M", 50 * 1024 * 1024),
    (Kind.SIZE, "1K", 1024),
    (Kind.SIZE, "1k", 1024),
    (Kind.SIZE, "2G", 2 * 1024**3),
    (Kind.SIZE, "999", 999),
    (Kind.OCTAL, "0600", 0o600),
    (Kind.OCTAL, "755", 0o755),
    (Kind.OCTAL, "0", 0),
    (Kind.INT, "42", 42),
    (Kind.INT, "-1", -1),
    (Kind.INT, "0x10", 16),
    (Kind.STRING, "a b  c", "a b  c"),
    (Kind.LIST, "a : b", "a : b"),
]


@pytest.mark.parametrize(("kind", "text", "want"), CONVERSIONS, ids=[f"{c[0].name}-{c[1]}" for c in CONVERSIONS])
def test_convert_value(kind: Kind, text: str, want: object) -> None:
    got = convert_value("x", OptionSpec(kind), text)
    assert got == want, f"got {got!r} want {want!r}"


BAD_VALUES = [
    (Kind.BOOL, "maybe", '"maybe" is not a boolean (use true, false, yes or no)'),
    (Kind.BOOL, "1", '"1" is not a boolean (use true, false, yes or no)'),
    (Kind.TIME, "3x", '"3x" is not a time (examples: 30s, 15m, 2h, 4d, 1w, 1h30m)'),
    (Kind.TIME, "1h 30m", '"1h 30m" is not a time (examples: 30s, 15m, 2h, 4d, 1w, 1h30m)'),
    (Kind.TIME, "", "empty time value"),
    (Kind.SIZE, "10Q", '"10Q" is not a size (examples: 1024, 64K, 50M, 1G)'),
    (Kind.SIZE, "-1", '"-1" is not a size (examples: 1024, 64K, 50M, 1G)'),
    (Kind.OCTAL, "0800", '"0800" is not an octal number (example: 0600)'),
    (Kind.INT, "4.5", '"4.5" is not an integer'),
]


@pytest.mark.parametrize(("kind", "text", "message"), BAD_VALUES, ids=[f"{b[0].name}-{b[1]}" for b in BAD_VALUES])
def test_convert_value_refuses(kind: Kind, text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        convert_value("x", OptionSpec(kind), text)
    assert str(info.value) == message


def test_bounds_and_choices() -> None:
    specs = {name: spec for name, spec, _d, _o in option_specs(SampleOptions)}
    assert convert_value("timeout", specs["timeout"], "1h") == 3600
    with pytest.raises(ValueError, match=r"^0s is too small \(the minimum is 1s\)$"):
        convert_value("timeout", specs["timeout"], "0s")
    with pytest.raises(ValueError, match=r"^2h is too large \(the maximum is 1h\)$"):
        convert_value("timeout", specs["timeout"], "2h")
    assert convert_value("protocol", specs["protocol"], "lmtp") == "lmtp"
    with pytest.raises(ValueError, match=r'^"bsmtp" is not one of: smtp, lmtp$'):
        convert_value("protocol", specs["protocol"], "bsmtp")


def test_build_options_defaults_values_and_hidden() -> None:
    built, hidden = build_options(
        SampleOptions,
        [
            setting("driver", "sample"),
            setting("mode", "0640"),
            setting("flag", None),
            setting("quota", "10M", hidden=True),
            setting("hosts", "a : b"),
        ],
        'transport "t"',
    )
    assert built == SampleOptions(driver="sample", mode=0o640, flag=True, quota=10 * 1024 * 1024, hosts="a : b")
    assert hidden == {"quota"}
    assert built.timeout == 300 and built.file is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ([setting("nosuch", "1", 3)], 'test.conf:3: unknown option "nosuch" for transport "t"'),
        ([setting("no_tries", None, 2)], 'test.conf:2: unknown option "no_tries" for transport "t"'),
        (
            [setting("flag", None, 1), setting("no_flag", None, 5)],
            'test.conf:5: "flag" is set twice for transport "t" (first at test.conf:1)',
        ),
        ([setting("not_flag", "yes", 4)], 'test.conf:4: "not_flag" takes no value'),
        ([setting("tries", None, 6)], 'test.conf:6: "tries" needs a value ("tries = ...")'),
        ([setting("mode", "rw", 7)], 'test.conf:7: mode: "rw" is not an octal number (example: 0600)'),
    ],
    ids=["unknown", "no_ on non-boolean", "twice", "no_ with value", "missing value", "bad octal"],
)
def test_build_options_errors(settings: list[OptionSetting], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_options(SampleOptions, settings, 'transport "t"')
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("name", "value", "want"),
    [
        ("flag", True, "flag"),
        ("flag", False, "no_flag"),
        ("quota", 10 * 1024 * 1024, "quota = 10M"),
        ("quota", 1536, "quota = 1536"),
        ("timeout", 5400, "timeout = 1h30m"),
        ("timeout", 0, "timeout = 0s"),
        ("mode", 0o640, "mode = 0640"),
        ("file", None, "file = "),
        ("hosts", "a : b", "hosts = a : b"),
    ],
)
def test_format_option(name: str, value: object, want: str) -> None:
    specs = {n: s for n, s, _d, _o in option_specs(SampleOptions)}
    assert format_option(name, specs[name], value) == want


def test_format_option_hides_and_drops_names() -> None:
    specs = {n: s for n, s, _d, _o in option_specs(SampleOptions)}
    assert format_option("file", specs["file"], "/secret", hide_value=True) == "file = <value not displayable>"
    assert format_option("file", specs["file"], "/x", with_name=False) == "/x"
    # A boolean has nothing to hide: Exim prints it as it is.
    assert format_option("flag", specs["flag"], True, hide_value=True) == "flag"


def test_format_all_generic_first_then_private() -> None:
    built, hidden = build_options(SampleOptions, [setting("driver", "sample"), setting("file", "/f", hidden=True)], "t")
    assert format_all(built, hidden, show_hidden=True) == [
        "debug_print = ",
        "driver = sample",
        "file = /f",
        "no_flag",
        "hosts = ",
        "mode = 0600",
        "protocol = smtp",
        "quota = 0",
        "timeout = 5m",
        "tries = 3",
    ]
    assert "file = <value not displayable>" in format_all(built, hidden, show_hidden=False)


def test_reference_markdown_table() -> None:
    text = reference_markdown("sample", SampleOptions, intro="Private options.", private_only=True)
    lines = text.splitlines()
    assert lines[:5] == [
        "### sample",
        "",
        "Private options.",
        "",
        "| option | type | default | description |",
    ]
    assert "| `file` | string, expanded | unset | A file \\| with a bar. |" in lines
    assert "| `mode` | octal integer | `0600` | File mode. |" in lines
    assert "| `flag` | boolean | false | A flag. |" in lines
    assert "| `protocol` | string | `smtp` | Protocol. One of: `smtp`, `lmtp`. |" in lines
    assert not any(line.startswith("| `driver`") for line in lines), "generic options left out with private_only"


def test_every_main_option_is_documented_and_formats() -> None:
    """Each main option has a doc line and its default prints in -bP form (no repr leaks)."""
    defaults = MainOptions()
    for name, spec, _default, _owner in option_specs(MainOptions):
        assert spec.doc.strip(), f"{name} has no doc"
        line = format_option(name, spec, getattr(defaults, name))
        assert line.startswith((name, "no_" + name)), line
        assert "None" not in line and "True" not in line, line
