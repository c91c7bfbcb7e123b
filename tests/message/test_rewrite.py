"""Address rewriting (mta.message.rewrite), in process: rules, flags, headers, logs and errors.

What `-brw` prints is compared with Exim's in test_rewrite_corpus.py; here each
behaviour is pinned on its own, with the real expander and list matching.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mta import debug
from mta.config.loader import SourceLine, load_config
from mta.errors import ConfigError
from mta.expand import ExpandContext, expand
from mta.message.headers import Header, make_header, parse_header_block
from mta.message.rewrite import (
    ALL,
    ALL_HEADERS,
    ENV_FROM,
    ENV_TO,
    FROM,
    TO,
    RewriteEnv,
    Rewriter,
    parse_headers_rewrite,
    parse_rule,
    parse_rules,
)
from mta.runtime import build_runtime
from mta.taint import is_tainted


class Logs:
    def __init__(self) -> None:
        self.main: list[str] = []
        self.panic: list[str] = []
        self.seen: list[dict[str, str]] = []  # the variables each replacement was expanded with


def rewriter(*rules: str, logs: Logs | None = None, transport: bool = False) -> Rewriter:
    logs = logs if logs is not None else Logs()

    def expand_with(template: str, extra: dict[str, str]) -> str:
        if extra:  # (a pattern is expanded with none)
            logs.seen.append(dict(extra))
        variables = {"qualify_domain": "example.org", **extra}
        return expand(template, ExpandContext(variables=variables))

    env = RewriteEnv(
        expand=expand_with,
        primary_hostname="mta.example",
        named_list=lambda kind, name: "a.example : b.example",
        qualify_domain="example.org",
        qualify_recipient="rcpt.example",
        panic=logs.panic.append,
        log=logs.main.append,
    )
    return Rewriter([parse_rule(text, n, transport=transport) for n, text in enumerate(rules, 1)], env)


# -- reading rules ---------------------------------------------------------------------------------


def test_flags_default_to_everything_or_to_headers_at_transport_time() -> None:
    assert parse_rule("*@a.example b@c.example", 1).flags == ALL
    assert parse_rule("*@a.example b@c.example", 1, transport=True).flags == ALL_HEADERS
    assert parse_rule('"*@a.example" "x y@z"  Ft', 1).replacement == "x y@z"
    assert parse_rule(r'*@a "\x41\101\$1@b" T', 1).replacement == "AA$1@b"  # Exim's string_dequote escapes


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("*@a.example", "missing rewrite replacement string"),
        ("*@a.example $local_part@b.example Fz", "unknown rewrite flag character 'z' (could be missing quotes"),
        ("*@a.example ${if eq{1}{1} {x@y}fail} ", "unknown rewrite flag character 'e'"),
        ("*@a.example x@y.example S", "rewrite rule has the S flag but is not a regular expression"),
        ("^(unclosed@x x@y.example", 'bad regular expression "^(unclosed@x"'),
        (r"\N^a[@x\N x@y.example", 'bad regular expression "^a[@x"'),
        ("^(.*)@x$ x@y.example", 'bad pattern "^(.*)@x$": $ not followed by letter, digit, or {'),
        ("*@x ${lookup{x}nosuch{/f}} q", "bad replacement"),
        ('*@x "x@y', "missing closing quote"),
    ],
)
def test_a_bad_rule_is_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_rule(text, 1)
    assert reason in str(info.value)


def test_a_bad_rule_stops_start_up_with_file_and_line(tmp_path: Path) -> None:
    conf = tmp_path / "mta.conf"
    conf.write_text(
        f"spool_directory = {tmp_path}/spool\nprimary_hostname = mta.example\n"
        "begin rewrite\n*@a.example  $local_part@b.example  F\n*@c.example  x@d.example  Fk\n"
    )
    with pytest.raises(ConfigError) as info:
        build_runtime(load_config(str(conf)))
    assert str(info.value) == (
        f"{conf}:5: unknown rewrite flag character 'k' (could be missing quotes round replacement item)"
    )


def test_headers_rewrite_takes_header_flags_only(tmp_path: Path) -> None:
    assert [r.key for r in parse_headers_rewrite("*@a.example b@c.example : x@*  y@z.example  f")] == [
        "*@a.example",
        "x@*",
    ]
    with pytest.raises(ValueError, match="not allowed at transport time"):
        parse_headers_rewrite("*@a.example b@c.example F")
    conf = tmp_path / "mta.conf"
    conf.write_text(
        f"spool_directory = {tmp_path}/spool\nprimary_hostname = mta.example\n"
        "begin transports\nlocal:\n  driver = appendfile\n  file = /tmp/x\n"
        "  headers_rewrite = *@a.example b@c.example E\n"
    )
    with pytest.raises(ConfigError) as info:
        build_runtime(load_config(str(conf)))
    assert str(info.value).startswith(f'{conf}:4: transport "local": headers_rewrite: rule 1 "*@a.example b@c')


def test_parse_rules_names_the_line() -> None:
    lines = [SourceLine("*@a b@c.example", "/etc/mta.conf", 40), SourceLine("*@a b@c.example S", "/etc/mta.conf", 41)]
    with pytest.raises(ConfigError, match=r"^/etc/mta.conf:41: rewrite rule has the S flag"):
        parse_rules(lines)


# -- patterns, variables and flags -------------------------------------------------------------------


def test_patterns_and_their_numeric_variables() -> None:
    logs = Logs()
    r = rewriter(
        "*-queen@*.cards.example  $1+$2@cards.example",
        r"\N^(\w+)\.(\w+)@dots\.example$\N  $2.$1@dots.example",
        "joe@*  joseph@$domain",
        "*@+named  $local_part@named.example",
        logs=logs,
    )
    assert r.rewrite_address("hearts-queen@Wonderland.cards.example", True) == "hearts+wonderland@cards.example"
    assert logs.seen[-1]["0"] == "hearts-queen@Wonderland.cards.example"
    assert logs.seen[-1]["local_part"] == "hearts-queen"
    assert r.rewrite_address("ann.lee@dots.example", True) == "lee.ann@dots.example"
    assert r.rewrite_address("joe@Any.Example", True) == "joseph@Any.Example"  # $domain as written
    assert r.rewrite_address("Joe@any.example", True) == "Joe@any.example"  # local parts are caseful
    assert r.rewrite_address("x@b.example", True) == "x@named.example"


def test_partial_lookup_sets_the_wild_and_fixed_parts(tmp_path: Path) -> None:
    (tmp_path / "domains").write_text("*.baz.example  yes\n")
    r = rewriter(f"*@partial-lsearch;{tmp_path}/domains  $2-$3-$1@lookup.example")
    assert r.rewrite_address("foo@bar.baz.example", True) == "bar-baz.example-foo@lookup.example"
    assert r.rewrite_address("foo@baz.example", True) == "-baz.example-foo@lookup.example"
    assert r.rewrite_address("foo@other.example", True) == "foo@other.example"


def test_the_address_is_only_ever_a_variable_value() -> None:
    """A local part that looks like an expansion stays text: it is tainted data, never a template."""
    logs = Logs()
    r = rewriter("*@x.example  $local_part@y.example", logs=logs)
    hostile = '"${readfile{/etc/passwd}}"@x.example'
    # ($ { } are atext: the internal form needs no quotes)
    assert r.rewrite_address(hostile, True) == "${readfile{/etc/passwd}}@y.example"
    assert is_tainted(logs.seen[-1]["local_part"]) and is_tainted(logs.seen[-1]["0"])


def test_flags_choose_the_fields() -> None:
    r = rewriter("*@a.example  x@b.example  Ft")
    assert r.rewrite_address("u@a.example", recipient=False) == "x@b.example"
    assert r.rewrite_address("u@a.example", recipient=True) == "u@a.example"
    assert r.rewrite_one("u@a.example", TO)[0] == "x@b.example"
    assert r.rewrite_one("u@a.example", FROM)[0] == "u@a.example"


def test_star_q_forced_failure_and_repeat() -> None:
    r = rewriter(
        "root@*  *",
        '*@skip.example  "${if eq{1}{2}{never@x.example}fail}"',
        '*@q.example  "${if eq{$local_part}{stop}{stopped@q2.example}fail}"  q',
        r"\N^a(.+)@r\.example$\N  $1@r.example  R",
        "*@*  $local_part@last.example",
    )
    assert r.rewrite_address("root@x.example", True) == "root@x.example"  # "*": no rule after it either
    assert r.rewrite_address("stop@q.example", True) == "stopped@q2.example"  # q after a rewrite
    assert r.rewrite_address("u@skip.example", True) == "u@last.example"  # forced failure: next rule
    assert r.rewrite_address("aaab@r.example", True) == "b@last.example"  # R: again while it matches


def test_q_with_a_forced_failure_ends_the_scan() -> None:
    r = rewriter('*@*  "${if eq{1}{2}{x@y.example}fail}"  q', "*@*  never@z.example")
    assert r.rewrite_address("u@x.example", True) == "u@x.example"


def test_repeat_stops_after_ten_more_times() -> None:
    logs = Logs()
    r = rewriter(r"\N^(a+)@r\.example$\N  a$1@r.example  R", logs=logs)
    assert r.rewrite_address("a@r.example", True) == "a" * 12 + "@r.example"
    assert logs.panic == ["rewrite rule repeat ignored after 10 times"]


def test_q_flag_qualifies_a_local_part_result() -> None:
    logs = Logs()
    r = rewriter("*@q.example  ${local_part}x  Q", "*@u.example  $local_part", logs=logs)
    assert r.rewrite_address("u@q.example", True) == "ux@rcpt.example"
    assert r.rewrite_address("v@u.example", True) == "v@u.example"
    assert logs.panic == ['Rewrite of v@u.example yielded unqualified address "v"']


def test_a_result_that_is_not_an_address_keeps_the_original_and_is_logged() -> None:
    """The bad-input case: Exim logs it (main and panic logs) and leaves the address alone."""
    logs = Logs()
    r = rewriter('*@bad.example  "a b c@@"', "*@*  $local_part@later.example", logs=logs)
    assert r.rewrite_address("u@bad.example", True) == "u@bad.example"  # and no later rule is tried
    assert logs.panic == [
        "Rewrite of u@bad.example yielded unparseable address: space in address outside quotes in address a b c@@"
    ]
    assert r.rewrite_address("u@ok.example", True) == "u@later.example"


def test_an_expansion_error_is_logged_and_stops_rewriting() -> None:
    logs = Logs()
    r = rewriter("*@*  ${lookup{x}lsearch{/nonexistent/file}}@x.example", "*@*  y@y.example", logs=logs)
    assert r.rewrite_address("u@a.example", True) == "u@a.example"
    assert logs.panic[0].startswith("Expansion of ${lookup{x}lsearch{/nonexistent/file}}@x.example failed while")


def test_only_the_envelope_sender_may_become_null() -> None:
    logs = Logs()
    r = rewriter("*@null.example  <>  E", logs=logs)
    assert r.rewrite_address("u@null.example", recipient=False) == ""
    assert r.rewrite_address("u@null.example", recipient=True) == "u@null.example"
    assert logs.panic == ["Rewrite of u@null.example yielded unparseable address: empty address in address <>"]


def test_address_rewrite_log_lines_are_exims() -> None:
    logs = Logs()
    r = rewriter("*@a.example  $local_part@b.example", '*@w.example  "Name <$local_part@w2.example>"  w', logs=logs)
    r.rewrite_address("u@a.example", recipient=False)
    r.rewrite_one("v@w.example", TO, whole=True)
    r.rewrite_one("v@w.example", ENV_TO)
    assert logs.main == [
        '"u@a.example" from env-from rewritten as "u@b.example" by rule 1',
        '"v@w.example" from to: rewritten as "Name <v@w2.example>" by rule 2',
        '"v@w.example" from env-to rewritten as "Name <v@w2.example>" by rule 2',
    ]


def test_debug_rewrite_says_what_each_rule_did() -> None:
    out = io.StringIO()
    debug.configure(debug.parse("-all+rewrite"), stream=out)
    try:
        r = rewriter(
            "*@b.example  x@y.example", '*@a.example  "${if eq{1}{2}{x}fail}"', "*@a.example  $local_part@c.example"
        )
        r.rewrite_address("u@a.example", True)
    finally:
        debug.configure(frozenset())
    assert out.getvalue().splitlines() == [
        "rewrite rule 1: u@a.example does not match *@b.example",
        "rewrite rule 2: u@a.example matches; forced failure: no rewrite",
        "rewrite rule 3: u@a.example matches; rewritten as u@c.example",
    ]


# -- headers ---------------------------------------------------------------------------------------------


def test_header_keeps_phrase_and_comments_and_handles_groups() -> None:
    r = rewriter("*@old.example  $local_part@new.example", '*@w.example  "The Name <$local_part@w2.example>"  w')
    header = make_header("To", 'grp: b@old.example, "C D" <c@w.example> (comment);, e@keep.example,\n  f@old.example')
    new = r.rewrite_header(header, qualify_unqualified=False)
    assert new is not None and new.flag == "T"
    # Departure from Exim 4.96, which also replaces the group's closing ";" when a w rule rewrites the
    # last member of a group (docs/rewrite.md).
    assert new.text == ("To: grp: b@new.example, The Name <c@w2.example>;, e@keep.example,\n  f@new.example\n")
    assert r.rewrite_header(make_header("From", "Ann (the boss) <ann@old.example>"), False).text == (
        "From: Ann (the boss) <ann@new.example>\n"
    )
    assert r.rewrite_header(make_header("Reply-To", "ann@old.example (Ann)"), False).text == (
        "Reply-To: ann@new.example (Ann)\n"
    )
    assert r.rewrite_header(make_header("Subject", "ann@old.example"), False) is None
    assert r.rewrite_header(make_header("To", "undisclosed-recipients:;"), False) is None


def test_headers_are_qualified_only_when_allowed() -> None:
    r = rewriter("*@rcpt.example  $local_part@done.example  t")
    header = make_header("To", '"Doe, John" <jd>, root')
    assert r.rewrite_header(header, qualify_unqualified=False) is None
    assert r.rewrite_header(header, qualify_unqualified=True).text == (
        'To: "Doe, John" <jd@done.example>, root@done.example\n'
    )
    assert r.rewrite_header(make_header("Sender", "jd"), qualify_unqualified=True).text == "Sender: jd@example.org\n"


def test_a_longer_address_folds_a_long_line() -> None:
    r = rewriter("*@a.example  $local_part@a-much-longer-domain.example")
    new = r.rewrite_header(make_header("To", "one@a.example, two@a.example, three@a.example"), False)
    assert new is not None
    assert new.text == (
        "To: one@a-much-longer-domain.example, two@a-much-longer-domain.example, \n"
        "\tthree@a-much-longer-domain.example\n"
    )


def test_rewritten_headers_are_marked_as_exim_marks_them() -> None:
    r = rewriter("*@old.example  $local_part@new.example")
    headers = parse_header_block("From: a@old.example\nSubject: a@old.example\nTo: b@keep.example\nCc: c@old.example\n")
    r.rewrite_headers(headers, qualify_unqualified=False)
    assert [(h.flag, h.text) for h in headers] == [
        ("*", "From: a@old.example\n"),
        ("F", "From: a@new.example\n"),
        (" ", "Subject: a@old.example\n"),
        ("T", "To: b@keep.example\n"),
        ("*", "Cc: c@old.example\n"),
        ("C", "Cc: c@new.example\n"),
    ]
    deleted = Header("To", "To: x@old.example\n", "*")
    again = [deleted]
    r.rewrite_headers(again, qualify_unqualified=False)
    assert again == [deleted]  # a deleted header is left alone


# -- SMTP time, and -brw ---------------------------------------------------------------------------------


def test_s_rules_rewrite_the_command_argument() -> None:
    r = rewriter(r"\N^<?([^!@<>]+)!([^!@<>]+)>?$\N  $2@$1  S", "*@*  never@x.example  F")
    assert r.rewrite_smtp("<host.example!user>", sender=False) == "user@host.example"
    assert r.rewrite_smtp("<plain@x.example>", sender=True) is None
    assert r.rewrite_address("u@a.example", recipient=True) == "u@a.example"  # no T: the F rule only
    assert rewriter("*@*  x@y.example").rewrite_smtp("<a!b>", sender=True) is None


def test_brw_without_rules() -> None:
    assert rewriter().test("a@b.example") == ["No rewrite rules are defined"]
    assert rewriter("*@*  x@y.example  ENV_FROM".replace("ENV_FROM", "F")).exist == ENV_FROM
