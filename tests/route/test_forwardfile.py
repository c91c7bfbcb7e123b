"""forwardfile through the routing engine, with real users and real .forward files (root only)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mta.errors import ConfigError
from mta.route.directors.forwardfile import ForwardfileDirector
from mta.route.engine import RoutingOutcome
from mta.route.item import AddressItem
from tests.route.directors_support import (
    SystemUser,
    accepted,
    chain,
    deferred,
    failed,
    give,
    make_world,
    system_users,
    write,
)
from tests.support.users import absent_user

__all__ = ["system_users"]  # the fixture, imported for pytest

USERFORWARD = """\
userforward:
  driver = forwardfile
  file = .forward
  pipe_transport = address_pipe
  file_transport = address_file
  directory_transport = address_directory
{options}
localuser:
  driver = localuser
  transport = local_mbox
  cannot_route_message = Unknown user
"""

Users = dict[str, SystemUser]


@pytest.fixture
def users(system_users: Users) -> Users:
    """The session's users, with no .forward left over from another test."""
    for user in system_users.values():
        forward = user.home / ".forward"
        if forward.is_symlink() or forward.is_file():
            forward.unlink()
        elif forward.is_dir():
            forward.rmdir()
    return system_users


def forward(user: SystemUser, text: str, mode: int = 0o644, owner: SystemUser | str | None = "self") -> Path:
    path = write(user.home / ".forward", text)
    return give(path, user if owner == "self" else owner, mode)  # type: ignore[arg-type]


def route(tmp_path: Path, address: str, options: str = "") -> RoutingOutcome:
    return make_world(tmp_path, USERFORWARD.format(options=options)).route(address)


def only_deferral(outcome: RoutingOutcome, address: str) -> str:
    assert not outcome.accepted and not outcome.failed
    return deferred(outcome)[address]


def test_forward_to_addresses_pipes_and_files(tmp_path: Path, users: Users) -> None:
    alice, bob = users["alice"], users["bob"]
    forward(
        alice,
        f"""\
# alice's forwarding
\\{alice.name}, {bob.name}
"|/usr/bin/procmail -d {alice.name}"
{alice.home}/mbox
{alice.home}/Maildir/
""",
    )
    outcome = route(tmp_path, f"{alice.name}@example.com")
    assert not outcome.failed and not outcome.deferred
    by_address = {i.address: i for i in outcome.accepted}
    assert accepted(outcome) == sorted(
        [
            (f"{alice.name}@example.com", "local_mbox"),
            (f"{bob.name}@example.com", "local_mbox"),
            (f"|/usr/bin/procmail -d {alice.name}", "address_pipe"),
            (f"{alice.home}/mbox", "address_file"),
            (f"{alice.home}/Maildir/", "address_directory"),
        ]
    )
    pipe = by_address[f"|/usr/bin/procmail -d {alice.name}"]
    # Pipes and files from a .forward run as the user, in the user's home.
    assert (pipe.uid, pipe.gid, pipe.home) == (alice.uid, alice.gid, str(alice.home))
    assert pipe.pipe_command == f"|/usr/bin/procmail -d {alice.name}"
    assert pipe.router_name == "userforward"
    mbox = by_address[f"{alice.home}/mbox"]
    assert (mbox.file_path, mbox.uid) == (f"{alice.home}/mbox", alice.uid)
    assert by_address[f"{alice.home}/Maildir/"].file_path == f"{alice.home}/Maildir/"
    # \alice went straight to localuser; bob (no .forward) too.
    assert chain(by_address[f"{alice.name}@example.com"]) == [f"{alice.name}@example.com"] * 2
    assert by_address[f"{alice.name}@example.com"].router_name == "localuser"
    assert by_address[f"{bob.name}@example.com"].router_name == "localuser"


def test_no_forward_file_declines(tmp_path: Path, users: Users) -> None:
    alice = users["alice"]
    outcome = route(tmp_path, f"{alice.name}@example.com")
    assert accepted(outcome) == [(f"{alice.name}@example.com", "local_mbox")]
    assert outcome.accepted[0].parent is None


