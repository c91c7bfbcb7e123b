"""forwardfile: a user's .forward file, or a mailing-list file (Exim 3's forwardfile director).

    userforward:
      driver = forwardfile
      file = .forward
      pipe_transport = address_pipe
      file_transport = address_file
      no_verify

    lists:
      driver = forwardfile
      domains = lists.example.com
      local_parts = dsearch;/usr/lists
      no_check_local_user
      file = /usr/lists/$local_part_data
      allow_pipe = false
      allow_file = false
      errors_to = list-admin@example.com

With ``check_local_user`` (the default) the local part must be a login
name; $home, the uid and gid come from its passwd entry, and a relative
``file`` is taken in the home directory.  A missing file declines; an
unreadable one defers.

Security: a user's file (with ``check_local_user``), and every file it
``:include:``s, is read by a child process that has become the user
(mta.route.user_files), so the kernel refuses what the user could not read
(``:include:/root/private``, a file under a directory they cannot enter).
Before its contents are believed it must be a regular file that passes
`modemask` (no group/world write by default) and, with ``check_owner``, be
owned by the user or root.  If the name is a symbolic link, the link must
pass the owner check and the file it points to must have the same owner
as the link (whenever an owner check is in force: check_owner or owners).
Pipes and files from a .forward run as the user (uid and gid of the passwd
entry) unless the director sets user/group.
"""

from __future__ import annotations

import os
import pwd
import re
import stat

from mta.drivers import DriverOptions, Kind, option, options_table
from mta.errors import DeferError
from mta.route.base import Decline, Director, RouteResult
from mta.route.directors import _common
from mta.route.directors._common import RedirectingOptions, what
from mta.route.filter_redirect import filter_redirect
from mta.route.item import AddressItem
from mta.route.redirect import NO_REDIRECT, IncludeCheck, read_list_file
from mta.route.user_files import FileOwner, read_user_file, user_file_reader
from mta.taint import file_name_refused, untainted

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

if TYPE_CHECKING:
    from mta.route.context import RoutingContext

# Exim's rda_is_filter: "#", optional white space, then "Exim filter" / "Sieve filter", caselessly.
_FILTER_LINE = re.compile(r"\s*#\s*(exim|sieve)\s+filter", re.IGNORECASE)


@options_table
class ForwardfileOptions(RedirectingOptions):
    file: str | None = option(
        None, Kind.STRING,
        "The file to read, e.g. `.forward` or `/usr/lists/$local_part_data`.  Expanded; a relative name is taken "
        "in `file_directory`, or else in the user's home directory.  The result must not be tainted: "
        "$local_part is tainted, $local_part_data and $home are not.",
        expand=True,
    )
    file_directory: str | None = option(
        None, Kind.STRING, "Expanded; the directory a relative `file` is in (default: the user's home).", expand=True
    )
    check_local_user: bool = option(
        True, Kind.BOOL,
        "The local part must be a login name (else the director declines); sets $home, the uid and gid, and "
        "$local_part_data to the login name.  Turn off for mailing-list files.",
    )
    check_owner: bool = option(
        True, Kind.BOOL,
        "With check_local_user: the file must be owned by the user or root (or by one of `owners`), "
        "else the address is deferred.",
    )
    filter: bool = option(
        True, Kind.BOOL,
        "Obey a file whose first line is `# Exim filter` as an Exim filter (docs/filters.md); with no_filter "
        "it is read as a plain list.  A Sieve filter file defers the address: Sieve is not supported.",
    )
    reply_transport: str | None = option(
        None, Kind.STRING, "Transport (autoreply) for a filter's `mail` and `vacation` commands.", expand=True
    )
    allow_freeze: bool = option(
        False, Kind.BOOL,
        "Allow a filter's `freeze` command (the message is frozen).  Its `fail` and `defer` commands are "
        "allowed by allow_fail and allow_defer.",
    )
    forbid_filter_reply: bool = option(
        False, Kind.BOOL, "A filter's `mail` and `vacation` fail (\"autoreply forbidden\") instead of replying."
    )
    forbid_filter_logwrite: bool = option(False, Kind.BOOL, "A filter's `logwrite` is an error.")
    forbid_filter_run: bool = option(
        False, Kind.BOOL, "No `${run}` in a filter (it is off anyway unless expansion_run_commands is set)."
    )
    forbid_filter_readsocket: bool = option(
        False, Kind.BOOL, "No `${readsocket}` in a filter (off anyway unless expansion_read_sockets is set)."
    )
    forbid_filter_readfile: bool = option(False, Kind.BOOL, "No `${readfile}` in a filter.")
    forbid_filter_lookup: bool = option(False, Kind.BOOL, "No `${lookup}` in a filter.")
    forbid_filter_existstest: bool = option(False, Kind.BOOL, "No `exists` condition in a filter.")


