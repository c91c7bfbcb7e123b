"""The routing engine's generic options and rules, each through a real configuration file.

Every director here is a smartuser (it accepts any local part), so what decides
is the engine: preconditions (condition, senders, require_files, address_data,
verify modes, prefixes and suffixes), what it does after accepting (unseen,
errors_to, header edits, user/group, the transport check) and its own limits
(unqualified addresses, pipes without a transport, depth).  A fallback director
shows where an address went when a precondition said no.
"""

from __future__ import annotations

import grp
import pwd
from pathlib import Path

import pytest

from mta.config.loader import load_config
from mta.route.context import RoutingContext
from mta.route.engine import MAX_DEPTH, RoutingEngine, RoutingOutcome
from mta.route.item import AddressItem
from mta.runtime import build_driver
from tests.route.directors_support import TRANSPORT_NAMES, World, accepted, deferred, failed, make_world, write
from tests.support.users import absent_user

FALLBACK = """
fallback:
  driver = smartuser
  transport = catchall_mbox
"""


def director(options: str, transport: str = "local_mbox") -> str:
    """A smartuser director `d` with `options` (one per line), then the fallback."""
    lines = "".join(f"  {line}\n" for line in options.strip().split("\n") if line)
    return f"d:\n  driver = smartuser\n  transport = {transport}\n{lines}{FALLBACK}"


def who_took(world: World, address: str = "alice@example.com", **route: str | None) -> str | None:
    """The transport the address went to (local_mbox: director d; catchall_mbox: the fallback)."""
    outcome = world.route(address, **route)  # type: ignore[arg-type]
    assert not outcome.failed and not outcome.deferred, (failed(outcome), deferred(outcome))
    [(_, transport)] = accepted(outcome)
    return transport


# -- preconditions ------------------------------------------------------------------------------

CONDITIONS = [
    ("yes", True), ("1", True), ("true", True), ("anything", True), ("  TRUE ", True),
    ("", False), ("0", False), ("no", False), ("false", False), (" False ", False),
]


@pytest.mark.parametrize(("value", "runs"), CONDITIONS, ids=[repr(v) for v, _ in CONDITIONS])
def test_condition_is_exims_truth(tmp_path: Path, value: str, runs: bool) -> None:
    world = make_world(tmp_path, director(f"condition = ${{if eq{{1}}{{1}}{{{value}}}{{}}}}"))
    got = who_took(world)
    assert got == ("local_mbox" if runs else "catchall_mbox"), f"condition {value!r}: got {got}"


def test_condition_forced_failure_skips_and_other_failures_defer(tmp_path: Path) -> None:
    assert who_took(make_world(tmp_path, director("condition = ${if eq{a}{b}{yes}fail}"))) == "catchall_mbox"
    outcome = make_world(tmp_path, director("condition = ${lookup{x}lsearch{/no/such/file}}")).route(
        "alice@example.com"
    )
    assert "failed to expand condition of d" in deferred(outcome)["alice@example.com"]


@pytest.mark.parametrize(
    ("senders", "runs"),
    [("*@example.org", True), ("sender@*", True), ("*@other.example", False), ("! sender@example.org : *", False)],
)
def test_senders(tmp_path: Path, senders: str, runs: bool) -> None:
    world = make_world(tmp_path, director(f"senders = {senders}"))  # the sender is sender@example.org
    assert who_took(world) == ("local_mbox" if runs else "catchall_mbox")


def test_domains_and_local_parts_set_their_data(tmp_path: Path) -> None:
    table = write(tmp_path / "parts", "alice: alice-data\n")
    world = make_world(tmp_path, director(f"domains = example.com\nlocal_parts = lsearch;{table}"))
    outcome = world.route("alice@example.com", "bob@example.com", "carol@other.example.com")
    assert accepted(outcome) == [
        ("alice@example.com", "local_mbox"), ("bob@example.com", "catchall_mbox"),
        ("carol@other.example.com", "catchall_mbox"),
    ]
    [alice] = [i for i in outcome.accepted if i.address.startswith("alice")]
    assert (alice.local_part_data, alice.domain_data) == ("alice-data", "example.com")


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("domains = ${lookup{$domain}lsearch{/no/such/file}}", "director d: "),
        ("local_parts = lsearch;/no/such/file", "director d: "),
        ("senders = ${lookup{x}lsearch{/no/such/file}}", "director d: "),
    ],
    ids=["domains", "local_parts", "senders"],
)
def test_a_list_that_cannot_be_read_defers(tmp_path: Path, option: str, message: str) -> None:
    outcome = make_world(tmp_path, director(option)).route("alice@example.com")
    reason = deferred(outcome)["alice@example.com"]
    assert reason.startswith(message) and "/no/such/file" in reason, reason


