"""aliasfile, localuser and smartuser through the routing engine, end to end.

forwardfile has its own file (test_forwardfile.py).  Tests that need real
passwd entries use the `system_users` fixture (root only).
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from mta.config.loader import load_config
from mta.errors import ConfigError
from mta.expand import build_lmdb_from_lsearch
from mta.route.context import RoutingContext
from mta.route.directors import DIRECTORS
from mta.route.directors.aliasfile import AliasfileDirector
from mta.route.directors.localuser import LocaluserDirector
from mta.route.directors.smartuser import SmartuserDirector
from mta.route.engine import RoutingEngine
from mta.route.item import AddressItem
from mta.route.redirect import NO_REDIRECT
from mta.runtime import build_runtime
from mta.taint import is_tainted
from mta.transports import TRANSPORTS
from tests.route.directors_support import (
    SystemUser,
    accepted,
    chain,
    deferred,
    failed,
    make_world,
    system_users,
    write,
)
from tests.support.users import absent_group, absent_user

__all__ = ["system_users"]  # the fixture, imported for pytest

# The alias file of research/exim-samples (samples.aliases), pipe path made local.
SAMPLE_ALIASES = """\
# aliases for the samples
sales:   help
help:    alice
alerts:  "|/usr/bin/tee -a /srv/exim-samples/pipe/alerts.out"
"""

# The Exim sample's routers as directors: system_aliases, then an accept for alice and bob.
SAMPLE_DIRECTORS = """\
system_aliases:
  driver = aliasfile
  file = {aliases}
  search_type = {search_type}
  allow_fail
  allow_defer
  pipe_transport = address_pipe

localuser:
  driver = smartuser
  local_parts = alice : bob
  transport = local_mbox
  cannot_route_message = Unknown user
