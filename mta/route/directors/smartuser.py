"""smartuser: the catch-all director (Exim 3's smartuser).

    # deliver every remaining local part to one mailbox
    catchall:
      driver = smartuser
      transport = catchall_mbox

    # or rewrite it to another address, routed again from the first director
    to_postmaster:
      driver = smartuser
      new_address = postmaster@$domain

It matches any local part (use the generic ``local_parts``, ``condition``
... to limit it).  With ``new_address`` the address is replaced by that one
address (unqualified: qualify_recipient); otherwise it is accepted for the
generic ``transport``.  Setting both is a configuration error: Exim 3
delivered the new address straight to the transport, which mta does not do.

Security: the new address is only ever an address, never a pipe or file,
whatever the local part it was made from; a result that does not parse
fails the address when it came from tainted data, and defers it (a
configuration error) otherwise.
"""

from __future__ import annotations

from mta.drivers import DriverOptions, Kind, option, options_table
from mta.errors import AddressError, ConfigError, DeferError, FailError
from mta.message.address import parse_envelope_address, qualify, split_address
from mta.route.base import Accept, Decline, Director, DirectorOptions, Redirect, RouteResult
from mta.route.directors import _common
from mta.route.item import AddressItem
from mta.route.redirect import NO_REDIRECT
from mta.taint import is_tainted

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

if TYPE_CHECKING:
    from mta.route.context import RoutingContext


@options_table
class SmartuserOptions(DirectorOptions):
    new_address: str | None = option(
        None, Kind.STRING,
        "Expanded; the address to replace the local address by (routed again from the first director).  "
        "Unqualified results get qualify_recipient; a forced failure declines.",
        expand=True,
    )


class SmartuserDirector(Director):
    """Catch-all: accept any local address for a transport, or rewrite it.  See docs/directors.md."""

    options: SmartuserOptions
    options_class: ClassVar[type[DriverOptions]] = SmartuserOptions

    def check(self, config: Any) -> None:
        super().check(config)
        opts = self.options
        if opts.new_address is not None and opts.transport is not None:
            raise ConfigError(f"{_common.what(self)}: set new_address or transport, not both", *self.source)
        if opts.new_address is None and opts.transport is None and not opts.verify_only:
            raise ConfigError(f"{_common.what(self)}: needs new_address or transport", *self.source)

    def direct(self, item: AddressItem, ctx: RoutingContext) -> RouteResult:
        opts = self.options
        if opts.new_address is None:
            uid, gid = _common.user_group(self, ctx, item)
            if uid is not None or gid is not None:
                item.uid, item.gid = uid, gid
            item.initgroups = opts.initgroups
            return Accept()
        if item.extra.get(NO_REDIRECT):
            return Decline(f"{item.address} came from a \\ item: not redirected again")
        text = _common.expand_option(self, ctx, opts.new_address, item, "new_address")
        if text is None:
            return Decline("new_address expansion forced to fail")
        try:
            address = parse_envelope_address(text)
        except AddressError as exc:
            message = f'{_common.what(self)}: new_address "{text}" is not a valid address: {exc.message}'
            # Made from what the sender typed: their fault.  Otherwise ours: keep the mail.
            raise (FailError(message) if is_tainted(text) else DeferError(message)) from None
        if not address:
            raise DeferError(f"{_common.what(self)}: new_address expanded to the empty address")
        if not split_address(address)[1]:
            address = qualify(address, ctx.config.qualify_recipient)
        return Redirect([AddressItem(address)])