def test_require_files(tmp_path: Path) -> None:
    present = write(tmp_path / "present", "")
    absent = tmp_path / "absent"
    cases = [
        (f"{present}", True),
        (f"{absent}", False),
        (f"!{absent}", True),
        (f"!{present}", False),
        (f"{present} : {absent}", False),
        (f"relative/file : {present}", True),  # not a path: not a file test
        (f"+{present}", True),
        (f"+{absent}", False),
        (f"${{if eq{{a}}{{b}}{{{present}}}fail}}", False),  # forced failure: the driver does not run
    ]
    got = [(text, who_took(make_world(tmp_path, director(f"require_files = {text}")))) for text, _ in cases]
    want = [(text, "local_mbox" if runs else "catchall_mbox") for text, runs in cases]
    assert got == want


def test_address_data(tmp_path: Path) -> None:
    world = make_world(tmp_path, director("address_data = ${if eq{$local_part}{alice}{seat 12}fail}"))
    outcome = world.route("alice@example.com", "bob@example.com")
    assert accepted(outcome) == [("alice@example.com", "local_mbox"), ("bob@example.com", "catchall_mbox")]
    assert [i.address_data for i in outcome.accepted if i.address.startswith("alice")] == ["seat 12"]


VERIFY = [
    # (option on d, verify mode, d runs?)
    ("verify_only", None, False),
    ("verify_only", "recipient", True),
    ("no_verify", "recipient", False),
    ("no_verify", None, True),
    ("no_verify_recipient", "recipient", False),
    ("no_verify_recipient", "sender", True),
    ("no_verify_sender", "sender", False),
    ("no_verify_sender", "recipient", True),
]


@pytest.mark.parametrize(("option", "mode", "runs"), VERIFY, ids=[f"{o}-{m}" for o, m, _ in VERIFY])
def test_verify_modes(tmp_path: Path, option: str, mode: str | None, runs: bool) -> None:
    world = make_world(tmp_path, director(option))
    assert who_took(world, verify=mode) == ("local_mbox" if runs else "catchall_mbox")


AFFIXES = [
    # (options, address, d runs?, (prefix, local part, suffix) seen by d)
    ("local_part_prefix = owner-", "owner-list@example.com", True, ("owner-", "list", "")),
    ("local_part_prefix = owner-", "list@example.com", False, None),
    ("local_part_prefix = owner-\nlocal_part_prefix_optional", "list@example.com", True, ("", "list", "")),
    ("local_part_suffix = -request : -admin", "list-admin@example.com", True, ("", "list", "-admin")),
    ("local_part_suffix = -request\nlocal_parts = list", "list-request@example.com", True, ("", "list", "-request")),
    ("local_part_suffix = -request\nlocal_parts = other", "list-request@example.com", False, None),
]


@pytest.mark.parametrize(("options", "address", "runs", "parts"), AFFIXES, ids=[f"{a[1]}:{a[0]}" for a in AFFIXES])
def test_prefix_and_suffix(
    tmp_path: Path, options: str, address: str, runs: bool, parts: tuple[str, str, str] | None
) -> None:
    outcome = make_world(tmp_path, director(options)).route(address)
    [item] = outcome.accepted
    assert item.transport_name == ("local_mbox" if runs else "catchall_mbox")
    if parts is not None:
        assert (item.prefix, item.local_part, item.suffix) == parts


# -- after accepting ----------------------------------------------------------------------------