class ForwardfileDirector(Director):
    """Replace a local address by the items of a .forward or mailing-list file.  See docs/directors.md."""

    options: ForwardfileOptions
    options_class: ClassVar[type[DriverOptions]] = ForwardfileOptions

    def check(self, config: Any) -> None:
        super().check(config)
        _common.require_file_option(self)
        _common.check_redirecting(self, config)
        _common.check_transports(self, config, ("reply_transport",))

    def direct(self, item: AddressItem, ctx: RoutingContext) -> RouteResult:
        opts = self.options
        if item.extra.get(NO_REDIRECT):
            return Decline(f"{item.address} came from a \\ item: not forwarded again")
        pw: pwd.struct_passwd | None = None
        if opts.check_local_user:
            pw = _common.find_user(item.local_part)
            if pw is None:
                return Decline(f"{item.local_part} is not a local user")
        saved = (item.home, item.uid, item.gid, item.local_part_data)
        if pw is not None:
            # Values from the passwd file are trusted, unlike the local part they were found by.
            item.home = untainted(pw.pw_dir)
            item.uid, item.gid = pw.pw_uid, pw.pw_gid
            item.local_part_data = untainted(pw.pw_name)
        result = self._redirect(item, ctx, pw)
        if isinstance(result, Decline):
            # The next director must not inherit this user's ids by accident.
            item.home, item.uid, item.gid, item.local_part_data = saved
        return result

    def _redirect(self, item: AddressItem, ctx: RoutingContext, pw: pwd.struct_passwd | None) -> RouteResult:
        opts = self.options
        path = self._path(item, ctx)
        if path is None:
            return Decline("file expansion forced to fail")
        text = self._read(path, pw)
        if text is None:
            return Decline(f"{path} does not exist")
        is_filter = _FILTER_LINE.match(text)
        if is_filter and opts.filter:
            if is_filter.group(1).lower() == "sieve":
                raise DeferError(
                    f"{what(self)}: {path} is a Sieve filter file; Sieve filter files are not supported "
                    f"(use no_filter to read it as a plain forward list)"
                )
            return filter_redirect(self, ctx, item, text, path, _owner(pw) if pw is not None else None)
        # Pipes and files from a user's own file run as that user.
        return _common.redirect(
            self, ctx, item, text,
            source=f"{what(self)}: {path}",
            include_check=self._include_checker(),
            include_reader=user_file_reader(_owner(pw)) if pw is not None else None,
            empty=f"{path} gives no addresses",
            fallback=(pw.pw_uid, pw.pw_gid) if pw is not None else (None, None),
            home=item.home,
        )

    # -- the file ---------------------------------------------------------------
    def _path(self, item: AddressItem, ctx: RoutingContext) -> str | None:
        opts = self.options
        if not opts.file:
            raise DeferError(f'{what(self)}: the "file" option is not set')
        name = _common.expand_option(self, ctx, opts.file, item, "file")
        if name is None:
            return None
        if file_name_refused(name):
            raise DeferError(
                f'{what(self)}: tainted file name "{name}" refused '
                "(use $local_part_data, e.g. with local_parts = dsearch;/dir, or $home)"
            )
        if not os.path.isabs(name):
            base: str | None = item.home if opts.check_local_user else None
            if opts.file_directory:
                base = _common.expand_option(self, ctx, opts.file_directory, item, "file_directory")
                if base is not None and file_name_refused(base):
                    raise DeferError(f'{what(self)}: tainted file_directory "{base}" refused')
            if not base:
                raise DeferError(
                    f'{what(self)}: file "{name}" is relative, but there is no file_directory or home directory'
                )
            name = os.path.join(base, name)
            if not os.path.isabs(name):
                raise DeferError(f'{what(self)}: file "{name}" is not an absolute path')
        return name

    def _read(self, path: str, pw: pwd.struct_passwd | None) -> str | None:
        """The file's text after the mode, owner and symlink checks; None if it does not exist.

        A user's file is read as the user (mta.route.user_files), so that the
        kernel, not this code, decides what the user may make us read."""
        opts = self.options
        label = f"{what(self)}: file"
        try:
            if pw is not None:
                text, link, st = read_user_file(_owner(pw), path, label)
            else:
                link = os.lstat(path)
                text, st = read_list_file(path, label)
        except (FileNotFoundError, NotADirectoryError):
            # No file, or a dangling symlink, or the file went away since the lstat: no forwarding.
            return None
        except DeferError:
            raise
        except OSError as exc:
            raise DeferError(f"{label} {path}: cannot stat: {exc.strerror}", errno=exc.errno or 0) from None
        uids = self._owner_uids(pw)
        gids = _common.resolve_owners(self, opts.owngroups, "group")
        if stat.S_ISLNK(link.st_mode) and uids is not None:
            # Under an owner check the link itself must pass it, and it may only
            # lead to a file of the same owner: never to someone else's file.
            if link.st_uid not in uids:
                raise DeferError(f"{label} {path} is a symbolic link owned by uid {link.st_uid}, not an allowed owner")
            if st.st_uid != link.st_uid:
                raise DeferError(
                    f"{label} {path} is a symbolic link (owner uid {link.st_uid}) to a file owned by "
                    f"uid {st.st_uid}: refused"
                )
        elif (link.st_dev, link.st_ino) != (st.st_dev, st.st_ino):
            raise DeferError(f"{label} {path} changed while it was being read; try again later")
        _common.check_file(path, st, label=label, modemask=opts.modemask, uids=uids, gids=gids)
        return text

    def _owner_uids(self, pw: pwd.struct_passwd | None) -> set[int] | None:
        """Who may own the file: the user and root (check_owner) plus `owners`; None for anyone."""
        opts = self.options
        listed = _common.resolve_owners(self, opts.owners, "user")
        if opts.check_owner and pw is not None:
            return {pw.pw_uid, 0} | (listed or set())
        return listed

    def _include_checker(self) -> IncludeCheck:
        """The check of an :include:d file: `modemask`.  Whether the user may read it at all is
        the kernel's decision: a user's included files are read as the user."""
        modemask = self.options.modemask
        label = f"{what(self)}: included file"

        def check(path: str, st: os.stat_result) -> None:
            _common.check_file(path, st, label=label, modemask=modemask, uids=None, gids=None)

        return check


def _owner(pw: pwd.struct_passwd) -> FileOwner:
    return FileOwner(pw.pw_uid, pw.pw_gid, pw.pw_name)
