"""Reading ACLs at start-up: Exim's syntax, and every mistake a ConfigError naming file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mta.receive.acl_syntax import parse_control, parse_verify
from tests.receive.acl_support import acl_line, acl_world, config_error


def test_statements_conditions_and_modifiers_as_written(tmp_path: Path) -> None:
    world = acl_world(
        tmp_path,
        "check:\n"
        "  accept  hosts = :\n"
        "  deny    message = no\n"
        "         !verify = sender/defer_ok\n"
        "  warn    set acl_m_x = 1\n"
        "          set acl_c0=2\n"
        "  accept  domains = example.com\n"
        "          endpass\n"
        "          condition = ${if eq{a}{a}}\n"
        "  require\n"
        "  accept local_parts = a : \\\n"
        "                       b\n",
    )
    acl = world.engine.acls["check"]
    shapes = [(s.verb, [i.describe() for i in s.items], s.line) for s in acl.statements]
    assert shapes == [
        ("accept", ["hosts = :"], acl_line(2)),
        ("deny", ["message = no", "!verify = sender/defer_ok"], acl_line(3)),
        ("warn", ["set acl_m_x = 1", "set acl_c0 = 2"], acl_line(5)),
        ("accept", ["domains = example.com", "endpass", "condition = ${if eq{a}{a}}"], acl_line(7)),
        ("require", [], acl_line(10)),
        ("accept", ["local_parts = a : b"], acl_line(11)),
    ]


def test_an_empty_acl_is_an_implicit_deny(tmp_path: Path) -> None:
    world = acl_world(tmp_path, "nothing:\n", "acl_smtp_mail = nothing\n")
    assert world.engine.acls["nothing"].statements == ()


@pytest.mark.parametrize(
    ("acls", "line", "message"),
    [
        ("a:\n  hosts = :\n", 2, 'unknown ACL verb "hosts"'),
        ("a:\n  acept hosts = :\n", 2, 'unknown ACL verb "acept"'),
        ("a:\n  accept hostz = :\n", 2, "unknown ACL condition/modifier"),
        ("a:\n  accept\n    hostz = :\n", 3, "unknown ACL condition/modifier"),
        ("a:\n  !accept\n", 2, "a verb cannot be negated"),
        ("a:\n  accept !message = x\n", 2, 'negation is not allowed with "message"'),
        ("a:\n  deny endpass\n", 2, '"endpass" is not allowed with "deny"'),
        ("a:\n  accept hosts\n", 2, '"=" missing after ACL "hosts" condition'),
        ("a:\n  warn set x = 1\n", 2, 'invalid variable name after "set"'),
        ("a:\n  warn set acl_mx = 1\n", 2, 'invalid variable name after "set"'),
        ("a:\n  warn set acl_m_a-b = 1\n", 2, 'invalid variable name after "set"'),
        ("a:\n  deny spam = nobody\n", 2, '"spam" is not supported by mta'),
        ("a:\n  deny regex = x\n", 2, '"regex" is not supported by mta'),
        ("a:\n  deny verify = rcpt\n", 2, 'expected "sender[=address]", "recipient"'),
        ("a:\n  deny verify = helo/defer_ok\n", 2, "this verify item has no options"),
        ("a:\n  deny verify = recipient/callout=10s\n", 2, "callout verification) is not supported"),
        ("a:\n  deny verify = recipient/frobnicate\n", 2, 'unknown option "frobnicate"'),
        ("a:\n  deny verify = csa\n", 2, '"verify = csa" is not supported'),
        ("a:\n  deny ratelimit = lots / 1h\n", 2, '"lots" is not a positive number'),
        ("a:\n  deny ratelimit = 10 / soon\n", 2, '"soon" is not a time value'),
        ("a:\n  deny ratelimit = 10 / 0s\n", 2, '"0s" is not a time value'),
        ("a:\n  deny ratelimit = 10 / 1h / per_mail / per_rcpt\n", 2, "conflicting per_* options"),
        ("a:\n  deny ratelimit = 10 / 1h / leaky / strict\n", 2, "conflicting update modes"),
        ("a:\n  deny ratelimit = 10 / 1h / count=x\n", 2, '"count=x" is not a positive number'),
        ("a:\n  warn control = cutthrough_delivery\n", 2, '"control = cutthrough_delivery" is not supported'),
        ("a:\n  warn control = submission/nonsense\n", 2, 'syntax error in "control=submission/nonsense"'),
        ("a:\n  warn control = no_pipelining/x\n", 2, "takes no options"),
        ("a:\n  warn delay = a while\n", 2, "is not a time"),
        ("a:\n  warn logwrite = :mian: hello\n", 2, 'unknown log name "mian"'),
        ("a:\n  warn log_reject_target = main : syslog\n", 2, 'unknown log name "syslog"'),
        ("a:\n  deny condition = ${if eq{a}{b}\n", 2, "bad expansion"),
        ("a:\n  deny hosts = +no_such_hosts\n", 2, "unknown named list +no_such_hosts"),
        ("a:\n  deny domains = !+nope\n", 2, "unknown named list +nope"),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v and not v.startswith("a:") else None,
)
def test_mistakes_are_config_errors_with_file_and_line(tmp_path: Path, acls: str, line: int, message: str) -> None:
    text = config_error(tmp_path, acls)
    assert text.startswith(f"{tmp_path / 'mta.conf'}:{acl_line(line)}: "), text
    assert message in text


@pytest.mark.parametrize(
    ("main", "acls", "message"),
    [
        (
            "acl_smtp_rcpt = acl_check_rpct\n",
            "acl_check_rcpt:\n  accept\n",
            'acl_smtp_rcpt: no ACL named "acl_check_rpct"',
        ),
        ("acl_smtp_mail = /no/such/file\n", "", "acl_smtp_mail: "),
        ("acl_smtp_rcpt = ${if eq{a}{b}\n", "", "acl_smtp_rcpt: "),
        ("acl_smtp_vrfy = accept hostz = *\n", "", "acl_smtp_vrfy: "),
    ],
    ids=["misspelt-name", "missing-file", "bad-expansion", "bad-inline"],
)
def test_options_naming_acls_are_checked_at_start_up(tmp_path: Path, main: str, acls: str, message: str) -> None:
    assert message in config_error(tmp_path, acls, main)


@pytest.mark.parametrize(
    ("option", "acl", "message"),
    [
        ("acl_not_smtp", "  accept hosts = 127.0.0.1\n", "cannot test hosts condition in non-SMTP ACL"),
        ("acl_smtp_mail", "  accept domains = example.com\n", "cannot test domains condition in MAIL ACL"),
        ("acl_smtp_connect", "  accept add_header = X: y\n", "cannot use add_header condition in connection ACL"),
        ("acl_smtp_helo", "  accept authenticated = *\n", "cannot test authenticated condition in EHLO or HELO"),
        ("acl_smtp_mail", "  require verify = recipient\n", "cannot verify recipient in ACL for MAIL"),
        ("acl_smtp_rcpt", "  require verify = header_syntax\n", "cannot verify header_syntax in ACL for RCPT"),
        ("acl_smtp_data", "  accept control = submission\n", 'cannot use "control=submission" in DATA ACL'),
        ("acl_smtp_vrfy", "  accept senders = :\n", "cannot test senders condition in VRFY ACL"),
    ],
)
def test_conditions_used_where_they_cannot_work_are_refused_at_start_up(
    tmp_path: Path, option: str, acl: str, message: str
) -> None:
    text = config_error(tmp_path, "a:\n" + acl, f"{option} = a\n")
    assert message in text and f"(named by {option})" in text
    assert text.startswith(f"{tmp_path / 'mta.conf'}:{acl_line(2, f'{option} = a{chr(10)}')}: ")


def test_a_nested_acl_is_checked_for_the_stage_of_its_caller(tmp_path: Path) -> None:
    text = config_error(
        tmp_path, "outer:\n  accept acl = inner\ninner:\n  accept hosts = *\n", "acl_not_smtp = outer\n"
    )
    assert "cannot test hosts condition in non-SMTP ACL (named by acl_not_smtp)" in text
    text = config_error(tmp_path, "outer:\n  accept acl = innr\ninner:\n  accept\n", "acl_smtp_rcpt = outer\n")
    assert 'no ACL named "innr"' in text


def test_named_lists_the_main_options_define_are_known(tmp_path: Path) -> None:
    # +local_domains means the main option when no named list of that name exists (DESIGN.md).
    (tmp_path / "sub").mkdir()
    world = acl_world(tmp_path / "sub", "a:\n  accept domains = +local_domains\n")
    assert "a" in world.engine.acls


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("recipient", ("recipient", None, False, False, False)),
        ("Recipient/defer_ok/success_on_redirect", ("recipient", None, True, False, True)),
        ("sender/no_details", ("sender", None, False, True, False)),
        ("sender=a@b.example/defer_ok", ("sender", "a@b.example", True, False, False)),
        ("sender = a@b.example", ("sender", "a@b.example", False, False, False)),
        ("helo", ("helo", None, False, False, False)),
        ("header_syntax", ("header_syntax", None, False, False, False)),
    ],
)
def test_verify_arguments(text: str, want: tuple[object, ...]) -> None:
    spec = parse_verify(text)
    assert (spec.what, spec.address, spec.defer_ok, spec.no_details, spec.success_on_redirect) == want


@pytest.mark.parametrize(
    ("text", "name", "options"),
    [
        ("submission", "submission", {}),
        ("submission/sender_retain/domain=example.com/name=Joe / Bloggs", "submission",
         {"sender_retain": None, "domain": "example.com", "name": "Joe / Bloggs"}),
        ("queue_only", "queue", {}),
        ("freeze/no_tell", "freeze", {}),
        ("no_pipelining", "no_pipelining", {}),
        ("dkim_disable_verify", "dkim_disable_verify", {}),
    ],
)  # fmt: skip
def test_control_arguments(text: str, name: str, options: dict[str, str | None]) -> None:
    spec = parse_control(text)
    assert (spec.name, spec.options) == (name, options)


def test_the_acl_examples_in_the_docs_are_valid(tmp_path: Path) -> None:
    """Every ACL example in docs/acl.md reads without error, with the named lists it uses defined."""
    import re

    docs = (Path(__file__).resolve().parents[2] / "docs" / "acl.md").read_text()
    # Plain fences, and those the manual's example check marks (```mta-config acl, tests/docs).
    blocks = re.findall(r"^```(?:mta-config[^\n]*)?\n(.*?)^```", docs, re.S | re.M)
    statements = [b for b in blocks if b.split(None, 1)[0] in ("accept", "deny", "defer", "require", "warn")]
    configs = [b for b in blocks if b.startswith("begin acl")]
    assert len(statements) >= 3 and configs
    acls = "".join(
        f"example{n}:\n" + "".join("  " + line + "\n" for line in b.splitlines()) for n, b in enumerate(statements)
    )
    acls += configs[0].split("begin acl", 1)[1]
    world = acl_world(tmp_path, acls)
    assert len(world.engine.acls) == len(statements) + len(configs)