def test_unseen_sends_a_copy_on_and_done_addresses_are_skipped(tmp_path: Path) -> None:
    world = make_world(tmp_path, director("unseen"))
    outcome = world.route("alice@example.com")
    assert accepted(outcome) == [("alice@example.com", "catchall_mbox"), ("alice@example.com", "local_mbox")]
    # Delivered in an earlier attempt (its key in `done`): neither copy again.
    ctx = RoutingContext(world.config, "sender@example.org", transports=dict.fromkeys(TRANSPORT_NAMES))
    again = world.engine.route([AddressItem("alice@example.com")], ctx, done={"alice@example.com"})
    assert again.accepted == [] and again.failed == [] and again.deferred == []
    # One copy delivered (its key names the transport): only the other goes again.
    half = world.engine.route([AddressItem("alice@example.com")], ctx, done={"alice@example.com/local_mbox"})
    assert [(i.address, i.transport_name) for i in half.accepted] == [("alice@example.com", "catchall_mbox")]


@pytest.mark.parametrize(("value", "want"), [("<>", ""), ("  ", ""), (" owner@example.com ", "owner@example.com")])
def test_errors_to(tmp_path: Path, value: str, want: str) -> None:
    outcome = make_world(tmp_path, director(f'errors_to = "{value}"')).route("alice@example.com")
    assert [i.errors_to for i in outcome.accepted] == [want]


def test_header_edits_collect_on_the_address(tmp_path: Path) -> None:
    options = 'headers_add = "X-Routed: by d\\nX-Local: $local_part"\nheaders_remove = X-Spam : X-Secret'
    [item] = make_world(tmp_path, director(options)).route("alice@example.com").accepted
    assert item.headers_add == ["X-Routed: by d", "X-Local: alice"]
    assert item.headers_remove == ["X-Spam", "X-Secret"]
    empty = 'headers_add = ${if eq{a}{b}{X-A: 1}{}}\nheaders_remove = ${if eq{a}{b}{X-A}{}}'
    [plain] = make_world(tmp_path, director(empty)).route("alice@example.com").accepted
    assert (plain.headers_add, plain.headers_remove) == ([], [])


def test_user_and_group_by_name_and_number(tmp_path: Path) -> None:
    someone = next(entry for entry in pwd.getpwall() if entry.pw_uid != 0)
    group = grp.getgrgid(someone.pw_gid).gr_name if someone.pw_gid in {g.gr_gid for g in grp.getgrall()} else None
    [by_name] = make_world(tmp_path, director(f"user = {someone.pw_name}\ninitgroups")).route(
        "alice@example.com").accepted
    assert (by_name.uid, by_name.gid, by_name.initgroups) == (someone.pw_uid, someone.pw_gid, True)
    [by_number] = make_world(tmp_path, director(f"user = {someone.pw_uid}\ngroup = 0")).route(
        "alice@example.com").accepted
    assert (by_number.uid, by_number.gid, by_number.initgroups) == (someone.pw_uid, 0, False)
    if group is not None:
        [named_group] = make_world(tmp_path, director(f"group = {group}")).route("alice@example.com").accepted
        assert (named_group.uid, named_group.gid) == (None, someone.pw_gid)


def router_outcome(tmp_path: Path, options: str, address: str = "bob@[192.0.2.7]") -> RoutingOutcome:
    """Route `address` through one ipliteral router with `options` (routers leave user/group to the engine)."""
    path = tmp_path / "mta.conf"
    lines = "".join(f"  {line}\n" for line in options.strip().split("\n") if line)
    path.write_text(f"spool_directory = {tmp_path}/spool\nprimary_hostname = mail.example.com\n"
                    f"begin routers\nliteral:\n  driver = ipliteral\n  transport = local_file\n{lines}")
    config = load_config(str(path))
    routers = [build_driver(spec)[0] for spec in config.drivers["routers"]]
    ctx = RoutingContext(config, "s@example.org", transports={"local_file": None})
    return RoutingEngine([], routers, config).route([AddressItem(address)], ctx)  # type: ignore[arg-type]


