"""ACL verbs and their messages, as Exim's acl_check_internal decides them.

Each case is an ACL named ``check`` run for RCPT from 203.0.113.9 (not a
relay host), with the verdict, reply text and log text expected.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mta.receive.acl import AclStage
from mta.receive.acl_log import rejection_reply
from tests.receive.acl_support import acl_line, acl_world

# (statements of ACL "check", verb, user message, log message)
CASES = [
    ("accept", "accept", None, None),
    ("deny", "deny", None, None),
    ("deny message = go away", "deny", "go away", "go away"),
    ("deny message = go away\n  log_message = bad host", "deny", "go away", "bad host"),
    ("defer message = try later", "defer", "try later", "try later"),
    ("drop message = bye", "drop", "bye", "bye"),
    ("discard log_message = dropped", "discard", None, "dropped"),
    ("accept message = 250 fine by me", "accept", "fine by me", "250 fine by me"),
    # The end of an ACL is a deny; warn never ends it.
    ("warn", "deny", None, None),
    ("accept hosts = 10.0.0.1", "deny", None, None),
    # require: a failing condition denies, with the message set before it.
    ("require message = not from there\n  hosts = 10.0.0.1\n  message = unused",
     "deny", "not from there", "not from there"),
    ("require hosts = 10.0.0.1\n  message = too late", "deny", None, None),
    ("require hosts = 203.0.113.9\naccept", "accept", None, None),
    # deny: the message may come after the conditions; the last one counts.
    ("deny hosts = *\n  message = first\n  message = last", "deny", "last", "last"),
    ("deny !hosts = 10.0.0.1\n  message = negated", "deny", "negated", "negated"),
    ("deny hosts = 10.0.0.1\naccept", "accept", None, None),
    # A deny whose condition fails goes on; its message is not used.
    ("deny message = no\n  hosts = 10.0.0.1\ndeny message = yes", "deny", "yes", "yes"),
    # endpass: a condition after it failing denies, with the accept's message.
    ("accept hosts = 10.0.0.1\n  endpass\naccept", "accept", None, None),
    ("accept hosts = *\n  endpass\n  message = not you\n  hosts = 10.0.0.1\naccept", "deny", "not you", "not you"),
    # A condition that cannot be decided defers; its reason is logged, not told.
    ("deny condition = perhaps", "defer", None, 'invalid "condition" value "perhaps"'),
    # ... except on warn, which goes on.
    ("warn condition = perhaps\naccept", "accept", None, None),
    # A forced expansion failure ignores the condition (it counts as true).
    ("deny condition = ${if eq{a}{b}{yes}fail}\n  message = forced", "deny", "forced", "forced"),
    # $acl_verify_message in a message, set by the condition that failed.
    ("require message = refused: $acl_verify_message\n  verify = recipient",
     "deny", "refused: Unknown user", "Unknown user"),
    ("require verify = recipient\n  message = too late to count", "deny", "Unknown user", "Unknown user"),
]  # fmt: skip


@pytest.mark.parametrize(("statements", "verb", "user", "log"), CASES, ids=[c[0] for c in CASES])
def test_verbs(tmp_path: Path, statements: str, verb: str, user: str | None, log: str | None) -> None:
    world = acl_world(tmp_path, "check:\n  " + statements + "\n", "acl_smtp_rcpt = check\n")
    result = world.rcpt("nosuchuser@example.com")
    assert (result.verb, result.user_message) == (verb, user)
    assert result.log_message == log


def test_an_expansion_error_is_reported_as_an_error(tmp_path: Path) -> None:
    world = acl_world(tmp_path, "check:\n  deny condition = ${eval:10/$acl_m_zero}\n", "acl_smtp_rcpt = check\n")
    result = world.rcpt("a@example.com")
    assert result.verb == "defer" and result.error
    assert result.log_message is not None and result.log_message.startswith('failed to expand ACL string "${eval:')
    assert rejection_reply(result, AclStage.RCPT) == ("451", ["Temporary local problem - please try later"])


@pytest.mark.parametrize(
    ("message", "code", "text", "panic"),
    [
        ("599 1.2.3 Host not welcome", "599 1.2.3", "Host not welcome", False),
        ("550 Host not welcome", "550", "Host not welcome", False),
        # The class must be a rejection's: a 4xx code on deny is ignored, with a panic line.
        ("451 4.3.0 Not now", None, "Not now", True),
    ],
)
def test_a_message_may_start_with_a_code_of_the_right_class(
    tmp_path: Path, message: str, code: str | None, text: str, panic: bool
) -> None:
    world = acl_world(tmp_path, f"check:\n  deny message = {message}\n", "acl_smtp_rcpt = check\n")
    result = world.rcpt("a@example.com")
    assert (result.code, result.user_message) == (code, text)
    assert ("configured error code starts with incorrect digit (expected 5)" in world.paniclog) == panic
    reply_code, lines = rejection_reply(result, AclStage.RCPT)
    assert (reply_code, lines) == (code or "550", [text])


def test_a_multi_line_message_is_a_multi_line_reply_and_a_one_line_log(tmp_path: Path) -> None:
    world = acl_world(tmp_path, "check:\n  deny message = first line\\nsecond line\n", "acl_smtp_rcpt = check\n")
    result = world.rcpt("a@example.com")
    assert rejection_reply(result, AclStage.RCPT) == ("550", ["first line", "second line"])
    from mta.receive.acl_log import rejection_log_lines

    ctx = world.context(recipient="a@example.com", smtp_command="RCPT TO:<a@example.com>")
    assert rejection_log_lines(result, ctx)[-1].endswith("rejected RCPT <a@example.com>: first line")


@pytest.mark.parametrize(
    ("stage", "verb"),
    [
        (AclStage.CONNECT, "accept"),
        (AclStage.HELO, "accept"),
        (AclStage.MAIL, "accept"),
        (AclStage.RCPT, "deny"),
        (AclStage.PREDATA, "accept"),
        (AclStage.DATA, "accept"),
        (AclStage.MIME, "accept"),
        (AclStage.NOT_SMTP, "accept"),
        (AclStage.VRFY, "deny"),
        (AclStage.EXPN, "deny"),
        (AclStage.ETRN, "deny"),
        (AclStage.AUTH, "accept"),
        (AclStage.QUIT, "accept"),
        (AclStage.STARTTLS, "accept"),
    ],
)
def test_stages_without_an_acl_use_exims_defaults(tmp_path: Path, stage: AclStage, verb: str) -> None:
    world = acl_world(tmp_path, "")
    assert world.run(stage, host_address=None).verb == verb
    assert world.run(stage, acl=None).verb == verb


@pytest.mark.parametrize(
    ("stage", "code"),
    [(AclStage.RCPT, "550"), (AclStage.VRFY, "252"), (AclStage.ETRN, "458"), (AclStage.AUTH, "503")],
)
def test_default_rejection_codes_per_stage(tmp_path: Path, stage: AclStage, code: str) -> None:
    world = acl_world(tmp_path, "")
    result = world.run(stage, acl="deny")
    assert rejection_reply(result, stage) == (code, ["Administrative prohibition"])


def test_accept_and_deny_as_the_option_value_are_inline_acls(tmp_path: Path) -> None:
    world = acl_world(tmp_path, "", "acl_smtp_vrfy = accept\nacl_smtp_expn = deny message = no expansions\n")
    assert world.run(AclStage.VRFY).verb == "accept"
    result = world.run(AclStage.EXPN)
    assert (result.verb, result.user_message) == ("deny", "no expansions")


def test_an_acl_from_a_file(tmp_path: Path) -> None:
    acl_file = tmp_path / "rcpt.acl"
    acl_file.write_text(
        "# from a file\naccept hosts = 203.0.113.0/24 : \\\n    198.51.100.1\ndeny message = file says no\n"
    )
    world = acl_world(tmp_path, "", f"acl_smtp_rcpt = {acl_file}\n")
    assert world.rcpt("a@example.com").verb == "accept"
    result = world.rcpt("a@example.com", host_address="192.0.2.77")
    assert (result.verb, result.user_message) == ("deny", "file says no")


def test_the_option_is_expanded_to_choose_the_acl(tmp_path: Path) -> None:
    world = acl_world(
        tmp_path,
        "on25:\n  deny message = port 25\nother:\n  accept\n",
        "acl_smtp_rcpt = ${if ={25}{$interface_port}{on25}{other}}\n",
    )
    assert world.rcpt("a@example.com", interface_port=25).user_message == "port 25"
    assert world.rcpt("a@example.com", interface_port=587).verb == "accept"


def test_acl_text_from_the_network_is_never_used_as_an_acl(tmp_path: Path) -> None:
    world = acl_world(tmp_path, "", "acl_smtp_helo = $sender_helo_name\n")
    result = world.run(AclStage.HELO, helo_name="accept")
    assert result.verb == "defer" and result.error
    assert result.log_message == "internal configuration error"
    assert "attempt to use tainted ACL text" in world.paniclog


def test_non_smtp_defer_is_a_deny(tmp_path: Path) -> None:
    world = acl_world(tmp_path, "check:\n  defer message = later\n", "acl_not_smtp = check\n")
    result = world.run(AclStage.NOT_SMTP, host_address=None, sender_address="root@example.com")
    assert result.verb == "deny" and result.user_message == "later"


def test_discard_is_refused_where_no_message_is_received(tmp_path: Path) -> None:
    world = acl_world(tmp_path, "check:\n  discard\n", "acl_smtp_predata = check\nacl_smtp_helo = check\n")
    for stage in (AclStage.PREDATA, AclStage.HELO):
        result = world.run(stage)
        assert result.verb == "defer" and result.error
    assert '"discard" verb not allowed in PREDATA ACL' in world.paniclog
    assert world.run(AclStage.RCPT, acl="check").verb == "discard"


def test_quit_acl_may_only_accept_or_warn(tmp_path: Path) -> None:
    world = acl_world(tmp_path, "q:\n  warn logwrite = bye\n  deny\n", "acl_smtp_quit = q\n")
    result = world.run(AclStage.QUIT)
    assert result.verb == "accept" and result.error
    assert result.log_message == "QUIT or not-QUIT toplevel ACL may not fail ('deny' verb used incorrectly)"
    assert "bye" in world.mainlog


# -- nested ACLs -------------------------------------------------------------------


NESTED = """\
check:
  deny    acl = blocked $local_part
          message = blocked by $acl_m_why
  accept  acl = friendly
  deny    message = nobody