def test_unknown_user_declines(tmp_path: Path) -> None:
    stranger = absent_user("stranger")
    outcome = route(tmp_path, f"{stranger}@example.com")
    assert failed(outcome) == {f"{stranger}@example.com": "Unknown user"}


def test_forward_to_self_is_delivered_once(tmp_path: Path, users: Users) -> None:
    alice = users["alice"]
    forward(alice, f"{alice.name}\n")  # no backslash: the ancestor rule stops the loop
    outcome = route(tmp_path, f"{alice.name}@example.com")
    [item] = outcome.accepted
    assert (item.router_name, chain(item)) == ("localuser", [f"{alice.name}@example.com"] * 2)


@pytest.mark.parametrize(
    ("mode", "options", "refused"),
    [
        (0o666, "", "writable by group and others"),
        (0o602, "", "writable by others"),
        (0o620, "", "writable by group"),
        (0o620, "  modemask = 002\n", None),
        (0o600, "", None),
    ],
)
def test_writable_forward_file_is_refused(
    tmp_path: Path, users: Users, mode: int, options: str, refused: str | None
) -> None:
    alice, bob = users["alice"], users["bob"]
    path = forward(alice, f"{bob.name}\n", mode=mode)
    outcome = route(tmp_path, f"{alice.name}@example.com", options)
    if refused is None:
        assert accepted(outcome) == [(f"{bob.name}@example.com", "local_mbox")]
        return
    message = only_deferral(outcome, f"{alice.name}@example.com")
    assert f"{path} is {refused}" in message and f"mode {mode:04o}" in message


@pytest.mark.parametrize(
    ("owner", "options", "ok"),
    [
        ("self", "", True),
        ("root", "", True),
        ("bob", "", False),
        ("bob", "  owners = {bob}\n", True),
        ("bob", "  no_check_owner\n", True),
        ("self", "  owngroups = root\n", False),
    ],
)
def test_forward_file_owner(tmp_path: Path, users: Users, owner: str, options: str, ok: bool) -> None:
    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    owners = {"self": alice, "root": None, "bob": bob}
    forward(alice, f"{carol.name}\n", owner=owners[owner])
    outcome = route(tmp_path, f"{alice.name}@example.com", options.format(bob=bob.name))
    if ok:
        assert accepted(outcome) == [(f"{carol.name}@example.com", "local_mbox")]
    else:
        message = only_deferral(outcome, f"{alice.name}@example.com")
        assert "allowed owners" in message or "allowed groups" in message


def test_symlinks(tmp_path: Path, users: Users) -> None:
    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    address = f"{alice.name}@example.com"
    link = alice.home / ".forward"
    secret = give(write(tmp_path / "secret", f"{carol.name}\n"), None, 0o600)
    bobs = give(write(bob.home / "list", f"{carol.name}\n"), bob)
    own = give(write(alice.home / "dotfiles-forward", f"{carol.name}\n"), alice)
    # Root's 0600 file cannot even be opened: the .forward is read as alice.  Bob's readable
    # file can be, and is refused because the link leads to someone else's file.
    cases = [
        (secret, alice, "Permission denied"),
        (bobs, alice, "symbolic link"),
        (own, alice, None),
        (own, bob, "symbolic link"),
    ]
    for target, link_owner, refusal in cases:
        if link.is_symlink():
            link.unlink()
        link.symlink_to(target)
        give(link, link_owner)
        outcome = route(tmp_path, address)
        if refusal is None:
            assert accepted(outcome) == [(f"{carol.name}@example.com", "local_mbox")], target
        else:
            assert refusal in only_deferral(outcome, address), target
    # A dangling link is no file at all.
    link.unlink()
    link.symlink_to(alice.home / "nothing-here")
    give(link, alice)
    assert accepted(route(tmp_path, address)) == [(address, "local_mbox")]