def test_router_user_and_group(tmp_path: Path) -> None:
    someone = next(entry for entry in pwd.getpwall() if entry.pw_uid != 0)
    [by_name] = router_outcome(tmp_path, f"user = {someone.pw_name}\ninitgroups").accepted
    assert (by_name.uid, by_name.gid, by_name.initgroups) == (someone.pw_uid, someone.pw_gid, True)
    [by_number] = router_outcome(tmp_path, f"user = {someone.pw_uid}\ngroup = 0").accepted
    assert (by_number.uid, by_number.gid) == (someone.pw_uid, 0)
    [named] = router_outcome(tmp_path, f"group = {grp.getgrgid(0).gr_name}").accepted
    assert (named.uid, named.gid) == (None, 0)


@pytest.mark.parametrize("option", ["user", "group"])
def test_unknown_user_or_group_defers(tmp_path: Path, option: str) -> None:
    name = absent_user("ghost")
    outcome = router_outcome(tmp_path, f"{option} = {name}")
    assert deferred(outcome) == {"bob@[192.0.2.7]": f'router literal: {option} "{name}" was not found'}
    director_outcome = make_world(tmp_path, director(f"{option} = {name}")).route("alice@example.com")
    assert deferred(director_outcome) == {"alice@example.com": f"director d: {option} '{name}' is unknown"}


def test_transport_must_exist(tmp_path: Path) -> None:
    missing = make_world(tmp_path, director("", transport="no_such_transport")).route("alice@example.com")
    assert deferred(missing) == {"alice@example.com": 'director d: transport "no_such_transport" is not defined'}
    expanded = make_world(tmp_path, director("", transport="${if eq{$local_part}{alice}{local_mbox}{}}"))
    outcome = expanded.route("alice@example.com", "bob@example.com")
    assert accepted(outcome) == [("alice@example.com", "local_mbox")]
    assert deferred(outcome) == {"bob@example.com": "director d accepted bob@example.com but has no transport"}
    # Verifying needs no transport: the address is routable, that is all that is asked.
    verified = expanded.route("bob@example.com", verify="recipient")
    assert [(i.address, i.transport_name) for i in verified.accepted] == [("bob@example.com", "")]


# -- the engine's own limits ----------------------------------------------------------------------


def test_unqualified_address_fails(tmp_path: Path) -> None:
    outcome = make_world(tmp_path, director("")).route("alice")
    assert failed(outcome) == {"alice": "unqualified address alice cannot be routed"}


def test_an_endless_chain_of_new_addresses_fails_at_the_depth_limit(tmp_path: Path) -> None:
    chain = "".join(f"a{n}: a{n + 1}\n" for n in range(MAX_DEPTH + 5))
    aliases = write(tmp_path / "aliases", chain)
    world = make_world(tmp_path, f"aliases:\n  driver = aliasfile\n  file = {aliases}\n{FALLBACK}")
    outcome: RoutingOutcome = world.route("a0@example.com")
    [(item, error)] = outcome.failed
    assert error.message == f"too many levels of aliasing or forwarding (more than {MAX_DEPTH}): loop?"
    assert item.depth == MAX_DEPTH + 1 and outcome.accepted == []


def test_no_more_turns_a_decline_into_the_cannot_route_message(tmp_path: Path) -> None:
    aliases = write(tmp_path / "aliases", "sales: alice\n")
    world = make_world(
        tmp_path,
        f"aliases:\n  driver = aliasfile\n  file = {aliases}\n  local_parts = sales : bob\n  no_more\n"
        "  cannot_route_message = no alias for $local_part\n" + FALLBACK,
    )
    outcome = world.route("sales@example.com", "bob@example.com")
    assert failed(outcome) == {"bob@example.com": "no alias for bob"}
    assert accepted(outcome) == [("alice@example.com", "catchall_mbox")]


def test_debug_print_and_trace(tmp_path: Path) -> None:
    world = make_world(tmp_path, director('debug_print = "d sees $local_part at $domain"'))
    lines: list[str] = []
    ctx = RoutingContext(world.config, "s@example.org", transports=dict.fromkeys(TRANSPORT_NAMES), debug=lines.append)
    world.engine.route([AddressItem("alice@example.com")], ctx)
    assert lines == ["director d: considering alice@example.com", "d sees alice at example.com"]