blocked:
  accept  condition = ${if eq{$acl_arg1}{spammer}}
          set acl_m_why = ${acl_narg}:$acl_arg1
  deny

friendly:
  accept  hosts = 192.0.2.0/24
"""


def test_nested_acls_with_arguments(tmp_path: Path) -> None:
    world = acl_world(tmp_path, NESTED, "acl_smtp_rcpt = check\n")
    result = world.rcpt("spammer@example.com")
    assert (result.verb, result.user_message) == ("deny", "blocked by 1:spammer")
    assert world.rcpt("fine@example.com", host_address="192.0.2.4").verb == "accept"
    assert world.rcpt("fine@example.com").user_message == "nobody"


def test_a_loop_of_nested_acls_is_an_error_not_a_hang(tmp_path: Path) -> None:
    world = acl_world(tmp_path, "a:\n  accept acl = b\nb:\n  accept acl = a\n", "acl_smtp_rcpt = a\n")
    result = world.rcpt("x@example.com")
    assert result.verb == "defer" and result.error
    assert result.log_message == "ACL nested too deep: possible loop"


def test_a_nested_discard_needs_accept_or_discard(tmp_path: Path) -> None:
    world = acl_world(tmp_path, "a:\n  deny acl = d\nd:\n  discard\nb:\n  accept acl = d\n", "acl_smtp_rcpt = a\n")
    result = world.rcpt("x@example.com")
    assert result.error and 'nested ACL returned "discard" for "deny" command' in (result.log_message or "")
    assert world.run(AclStage.RCPT, acl="b", recipient="x@example.com").verb == "discard"


def test_a_nested_defer_defers_except_on_warn(tmp_path: Path) -> None:
    world = acl_world(tmp_path, "a:\n  accept acl = d\nw:\n  warn acl = d\n  accept\nd:\n  defer message = busy\n", "")
    result = world.run(AclStage.RCPT, acl="a")
    assert (result.verb, result.user_message) == ("defer", "busy")
    assert world.run(AclStage.RCPT, acl="w").verb == "accept"


def test_trace_reports_each_decision_in_exims_words(tmp_path: Path) -> None:
    world = acl_world(
        tmp_path,
        "check:\n  accept hosts = :\n  require message = no\n    domains = +local_domains\n",
        "acl_smtp_rcpt = check\n",
    )
    lines: list[str] = []
    world.rcpt("a@elsewhere.example", trace=lines.append)
    path = tmp_path / "mta.conf"
    first, second = acl_line(2, "acl_smtp_rcpt = check\n"), acl_line(3, "acl_smtp_rcpt = check\n")
    assert lines == [
        'using ACL "check"',
        f'processing "accept" ({path} {first})',
        "check hosts = :",
        'host in ":"? no (end of list)',
        'accept: condition test failed in ACL "check"',
        f'processing "require" ({path} {second})',
        "  message: no",
        "check domains = +local_domains",
        'elsewhere.example in "+local_domains"? no (end of list)',
        'require: condition test failed in ACL "check"',
        'end of ACL "check": DENY',
    ]
