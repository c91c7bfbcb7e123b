"""The Exim filter language obeyed for real (not -bf), and forwardfile running users' filters.

What each command prints under -bf is compared with Exim in
test_filter_corpus.py; here: what a real run hands to routing, what it
refuses, what it writes, and the director's options, with real users.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from mta.expand.context import ExpandContext, HeaderLines
from mta.expand.expander import expand
from mta.route.context import RoutingContext
from mta.route.engine import RoutingOutcome
from mta.route.filter import FilterEnv, FilterStatus, run_filter
from mta.route.filter_redirect import decode_result, encode_result
from mta.route.item import AddressItem
from mta.taint import Tainted, is_tainted
from tests.route.directors_support import SystemUser, accepted, deferred, failed, make_world, system_users, write
from tests.route.test_forwardfile import USERFORWARD, forward

__all__ = ["system_users"]  # the fixture, imported for pytest

HEADERS = ["Subject: urgent: the roof\n", "From: Carol <carol@example.net>\n", "To: erin@example.com\n"]


def env_for(headers: list[str] | None = None, **settings: Any) -> FilterEnv:
    lines = [Tainted(h) for h in (HEADERS if headers is None else headers)]

    def expander(text: str, variables: Mapping[str, Any]) -> str:
        names = {"home": "/home/erin", "reply_address": Tainted("carol@example.net"), **variables}
        return expand(text, ExpandContext(variables=names, headers=HeaderLines(lambda: lines)))

    base: dict[str, Any] = dict(
        expand=expander,
        headers=lines,
        local_part="erin",
        domain="example.com",
        sender="carol@example.net",
        return_path="carol@example.net",
        home="/home/erin",
        qualify_domain="example.com",
    )
    base.update(settings)
    return FilterEnv(**base)


def test_actions_of_a_real_run() -> None:
    result = run_filter(
        '# Exim filter\nif $h_subject: matches "^urgent: (.*)" then\n'
        '  deliver bob\n  save mail/urgent 0640\n  unseen pipe "/bin/record $1"\n  save $home/Maildir/\n'
        '  mail subject "Re: $h_subject:" text "got it" once .once\nendif\n',
        env_for(),
    )
    assert result.status is FilterStatus.DELIVERED
    kinds = [(a.kind, a.value, a.seen) for a in result.actions]
    assert kinds == [
        ("deliver", "bob@example.com", True),
        ("save", "/home/erin/mail/urgent", True),
        ("pipe", "|/bin/record $1", False),
        ("save", "/home/erin/Maildir/", True),
        ("mail", ">carol@example.net", False),
    ]
    assert result.actions[1].mode == 0o640
    # The pipe is expanded by the transport, with the match the filter saw.
    assert result.actions[2].pipe_variables == {"thisaddress": "", "0": "urgent: the roof", "1": "the roof"}
    reply = result.actions[4].reply
    assert reply is not None and reply.subject == "Re: urgent: the roof" and is_tainted(reply.subject)
    assert reply.to == "carol@example.net" and reply.once == "/home/erin/.once" and reply.once_repeat == 0


def test_message_data_never_names_a_file() -> None:
    headers = ["Subject: ../../etc/passwd\n"]
    result = run_filter("# Exim filter\nsave /var/mail/$h_subject:\n", env_for(headers))
    assert result.status is FilterStatus.ERROR and "tainted file name" in (result.message or "")
    # One whole component under a fixed directory is allowed, as everywhere (docs/security.md).
    result = run_filter("# Exim filter\nsave /var/mail/$h_x-folder:\n", env_for(["X-Folder: lists\n"]))
    assert [a.value for a in result.actions] == ["/var/mail/lists"]


def test_logwrite_appends_to_the_logfile(tmp_path: Path) -> None:
    log = tmp_path / "filter.log"
    text = f'# Exim filter\nlogfile {log} 0640\nlogwrite "one $h_subject:"\nlogwrite "two\\n"\n'
    assert run_filter(text, env_for(log_writes=True)).status is FilterStatus.NOT_DELIVERED
    assert log.read_text() == "one urgent: the roof\ntwo\n"
    assert log.stat().st_mode & 0o777 == 0o640
    # Verifying and -bt do not write; forbid_filter_logwrite makes it an error.
    run_filter(text, env_for(log_writes=False))
    assert log.read_text().count("one") == 1
    result = run_filter(text, env_for(log_writes=True, forbid_log=True))
    assert (result.status, result.message) == (FilterStatus.ERROR, "logwrite command forbidden")
    result = run_filter('# Exim filter\nlogwrite "x"\n', env_for(log_writes=True))
    assert result.message == 'attempt to obey "logwrite" command without a previous "logfile"'


@pytest.mark.parametrize(
    ("header", "sender"),
    [
        ("List-Id: <x.lists.example>\n", "x@example.net"),
        ("Precedence: junk\n", "x@example.net"),
        ("Auto-Submitted: auto-generated\n", "x@example.net"),
        ("X-Plain: 1\n", ""),
    ],
)
def test_vacation_is_never_sent_to_lists_robots_or_bounces(header: str, sender: str) -> None:
    headers = [*HEADERS, header]
    result = run_filter("# Exim filter\nvacation\nmail text hi\n", env_for(headers, sender=sender, return_path=sender))
    # `vacation` is never sent to these; `mail` is the user's own to guard (with "if personal").
    assert [(a.kind, a.vacation) for a in result.actions] == ([("mail", False)] if sender else [])


def test_system_filter_changes_headers_at_once() -> None:
    headers = ["Subject: hi\n", "X-Secret: 1\n", "X-Secret: 2\n"]
    env = env_for(headers, system=True, allowed=frozenset({"fail"}))
    result = run_filter(
        '# Exim filter\nheaders add "X-Scanned: yes"\nheaders remove x-secret\n'
        'if $h_x-secret: is "" and $h_x-scanned: is yes then fail text "<<log>>bounce" endif\n',
        env,
    )
    assert (result.status, result.message) == (FilterStatus.FAIL, "<<log>>bounce")
    assert env.headers == ["Subject: hi\n", "X-Scanned: yes\n"] and env.removed == ["x-secret"]


def test_the_childs_report_keeps_taint() -> None:
    result = run_filter(
        '# Exim filter\nsave /var/mail/$h_x-folder:\nmail subject "$h_subject:" text "plain"\n',
        env_for(["X-Folder: lists\n", "Subject: s\n"]),
    )
    back = decode_result(encode_result(result))
    assert back == result
    path = back.actions[0].value
    assert is_tainted(path) and path.spans == ((len("/var/mail/"), len(path)),)  # type: ignore[attr-defined]
    assert back.actions[1].reply is not None and not is_tainted(back.actions[1].reply.text)


# -- forwardfile with real users ---------------------------------------------------------------------

TRANSPORTS = ("local_mbox", "address_pipe", "address_file", "address_directory", "address_reply")

Users = dict[str, SystemUser]


@pytest.fixture
def users(system_users: Users) -> Users:
    for user in system_users.values():
        path = user.home / ".forward"
        if path.exists():
            path.unlink()
    return system_users


def route(
    tmp_path: Path, address: str, options: str = "", sender: str = "carol@example.net", address_test: bool = False
) -> RoutingOutcome:
    world = make_world(tmp_path, USERFORWARD.format(options=options))
    lines = [Tainted(h) for h in HEADERS]
    ctx = RoutingContext(
        world.config,
        sender,
        headers=HeaderLines(lambda: lines),
        transports=dict.fromkeys(TRANSPORTS),
        address_test=address_test,
    )
    return world.engine.route([AddressItem(address)], ctx)


def test_what_the_filter_sets_up_becomes_the_routing(tmp_path: Path, users: Users) -> None:
    alice, bob = users["alice"], users["bob"]
    address = f"{alice.name}@example.com"
    forward(alice, f"# Exim filter\nunseen deliver {bob.name}\nunseen save $home/copy\n")
    # Only unseen deliveries: they happen, and so does the normal delivery (to localuser).
    assert accepted(route(tmp_path, address)) == [
        (f"{alice.home}/copy", "address_file"),
        (address, "local_mbox"),
        (f"{bob.name}@example.com", "local_mbox"),
    ]
    forward(alice, "# Exim filter\nif $h_subject: contains nothing then save x endif\n")
    assert accepted(route(tmp_path, address)) == [(address, "local_mbox")]  # declined: normal delivery
    forward(alice, "# Exim filter\nseen finish\n")
    outcome = route(tmp_path, address)
    assert [i.address for i in outcome.discarded] == [address] and not outcome.accepted
    forward(alice, "# Exim filter\nvacation\n")
    assert deferred(route(tmp_path, address)) == {
        address: 'director userforward: ">carol@example.net" needs reply_transport, which is not set'
    }
    (item,) = route(tmp_path, address, "  reply_transport = address_reply\n").accepted[:1]
    assert item.transport_name == "address_reply" and item.reply is not None
    assert item.reply.file == f"{alice.home}/.vacation.msg" and item.uid == alice.uid


def test_without_a_message_error_message_is_false(tmp_path: Path, users: Users) -> None:
    """-bt and verification have no message: error_message is false, first_delivery true (Exim)."""
    alice, bob = users["alice"], users["bob"]
    address = f"{alice.name}@example.com"
    forward(alice, f"# Exim filter\nif error_message or not first_delivery then save x else deliver {bob.name} endif\n")
    bob_only = [(f"{bob.name}@example.com", "local_mbox")]
    assert accepted(route(tmp_path, address, sender="", address_test=True)) == bob_only
    assert accepted(route(tmp_path, address, sender="")) == [(f"{alice.home}/x", "address_file")]


def test_forbidden_pipes_files_and_replies_fail(tmp_path: Path, users: Users) -> None:
    alice = users["alice"]
    address = f"{alice.name}@example.com"
    forward(alice, '# Exim filter\npipe /bin/cat\nsave /tmp/x\nmail text "hi"\n')
    outcome = route(tmp_path, address, "  no_allow_pipe\n  no_allow_file\n  forbid_filter_reply\n")
    assert failed(outcome) == {
        "|/bin/cat": "delivery to pipe forbidden",
        "/tmp/x": "delivery to file forbidden",
        ">carol@example.net": "autoreply forbidden",
    }


def test_defer_fail_and_freeze_need_permission(tmp_path: Path, users: Users) -> None:
    alice = users["alice"]
    address = f"{alice.name}@example.com"
    path = forward(alice, '# Exim filter\nfail text "not here"\n')
    assert deferred(route(tmp_path, address)) == {
        address: f'director userforward: filter file {path}: filtering command "fail" is disabled: '
        "near line 2 of filter file"
    }
    assert failed(route(tmp_path, address, "  allow_fail\n")) == {address: "not here"}
    forward(alice, '# Exim filter\nfreeze "look at this"\n')
    outcome = route(tmp_path, address, "  allow_freeze\n")
    ((_item, error),) = outcome.deferred
    assert error.message == "look at this" and getattr(error, "freeze", False)


def test_the_filter_runs_as_the_user(tmp_path: Path, users: Users) -> None:
    alice, bob = users["alice"], users["bob"]
    address = f"{alice.name}@example.com"
    # pytest's tmp_path is root's alone: root could read the file, alice cannot.
    secret = write(tmp_path / "secret", "root only\n", mode=0o644)
    text = '# Exim filter\nif "${readfile{FILE}}" contains only then deliver BOB endif\n'.replace("BOB", bob.name)
    path = forward(alice, text.replace("FILE", str(secret)))
    message = deferred(route(tmp_path, address))[address]
    assert message.startswith(f"director userforward: filter file {path}: failed to expand")
    assert message.endswith("Permission denied")
    mine = write(alice.home / "mine", "only mine\n")
    forward(alice, text.replace("FILE", str(mine)))
    assert accepted(route(tmp_path, address)) == [(f"{bob.name}@example.com", "local_mbox")]
    message = deferred(route(tmp_path, address, "  forbid_filter_readfile\n"))[address]
    assert message.endswith("file insertions are not permitted")