def test_forward_that_is_not_a_regular_file_defers(tmp_path: Path, users: Users) -> None:
    alice = users["alice"]
    (alice.home / ".forward").mkdir()
    message = only_deferral(route(tmp_path, f"{alice.name}@example.com"), f"{alice.name}@example.com")
    assert "not a regular file" in message


@pytest.mark.parametrize("first_line", ["# Exim filter", "#Exim Filter", "  # exim   filter -- mine"])
def test_exim_filter_file_is_obeyed(tmp_path: Path, users: Users, first_line: str) -> None:
    alice, bob = users["alice"], users["bob"]
    forward(alice, f"{first_line}\ndeliver {bob.name}\n")
    outcome = route(tmp_path, f"{alice.name}@example.com")
    assert accepted(outcome) == [(f"{bob.name}@example.com", "local_mbox")]
    # With no_filter the file is a plain list: the first line is a comment.
    forward(alice, f"{first_line}\n{bob.name}\n")
    outcome = route(tmp_path, f"{alice.name}@example.com", "  no_filter\n")
    assert accepted(outcome) == [(f"{bob.name}@example.com", "local_mbox")]


def test_sieve_filter_file_defers_clearly(tmp_path: Path, users: Users) -> None:
    alice, bob = users["alice"], users["bob"]
    path = forward(alice, "# Sieve filter\nkeep;\n")
    message = only_deferral(route(tmp_path, f"{alice.name}@example.com"), f"{alice.name}@example.com")
    assert str(path) in message and "Sieve filter files are not supported" in message
    forward(alice, f"# Sieve filter\n{bob.name}\n")
    outcome = route(tmp_path, f"{alice.name}@example.com", "  no_filter\n")
    assert accepted(outcome) == [(f"{bob.name}@example.com", "local_mbox")]


def test_syntax_errors(tmp_path: Path, users: Users) -> None:
    alice, bob = users["alice"], users["bob"]
    path = forward(alice, f"{bob.name}, bad address@\n")
    message = only_deferral(route(tmp_path, f"{alice.name}@example.com"), f"{alice.name}@example.com")
    assert message.startswith(f"director userforward: {path}: ") and '"bad address@"' in message
    outcome = route(tmp_path, f"{alice.name}@example.com", "  skip_syntax_errors\n")
    assert accepted(outcome) == [(f"{bob.name}@example.com", "local_mbox")]
    # A file of nothing but bad items declines: the user's mail goes to the mailbox.
    forward(alice, "bad address@\n")
    outcome = route(tmp_path, f"{alice.name}@example.com", "  skip_syntax_errors\n")
    assert accepted(outcome) == [(f"{alice.name}@example.com", "local_mbox")]


def test_include_from_forward_is_read_as_the_user(tmp_path: Path, users: Users) -> None:
    """A user's :include: is opened as the user: what they cannot read (a root-only file, a
    readable file in a directory they cannot enter) is refused, and nothing of it is used."""
    alice, bob = users["alice"], users["bob"]
    address = f"{alice.name}@example.com"
    shared = alice.home.parent  # 0755: anyone may enter
    mine = give(write(alice.home / "friends", f"{bob.name}\n"), alice, 0o600)
    public = give(write(shared / "public", f"{bob.name}\n"), None, 0o644)
    private = give(write(shared / "private", f"{bob.name}\n"), None, 0o600)
    closed = tmp_path / "closed"  # pytest's tmp_path is 0700 root: alice cannot enter it
    closed.mkdir(mode=0o700)
    behind = give(write(closed / "readable", f"{bob.name}\n"), None, 0o644)
    try:
        for target, ok in ((mine, True), (public, True), (private, False), (behind, False)):
            forward(alice, f":include:{target}\n")
            outcome = route(tmp_path, address)
            if ok:
                assert accepted(outcome) == [(f"{bob.name}@example.com", "local_mbox")], target
            else:
                message = only_deferral(outcome, address)
                assert f"included file {target}: Permission denied" in message, message
                assert bob.name not in message
        public.chmod(0o666)
        forward(alice, f":include:{public}\n")
        assert "writable by group and others" in only_deferral(route(tmp_path, address), address)
    finally:
        public.unlink()
        private.unlink()


