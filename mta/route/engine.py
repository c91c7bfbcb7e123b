"""The routing engine: every address through the directors or routers.

An address whose domain is in local_domains goes to the directors, any
other to the routers, each list tried in order until one accepts.  New
addresses from aliasing and forwarding start again from the top.  The same
engine serves delivery, -bt (address test) and -bv / ACL verification
(verify mode skips drivers with ``no_verify`` and runs ``verify_only`` ones).

Loop safety, as in Exim: a driver is skipped for an address if an ancestor
with the same address was handled by that same driver.  An alias loop
a -> b -> a therefore ends at the next driver (typically localuser, which
fails an unknown user) instead of going round for ever; a tree deeper than
MAX_DEPTH fails cleanly.
"""

from __future__ import annotations

import os

from mta import debug as _debug
from mta import record
from mta.config.lists import match_address, match_domain, match_local_part
from mta.errors import ConfigError, DeferError, ExpansionError, FailError
from mta.message.address import split_address, strip_affix
from mta.message.headers import fold_message_data
from mta.route.base import Accept, Decline, Director, Pass, Redirect, RoutingDriver
from mta.route.context import RoutingContext
from mta.route.item import AddressItem
from mta.values import split_list

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

MAX_DEPTH = 100
DEFAULT_CANNOT_ROUTE = "Unrouteable address"


@record.dataclass
class RoutingOutcome:
    accepted: list[AddressItem] = record.field(default_factory=list)
    failed: list[tuple[AddressItem, FailError]] = record.field(default_factory=list)
    deferred: list[tuple[AddressItem, DeferError]] = record.field(default_factory=list)
    discarded: list[AddressItem] = record.field(default_factory=list)  # :blackhole:
    # Final addresses that duplicate an accepted one: delivered with it.
    duplicates: list[tuple[AddressItem, AddressItem]] = record.field(default_factory=list)


def _truthy(value: str) -> bool:
    """Exim's rule for `condition`: empty, 0, no and false are false."""
    return value.strip().lower() not in ("", "0", "no", "false")


