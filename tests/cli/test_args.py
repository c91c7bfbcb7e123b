"""Unit tests of the sendmail/Exim command-line parser (mta/cli_args.py)."""

from __future__ import annotations

from typing import Any

import pytest

from mta import record
from mta.cli_args import Invocation, UsageError, parse_command_line

# (id, argv, the Invocation fields expected; fields not named keep their defaults)
CASES: list[tuple[str, list[str], dict[str, Any]]] = [
    ("recipients only: -bm", ["a@x", "b@y"], {"mode": "bm", "args": ["a@x", "b@y"]}),
    ("explicit -bm", ["-bm", "a@x"], {"mode": "bm", "args": ["a@x"]}),
    ("-- ends options", ["--", "-notanoption@x"], {"args": ["-notanoption@x"]}),
    ("- as an argument", ["-", "a@x"], {"args": ["-", "a@x"]}),
    # -f / -r / -F joined and separate
    ("-f separate", ["-f", "s@x", "a@x"], {"sender": "s@x", "args": ["a@x"]}),
    ("-f joined", ["-fs@x", "a@x"], {"sender": "s@x", "args": ["a@x"]}),
    ("-f empty", ["-f", "", "a@x"], {"sender": "", "args": ["a@x"]}),
    ("-f <>", ["-f<>", "a@x"], {"sender": "<>", "args": ["a@x"]}),
    ("-r", ["-r", "s@x"], {"sender": "s@x"}),
    ("-F separate", ["-F", "Joe Bloggs"], {"sender_name": "Joe Bloggs"}),
    ("-F joined", ["-FJoe"], {"sender_name": "Joe"}),
    # -i / -oi / -t / -ti
    ("-i", ["-i"], {"dot_ends": False}),
    ("-oi", ["-oi"], {"dot_ends": False}),
    ("-oitrue", ["-oitrue"], {"dot_ends": False}),
    ("-t", ["-t"], {"mode": "t", "extract_recipients": True, "dot_ends": True}),
    ("-ti", ["-ti"], {"mode": "t", "extract_recipients": True, "dot_ends": False}),
    ("-it", ["-it"], {"mode": "t", "extract_recipients": True, "dot_ends": False}),
    ("-t with addresses", ["-t", "x@y"], {"mode": "t", "extract_recipients": True, "args": ["x@y"]}),
    ("-bm -t", ["-bm", "-t"], {"mode": "t", "extract_recipients": True}),
    # delivery modes
    ("-odq", ["-odq"], {"delivery_mode": "q"}),
    ("-odqs", ["-odqs"], {"delivery_mode": "qs"}),
    ("-odi", ["-odi"], {"delivery_mode": "i"}),
    ("-odf is -odi", ["-odf"], {"delivery_mode": "i"}),
    ("-odb", ["-odb"], {"delivery_mode": "b"}),
    # error modes
    ("-oem", ["-oem"], {"error_mode": "m"}),
    ("-oee", ["-oee"], {"error_mode": "e"}),
    ("-oep", ["-oep"], {"error_mode": "p"}),
    ("-oeq", ["-oeq"], {"error_mode": "q"}),
    ("-oew", ["-oew"], {"error_mode": "w"}),
    ("-ep", ["-ep"], {"error_mode": "p"}),
    # -bp family
    ("-bp", ["-bp"], {"mode": "bp", "mode_flags": ""}),
    ("-bpc", ["-bpc"], {"mode": "bp", "mode_flags": "c"}),
    ("-bpr", ["-bpr"], {"mode": "bp", "mode_flags": "r"}),
    ("-bpu", ["-bpu"], {"mode": "bp", "mode_flags": "u"}),
    ("-bpi", ["-bpi"], {"mode": "bp", "mode_flags": "i"}),
    ("-bpa", ["-bpa"], {"mode": "bp", "mode_flags": "a"}),
    ("-bpru", ["-bpru"], {"mode": "bp", "mode_flags": "ru"}),
    ("-bpra", ["-bpra"], {"mode": "bp", "mode_flags": "ra"}),
    ("-bpri", ["-bpri"], {"mode": "bp", "mode_flags": "ri"}),
    ("-bp with ids", ["-bp", "1xVZrv-000000004NL-0xbr"], {"mode": "bp", "args": ["1xVZrv-000000004NL-0xbr"]}),
    # other modes
    ("-bV", ["-bV"], {"mode": "bV"}),
    ("--version", ["--version"], {"mode": "bV"}),
    ("--help", ["--help"], {"mode": "help"}),
    ("-bP names", ["-bP", "queue_only", "+local_domains"], {"mode": "bP", "args": ["queue_only", "+local_domains"]}),
    ("-be strings", ["-be", "$primary_hostname", "x"], {"mode": "be", "args": ["$primary_hostname", "x"]}),
    (
        "-bem file",
        ["-bem", "/tmp/msg", "$h_subject:"],
        {"mode": "be", "expansion_file": "/tmp/msg", "args": ["$h_subject:"]},
    ),
    ("-bt", ["-bt", "a@x"], {"mode": "bt", "args": ["a@x"]}),
    ("-bdf", ["-bdf"], {"mode": "bd", "foreground": True}),
    ("-q", ["-q"], {"mode": "q", "queue_interval": None}),
    ("-q30m", ["-q30m"], {"mode": "q", "queue_interval": 1800}),
    ("-qff1h", ["-qff1h"], {"mode": "q", "mode_flags": "ff", "queue_flags": "ff", "queue_interval": 3600}),
    ("-M ids", ["-M", "id1", "id2"], {"mode": "M", "mode_flags": "", "args": ["id1", "id2"]}),
    ("-Mrm", ["-Mrm", "id1"], {"mode": "M", "mode_flags": "rm", "args": ["id1"]}),
    ("-R", ["-Rf", "example.org"], {"mode": "R", "mode_flags": "f", "args": ["example.org"]}),
    # configuration
    ("-C separate", ["-C", "/etc/x.conf", "-bV"], {"config_file": "/etc/x.conf", "mode": "bV"}),
    ("-C joined", ["-C/etc/x.conf"], {"config_file": "/etc/x.conf"}),
    ("-D joined", ["-DSPOOL=/var/spool/x", "-DFLAG"], {"macros": {"SPOOL": "/var/spool/x", "FLAG": ""}}),
    ("-D separate", ["-D", "PORT=2525"], {"macros": {"PORT": "2525"}}),
    ("-D value with =", ["-DX=a=b"], {"macros": {"X": "a=b"}}),
    # host and protocol faking
    ("-oMa", ["-oMa", "192.0.2.1"], {"host_address": "192.0.2.1"}),
    ("-oMr", ["-oMr", "esmtp"], {"receive_protocol": "esmtp"}),
    ("-p", ["-pesmtp:host.example"], {"receive_protocol": "esmtp", "host_name": "host.example"}),
    ("-or", ["-or", "5m"], {"receive_timeout": "5m"}),
    ("-v", ["-v"], {"verbose": True}),
    ("-N", ["-N"], {"dont_deliver": True}),
    # accepted and ignored for compatibility
    (
        "ignored flags",
        ["-m", "-om", "-n", "-U", "-x", "-Ac", "-Am", "-oo", "-G", "a@x"],
        # -n is sendmail's "no aliasing": ignored for a submission; it makes -bP terse (Exim).
        {"mode": "bm", "args": ["a@x"], "terse": True},
    ),
    ("ignored with argument", ["-B", "8BITMIME", "-h", "20", "-O", "x=y", "-X", "/tmp/l", "a@x"], {"args": ["a@x"]}),
    ("ignored joined", ["-B8BITMIME", "-h20", "-Ltag", "a@x"], {"args": ["a@x"]}),
    ("-oB", ["-oB", "5", "a@x"], {"args": ["a@x"]}),
]