"""

GHOST_USER, GHOST_GROUP = absent_user("ghost"), absent_group("ghost")


def sample_world(tmp_path: Path, aliases: str = SAMPLE_ALIASES, search_type: str = "lsearch", options: str = ""):  # type: ignore[no-untyped-def]
    path = write(tmp_path / "aliases", aliases)
    text = SAMPLE_DIRECTORS.format(aliases=path, search_type=search_type)
    if options:
        text = text.replace("  pipe_transport = address_pipe\n", f"  pipe_transport = address_pipe\n{options}")
    return make_world(tmp_path, text)


def test_registry_names_every_director() -> None:
    assert sorted(DIRECTORS) == ["aliasfile", "forwardfile", "localuser", "smartuser"]


# -- aliasfile -------------------------------------------------------------------------


@pytest.mark.parametrize("search_type", ["lsearch", "lmdb"])
def test_exim_sample_alias_chain(tmp_path: Path, search_type: str) -> None:
    """exim -bt sales@example.com: alice <-- help <-- sales, router localuser, transport local_mbox."""
    world = sample_world(tmp_path)
    if search_type == "lmdb":
        build_lmdb_from_lsearch(str(tmp_path / "aliases"), str(tmp_path / "aliases.lmdb"))
        (tmp_path / "aliases").unlink()  # the lookup must use the database
        world = make_world(tmp_path, SAMPLE_DIRECTORS.format(aliases=tmp_path / "aliases.lmdb", search_type="lmdb"))
    outcome = world.route("sales@example.com")
    assert accepted(outcome) == [("alice@example.com", "local_mbox")]
    alice = outcome.accepted[0]
    assert chain(alice) == ["alice@example.com", "help@example.com", "sales@example.com"]
    assert alice.router_name == "localuser"
    assert not outcome.failed and not outcome.deferred


def test_alias_to_pipe_child_is_not_routed(tmp_path: Path) -> None:
    outcome = sample_world(tmp_path).route("alerts@example.com")
    [pipe] = outcome.accepted
    assert pipe.pipe_command == "|/usr/bin/tee -a /srv/exim-samples/pipe/alerts.out"
    assert pipe.transport_name == "address_pipe"
    assert pipe.router_name == "system_aliases"
    assert pipe.parent is not None and pipe.parent.address == "alerts@example.com"
    # The transport's user/group decide for alias pipes.
    assert (pipe.uid, pipe.gid) == (None, None)
    # As Exim's mainlog: "=> |/usr/bin/tee -a ... <alerts@example.com> R=system_aliases T=address_pipe"
    assert pipe.log_name() == "|/usr/bin/tee -a /srv/exim-samples/pipe/alerts.out <alerts@example.com>"


def test_unknown_and_missing_key(tmp_path: Path) -> None:
    mallory = absent_user("mallory")
    outcome = sample_world(tmp_path).route(f"{mallory}@example.com", "Sales@example.com")
    assert list(failed(outcome)) == [f"{mallory}@example.com"]
    assert accepted(outcome) == [("alice@example.com", "local_mbox")]  # key lookup is caseless


SPECIALS = [
    ("fail", "x: :fail: No such list\n", "failed", "No such list"),
    ("fail with code", "x: :fail: 550 5.1.1 gone\n", "failed", "gone"),
    ("defer", "x: :defer: list is being moved\n", "deferred", "list is being moved"),
    ("blackhole", "x: :blackhole:\n", "discarded", None),
    ("dev null", "x: /dev/null\n", "discarded", None),
    ("unknown is no data", "x: :unknown:\n", "failed", None),
    ("empty value", "x:\n", "failed", None),
    ("skipped bad item", "x: bad address@, alice\n", "accepted", None),
]


@pytest.mark.parametrize(("aliases", "result", "message"), [r[1:] for r in SPECIALS], ids=[r[0] for r in SPECIALS])
def test_special_items(tmp_path: Path, aliases: str, result: str, message: str | None) -> None:
    outcome = sample_world(tmp_path, aliases, options="  skip_syntax_errors\n").route("x@example.com")
    if result == "failed":
        # No data: the director declines, and no other director takes x.
        assert list(failed(outcome)) == ["x@example.com"]
        if message is not None:
            assert failed(outcome) == {"x@example.com": message}
    elif result == "deferred":
        assert deferred(outcome) == {"x@example.com": message}
    elif result == "discarded":
        assert [i.address for i in outcome.discarded] == ["x@example.com"]
        assert not outcome.accepted and not outcome.failed and not outcome.deferred
    else:
        assert accepted(outcome) == [("alice@example.com", "local_mbox")]
        assert "bad address@" in outcome.accepted[0].parent.extra["syntax_errors"][0]  # type: ignore[union-attr]


NOT_ALLOWED = [
    ("fail needs allow_fail", "x: :fail: nope\n", "  no_allow_fail\n", '":fail:" is not permitted'),
    ("defer needs allow_defer", "x: :defer: later\n", "  no_allow_defer\n", '":defer:" is not permitted'),
    ("pipe needs allow_pipe", "x: |/bin/true\n", "  no_allow_pipe\n", "pipes are not permitted"),
    ("file needs allow_file", "x: /tmp/x\n", "  allow_file = false\n", "files are not permitted"),
    ("file needs file_transport", "x: /tmp/x\n", "", '"/tmp/x" needs file_transport, which is not set'),
    ("unknown transport", "x: /tmp/x/\n", "  directory_transport = nosuch\n", 'directory_transport "nosuch" is not'),
    ("syntax error", "x: alice, bad address@\n", "", 'entry "x": unexpected "address"'),
]


@pytest.mark.parametrize(
    ("aliases", "options", "reason"), [r[1:] for r in NOT_ALLOWED], ids=[r[0] for r in NOT_ALLOWED]
)
def test_errors_in_alias_data_defer(tmp_path: Path, aliases: str, options: str, reason: str) -> None:
    if "no_allow_fail" in options or "no_allow_defer" in options:
        # The sample director sets allow_fail and allow_defer; leave them out to test the defaults.
        text = SAMPLE_DIRECTORS.replace("  allow_fail\n  allow_defer\n", "")
        world = make_world(tmp_path, text.format(aliases=write(tmp_path / "aliases", aliases), search_type="lsearch"))
    else:
        world = sample_world(tmp_path, aliases, options=options)
    outcome = world.route("x@example.com")
    message = deferred(outcome)["x@example.com"]
    assert reason in message, message
    assert message.startswith("director system_aliases: ")
    assert not outcome.accepted


def test_include(tmp_path: Path) -> None:
    staff = write(tmp_path / "staff", "# the staff\nalice\nbob\n")
    outcome = sample_world(tmp_path, f"staff: :include:{staff}\n").route("staff@example.com")
    assert accepted(outcome) == [("alice@example.com", "local_mbox"), ("bob@example.com", "local_mbox")]


def test_include_refused_when_not_allowed_or_writable(tmp_path: Path) -> None:
    staff = write(tmp_path / "staff", "alice\n")
    outcome = sample_world(tmp_path, f"staff: :include:{staff}\n", options="  no_allow_include\n").route(
        "staff@example.com")
    assert ":include: is not permitted" in deferred(outcome)["staff@example.com"]
    staff.chmod(0o666)
    outcome = sample_world(tmp_path, f"staff: :include:{staff}\n").route("staff@example.com")
    assert f"included file {staff} is writable by group and others" in deferred(outcome)["staff@example.com"]


def test_backslash_item_is_not_aliased_again(tmp_path: Path) -> None:
    aliases = "x: \\bob, alice\nbob: :fail: bob has left\n"
    outcome = sample_world(tmp_path, aliases).route("x@other.example.com")
    # \bob is qualified with the incoming domain and skips the alias "bob" that would fail it.
    assert accepted(outcome) == [("alice@example.com", "local_mbox"), ("bob@other.example.com", "local_mbox")]
    bob = next(i for i in outcome.accepted if i.address.startswith("bob"))
    assert bob.extra[NO_REDIRECT] is True
    # Without the backslash the alias applies.
    outcome = sample_world(tmp_path, "x: bob\nbob: :fail: bob has left\n").route("x@example.com")
    assert failed(outcome) == {"bob@example.com": "bob has left"}


def test_qualification(tmp_path: Path) -> None:
    aliases = "x: alice\n"
    outcome = sample_world(tmp_path, aliases).route("x@other.example.com")
    assert accepted(outcome) == [("alice@example.com", "local_mbox")]  # qualify_recipient
    outcome = sample_world(tmp_path, aliases, options="  qualify_preserve_domain\n").route("x@other.example.com")
    assert accepted(outcome) == [("alice@other.example.com", "local_mbox")]


def test_include_domain(tmp_path: Path) -> None:
    aliases = "info@example.com: alice\ninfo@other.example.com: bob\ninfo: nobody-matches-this\n"
    world = sample_world(tmp_path, aliases, options="  include_domain\n")
    outcome = world.route("info@example.com", "info@other.example.com", "info@lists.example.com")
    assert accepted(outcome) == [("alice@example.com", "local_mbox"), ("bob@example.com", "local_mbox")]
    assert list(failed(outcome)) == ["info@lists.example.com"]


def test_lmdb_with_star_default(tmp_path: Path) -> None:
    write(tmp_path / "src", "sales: help\nhelp: \\alice\n*: \\bob\n")
    build_lmdb_from_lsearch(str(tmp_path / "src"), str(tmp_path / "aliases.lmdb"))
    world = make_world(tmp_path, SAMPLE_DIRECTORS.format(aliases=tmp_path / "aliases.lmdb", search_type="lmdb*"))
    outcome = world.route("sales@example.com", "whoever@example.com")
    assert accepted(outcome) == [("alice@example.com", "local_mbox"), ("bob@example.com", "local_mbox")]


def test_missing_file_defers_unless_optional(tmp_path: Path) -> None:
    text = SAMPLE_DIRECTORS.format(aliases=tmp_path / "none", search_type="lsearch")
    outcome = make_world(tmp_path, text).route("alice@example.com")
    assert "alias file" in deferred(outcome)["alice@example.com"]
    assert "does not exist" in deferred(outcome)["alice@example.com"]
    optional = text.replace("  allow_fail\n", "  allow_fail\n  optional\n")
    outcome = make_world(tmp_path, optional).route("alice@example.com")
    assert accepted(outcome) == [("alice@example.com", "local_mbox")]


@pytest.mark.parametrize(
    ("mode", "modemask", "refused"),
    [(0o644, None, None), (0o664, None, "group"), (0o646, None, "others"), (0o666, None, "group and others"),
     (0o664, "002", None), (0o640, "077", "has forbidden mode bits")],
)
def test_modemask(tmp_path: Path, mode: int, modemask: str | None, refused: str | None) -> None:
    options = f"  modemask = {modemask}\n" if modemask else ""
    world = sample_world(tmp_path, options=options)
    (tmp_path / "aliases").chmod(mode)
    outcome = world.route("sales@example.com")
    if refused is None:
        assert accepted(outcome) == [("alice@example.com", "local_mbox")]
        return
    message = deferred(outcome)["sales@example.com"]
    assert f"alias file {tmp_path / 'aliases'}" in message
    assert (f"writable by {refused}" if refused != "has forbidden mode bits" else refused) in message
    assert f"mode {mode:04o}" in message


@pytest.mark.parametrize(
    ("options", "ok"),
    [("  owners = root\n", True), ("  owners = nobody : daemon\n", False), ("  owners = 0\n", True),
     ("  owngroups = root\n", True), ("  owngroups = nogroup\n", False)],
)
def test_owners(tmp_path: Path, options: str, ok: bool) -> None:
    world = sample_world(tmp_path, options=options)
    os.chown(tmp_path / "aliases", 0, 0)
    outcome = world.route("sales@example.com")
    if ok:
        assert accepted(outcome) == [("alice@example.com", "local_mbox")]
    else:
        message = deferred(outcome)["sales@example.com"]
        assert "allowed owners" in message or "allowed groups" in message


def test_expand_option(tmp_path: Path) -> None:
    aliases = "x: $local_part-archive@example.org, ${if eq{$domain}{example.com}{alice}{bob}}\n"
    outcome = sample_world(tmp_path, aliases, options="  expand\n").route("x@example.com")
    assert sorted(i.address for i in outcome.accepted) == ["alice@example.com"]
    # x-archive@example.org is remote: no routers here, so it fails as unrouteable.
    assert list(failed(outcome)) == ["x-archive@example.org"]
    # Without `expand` the text is an address as written.
    outcome = sample_world(tmp_path, "x: $local_part\n").route("x@example.com")
    assert list(failed(outcome)) == ["$local_part@example.com"]


def test_expanded_value_with_tainted_data_gives_no_pipe(tmp_path: Path) -> None:
    aliases = 'x: "|/bin/echo $local_part"\n'
    outcome = sample_world(tmp_path, aliases, options="  expand\n").route("x@example.com")
    assert "a pipe item cannot come from tainted data" in deferred(outcome)["x@example.com"]
    assert not outcome.accepted


def test_tainted_file_name_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "aliases-sales", "sales: alice\n")
    text = SAMPLE_DIRECTORS.format(aliases=f"{tmp_path}/aliases-$local_part", search_type="lsearch")
    outcome = make_world(tmp_path, text).route("sales@example.com")
    assert "tainted file name" in deferred(outcome)["sales@example.com"]
    # $domain_data comes from the domains list, not from the address: allowed.
    write(tmp_path / "aliases-example.com", "sales: alice\n")
    text = text.replace("aliases-$local_part", "aliases-$domain_data").replace(
        "  search_type", "  domains = example.com\n  search_type")
    outcome = make_world(tmp_path, text).route("sales@example.com")
    assert accepted(outcome) == [("alice@example.com", "local_mbox")]


def test_alias_loop_ends_cleanly(tmp_path: Path) -> None:
    """a -> b -> a: the second a skips the alias director (ancestor rule) and localuser fails it."""
    loopa, loopb, self_ = absent_user("loopa"), absent_user("loopb"), absent_user("self")
    aliases = write(tmp_path / "aliases", f"{loopa}: {loopb}\n{loopb}: {loopa}\n{self_}: {self_}, alice\n")
    world = make_world(tmp_path, f"""\
