"""Address verification for ACLs (``verify = recipient`` / ``verify = sender``), Exim's way.

The address is routed in verify mode (drivers with ``no_verify`` are
skipped, ``verify_only`` ones run).  Redirection follows Exim's pragmatic
rule: an address redirected to exactly one new address is verified by
verifying that one; an address redirected to several (a mailing list, in
effect), to a pipe or file, or discarded (``:blackhole:``) is verified by
the redirection itself; ``success_on_redirect`` stops at any redirection.
Routing failure fails verification with the driver's message (for example
``Unknown user``), a temporary problem defers it.  No callout is made.

Blocking (routing may read files and query the DNS): from an event loop,
call it in a thread.
"""

from __future__ import annotations

from mta import record
from mta.errors import DeferError, FailError
from mta.route.base import Redirect
from mta.route.context import RoutingContext
from mta.route.engine import MAX_DEPTH, RoutingEngine
from mta.route.item import AddressItem

VERIFIED = "ok"
FAILED = "fail"
DEFERRED = "defer"


@record.dataclass(frozen=True, slots=True)
class VerifyResult:
    status: str  # VERIFIED, FAILED or DEFERRED
    message: str | None = None  # why it failed or deferred
    address_data: str | None = None  # $address_data at the end of routing
    address: str = ""  # the address whose routing decided


def verify_address(
    engine: RoutingEngine, address: str, ctx: RoutingContext, success_on_redirect: bool = False
) -> VerifyResult:
    """Verify one qualified address; `ctx.verify` is "recipient" or "sender"."""
    item = AddressItem(address, original_index=0)
    for _ in range(MAX_DEPTH):
        try:
            driver, verdict = engine.route_one(item, ctx)
        except FailError as exc:
            return VerifyResult(FAILED, exc.message, item.address_data, item.address)
        except DeferError as exc:
            return VerifyResult(DEFERRED, exc.message, item.address_data, item.address)
        ctx.trace(f"{driver.kind_name} {driver.name} verified {item.address}")
        if not isinstance(verdict, Redirect):
            return VerifyResult(VERIFIED, None, item.address_data, item.address)
        children = verdict.children
        if verdict.discard or success_on_redirect or len(children) != 1:
            return VerifyResult(VERIFIED, None, item.address_data, item.address)
        child = children[0]
        child.parent = child.parent or item
        if child.is_pipe or child.is_file:
            return VerifyResult(VERIFIED, None, item.address_data, item.address)
        if child.address_data is None:
            child.address_data = item.address_data
        item = child
    return VerifyResult(FAILED, f"too many levels of aliasing or forwarding (more than {MAX_DEPTH}): loop?")