@pytest.mark.parametrize(("argv", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_parse(argv: list[str], want: dict[str, Any]) -> None:
    got = parse_command_line(argv)
    default = Invocation()
    assert got.argv == argv
    for field in (f.name for f in record.fields(Invocation) if f.name != "argv"):
        expected = want.get(field, getattr(default, field))
        assert getattr(got, field) == expected, f"{field}: got {getattr(got, field)!r} want {expected!r}"


ERRORS = [
    ("unknown short", ["-Q"], "unknown option -Q (see man page; mta --help lists the common ones)"),
    ("unknown long", ["--frob"], "unknown option --frob"),
    ("unknown -b", ["-bZ"], "unknown option -bZ"),
    *((f"-bp{flags} is not Exim's", [f"-bp{flags}"], f"unknown option -bp{flags} (the listings are -bp, -bpa, -bpc, "
       "-bpi, -bpu, and -bpr, -bpra, -bpri, -bpru unsorted)") for flags in ("z", "cu", "ur", "ua", "rc", "rr")),
    ("unknown -M", ["-Mxyz"], "unknown option -Mxyz"),
    ("unknown -oM", ["-oMz", "x"], "unknown option -oMz"),
    ("bad -od", ["-odz"], "unknown delivery mode -odz (use -odb, -odf, -odi, -odq or -odqs)"),
    ("bad -oe", ["-oez"], "unknown error mode -oez (use -oem, -oee, -oep, -oeq or -oew)"),
    ("-f without argument", ["-f"], "option -f needs an argument"),
    ("-C without argument", ["-C"], "option -C needs an argument"),
    ("bad -q time", ["-q3x"], '-q3x: "3x" is not a time (examples: 30s, 15m, 2h, 4d, 1w, 1h30m)'),
    ("two modes", ["-bV", "-bp"], "conflicting options: -bV -bp"),
    ("-qR", ["-qR", "x"], "-qR: use -R or -S for selective queue runs"),
]


@pytest.mark.parametrize(("argv", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_command_line(argv)
    assert info.value.message == message


def test_bad_macro_name_is_a_config_error() -> None:
    from mta.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_command_line(["-Dlower=x"])
    assert "macro names start with a capital letter" in str(info.value)