system_aliases:
  driver = aliasfile
  file = {aliases}

localuser:
  driver = localuser
  transport = local_mbox
  cannot_route_message = Unknown user

fallback:
  driver = smartuser
  local_parts = alice
  transport = local_mbox
""")
    outcome = world.route(f"{loopa}@example.com", f"{self_}@example.com")
    assert failed(outcome) == {f"{loopa}@example.com": "Unknown user", f"{self_}@example.com": "Unknown user"}
    [(looped, _exc)] = [(i, e) for i, e in outcome.failed if i.parent is not None and i.address.startswith(loopa)]
    assert chain(looped) == [f"{loopa}@example.com", f"{loopb}@example.com", f"{loopa}@example.com"]
    assert accepted(outcome) == [("alice@example.com", "local_mbox")]


def test_check_at_startup(tmp_path: Path) -> None:
    world = sample_world(tmp_path, options="  file_transport = nosuch\n")
    with pytest.raises(ConfigError) as info:
        world.directors[0].check(world.runtime())
    assert 'file_transport "nosuch" is not defined' in str(info.value)
    line = (tmp_path / "mta.conf").read_text().splitlines().index("system_aliases:") + 1
    assert (info.value.path, info.value.line) == (str(tmp_path / "mta.conf"), line)
    world.directors[0].check(world.runtime(("address_pipe", "local_mbox", "nosuch")))


@pytest.mark.parametrize(
    ("options", "reason"),
    [("  search_type = nosuch\n", 'unknown lookup type "nosuch"'),
     (f"  owners = {GHOST_USER}\n", f"owners: unknown user '{GHOST_USER}'"),
     (f"  owngroups = {GHOST_GROUP}\n", f"owngroups: unknown group '{GHOST_GROUP}'")],
    ids=["search_type", "owners", "owngroups"],  # the names are random: ids must not be, for pytest-xdist
)
def test_check_rejects_bad_options(tmp_path: Path, options: str, reason: str) -> None:
    text = SAMPLE_DIRECTORS.replace("  search_type = {search_type}\n", "").format(aliases=tmp_path / "a")
    world = make_world(tmp_path, text.replace("  allow_fail\n", "  allow_fail\n" + options))
    assert isinstance(world.directors[0], AliasfileDirector)
    with pytest.raises(ConfigError, match=reason):
        world.directors[0].check(world.runtime())


def test_check_needs_file(tmp_path: Path) -> None:
    world = make_world(tmp_path, "a:\n  driver = aliasfile\n")
    with pytest.raises(ConfigError, match='"file" option must be set'):
        world.directors[0].check(world.runtime())


# -- smartuser -------------------------------------------------------------------------


SMART = """\
rewrite:
  driver = smartuser
  local_parts = ! postmaster
  new_address = {new_address}

