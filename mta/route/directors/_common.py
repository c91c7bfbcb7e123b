"""Helpers shared by the directors (Exim's rf_* functions).

Nothing here is a driver.  aliasfile and forwardfile share the options of
`RedirectingOptions`, their start-up checks (`check_redirecting`) and the
turning of a list into their result (`redirect`, by way of
`make_children`); every director expands its options with `expand_option`,
which marks the address variables as tainted, so an option like
``file = /lists/$local_part`` can never make a remote party's text into a
file name.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from mta.drivers import Kind, option, options_table
from mta.errors import ConfigError, DeferError, ExpansionError
from mta.route.base import Decline, DirectorOptions, Redirect, RouteResult
from mta.route.item import AddressItem
from mta.route.redirect import NO_REDIRECT, IncludeCheck, IncludeReader, ItemKind, RedirectParse, parse_redirect_list
from mta.taint import taint
from mta.values import split_list

if TYPE_CHECKING:
    from mta.route.base import Director
    from mta.route.context import RoutingContext

_Entry = TypeVar("_Entry")


@options_table
class RedirectingOptions(DirectorOptions):
    """Options shared by aliasfile and forwardfile (private to those drivers)."""

    modemask: int = option(
        0o022, Kind.OCTAL,
        "Mode bits the file must not have; a file with any of them set (group- or world-writable with the "
        "default 022) is refused and the address is deferred.",
    )
    owners: str | None = option(
        None, Kind.LIST,
        "Users (names or numeric uids) who may own the file; any other owner defers the address. "
        "For forwardfile this is in addition to the local user allowed by `check_owner`.",
    )
    owngroups: str | None = option(
        None, Kind.LIST, "Groups (names or numeric gids) that may own the file; any other group defers the address."
    )
    allow_pipe: bool = option(
        True, Kind.BOOL,
        "Allow `|command` items (delivered by `pipe_transport`); if false such an item defers the address.",
    )
    allow_file: bool = option(
        True, Kind.BOOL,
        "Allow `/path` and `/path/` items (delivered by `file_transport` / `directory_transport`); "
        "if false such an item defers the address.",
    )
    allow_include: bool = option(
        True, Kind.BOOL, "Allow `:include:/path` items; if false such an item defers the address."
    )
    allow_fail: bool = option(
        False, Kind.BOOL,
        "Allow `:fail: text` (the address bounces with text).  Off by default, as in Exim 4's redirect router; "
        "when off, `:fail:` defers the address as a configuration error.",
    )
    allow_defer: bool = option(
        False, Kind.BOOL,
        "Allow `:defer: text` (the address is retried later).  Off by default, as in Exim 4's redirect router.",
    )
    allow_blackhole: bool = option(
        True, Kind.BOOL, "Allow `:blackhole:` and `/dev/null` items (the message is discarded for this address)."
    )
    pipe_transport: str | None = option(
        None, Kind.STRING, "Transport for `|command` items.", expand=True
    )
    file_transport: str | None = option(
        None, Kind.STRING, "Transport for `/path` items.", expand=True
    )
    directory_transport: str | None = option(
        None, Kind.STRING, "Transport for `/path/` items (a directory, e.g. a maildir).", expand=True
    )
    qualify_preserve_domain: bool = option(
        False, Kind.BOOL,
        "Qualify unqualified addresses in the list with the domain of the address being directed instead of "
        "qualify_recipient.",
    )
    skip_syntax_errors: bool = option(
        False, Kind.BOOL,
        "Skip items that are not valid addresses instead of deferring the address; the messages are kept in "
        "the item's `syntax_errors` extra data for the log.  Items that are not permitted are never skipped.",
    )


TRANSPORT_OPTIONS = {
    ItemKind.PIPE: "pipe_transport",
    ItemKind.FILE: "file_transport",
    ItemKind.DIRECTORY: "directory_transport",
}


def what(driver: Director) -> str:
    """The prefix of every message about a driver: ``director system_aliases``."""
    return f"{driver.kind_name} {driver.name}"


# -- expansion -----------------------------------------------------------------


def address_variables(item: AddressItem) -> dict[str, Any]:
    """The address variables, tainted: a local part or domain is whatever the sender typed."""
    parent = item.parent
    return {
        "local_part": taint(item.local_part),
        "domain": taint(item.domain),
        "local_part_prefix": taint(item.prefix),
        "local_part_suffix": taint(item.suffix),
        "parent_local_part": taint(parent.local_part) if parent else None,
        "parent_domain": taint(parent.domain) if parent else None,
    }


def expand_option(driver: Director, ctx: RoutingContext, text: str, item: AddressItem, name: str) -> str | None:
    """Expand one option for `item`; None for a forced failure, DeferError for any other failure."""
    try:
        return ctx.expand(text, item, address_variables(item))
    except ExpansionError as exc:
        if exc.forced:
            return None
        raise DeferError(f"{what(driver)}: failed to expand {name}: {exc.message}") from None


# -- users, groups and file checks ---------------------------------------------


def find_user(local_part: str) -> pwd.struct_passwd | None:
    """The passwd entry for a local part: as written, then lower-cased (Exim's localuser)."""
    for name in dict.fromkeys((local_part, local_part.lower())):
        if not name or "\0" in name:
            continue
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None


def _resolve(entries: str, kind: str) -> set[int]:
    """uids or gids of a list of names/numbers; KeyError names the unknown one."""
    ids: set[int] = set()
    for entry in split_list(entries):
        if not entry:
            continue
        if entry.isdigit():
            ids.add(int(entry))
            continue
        try:
            ids.add(pwd.getpwnam(entry).pw_uid if kind == "user" else grp.getgrnam(entry).gr_gid)
        except KeyError:
            raise KeyError(entry) from None
    return ids


def resolve_owners(driver: Director, entries: str | None, kind: str) -> set[int] | None:
    """The ids of `owners` (kind "user") or `owngroups` (kind "group"); None when unset."""
    if entries is None:
        return None
    try:
        return _resolve(entries, kind)
    except KeyError as exc:
        raise DeferError(f"{what(driver)}: unknown {kind} {exc.args[0]!r} in its owners list") from None


def check_owner_lists(driver: Director) -> None:
    """ConfigError at start-up for an unknown name in owners / owngroups."""
    opts = driver.options
    for option_name, kind in (("owners", "user"), ("owngroups", "group")):
        entries = getattr(opts, option_name, None)
        if entries is None:
            continue
        try:
            _resolve(entries, kind)
        except KeyError as exc:
            reason = f"{what(driver)}: {option_name}: unknown {kind} {exc.args[0]!r}"
            raise ConfigError(reason, *driver.source) from None


def _user_name(uid: int) -> str:
    return _id_name(uid, "uid", lambda number: pwd.getpwuid(number).pw_name)


def _group_name(gid: int) -> str:
    return _id_name(gid, "gid", lambda number: grp.getgrgid(number).gr_name)


def _id_name(number: int, label: str, name_of: Callable[[int], str]) -> str:
    """``name (uid N)`` for messages, or ``uid N`` when the number has no name."""
    try:
        return f"{name_of(number)} ({label} {number})"
    except KeyError:
        return f"{label} {number}"


def mode_problem(mode: int, modemask: int) -> str | None:
    """Why `mode` is refused by `modemask`, or None when it is acceptable."""
    bad = mode & modemask & 0o7777
    if not bad:
        return None
    writers = [who for who, bit in (("group", 0o020), ("others", 0o002)) if bad & bit]
    desc = f"is writable by {' and '.join(writers)}" if writers else "has forbidden mode bits"
    return f"{desc} (mode {mode & 0o7777:04o}; modemask {modemask:04o} forbids {bad:04o})"


def check_file(
    path: str,
    st: os.stat_result,
    *,
    label: str,
    modemask: int,
    uids: set[int] | None,
    gids: set[int] | None,
) -> None:
    """Refuse (DeferError) a file whose mode or owner the configuration does not allow."""
    problem = mode_problem(st.st_mode, modemask)
    if problem:
        raise DeferError(f"{label} {path} {problem}")
    if uids is not None and st.st_uid not in uids:
        allowed = ", ".join(_user_name(u) for u in sorted(uids)) or "nobody"
        raise DeferError(f"{label} {path} is owned by {_user_name(st.st_uid)}; allowed owners: {allowed}")
    if gids is not None and st.st_gid not in gids:
        allowed = ", ".join(_group_name(g) for g in sorted(gids)) or "none"
        raise DeferError(f"{label} {path} has group {_group_name(st.st_gid)}; allowed groups: {allowed}")


def user_group(driver: Director, ctx: RoutingContext, item: AddressItem) -> tuple[int | None, int | None]:
    """The generic `user` and `group` options as (uid, gid); (None, None) when unset.

    A user given by name brings its own gid unless `group` is set; a numeric
    user needs `group` too, as in Exim.
    """
    uid = gid = None
    name = _id_option(driver, ctx, item, "user")
    if name is not None:
        if name.isdigit():
            uid = int(name)
        else:
            pw = _known(driver, "user", name, pwd.getpwnam)
            uid, gid = pw.pw_uid, pw.pw_gid
    name = _id_option(driver, ctx, item, "group")
    if name is not None:
        gid = int(name) if name.isdigit() else _known(driver, "group", name, grp.getgrnam).gr_gid
    if uid is not None and gid is None:
        raise DeferError(f"{what(driver)}: user is numeric, so group must be set too")
    return uid, gid


def _id_option(driver: Director, ctx: RoutingContext, item: AddressItem, option_name: str) -> str | None:
    """The `user` or `group` option expanded and stripped; None when unset, empty or forced to fail."""
    text = getattr(driver.options, option_name)
    value = expand_option(driver, ctx, text, item, option_name) if text else None
    return value.strip() if value else None


def _known(driver: Director, kind: str, name: str, find: Callable[[str], _Entry]) -> _Entry:
    """The passwd or group entry of `name`; DeferError when there is none."""
    try:
        return find(name)
    except KeyError:
        raise DeferError(f"{what(driver)}: {kind} {name!r} is unknown") from None


def delivery_user_group(
    driver: Director,
    ctx: RoutingContext,
    item: AddressItem,
    parsed: RedirectParse,
    fallback: tuple[int | None, int | None] = (None, None),
) -> tuple[int | None, int | None]:
    """uid and gid for the pipe and file children of `parsed`: the director's user/group, else `fallback`.

    Only worked out when the list has such children, so a bad `user` cannot
    hold up a list of plain addresses.
    """
    if all(entry.kind is ItemKind.ADDRESS for entry in parsed.items):
        return None, None
    uid, gid = user_group(driver, ctx, item)
    if uid is None and gid is None:
        return fallback
    return uid, gid


def match_string(pattern: str, subject: str) -> bool:
    """Exim's single-item string match: ``^regex``, ``*suffix``, or the literal string."""
    if pattern.startswith("^"):
        try:
            return re.search(pattern, subject) is not None
        except re.error as exc:
            raise DeferError(f"bad regular expression {pattern!r}: {exc}") from None
    if pattern.startswith("*"):
        return subject.endswith(pattern[1:])
    return subject == pattern


# -- redirection results --------------------------------------------------------


def make_children(
    driver: Director,
    ctx: RoutingContext,
    item: AddressItem,
    parsed: RedirectParse,
    *,
    uid: int | None = None,
    gid: int | None = None,
    home: str | None = None,
) -> list[AddressItem]:
    """Child items for a parsed list.

    Addresses become plain items (routed again from the first director);
    pipes, files and directories get the transport named by the director's
    pipe/file/directory_transport, `uid`/`gid` (None: the transport's user
    and group decide) and `home`, because the engine does not route them.
    A pipe or file with no transport configured defers the whole address:
    it is a configuration error, and deferring loses nothing.
    """
    opts = driver.options
    transports: dict[ItemKind, str] = {}
    children: list[AddressItem] = []
    for entry in parsed.items:
        if entry.kind is ItemKind.ADDRESS:
            child = AddressItem(entry.value)
            if entry.no_redirect:
                child.extra[NO_REDIRECT] = True
            children.append(child)
            continue
        transport = transports.get(entry.kind)
        if transport is None:
            option_name = TRANSPORT_OPTIONS[entry.kind]
            setting = getattr(opts, option_name)
            transport = expand_option(driver, ctx, setting, item, option_name) if setting else None
            if not transport:
                raise DeferError(f'{what(driver)}: "{entry.value}" needs {option_name}, which is not set')
            transport = transport.strip()
            if ctx.transports and transport not in ctx.transports:
                raise DeferError(f'{what(driver)}: {option_name} "{transport}" is not defined')
            transports[entry.kind] = transport
        child = AddressItem(entry.value, transport_name=transport, uid=uid, gid=gid, home=home)
        # As Exim: a pipe or file "address" has the item as its local part and the parent's domain.
        child.local_part = entry.value
        child.domain = item.domain
        child.router_name = driver.name
        child.initgroups = opts.initgroups
        if entry.kind is ItemKind.PIPE:
            child.pipe_command = entry.value
        else:
            child.file_path = entry.value
        children.append(child)
    return children


def redirect(
    driver: Director,
    ctx: RoutingContext,
    item: AddressItem,
    text: str,
    *,
    source: str,
    include_check: IncludeCheck,
    empty: str,
    include_reader: IncludeReader | None = None,
    fallback: tuple[int | None, int | None] = (None, None),
    home: str | None = None,
) -> RouteResult:
    """Replace `item` by the items of the redirection list `text` (aliasfile's and forwardfile's result).

    The list is parsed under the director's `RedirectingOptions`; skipped
    syntax errors are kept in the item's ``syntax_errors`` extra data and
    traced.  ``:blackhole:`` (or only /dev/null items) discards the address;
    a list without items declines with the reason `empty`.  Pipes and files
    run as the director's user/group, else as `fallback` (see
    `delivery_user_group`), with `home`.
    """
    opts = driver.options
    parsed = parse_redirect_list(
        text,
        source=source,
        incoming_domain=item.domain,
        qualify_domain=ctx.config.qualify_recipient,
        allow_pipe=opts.allow_pipe,
        allow_file=opts.allow_file,
        allow_include=opts.allow_include,
        allow_fail=opts.allow_fail,
        allow_defer=opts.allow_defer,
        allow_blackhole=opts.allow_blackhole,
        qualify_preserve_domain=opts.qualify_preserve_domain,
        skip_syntax_errors=opts.skip_syntax_errors,
        include_check=include_check,
        include_reader=include_reader,
    )
    if parsed.syntax_errors:
        item.extra.setdefault("syntax_errors", []).extend(parsed.syntax_errors)
        for message in parsed.syntax_errors:
            ctx.trace(f"{what(driver)}: skipped: {message}")
    if parsed.blackhole:
        return Redirect([], discard=True)
    if parsed.empty:
        return Decline(empty)
    uid, gid = delivery_user_group(driver, ctx, item, parsed, fallback)
    children = make_children(driver, ctx, item, parsed, uid=uid, gid=gid, home=home)
    if not children:
        return Redirect([], discard=True)  # only /dev/null items
    return Redirect(children)


def check_redirecting(driver: Director, runtime: Any) -> None:
    """Start-up checks of aliasfile and forwardfile: owners, owngroups and the three transports."""
    check_owner_lists(driver)
    check_transports(driver, runtime, tuple(TRANSPORT_OPTIONS.values()))


def check_transports(driver: Director, runtime: Any, option_names: tuple[str, ...]) -> None:
    """ConfigError when a transport named by one of `option_names` does not exist."""
    transports = getattr(runtime, "transports", None)
    if transports is None:
        return
    for option_name in option_names:
        name = getattr(driver.options, option_name, None)
        if name and "$" not in name and name.strip() not in transports:
            raise ConfigError(f'{what(driver)}: {option_name} "{name}" is not defined', *driver.source)


def require_file_option(driver: Director) -> None:
    if not getattr(driver.options, "file", None):
        raise ConfigError(f'{what(driver)}: the "file" option must be set', *driver.source)