class RoutingEngine:
    def __init__(self, directors: Sequence[RoutingDriver], routers: Sequence[RoutingDriver], config) -> None:  # type: ignore[no-untyped-def]
        self.directors = list(directors)
        self.routers = list(routers)
        self.config = config

    # -- public -------------------------------------------------------------
    def route(
        self,
        items: Sequence[AddressItem],
        ctx: RoutingContext,
        done: set[str] | None = None,
        hold: Callable[[AddressItem], DeferError | None] | None = None,
    ) -> RoutingOutcome:
        """Route `items` to the end; `done` holds unique keys already delivered (skipped).

        `hold`, if given, is asked about each address (new ones from aliases
        too) before any driver sees it; an error it returns defers the address
        unrouted (a queue run's routing retry time not reached).
        """
        outcome = RoutingOutcome()
        # A list walked by its iterator, which sees what the loop appends (no collections.deque:
        # its import costs a short command 2 ms of start-up).
        queue: list[tuple[AddressItem, int]] = [(item, 0) for item in items]
        seen_final: dict[str, AddressItem] = {}
        done = done or set()
        for item, start in queue:
            if item.is_pipe or item.is_file or item.reply is not None:
                # Pipes, files and a filter's replies are not routed again: the
                # director that produced them named their transport.
                forbidden = item.extra.get("forbidden")
                if forbidden or not item.transport_name:
                    kind = "pipe" if item.is_pipe else "file" if item.is_file else "reply"
                    exc = FailError(forbidden or f"no {kind}_transport is set for this {kind} delivery")
                    item.message = exc.message
                    outcome.failed.append((item, exc))
                    continue
                if item.unique_key() not in done:
                    outcome.accepted.append(item)
                continue
            held = hold(item) if hold is not None else None
            if held is not None:
                item.message = held.message
                outcome.deferred.append((item, held))
                continue
            try:
                result = self._route_one(item, ctx, start)
            except FailError as exc:
                item.message = exc.message
                outcome.failed.append((item, exc))
                if "route" in _debug.active:
                    _debug.write(f"{item.address} failed: {exc.message}")
                continue
            except DeferError as exc:
                item.message = exc.message
                outcome.deferred.append((item, exc))
                if "route" in _debug.active:
                    _debug.write(f"{item.address} deferred: {exc.message}")
                continue
            driver, index, verdict = result
            if isinstance(verdict, Redirect):
                if verdict.discard:
                    outcome.discarded.append(item)
                    continue
                for child in verdict.children:
                    child.parent = item
                    child.original_index = item.original_index
                    if (child.is_pipe or child.is_file) and child.uid is None:
                        # A redirecting driver's user/group apply to the pipes and files it made.
                        child.uid, child.gid, child.initgroups = item.uid, item.gid, item.initgroups
                    if child.errors_to is None:
                        child.errors_to = item.errors_to
                    child.headers_add = item.headers_add + child.headers_add
                    child.headers_remove = item.headers_remove + child.headers_remove
                    queue.append((child, 0))
                continue
            # Accepted.
            key = item.unique_key(caseful=driver.options.caseful_local_part)
            if driver.options.unseen:
                item.split = True
                copy = record.replace(
                    item,
                    hosts=[],
                    headers_add=list(item.headers_add),
                    headers_remove=list(item.headers_remove),
                    handled_by=set(item.handled_by),
                )
                queue.append((copy, index + 1))
            address_done = key in done  # the address as a whole (e.g. -Mmd): every copy
            if item.split:
                # One address, two deliveries (Exim's homonyms): each copy's key names its
                # transport, or delivering one copy would record the address itself as
                # delivered, and the other copy, deferred, would be forgotten.
                key = f"{key}/{item.transport_name}"
            item.unique = key
            if address_done or key in done:
                continue  # delivered in an earlier attempt
            first = seen_final.get(key)
            if first is not None and first.transport_name == item.transport_name:
                outcome.duplicates.append((item, first))
                continue
            seen_final[key] = item
            outcome.accepted.append(item)
        return outcome

    def route_one(self, item: AddressItem, ctx: RoutingContext) -> tuple[RoutingDriver, Accept | Redirect]:
        """One step for `item`: the driver that accepted or redirected it, and its verdict.

        Raises FailError or DeferError as routing the address would.  For
        verification, which follows redirections by its own rule
        (mta.route.verify).
        """
        driver, _index, verdict = self._route_one(item, ctx, 0)
        return driver, verdict

    def is_local_domain(self, domain: str, ctx: RoutingContext) -> bool:
        return bool(match_domain(domain, self.config.local_domains, ctx.list_context))

    # -- one address --------------------------------------------------------
    def _route_one(
        self, item: AddressItem, ctx: RoutingContext, start: int
    ) -> tuple[RoutingDriver, int, Accept | Redirect]:
        if item.depth > MAX_DEPTH:
            raise FailError(f"too many levels of aliasing or forwarding (more than {MAX_DEPTH}): loop?")
        local_part, domain = split_address(item.address)
        if not domain:
            raise FailError(f"unqualified address {item.address} cannot be routed")
        drivers = self.directors if self.is_local_domain(domain, ctx) else self.routers
        last_message: str | None = None
        item.local_part, item.domain = local_part, domain
        if "route" in _debug.active:
            _debug.write(f"routing {item.address}")
        for index in range(start, len(drivers)):
            driver = drivers[index]
            opts = driver.options
            # Exim takes the message from the last driver considered, even one whose
            # preconditions then fail (localuser with local_parts -> "Unknown user").
            if opts.cannot_route_message:
                last_message = ctx.expand_or_defer(opts.cannot_route_message, item, "cannot_route_message")
            debugging = "route" in _debug.active
            if debugging:
                _debug.write(f"--------> {driver.name} {driver.kind_name} <--------")
            skipped = self._preconditions(driver, item, local_part, domain, ctx)
            if skipped:
                if debugging:
                    _debug.write(f"{driver.name} {driver.kind_name} skipped: {skipped}")
                continue
            if ctx.debug is not None:
                ctx.trace(f"{driver.kind_name} {driver.name}: considering {item.address}")
            if opts.debug_print and (ctx.debug is not None or debugging):
                ctx.trace(ctx.expand_or_defer(opts.debug_print, item, "debug_print") or "")
            if debugging:
                _debug.write(f"calling {driver.name} {driver.kind_name}")
            try:
                if isinstance(driver, Director):
                    verdict = driver.direct(item, ctx)
                else:
                    verdict = driver.route(item, ctx)  # type: ignore[attr-defined]
            except DeferError:
                # The deferral's log line names the driver (Exim's "== addr R=name defer ...").
                item.router_name = driver.name
                raise
            if isinstance(verdict, Pass):
                if debugging:
                    _debug.write(f"{driver.name} {driver.kind_name} passed for {item.address}")
                continue
            if isinstance(verdict, Decline):
                if debugging:
                    _debug.write(f"{driver.name} {driver.kind_name} declined for {item.address}")
                if not opts.more:
                    if debugging:
                        _debug.write(f'"more" is false: skipping remaining {driver.kind_name}s')
                    raise FailError(last_message or DEFAULT_CANNOT_ROUTE)
                continue
            item.handled_by.add(driver.name)
            self._apply_generic(driver, item, ctx)
            if isinstance(verdict, Accept):
                self._accept(driver, item, verdict, ctx)
            if debugging:
                _debug_verdict(driver, item, verdict)
            return driver, index, verdict
        if "route" in _debug.active:
            _debug.write(f"no more {'directors' if drivers is self.directors else 'routers'} for {item.address}")
        raise FailError(last_message or DEFAULT_CANNOT_ROUTE)

    def _preconditions(
        self, driver: RoutingDriver, item: AddressItem, local_part: str, domain: str, ctx: RoutingContext
    ) -> str | None:
        """None when `driver` is to be tried for `item`; else why it is skipped (Exim's debug words)."""
        opts = driver.options
        # Loop safety: skip if an ancestor with this same address was handled by this driver.
        key = item.unique_key(caseful=opts.caseful_local_part)
        for ancestor in item.ancestors():
            if driver.name in ancestor.handled_by and ancestor.unique_key(caseful=opts.caseful_local_part) == key:
                return "previously handled this address (loop)"
        if ctx.verify is not None:
            if not opts.verify:
                return "verify=no"
            if ctx.verify == "recipient" and not opts.verify_recipient:
                return "verify_recipient=no"
            if ctx.verify == "sender" and not opts.verify_sender:
                return "verify_sender=no"
        elif opts.verify_only:
            return "verify_only set"
        # Prefix and suffix are removed before the local_parts check.
        prefixes = split_list(opts.local_part_prefix) if opts.local_part_prefix else []
        suffixes = split_list(opts.local_part_suffix) if opts.local_part_suffix else []
        if prefixes or suffixes:
            affixed = strip_affix(
                local_part, prefixes, suffixes, opts.local_part_prefix_optional, opts.local_part_suffix_optional
            )
            if affixed is None:
                return "prefix/suffix mismatch"
            item.prefix, core, item.suffix = affixed
        else:
            item.prefix, core, item.suffix = "", local_part, ""
        item.local_part = core
        item.domain = domain
        item.local_part_data = None
        item.domain_data = None
        lists = ctx.list_context
        try:
            if opts.domains:
                m = match_domain(domain, self._expand_list(opts.domains, item, ctx, "domains"), lists)
                if not m:
                    return "domains mismatch"
                item.domain_data = m.data
            if opts.local_parts:
                m = match_local_part(
                    core,
                    self._expand_list(opts.local_parts, item, ctx, "local_parts"),
                    lists,
                    caseful=opts.caseful_local_part,
                )
                if not m:
                    return "local_parts mismatch"
                item.local_part_data = m.data
            if opts.senders:
                if not match_address(ctx.sender_address, self._expand_list(opts.senders, item, ctx, "senders"), lists):
                    return "senders mismatch"
        except ExpansionError as exc:
            raise DeferError(f"{driver.kind_name} {driver.name}: {exc.message}") from None
        except ConfigError as exc:
            raise DeferError(f"{driver.kind_name} {driver.name}: {exc}") from None
        if opts.require_files and not self._require_files(opts.require_files, item, ctx):
            return "require_files check failed"
        if opts.condition is not None:
            value = ctx.expand_or_defer(opts.condition, item, f"condition of {driver.name}")
            if value is None or not _truthy(value):
                return "condition failure"
        if opts.address_data is not None:
            data = ctx.expand_or_defer(opts.address_data, item, f"address_data of {driver.name}")
            if data is None:
                return "address_data forced failure"
            item.address_data = data
        return None

    @staticmethod
    def _expand_list(text: str, item: AddressItem, ctx: RoutingContext, what: str) -> str:
        return ctx.expand(text, item) if "$" in text else text

    @staticmethod
    def _require_files(text: str, item: AddressItem, ctx: RoutingContext) -> bool:
        expanded = ctx.expand_or_defer(text, item, "require_files")
        if expanded is None:
            return False
        for entry in split_list(expanded):
            if not entry:
                continue
            negate = entry.startswith("!")
            path = entry[1:] if negate else entry
            ignore_eacces = path.startswith("+")
            path = path.lstrip("+")
            if not path.startswith("/"):
                continue  # user:group: prefixes are not supported; treat as not a file test
            try:
                exists = os.path.exists(path) if not ignore_eacces else _exists_or_eacces(path)
            except OSError as exc:
                raise DeferError(f"require_files: cannot check {path}: {exc.strerror}") from None
            if exists == negate:
                return False
        return True

    @staticmethod
    def _apply_generic(driver: RoutingDriver, item: AddressItem, ctx: RoutingContext) -> None:
        opts = driver.options
        if opts.errors_to is not None:
            value = ctx.expand_or_defer(opts.errors_to, item, "errors_to")
            if value is not None:
                item.errors_to = "" if value.strip() in ("<>", "") else value.strip()
        if opts.headers_add is not None:
            value = ctx.expand_or_defer(opts.headers_add, item, "headers_add")
            if value:
                # One entry per header, its folds with it; message data cannot start a header.
                lines = [line for line in fold_message_data(value).split("\n") if line.strip()]
                for line in lines:
                    if line[:1] in (" ", "\t") and item.headers_add:
                        item.headers_add[-1] += "\n" + line
                    else:
                        item.headers_add.append(line)
        if opts.headers_remove is not None:
            value = ctx.expand_or_defer(opts.headers_remove, item, "headers_remove")
            if value:
                item.headers_remove.extend(h for h in split_list(value) if h)

    @staticmethod
    def _accept(driver: RoutingDriver, item: AddressItem, verdict: Accept, ctx: RoutingContext) -> None:
        item.router_name = driver.name
        if driver.options.user is not None or driver.options.group is not None:
            # Only accepted addresses are delivered; a redirecting director applies
            # its user/group to the pipes and files it makes itself.
            _apply_user_group(driver, item, ctx)
        transport = verdict.transport
        if transport is None and driver.options.transport is not None:
            transport = ctx.expand_or_defer(driver.options.transport, item, "transport")
        if not transport and not (ctx.verify or ctx.address_test):
            raise DeferError(f"{driver.kind_name} {driver.name} accepted {item.address} but has no transport")
        if transport and ctx.transports and transport not in ctx.transports:
            raise DeferError(f'{driver.kind_name} {driver.name}: transport "{transport}" is not defined')
        item.transport_name = transport
        item.hosts = list(verdict.hosts)


