"""`mta -be`: every expansion item of issue 2, through the real CLI, one call per case.

The expander has its own unit tests (tests/expand, and the corpus checked
against Exim's own output); these check that the CLI mode wires the
configuration's variables, the lookups and the error reporting together:
as in Exim, a failure is ``Failed: ...`` on stdout and the exit status stays
0.  `{root}` in a case is the test's directory, where the lookup files are
made.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from mta.expand.lookups import build_lmdb_from_lsearch
from tests.support.mta import MtaEnv, unmeasured

LSEARCH = "alice: alice@x.example\nbob:   bob-data\n# comment\n"
WILDLSEARCH = "*.example.com: wild\n^re[0-9]+$: regex\n"


@pytest.fixture
def env(mta_env: MtaEnv) -> MtaEnv:
    unmeasured(mta_env)  # ~200 starts of mta; the expander is measured by tests/expand
    root = mta_env.root
    (root / "aliases").write_text(LSEARCH)
    (root / "wild").write_text(WILDLSEARCH)
    (root / "dir").mkdir()
    (root / "dir" / "entry1").write_text("")
    build_lmdb_from_lsearch(str(root / "aliases"), str(root / "aliases.lmdb"))
    (root / "text").write_text("line one\nline two\n")
    return mta_env


def expand(env: MtaEnv, text: str) -> tuple[int, str, str]:
    result = env.run("-be", text.replace("{root}", str(env.root)))
    return result.returncode, result.stdout, result.stderr


# (id, expression, expected output without the final newline)
CASES = [
    # variables
    ("primary_hostname", "$primary_hostname", "mail.example.com"),
    ("qualify_domain braces", "${qualify_domain}", "example.com"),
    ("qualify_recipient", "$qualify_recipient", "example.com"),
    ("spool_directory", "${if eq{$spool_directory}{{root}/spool}{ok}{bad}}", "ok"),
    *[
        (f"${name} known, empty here", f"[${name}]", "[]")
        for name in (
            "local_part",
            "domain",
            "local_part_prefix",
            "local_part_suffix",
            "home",
            "message_id",
            "received_protocol",
            "sender_host_address",
            "sender_host_name",
            "address_data",
            "value",
        )
    ],
    ("header h_", "[$h_subject:]", "[]"),
    ("header rh_", "[$rh_subject:]", "[]"),
    # lookups
    ("lsearch $value", "${lookup{alice}lsearch{{root}/aliases}{<$value>}{none}}", "<alice@x.example>"),
    ("lsearch no match", "${lookup{carol}lsearch{{root}/aliases}{<$value>}{none}}", "none"),
    ("lsearch bare", "${lookup{bob}lsearch{{root}/aliases}}", "bob-data"),
    ("wildlsearch star", "${lookup{host.example.com}wildlsearch{{root}/wild}}", "wild"),
    ("wildlsearch regex", "${lookup{re42}wildlsearch{{root}/wild}{$value}}", "regex"),
    ("wildlsearch no match", "${lookup{example.com}wildlsearch{{root}/wild}{$value}{no}}", "no"),
    ("dsearch", "${lookup{entry1}dsearch{{root}/dir}{found $value}{no}}", "found entry1"),
    ("dsearch no match", "${lookup{entry2}dsearch{{root}/dir}{found $value}{no}}", "no"),
    ("lmdb", "${lookup{alice}lmdb{{root}/aliases.lmdb}{<$value>}{none}}", "<alice@x.example>"),
    ("lmdb no match", "${lookup{carol}lmdb{{root}/aliases.lmdb}{<$value>}{none}}", "none"),
    # conditions
    ("def: true", "${if def:primary_hostname{y}{n}}", "y"),
    ("def: empty", "${if def:local_part{y}{n}}", "n"),
    ("eq", "${if eq{abc}{abc}{y}{n}}", "y"),
    ("eq differs", "${if eq{abc}{ABC}{y}{n}}", "n"),
    ("eqi", "${if eqi{abc}{ABC}{y}{n}}", "y"),
    ("match captures", "${if match{abc123}{\\N^([a-z]+)(\\d+)$\\N}{$2-$1}{no}}", "123-abc"),
    ("match fails", "${if match{abc}{^\\d}{y}{n}}", "n"),
    ("exists", "${if exists{{root}/aliases}{y}{n}}", "y"),
    ("exists not", "${if exists{{root}/nothere}{y}{n}}", "n"),
    ("isip v4", "${if isip{192.0.2.1}{y}{n}}", "y"),
    ("isip v6", "${if isip{2001:db8::1}{y}{n}}", "y"),
    ("isip not", "${if isip{mail.example.com}{y}{n}}", "n"),
    ("and", "${if and{{eq{a}{a}}{eq{b}{b}}}{y}{n}}", "y"),
    ("and false", "${if and{{eq{a}{a}}{eq{b}{c}}}{y}{n}}", "n"),
    ("or", "${if or{{eq{a}{b}}{eq{a}{a}}}{y}{n}}", "y"),
    ("or false", "${if or{{eq{a}{b}}{eq{a}{c}}}{y}{n}}", "n"),
    ("not", "${if !eq{a}{b}{y}{n}}", "y"),
    ("==", "${if =={10}{10}{y}{n}}", "y"),
    ("<", "${if <{9}{10}{y}{n}}", "y"),
    (">", "${if >{9}{10}{y}{n}}", "n"),
    ("<=", "${if <={10}{10}{y}{n}}", "y"),
    (">=", "${if >={2K}{2048}{y}{n}}", "y"),
    ("if without no", "[${if eq{a}{b}{y}}]", "[]"),
    # operators
    ("lc", "${lc:MiXeD}", "mixed"),
    ("uc", "${uc:MiXeD}", "MIXED"),
    ("domain", "${domain:Joe <joe@Example.COM>}", "Example.COM"),
    ("local_part", "${local_part:joe@example.com}", "joe"),
    ("length_N", "${length_3:abcdef}", "abc"),
    ("substr_M_N", "${substr_1_3:abcdef}", "bcd"),
    ("substr_M", "${substr_2:abcdef}", "cdef"),
    ("md5", "${md5:abc}", "900150983cd24fb0d6963f7d28e17f72"),
    ("sha256", "${sha256:abc}", "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"),
    ("base64", "${base64:hello world}", "aGVsbG8gd29ybGQ="),
    ("base64d", "${base64d:aGVsbG8gd29ybGQ=}", "hello world"),
    ("quote plain", "${quote:abc}", "abc"),
    ("quote", '${quote:a "b" c}', '"a \\"b\\" c"'),
    ("escape", "${escape:a\x01b\tc}", "a\\001b\tc"),
    ("address", "${address:Joe Bloggs <joe@example.com>}", "joe@example.com"),
    # items
    ("sg", "${sg{a.b.c}{\\N\\.\\N}{-}}", "a-b-c"),
    # The replacement is expanded first, so captures are written \$1 (Exim's own example).
    ("sg captures", "${sg{2024-06-01}{\\N(\\d+)-(\\d+)-(\\d+)\\N}{\\$3/\\$2/\\$1}}", "01/06/2024"),
    ("tr", "${tr{abcabc}{ab}{xy}}", "xycxyc"),
    ("extract keyed", "${extract{b}{a=1 b=2 c=3}}", "2"),
    ("extract keyed yes/no", "${extract{z}{a=1 b=2}{has $value}{none}}", "none"),
    ("extract keyed $value", "${extract{a}{a=1 b=2}{has $value}{none}}", "has 1"),
    ("extract numeric", "${extract{2}{:}{x:y:z}}", "y"),
    ("extract numeric $value", "${extract{3}{,}{p,q,r}{<$value>}}", "<r>"),
    ("readfile", "${readfile{{root}/text}}", "line one\nline two\n"),
    ("readfile eol", "${readfile{{root}/text}{, }}", "line one, line two, "),
    ("length item", "${length{2}{abcd}}", "ab"),
    ("length operator", "${length_2:abcd}", "ab"),
    ("substr item", "${substr{1}{2}{abcd}}", "bc"),
    # escapes
    ("backslash escapes", "a\\tb\\x41\\101\\$x\\\\", "a\tbAA$x\\"),
    ("\\N protects", "\\N${not expanded}$x\\N", "${not expanded}$x"),
    ("newline escape", "one\\ntwo", "one\ntwo"),
]


@pytest.mark.parametrize(("text", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_expansion(env: MtaEnv, text: str, want: str) -> None:
    assert expand(env, text) == (0, want + "\n", "")


def test_time_of_day_shapes(env: MtaEnv) -> None:
    result = env.run("-be", "$tod_log", "$tod_full")
    assert result.returncode == 0, result.stderr
    tod_log, tod_full = result.stdout.splitlines()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", tod_log), tod_log
    assert re.fullmatch(
        r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [ \d]?\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
        r"\d{4} \d\d:\d\d:\d\d [+-]\d{4}",
        tod_full,
    ), tod_full
    assert tod_log[:4] == time.strftime("%Y")


def test_several_arguments_one_line_each(env: MtaEnv) -> None:
    result = env.run("-be", "$primary_hostname", "${uc:x}", "plain")
    assert (result.returncode, result.stdout) == (0, "mail.example.com\nX\nplain\n")


def test_strings_from_stdin(env: MtaEnv) -> None:
    # Exim's prompt before each line, a backslash continues a line, a newline at the end.
    result = env.run("-be", input="${lc:ABC}\n$qualify_domain\n${uc:a\\\n   b}\n")
    assert (result.returncode, result.stdout) == (0, "> abc\n> example.com\n> AB\n> \n")


def test_caller_variables_are_those_of_the_person_running_it(env: MtaEnv) -> None:
    import os
    import pwd

    login = pwd.getpwuid(os.getuid()).pw_name
    result = env.run("-be", "$sender_address|$authenticated_id|$sender_ident|$message_size")
    assert result.stdout == f"{login}@example.com|{login}|{login}|0\n"
    assert env.run("-f", "x@y.example", "-be", "$sender_address").stdout == "x@y.example\n"


def test_macros_are_defined_and_used(env: MtaEnv) -> None:
    result = env.run("-be", "GREETING = hello", "GREETING ${uc:GREETING}", "GREETING == bye", "GREETING")
    want = "Defined macro 'GREETING'\nhello HELLO\nDefined macro 'GREETING'\nbye\n"
    assert (result.returncode, result.stdout) == (0, want)
    redefined = env.run("-be", "X1 = a", "X1 = b")
    assert redefined.returncode == 1
    assert redefined.stderr == 'mta: macro "X1" is already defined (use "==" if you want to redefine it)\n'


ERRORS = [
    ("unknown variable", "$no_such_variable", 'Failed: unknown variable name "no_such_variable"'),
    (
        "unknown item",
        "${no_such_item{x}}",
        'Failed: "${no_such_item" is not a known operator (or a } is missing in a variable reference)',
    ),
    ("unknown operator", "${no_such_op:x}", 'Failed: unknown expansion operator "no_such_op"'),
    ("unknown condition", "${if no_such_cond{a}{b}}", 'Failed: unknown condition "no_such_cond"'),
    ("unknown lookup type", "${lookup{k}nosuch{/etc/passwd}}", 'Failed: unknown lookup type "nosuch"'),
    ("forced fail in if", "${if eq{a}{b}{y}fail}", 'Failed: "if" failed and "fail" requested'),
    (
        "forced fail in lookup",
        "${lookup{carol}lsearch{{root}/aliases}{$value}fail}",
        'Failed: "lookup" failed and "fail" requested',
    ),
    ("unterminated", "${lc:abc", "Failed: missing } at end of string"),
]


@pytest.mark.parametrize(("text", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_expansion_errors(env: MtaEnv, text: str, message: str) -> None:
    assert expand(env, text) == (0, message + "\n", "")


def test_error_in_one_argument_does_not_stop_the_others(env: MtaEnv) -> None:
    result = env.run("-be", "ok1", "$nosuch", "ok2")
    assert result.returncode == 0
    assert result.stdout == 'ok1\nFailed: unknown variable name "nosuch"\nok2\n'
    assert result.stderr == ""


def test_lookup_file_missing(env: MtaEnv, tmp_path: Path) -> None:
    code, out, err = expand(env, "${lookup{a}lsearch{{root}/missing}}")
    assert (code, err) == (0, "")
    assert out == f"Failed: failed to open {env.root}/missing for linear search: No such file or directory\n"