catchall:
  driver = smartuser
  transport = catchall_mbox
"""


@pytest.mark.parametrize(
    ("new_address", "address", "want"),
    [("postmaster@$domain", "anyone@lists.example.com", "postmaster@lists.example.com"),
     ("postmaster", "anyone@lists.example.com", "postmaster@example.com"),
     ("${if !eq{$local_part}{keep}{postmaster}fail}", "keep@example.com", "keep@example.com")],
)
def test_smartuser_new_address(tmp_path: Path, new_address: str, address: str, want: str) -> None:
    outcome = make_world(tmp_path, SMART.format(new_address=new_address)).route(address)
    assert accepted(outcome) == [(want, "catchall_mbox")]
    assert outcome.accepted[0].router_name == "catchall"


def test_smartuser_never_makes_a_pipe(tmp_path: Path) -> None:
    world = make_world(tmp_path, SMART.format(new_address="$local_part@example.org"))
    outcome = world.route('"|/bin/sh -c id"@example.com')
    assert not outcome.accepted
    assert "is not a valid address" in failed(outcome)['"|/bin/sh -c id"@example.com']
    outcome = world.route("|cmd@example.com")
    assert failed(outcome) == {"|cmd@example.org": "Unrouteable address"}  # an address, and remote


def test_smartuser_config_errors(tmp_path: Path) -> None:
    both = make_world(tmp_path, "x:\n  driver = smartuser\n  new_address = a@b.example\n  transport = local_mbox\n")
    with pytest.raises(ConfigError, match="not both"):
        both.directors[0].check(both.runtime())
    neither = make_world(tmp_path, "x:\n  driver = smartuser\n")
    assert isinstance(neither.directors[0], SmartuserDirector)
    with pytest.raises(ConfigError, match="needs new_address or transport"):
        neither.directors[0].check(neither.runtime())
    missing = make_world(tmp_path, "x:\n  driver = smartuser\n  transport = nosuch\n")
    with pytest.raises(ConfigError, match='transport "nosuch" is not defined'):
        missing.directors[0].check(missing.runtime())


# -- localuser (real users) ---------------------------------------------------------------


LOCALUSER = """\
localuser:
  driver = localuser
  transport = local_mbox
  cannot_route_message = Unknown user