def _apply_user_group(driver: RoutingDriver, item: AddressItem, ctx: RoutingContext) -> None:
    """The generic `user`/`group` options: who local deliveries for this address run as."""
    import grp
    import pwd

    opts = driver.options
    if opts.user is not None:
        name = ctx.expand_or_defer(opts.user, item, "user")
        if name:
            try:
                entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
            except KeyError:
                raise DeferError(f'{driver.kind_name} {driver.name}: user "{name}" was not found') from None
            item.uid, item.gid = entry.pw_uid, entry.pw_gid
            item.initgroups = opts.initgroups
    if opts.group is not None:
        name = ctx.expand_or_defer(opts.group, item, "group")
        if name:
            try:
                item.gid = int(name) if name.isdigit() else grp.getgrnam(name).gr_gid
            except KeyError:
                raise DeferError(f'{driver.kind_name} {driver.name}: group "{name}" was not found') from None


def _debug_verdict(driver: RoutingDriver, item: AddressItem, verdict: Accept | Redirect) -> None:
    """-d+route: what the driver decided, in Exim's words."""
    if isinstance(verdict, Redirect):
        if verdict.discard:
            _debug.write(f"{driver.name} {driver.kind_name}: address discarded (:blackhole:)")
            return
        children = " ".join(child.address for child in verdict.children) or "(none)"
        _debug.write(f"{driver.name} {driver.kind_name} generated {children}")
        return
    _debug.write(f"routed by {driver.name} {driver.kind_name}")
    _debug.write(f"  envelope to: {item.address}")
    _debug.write(f"  transport: {item.transport_name or '<none>'}")
    for host in item.hosts:
        address = f" [{host.address}]" if getattr(host, "address", None) else ""
        mx = f" MX={host.mx}" if getattr(host, "mx", None) is not None and host.mx >= 0 else ""
        _debug.write(f"  host {host.name}{address}{mx}")


def _exists_or_eacces(path: str) -> bool:
    try:
        os.stat(path)
    except PermissionError:
        return True
    except FileNotFoundError:
        return False
    return True
