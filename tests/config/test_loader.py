"""The configuration loader, seen through the real CLI (`mta -bP`, `mta -bV`, `mta -be`).

Values go in through a config file and come back out through `-bP`, so each
case checks the parser and the table-driven formatter together.  Driver
instances are checked with `load_config` itself: which drivers exist is up to
the registries, the loader only has to keep each instance's name, place and
option lines.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mta.config.loader import load_config
from mta.errors import ConfigError
from tests.support.mta import BASE_CONFIG, MtaEnv, unmeasured

# Lines of the base config that MtaEnv writes before `extra`.
BASE_LINES = len(BASE_CONFIG.splitlines())


@pytest.fixture(autouse=True)
def _unmeasured(mta_env: MtaEnv) -> None:
    unmeasured(mta_env)  # ~200 starts of mta; the loader is measured in-process (tests/config)


def bp(env: MtaEnv, *names: str, args: tuple[str, ...] = ()) -> list[str]:
    result = env.run(*args, "-bP", *names)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


# -- values of each type ------------------------------------------------------

VALUES = [
    # booleans: bare name, no_ prefix, and the four words
    ("queue_only", "queue_only", "queue_only"),
    ("no_message_logs", "message_logs", "no_message_logs"),
    ("queue_only = true", "queue_only", "queue_only"),
    ("queue_only = yes", "queue_only", "queue_only"),
    ("message_logs = false", "message_logs", "no_message_logs"),
    ("message_logs = no", "message_logs", "no_message_logs"),
    ("queue_only = True", "queue_only", "queue_only"),
    # times
    ("receive_timeout = 30s", "receive_timeout", "receive_timeout = 30s"),
    ("receive_timeout = 15m", "receive_timeout", "receive_timeout = 15m"),
    ("receive_timeout = 2h", "receive_timeout", "receive_timeout = 2h"),
    ("receive_timeout = 4d", "receive_timeout", "receive_timeout = 4d"),
    ("receive_timeout = 1w", "receive_timeout", "receive_timeout = 1w"),
    ("receive_timeout = 1h30m", "receive_timeout", "receive_timeout = 1h30m"),
    ("receive_timeout = 90m", "receive_timeout", "receive_timeout = 1h30m"),
    ("receive_timeout = 45", "receive_timeout", "receive_timeout = 45s"),
    # sizes
    ("message_size_limit = 50M", "message_size_limit", "message_size_limit = 50M"),
    ("message_size_limit = 1K", "message_size_limit", "message_size_limit = 1K"),
    ("message_size_limit = 2048", "message_size_limit", "message_size_limit = 2K"),
    ("message_size_limit = 1000", "message_size_limit", "message_size_limit = 1000"),
    ("message_size_limit = 1G", "message_size_limit", "message_size_limit = 1G"),
    # integers and strings
    ("recipients_max = 12", "recipients_max", "recipients_max = 12"),
    ("bi_command = /usr/bin/true", "bi_command", "bi_command = /usr/bin/true"),
    ('bi_command = "/bin/echo a\\tb"', "bi_command", "bi_command = /bin/echo a\tb"),
    # '#' after a value is part of the value, as in Exim: only whole lines are comments
    ("bi_command = x # y", "bi_command", "bi_command = x # y"),
    # lists are kept as written
    ("trusted_users = a : b", "trusted_users", "trusted_users = a : b"),
    ("trusted_users = <; a ; b", "trusted_users", "trusted_users = <; a ; b"),
]


@pytest.mark.parametrize(("extra", "name", "want"), VALUES, ids=[v[0] for v in VALUES])
def test_option_value_round_trip(mta_env: MtaEnv, extra: str, name: str, want: str) -> None:
    mta_env.write_config(extra + "\n")
    assert bp(mta_env, name) == [want]


# -- lists: doubled separators and <; through the list matcher ----------------

LISTS = [
    ("domainlist d = a::b.example : c.example", "${if match_domain{a:b.example}{+d}{y}{n}}", "y"),
    ("domainlist d = a::b.example : c.example", "${if match_domain{b.example}{+d}{y}{n}}", "n"),
    ("domainlist d = a::b.example : c.example", "${if match_domain{c.example}{+d}{y}{n}}", "y"),
    ("hostlist h = <; ::1 ; 127.0.0.1", "${if match_ip{::1}{+h}{y}{n}}", "y"),
    ("hostlist h = <; ::1 ; 127.0.0.1", "${if match_ip{127.0.0.1}{+h}{y}{n}}", "y"),
    ("hostlist h = <; ::1 ; 127.0.0.1", "${if match_ip{127.0.0.2}{+h}{y}{n}}", "n"),
    ("addresslist a = <, x@a.example, *@b.example", "${if match_address{q@b.example}{+a}{y}{n}}", "y"),
]


@pytest.mark.parametrize(("extra", "expr", "want"), LISTS, ids=[f"{e[0]}|{e[1]}" for e in LISTS])
def test_named_lists_and_separators(mta_env: MtaEnv, extra: str, expr: str, want: str) -> None:
    mta_env.write_config(extra + "\n")
    result = mta_env.run("-be", expr)
    assert (result.returncode, result.stdout, result.stderr) == (0, want + "\n", "")


def test_named_list_shown_by_bP_plus(mta_env: MtaEnv) -> None:
    mta_env.write_config("hostlist relay_hosts = <; ::1 ; 127.0.0.1\n")
    assert bp(mta_env, "+relay_hosts") == ["hostlist relay_hosts = <; ::1 ; 127.0.0.1"]
    assert bp(mta_env, "+local_domains") == ["domainlist local_domains = example.com"]


# -- macros -------------------------------------------------------------------

MACROS = [
    ("definition and use", "MYDOM = one.example\nqualify_recipient = MYDOM\n", (), "qualify_recipient = one.example"),
    (
        "-D overrides the file",
        "MYDOM = one.example\nqualify_recipient = MYDOM\n",
        ("-DMYDOM=two.example",),
        "qualify_recipient = two.example",
    ),
    (
        "-D with a separate argument",
        "MYDOM = one.example\nqualify_recipient = MYDOM\n",
        ("-D", "MYDOM=three.example"),
        "qualify_recipient = three.example",
    ),
    (
        "-D without a file definition",
        "qualify_recipient = MYDOM\n",
        ("-DMYDOM=d.example",),
        "qualify_recipient = d.example",
    ),
    (
        "== redefines",
        "MYDOM = one.example\nMYDOM == two.example\nqualify_recipient = MYDOM\n",
        (),
        "qualify_recipient = two.example",
    ),
    (
        "== after a use leaves the earlier use alone",
        "MYDOM = one.example\nqualify_recipient = MYDOM\nMYDOM == two.example\nbi_command = MYDOM\n",
        (),
        "qualify_recipient = one.example",
    ),
    ("a macro using a macro", "A1 = x\nA2 = A1.example\nqualify_recipient = A2\n", (), "qualify_recipient = x.example"),
    ("whole words only", "DOM = bad\nqualify_recipient = DOMAIN.example\n", (), "qualify_recipient = DOMAIN.example"),
]


@pytest.mark.parametrize(("extra", "args", "want"), [m[1:] for m in MACROS], ids=[m[0] for m in MACROS])
def test_macros(mta_env: MtaEnv, extra: str, args: tuple[str, ...], want: str) -> None:
    mta_env.write_config(extra)
    assert bp(mta_env, "qualify_recipient", args=args) == [want]


def test_macro_redefined_with_equals_is_an_error(mta_env: MtaEnv) -> None:
    mta_env.write_config("MYDOM = one.example\nMYDOM = two.example\n")
    result = mta_env.run("-bV")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"mta: configuration error: {mta_env.config}:{BASE_LINES + 2}: "
        'macro "MYDOM" is already defined (use == to redefine)'
    )


def test_bad_macro_name_on_command_line(mta_env: MtaEnv) -> None:
    result = mta_env.run("-Dlower=x", "-bV")
    assert result.returncode == 1
    assert result.stderr == (
        "mta: -Dlower=x: macro names start with a capital letter and contain only letters, digits and _\n"
    )


# -- .include -----------------------------------------------------------------


def test_include_relative_and_absolute(mta_env: MtaEnv, tmp_path: Path) -> None:
    (tmp_path / "rel.conf").write_text("qualify_recipient = rel.example\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "abs.conf").write_text("bi_command = from-abs\n.include ../rel2.conf\n")
    (tmp_path / "rel2.conf").write_text("recipients_max = 7\n")
    mta_env.write_config(f".include rel.conf\n.include {sub / 'abs.conf'}\n")
    assert bp(mta_env, "qualify_recipient", "bi_command", "recipients_max") == [
        "qualify_recipient = rel.example",
        "bi_command = from-abs",
        "recipients_max = 7",
    ]


def test_include_if_exists(mta_env: MtaEnv, tmp_path: Path) -> None:
    (tmp_path / "there.conf").write_text("bi_command = there\n")
    mta_env.write_config(f".include_if_exists {tmp_path / 'missing.conf'}\n.include_if_exists there.conf\n")
    assert bp(mta_env, "bi_command") == ["bi_command = there"]


def test_include_path_from_a_macro(mta_env: MtaEnv, tmp_path: Path) -> None:
    (tmp_path / "m.conf").write_text("bi_command = via-macro\n")
    mta_env.write_config(f"INC = {tmp_path / 'm.conf'}\n.include INC\n")
    assert bp(mta_env, "bi_command") == ["bi_command = via-macro"]


def test_missing_include_is_an_error(mta_env: MtaEnv, tmp_path: Path) -> None:
    mta_env.write_config("# a comment\n.include nothere.conf\n")
    result = mta_env.run("-bV")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"mta: configuration error: {mta_env.config}:{BASE_LINES + 2}: "
        f"included file {tmp_path / 'nothere.conf'} does not exist"
    )


def test_error_in_included_file_names_that_file(mta_env: MtaEnv, tmp_path: Path) -> None:
    (tmp_path / "inc.conf").write_text("\n\nnosuch_option = 1\n")
    mta_env.write_config(".include inc.conf\n")
    result = mta_env.run("-bV")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f'mta: configuration error: {tmp_path / "inc.conf"}:3: unknown option "nosuch_option" for the main section'
    )


# -- conditionals, continuations, comments -----------------------------------

CONDITIONALS = [
    ("ifdef true", "FLAG = 1\n.ifdef FLAG\nbi_command = yes\n.endif\n", (), "bi_command = yes"),
    ("ifdef false", ".ifdef FLAG\nbi_command = yes\n.endif\n", (), "bi_command = "),
    ("ifndef", ".ifndef FLAG\nbi_command = no-flag\n.endif\n", (), "bi_command = no-flag"),
    ("else taken", ".ifdef FLAG\nbi_command = a\n.else\nbi_command = b\n.endif\n", (), "bi_command = b"),
    ("else skipped", ".ifdef FLAG\nbi_command = a\n.else\nbi_command = b\n.endif\n", ("-DFLAG",), "bi_command = a"),
    (
        "nested",
        ".ifdef A\n.ifdef B\nbi_command = ab\n.else\nbi_command = a\n.endif\n.endif\n",
        ("-DA=1",),
        "bi_command = a",
    ),
    (
        "nested inside a false branch",
        ".ifdef A\n.ifndef B\nbi_command = wrong\n.endif\n.endif\n",
        (),
        "bi_command = ",
    ),
    (
        "macro defined in a false branch",
        ".ifdef A\nX = 1\n.endif\n.ifdef X\nbi_command = wrong\n.endif\n",
        (),
        "bi_command = ",
    ),
]


@pytest.mark.parametrize(("extra", "args", "want"), [c[1:] for c in CONDITIONALS], ids=[c[0] for c in CONDITIONALS])
def test_conditionals(mta_env: MtaEnv, extra: str, args: tuple[str, ...], want: str) -> None:
    mta_env.write_config(extra)
    assert bp(mta_env, "bi_command", args=args) == [want]


def test_continuation_with_a_comment_line_in_between(mta_env: MtaEnv) -> None:
    mta_env.write_config("bi_command = /bin/echo \\\n# this comment is skipped\n    one \\\n  two\n")
    assert bp(mta_env, "bi_command") == ["bi_command = /bin/echo one two"]


def test_comments_and_blank_lines(mta_env: MtaEnv) -> None:
    mta_env.write_config("# comment\n   # indented comment\n\n   \nbi_command = x\n#bi_command = y\n")
    assert bp(mta_env, "bi_command") == ["bi_command = x"]


def test_crlf_config_lines(mta_env: MtaEnv) -> None:
    mta_env.write_config("bi_command = crlf\r\nqueue_only\r\n")
    assert bp(mta_env, "bi_command", "queue_only") == ["bi_command = crlf", "queue_only"]


def test_begin_sections_end_the_main_options(mta_env: MtaEnv) -> None:
    mta_env.write_config(
        "begin acl\n\nacl_check_rcpt:\n  accept hosts = :\n\n"
        "begin retry\n*  *  F,2h,15m; G,16h,1h,1.5; F,4d,6h\n\n"
        "begin rewrite\n*@old.example  $1@new.example\n"
    )
    result = mta_env.run("-bV")
    assert result.returncode == 0, result.stderr
    config = load_config(str(mta_env.config))
    assert list(config.acls) == ["acl_check_rcpt"]
    assert [r.text.split()[0] for r in config.retry_rules] == ["*"]
    assert [r.line for r in config.rewrite_rules] == [BASE_LINES + 10]


# -- driver instances (read by the loader; the registries decide which exist) --


def test_driver_instances_keep_name_place_and_options(mta_env: MtaEnv) -> None:
    mta_env.write_config(
        "begin routers\n\n"
        "smarthost:\n  driver = domainlist\n  domains = ! +local_domains\n  no_more\n\n"
        "second: driver = lookuphost\n\n"
        "begin transports\n\nremote_smtp:\n  driver = smtp\n  hide port = 2526\n"
    )
    config = load_config(str(mta_env.config))
    routers = config.drivers["routers"]
    assert [(r.name, r.line, r.driver) for r in routers] == [
        ("smarthost", BASE_LINES + 3, "domainlist"),
        ("second", BASE_LINES + 8, "lookuphost"),
    ]
    assert [(s.name, s.value) for s in routers[0].settings] == [
        ("driver", "domainlist"),
        ("domains", "! +local_domains"),
        ("no_more", None),
    ]
    (transport,) = config.drivers["transports"]
    assert [(s.name, s.value, s.hidden) for s in transport.settings] == [
        ("driver", "smtp", False),
        ("port", "2526", True),
    ]


def test_hide_marks_a_main_option(mta_env: MtaEnv) -> None:
    mta_env.write_config("hide bi_command = secret\n")
    config = load_config(str(mta_env.config))
    assert config.main_hidden == {"bi_command"}
    assert config.main.bi_command == "secret"


# -- errors: exit 1 and file:line: reason ------------------------------------

ERRORS = [
    ("unknown option", "nosuch = 1\n", 1, 'unknown option "nosuch" for the main section'),
    ("unknown no_ option", "no_nosuch\n", 1, 'unknown option "no_nosuch" for the main section'),
    ("no_ on a non-boolean", "no_bi_command\n", 1, 'unknown option "no_bi_command" for the main section'),
    ("bad boolean", "queue_only = maybe\n", 1, 'queue_only: "maybe" is not a boolean (use true, false, yes or no)'),
    ("no_ with a value", "no_queue_only = yes\n", 1, '"no_queue_only" takes no value'),
    (
        "bad time",
        "\nreceive_timeout = 3x\n",
        2,
        'receive_timeout: "3x" is not a time (examples: 30s, 15m, 2h, 4d, 1w, 1h30m)',
    ),
    (
        "bad size",
        "message_size_limit = 10Q\n",
        1,
        'message_size_limit: "10Q" is not a size (examples: 1024, 64K, 50M, 1G)',
    ),
    ("bad integer", "recipients_max = many\n", 1, 'recipients_max: "many" is not an integer'),
    ("below minimum", "queue_run_max = 0\n", 1, "queue_run_max: 0 is too small (the minimum is 1)"),
    ("above maximum", "retry_interval_max = 2d\n", 1, "retry_interval_max: 2d is too large (the maximum is 1d)"),
    ("string without value", "bi_command\n", 1, '"bi_command" needs a value ("bi_command = ...")'),
    ("unknown section", "begin nosuch\n", 1, 'unknown section "begin nosuch"'),
    ("section twice", "begin retry\nbegin retry\n", 2, 'section "retry" appears twice'),
    (
        "option before a driver name",
        "begin routers\n  driver = domainlist\n",
        2,
        'option line before the first router name (expected "name:")',
    ),
    (
        "driver without driver =",
        "begin transports\nt1:\n  user = nobody\n",
        2,
        'transport "t1" has no "driver =" option',
    ),
    (
        "unknown driver",
        "begin routers\nr1:\n  driver = no_such_driver\n",
        2,
        'router "r1": unknown driver "no_such_driver" (known: ',
    ),
    (
        "driver defined twice",
        "begin routers\nr1:\n  driver = x\nr1:\n  driver = x\n",
        4,
        'router "r1" is defined twice',
    ),
    (
        "option set twice",
        "queue_only\n\nqueue_only = false\n",
        3,
        f'"queue_only" is set twice for the main section (first at {{config}}:{BASE_LINES + 1})',
    ),
    ("unterminated .ifdef", "\n.ifdef NOPE\nqueue_only\n", 2, ".ifdef without .endif"),
    (".endif without .ifdef", ".endif\n", 1, ".endif without .ifdef"),
    (".else without .ifdef", ".else\n", 1, ".else without .ifdef"),
    ("unknown directive", ".includ x\n", 1, 'unknown directive ".includ"'),
    ("named list twice", "domainlist d = a\ndomainlist d = b\n", 2, 'named list "d" is defined twice'),
    (
        "garbage line",
        "this is not an option\n",
        1,
        'cannot understand "this is not an option" (expected "name = value")',
    ),
    (
        "local_domains twice",
        "local_domains = x.example\n",
        0,
        "local_domains is set both as a main option and as a named domainlist",
    ),
]


@pytest.mark.parametrize(("extra", "line", "reason"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors_name_file_and_line(mta_env: MtaEnv, extra: str, line: int, reason: str) -> None:
    mta_env.write_config(extra)
    result = mta_env.run("-bV")
    assert result.returncode == 1
    where = f"{mta_env.config}:{BASE_LINES + line}"
    message = result.stderr.splitlines()[-1]
    prefix = f"mta: configuration error: {where}: " + reason.format(config=mta_env.config)
    assert message.startswith(prefix) and (message == prefix or reason.endswith("(known: ")), message
    # A broken configuration is refused before anything is done: the same for a submission.
    submit = mta_env.run("-odq", "someone@example.com", input="Subject: x\n\nbody\n")
    assert submit.returncode == 1
    assert submit.stderr.splitlines()[-1].endswith(message.split(": ", 2)[2])
    assert mta_env.spool_files() == []


def test_driver_error_in_submission_says_configuration_error(mta_env: MtaEnv) -> None:
    mta_env.write_config("begin routers\nr1:\n  driver = no_such_driver\n")
    submit = mta_env.run("-odq", "someone@example.com", input="Subject: x\n\nbody\n")
    assert submit.returncode == 1
    assert submit.stderr.startswith(f"mta: configuration error: {mta_env.config}:{BASE_LINES + 2}: ")


def test_error_raised_directly_by_load_config(tmp_path: Path) -> None:
    path = tmp_path / "c.conf"
    path.write_text("spool_directory = relative/spool\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == f"{path}: spool_directory must be an absolute path, not 'relative/spool'"