"""


def test_localuser_accepts_a_real_user(tmp_path: Path, system_users: dict[str, SystemUser]) -> None:
    alice = system_users["alice"]
    outcome = make_world(tmp_path, LOCALUSER).route(f"{alice.name.upper()}@example.com")
    [item] = outcome.accepted
    assert item.transport_name == "local_mbox"
    assert (item.home, item.uid, item.gid) == (str(alice.home), alice.uid, alice.gid)
    assert item.local_part_data == alice.name and not is_tainted(item.local_part_data)
    assert item.address == f"{alice.name.upper()}@example.com"  # delivered as written


def test_localuser_unknown_user_fails(tmp_path: Path) -> None:
    stranger = absent_user("stranger")
    outcome = make_world(tmp_path, LOCALUSER).route(f"{stranger}@example.com")
    assert failed(outcome) == {f"{stranger}@example.com": "Unknown user"}


def test_localuser_match_directory(tmp_path: Path, system_users: dict[str, SystemUser]) -> None:
    alice = system_users["alice"]
    for pattern, ok in ((f"{alice.home.parent}/*", False), (f"*/{alice.name}", True), (f"^{alice.home.parent}/", True),
                        (str(alice.home), True), ("/nowhere", False)):
        world = make_world(tmp_path, LOCALUSER + f"  match_directory = {pattern}\n")
        outcome = world.route(f"{alice.name}@example.com")
        assert bool(outcome.accepted) is ok, pattern


def test_localuser_generic_user_overrides(tmp_path: Path, system_users: dict[str, SystemUser]) -> None:
    alice, bob = system_users["alice"], system_users["bob"]
    outcome = make_world(tmp_path, LOCALUSER + f"  user = {bob.name}\n").route(f"{alice.name}@example.com")
    [item] = outcome.accepted
    assert (item.uid, item.gid, item.home) == (bob.uid, bob.gid, str(alice.home))


@pytest.mark.parametrize(
    "address",
    ['"|/bin/sh -c id"@example.com', "|cmd@example.com", "/etc/passwd@example.com", '"/etc/passwd"@example.com',
     '"../../etc/passwd"@example.com', '"root\\"@x"@example.com'],
)
def test_hostile_local_parts_are_just_unknown_users(tmp_path: Path, address: str) -> None:
    """No director turns a local part into a pipe or a file; localuser fails them as unknown."""
    aliases = write(tmp_path / "aliases", "postmaster: root\n")
    world = make_world(tmp_path, f"""\