def test_forward_in_a_home_the_user_cannot_enter_defers(tmp_path: Path, users: Users) -> None:
    """The .forward itself is opened as its user too: root could read it, the user cannot."""
    alice, carol = users["alice"], users["carol"]
    forward(alice, f"{carol.name}\n")
    alice.home.chmod(0o000)
    try:
        message = only_deferral(route(tmp_path, f"{alice.name}@example.com"), f"{alice.name}@example.com")
        assert "Permission denied" in message
    finally:
        alice.home.chmod(0o755)


def test_pipe_needs_transport_and_permission(tmp_path: Path, users: Users) -> None:
    alice = users["alice"]
    address = f"{alice.name}@example.com"
    forward(alice, '"|/usr/bin/vacation alice"\n')
    text = USERFORWARD.format(options="").replace("  pipe_transport = address_pipe\n", "")
    outcome = make_world(tmp_path, text).route(address)
    assert "needs pipe_transport, which is not set" in only_deferral(outcome, address)
    assert "pipes are not permitted" in only_deferral(route(tmp_path, address, "  no_allow_pipe\n"), address)


def test_director_user_runs_pipes(tmp_path: Path, users: Users) -> None:
    alice, carol = users["alice"], users["carol"]
    forward(alice, "|/bin/true\n")
    outcome = route(tmp_path, f"{alice.name}@example.com", f"  user = {carol.name}\n")
    [pipe] = outcome.accepted
    assert (pipe.uid, pipe.gid) == (carol.uid, carol.gid)


def test_file_directory(tmp_path: Path, users: Users) -> None:
    alice, bob = users["alice"], users["bob"]
    # Somewhere users can reach, as an administrator's file_directory is: the file is read as alice.
    forwards = alice.home.parent / "forwards"
    base = forwards / alice.name
    base.mkdir(parents=True)
    try:
        give(write(base / "forward", f"{bob.name}\n"), alice)
        options = f"  file_directory = {forwards}/$local_part_data\n"
        text = USERFORWARD.format(options=options).replace("file = .forward", "file = forward")
        outcome = make_world(tmp_path, text).route(f"{alice.name}@example.com")
        assert accepted(outcome) == [(f"{bob.name}@example.com", "local_mbox")]
    finally:
        shutil.rmtree(forwards)


# -- mailing lists -------------------------------------------------------------------------

LISTS = """\
lists:
  driver = forwardfile
  domains = lists.example.com
  local_parts = dsearch;{lists}
  no_check_local_user
  file = {lists}/{name_variable}
  no_allow_pipe
  no_allow_file
  errors_to = list-admin@example.com
  no_more

localuser:
  driver = localuser
  transport = local_mbox
  cannot_route_message = Unknown user
"""


def list_world(tmp_path: Path, name_variable: str = "$local_part_data", extra: str = ""):  # type: ignore[no-untyped-def]
    lists = tmp_path / "lists"
    lists.mkdir(exist_ok=True)
    text = LISTS.format(lists=lists, name_variable=name_variable).replace("  no_more\n", "  no_more\n" + extra)
    return lists, make_world(tmp_path, text)


def test_mailing_list(tmp_path: Path, users: Users) -> None:
    alice, bob = users["alice"], users["bob"]
    lists, world = list_world(tmp_path)
    write(lists / "staff", f"# staff list\n{alice.name}\n{bob.name}@example.com\n")
    outcome = world.route("staff@lists.example.com")
    assert accepted(outcome) == [(f"{alice.name}@example.com", "local_mbox"), (f"{bob.name}@example.com", "local_mbox")]
    for item in outcome.accepted:
        assert item.errors_to == "list-admin@example.com"
        assert item.parent is not None and item.parent.address == "staff@lists.example.com"
    # Not a list: the director is skipped (local_parts), and with no_more nothing else... is tried for it
    assert list(failed(world.route("nolist@lists.example.com"))) == ["nolist@lists.example.com"]


