"""localuser: accept a local part that is a login name (Exim 3's localuser director).

    localuser:
      driver = localuser
      transport = local_delivery
      cannot_route_message = Unknown user

The local part is looked up with getpwnam, first as written, then in lower
case.  An unknown user declines (the engine then fails the address with the
last ``cannot_route_message``).  On success the item gets $home, the uid
and gid of the user, and $local_part_data = the login name from the passwd
file: an untainted value a transport may use in a file name
(``file = /var/mail/$local_part_data``).

Security: the local part is only ever a key for getpwnam; ``"|cmd"@domain``
or ``/etc/passwd@domain`` are simply unknown users.
"""

from __future__ import annotations

from mta.drivers import DriverOptions, Kind, option, options_table
from mta.route.base import Accept, Decline, Director, DirectorOptions, RouteResult
from mta.route.directors import _common
from mta.route.item import AddressItem
from mta.taint import untainted

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar

if TYPE_CHECKING:
    from mta.route.context import RoutingContext


@options_table
class LocaluserOptions(DirectorOptions):
    match_directory: str | None = option(
        None, Kind.STRING,
        "Expanded; the user's home directory must match it or the director declines: `^regex`, `*suffix`, "
        "or the exact directory.",
        expand=True,
    )


class LocaluserDirector(Director):
    """Accept a local part that is a login name on this system.  See docs/directors.md."""

    options: LocaluserOptions
    options_class: ClassVar[type[DriverOptions]] = LocaluserOptions

    def direct(self, item: AddressItem, ctx: RoutingContext) -> RouteResult:
        pw = _common.find_user(item.local_part)
        if pw is None:
            return Decline(f"{item.local_part} is not a local user")
        home = untainted(pw.pw_dir)
        if self.options.match_directory is not None:
            pattern = _common.expand_option(self, ctx, self.options.match_directory, item, "match_directory")
            if pattern is None or not _common.match_string(pattern, home):
                return Decline(f"home directory {home} does not match match_directory")
        # Trusted values from the passwd file, unlike the local part they were found by.
        item.home = home
        item.local_part_data = untainted(pw.pw_name)
        item.uid, item.gid = pw.pw_uid, pw.pw_gid
        uid, gid = _common.user_group(self, ctx, item)
        if uid is not None:
            item.uid, item.gid = uid, gid
        elif gid is not None:
            item.gid = gid
        item.initgroups = self.options.initgroups
        return Accept()