system_aliases:
  driver = aliasfile
  file = {aliases}
  pipe_transport = address_pipe
  file_transport = address_file

userforward:
  driver = forwardfile
  file = .forward
  pipe_transport = address_pipe
  file_transport = address_file

""" + LOCALUSER)
    outcome = world.route(address)
    assert not outcome.accepted and not outcome.deferred
    [(item, exc)] = outcome.failed
    assert exc.message == "Unknown user"
    assert item.pipe_command is None and item.file_path is None


def test_localuser_check_passes(tmp_path: Path) -> None:
    world = make_world(tmp_path, LOCALUSER)
    assert isinstance(world.directors[0], LocaluserDirector)
    world.directors[0].check(world.runtime())


def test_alias_pipes_run_as_director_user(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    outcome = sample_world(tmp_path, options="  user = nobody\n").route("alerts@example.com")
    [pipe] = outcome.accepted
    assert (pipe.uid, pipe.gid) == (nobody.pw_uid, nobody.pw_gid)
    # A bad user only matters when there is a pipe or file to run.
    bad = f"  user = {GHOST_USER}\n"
    assert accepted(sample_world(tmp_path, options=bad).route("sales@example.com")) == [
        ("alice@example.com", "local_mbox")]
    outcome = sample_world(tmp_path, options=bad).route("alerts@example.com")
    assert f"user '{GHOST_USER}' is unknown" in deferred(outcome)["alerts@example.com"]


def test_sample_config_with_real_transports(tmp_path: Path) -> None:
    """build_runtime with the real transports: check() accepts the links, a wrong name is a ConfigError."""
    assert {"appendfile", "pipe"} <= set(TRANSPORTS), "appendfile and pipe must be registered transports"
    sample_world(tmp_path)
    conf = tmp_path / "mta.conf"
    conf.write_text(conf.read_text() + f"""
begin transports

local_mbox:
  driver = appendfile
  file = {tmp_path}/mail/$local_part_data

address_pipe:
  driver = pipe
""")
    runtime = build_runtime(load_config(str(conf)))
    ctx = RoutingContext(runtime.config, sender_address="x@example.org", transports=runtime.transports)
    outcome = RoutingEngine(runtime.directors, [], runtime.config).route(
        [AddressItem("sales@example.com"), AddressItem("alerts@example.com")], ctx)
    assert accepted(outcome) == [
        ("alice@example.com", "local_mbox"),
        ("|/usr/bin/tee -a /srv/exim-samples/pipe/alerts.out", "address_pipe"),
    ]
    conf.write_text(conf.read_text().replace("pipe_transport = address_pipe", "pipe_transport = address_pype"))
    with pytest.raises(ConfigError, match='pipe_transport "address_pype" is not defined'):
        build_runtime(load_config(str(conf)))
