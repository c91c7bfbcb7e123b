"""aliasfile: look the local part up in an alias file (Exim 3's aliasfile director).

    system_aliases:
      driver = aliasfile
      file = /etc/aliases
      search_type = lsearch
      pipe_transport = address_pipe
      allow_fail
      allow_defer

The key is the local part (lower-cased unless ``caseful_local_part``), or
``local_part@domain`` with ``include_domain``.  No entry, an empty value or
only ``:unknown:`` declines; otherwise the value is an alias list
(mta.route.redirect) and the address is replaced by its items.

Security: the file name must not be tainted, the file must pass `modemask`,
`owners` and `owngroups` before it is read, and nothing in a local part can
become a pipe or a file: only the file's own text can.  With ``expand``, a
value that uses $local_part is tainted and may then give addresses only.
"""

from __future__ import annotations

import errno
import os

from mta.drivers import DriverOptions, Kind, option, options_table
from mta.errors import ConfigError, DeferError, ExpansionError
from mta.expand import LookupDeferError, lookup
from mta.expand.lookups import parse_search_type
from mta.route.base import Decline, Director, RouteResult
from mta.route.directors import _common
from mta.route.directors._common import RedirectingOptions, what
from mta.route.item import AddressItem
from mta.route.redirect import NO_REDIRECT
from mta.taint import file_name_refused

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

if TYPE_CHECKING:
    from mta.route.context import RoutingContext


@options_table
class AliasfileOptions(RedirectingOptions):
    file: str | None = option(
        None, Kind.STRING,
        "The alias file (for lmdb, the database built by newaliases).  Expanded; the result must be an absolute "
        "path and must not be tainted: use $domain_data, not $domain, to choose a file per domain.",
        expand=True,
    )
    search_type: str = option(
        "lsearch", Kind.STRING,
        "How the file is searched: lsearch, wildlsearch, nwildlsearch, lmdb, dsearch; a `*` suffix tries the key "
        "`*` when nothing matches, `*@` tries `*@domain` then `*`.",
    )
    include_domain: bool = option(
        False, Kind.BOOL, "Look up `local_part@domain` instead of the local part alone (one file for many domains)."
    )
    optional: bool = option(
        False, Kind.BOOL, "If the file does not exist, decline instead of deferring the address."
    )
    expand: bool = option(
        False, Kind.BOOL,
        "Expand each alias value with the address's variables ($local_part, $domain, ...) before it is parsed.  "
        "A value that uses a tainted variable may then give addresses only, never pipes or files.",
    )


class AliasfileDirector(Director):
    """Replace a local address by the items of its entry in an alias file.  See docs/directors.md."""

    options: AliasfileOptions
    options_class: ClassVar[type[DriverOptions]] = AliasfileOptions

    def check(self, config: Any) -> None:
        super().check(config)
        _common.require_file_option(self)
        try:
            parse_search_type(self.options.search_type)
        except ExpansionError as exc:
            raise ConfigError(f"{what(self)}: search_type: {exc.message}", *self.source) from None
        _common.check_redirecting(self, config)

    def direct(self, item: AddressItem, ctx: RoutingContext) -> RouteResult:
        opts = self.options
        if item.extra.get(NO_REDIRECT):
            return Decline(f"{item.address} came from a \\ item: not aliased again")
        if not opts.file:
            raise DeferError(f'{what(self)}: the "file" option is not set')
        path = _common.expand_option(self, ctx, opts.file, item, "file")
        if path is None:
            return Decline("file expansion forced to fail")
        if file_name_refused(path):
            raise DeferError(f'{what(self)}: tainted file name "{path}" refused (use $local_part_data/$domain_data)')
        if not os.path.isabs(path):
            raise DeferError(f'{what(self)}: alias file "{path}" is not an absolute path')
        if not self._file_ok(path):
            return Decline(f"alias file {path} does not exist (optional)")
        key = item.local_part if opts.caseful_local_part else item.local_part.lower()
        if opts.include_domain:
            key = f"{key}@{item.domain.lower()}"
        try:
            value = lookup(opts.search_type, path, key)
        except LookupDeferError as exc:
            if opts.optional and exc.errno == errno.ENOENT:  # removed since the stat
                return Decline(f"alias file {path} does not exist (optional)")
            raise DeferError(f"{what(self)}: {exc.message}", errno=exc.errno) from None
        except ExpansionError as exc:
            raise DeferError(f"{what(self)}: {exc.message}") from None
        if value is None:
            return Decline(f"no entry for {key} in {path}")
        if opts.expand:
            expanded = _common.expand_option(self, ctx, value, item, f'alias value of "{key}"')
            if expanded is None:
                return Decline(f'expansion of the alias value of "{key}" forced to fail')
            value = expanded
        return _common.redirect(
            self, ctx, item, value,
            source=f'{what(self)}: alias file {path}, entry "{key}"',
            include_check=self._check_include,
            empty=f'empty alias value for "{key}" in {path}',
        )

    def _file_ok(self, path: str) -> bool:
        """Check the file's mode and owner before it is read; False when it is missing and optional."""
        opts = self.options
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            if opts.optional:
                return False
            raise DeferError(f"{what(self)}: alias file {path} does not exist") from None
        except OSError as exc:
            reason = f"{what(self)}: cannot stat alias file {path}: {exc.strerror}"
            raise DeferError(reason, errno=exc.errno or 0) from None
        _common.check_file(
            path, st, label=f"{what(self)}: alias file", modemask=opts.modemask,
            uids=_common.resolve_owners(self, opts.owners, "user"),
            gids=_common.resolve_owners(self, opts.owngroups, "group"),
        )
        return True

    def _check_include(self, path: str, st: os.stat_result) -> None:
        # An :include:d list can hold pipes too, so it gets the same mode check as the alias file.
        _common.check_file(path, st, label=f"{what(self)}: included file", modemask=self.options.modemask,
                           uids=None, gids=None)