def test_mailing_list_refuses_pipes_and_tainted_names(tmp_path: Path) -> None:
    lists, world = list_world(tmp_path)
    write(lists / "evil", "|/bin/sh -c 'id'\n")
    assert "pipes are not permitted" in only_deferral(world.route("evil@lists.example.com"), "evil@lists.example.com")
    # $local_part may be one whole checked component under the lists directory (issue 11)...
    lists, world = list_world(tmp_path, name_variable="$local_part")
    write(lists / "staff", "someone\n")
    outcome = world.route("staff@lists.example.com")
    assert not outcome.deferred, outcome.deferred  # the list was read: its member goes on (and is unknown)
    assert [item.address for item, _ in outcome.failed] == ["someone@example.com"]
    # ...but not part of one.
    lists, world = list_world(tmp_path, name_variable="x$local_part")
    write(lists / "xstaff", "someone\n")
    message = only_deferral(world.route("staff@lists.example.com"), "staff@lists.example.com")
    assert "tainted file name" in message


def test_mailing_list_owners(tmp_path: Path, users: Users) -> None:
    lists, world = list_world(tmp_path, extra="  owners = root\n")
    give(write(lists / "staff", f"{users['alice'].name}\n"), users["bob"])
    message = only_deferral(world.route("staff@lists.example.com"), "staff@lists.example.com")
    assert f"is owned by {users['bob'].name}" in message


def test_relative_file_needs_a_base(tmp_path: Path) -> None:
    world = make_world(tmp_path, "l:\n  driver = forwardfile\n  no_check_local_user\n  file = list\n")
    outcome = world.route("x@example.com")
    assert "is relative, but there is no file_directory or home directory" in deferred(outcome)["x@example.com"]


def test_check_at_startup(tmp_path: Path) -> None:
    world = make_world(
        tmp_path,
        USERFORWARD.format(options="  file_transport = nosuch\n").replace("  file_transport = address_file\n", ""),
    )
    director = world.directors[0]
    assert isinstance(director, ForwardfileDirector)
    with pytest.raises(ConfigError, match='file_transport "nosuch" is not defined'):
        director.check(world.runtime())
    director.check(world.runtime((*world.runtime().transports, "nosuch")))
    nofile = make_world(tmp_path, "f:\n  driver = forwardfile\n")
    with pytest.raises(ConfigError, match='"file" option must be set'):
        nofile.directors[0].check(nofile.runtime())


def test_hostile_local_part_is_not_a_path(tmp_path: Path, users: Users) -> None:
    """A local part naming another user's .forward through ../ is just an unknown user."""
    alice = users["alice"]
    forward(alice, "|/bin/true\n")
    address = f'"../{alice.name}"@example.com'
    outcome = route(tmp_path, address)
    assert failed(outcome) == {address: "Unknown user"}
    assert not any(isinstance(i, AddressItem) and i.pipe_command for i in outcome.accepted)


def test_forward_check_reads_nothing_for_unknown_users(tmp_path: Path) -> None:
    # forwardfile with check_local_user never builds a path from an unknown local part.
    world = make_world(tmp_path, USERFORWARD.format(options="").replace("file = .forward", f"file = {tmp_path}/x"))
    write(tmp_path / "x", "|/bin/true\n")
    os.chmod(tmp_path / "x", 0o644)
    stranger = absent_user("stranger")
    outcome = world.route(f"{stranger}@example.com")
    assert failed(outcome) == {f"{stranger}@example.com": "Unknown user"}


def test_declining_leaves_no_user_ids_behind(tmp_path: Path, users: Users) -> None:
    """No .forward: the next director sees the address as forwardfile found it."""
    alice = users["alice"]
    text = USERFORWARD.format(options="").split("localuser:")[0] + (
        "catchall:\n  driver = smartuser\n  transport = catchall_mbox\n"
    )
    outcome = make_world(tmp_path, text).route(f"{alice.name}@example.com")
    [item] = outcome.accepted
    assert (item.router_name, item.uid, item.gid, item.home) == ("catchall", None, None, None)
