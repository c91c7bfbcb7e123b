"""The ``verify`` ACL condition: recipient, sender, helo, header_syntax and certificate.

``verify = recipient`` and ``verify = sender`` route the address in verify
mode (mta.route.verify; in a thread, since routing may read files and query
the DNS); a failure's text (``Unknown user``) becomes the reply and the log
message, as in Exim, and a sender's result is remembered for the message.
``verify = helo`` checks once per connection that the HELO name is the
client's (its IP literal, its verified host name, or a name whose address
records include the client's address).  ``verify = header_syntax`` parses
every address header of the message.
"""

from __future__ import annotations

from mta.errors import AddressError, DeferError, FailError
from mta.message.address import parse_header_addresses, qualify
from mta.receive.acl_log import same_ip
from mta.receive.acl_syntax import VerifySpec, parse_at
from mta.receive.acl_types import Rc

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from mta.receive.acl_run import AclRun
    from mta.receive.acl_syntax import AclItem
    from mta.route.verify import VerifyResult

_ADDRESS_HEADERS = frozenset(
    f"{prefix}{name}" for prefix in ("", "resent-") for name in ("sender", "from", "reply-to", "to", "cc", "bcc")
)


async def verify(run: AclRun, item: AclItem, arg: str, verb: str) -> Rc:
    try:
        spec = parse_at("verify", arg, run.ctx.stage)
    except ValueError as exc:
        run.log_msg = str(exc)
        return Rc.ERROR
    assert isinstance(spec, VerifySpec)
    if spec.what == "helo":
        return Rc.OK if await _helo_verified(run) else Rc.FAIL
    if spec.what == "certificate":
        if run.ctx.tls_certificate_verified:
            return Rc.OK
        run.user_msg = "no verified certificate"
        rc = Rc.FAIL
    elif spec.what == "header_syntax":
        rc = _header_syntax(run)
    elif spec.what == "sender":
        rc = await _verify_sender(run, spec)
    else:
        rc = await _verify_recipient(run, spec)
    if run.user_msg:
        run.variables["acl_verify_message"] = run.user_msg
    if verb == "warn":
        run.user_msg = None  # a warn's reply text comes only from its own message
    return rc


async def _route_verify(run: AclRun, address: str, what: str, spec: VerifySpec) -> VerifyResult:
    from mta.route.context import RoutingContext
    from mta.route.verify import verify_address

    engine = run.engine
    # Routing's trace lines are collected in the thread and passed on here, so that
    # the session's trace is only ever called on its own event loop.
    lines: list[str] = []
    ctx = RoutingContext(
        run.config,
        run.ctx.sender_address or "",
        verify=what,
        transports=engine.runtime.transports,
        debug=lines.append if run.ctx.trace is not None else None,
        resolver_factory=engine.sync_resolver,
    )
    run.trace(f"----------- verify {what} {address} ------------")
    import asyncio  # here: -bV loads the conditions and needs no event loop

    result = await asyncio.to_thread(verify_address, engine.routing(), address, ctx, spec.success_on_redirect)
    for line in lines:
        run.trace(line)
    run.trace("----------- end verify ------------")
    return result


async def _verify_recipient(run: AclRun, spec: VerifySpec) -> Rc:
    address = run.ctx.recipient or ""
    result = await _route_verify(run, address, "recipient", spec)
    run.variables["address_data"] = result.address_data
    if result.status == "ok":
        return Rc.OK
    run.user_msg = run.log_msg = result.message
    if result.status == "defer":
        return Rc.OK if spec.defer_ok else Rc.DEFER
    run.variables["recipient_verify_failure"] = "route"
    return Rc.FAIL


async def _verify_sender(run: AclRun, spec: VerifySpec) -> Rc:
    address = spec.address if spec.address is not None else run.ctx.sender_address
    if not address:
        run.trace(" null sender")
        return Rc.OK  # a bounce has no sender to verify
    address = qualify(address, run.config.qualify_domain)
    cache = run.ctx.message.sender_verified
    if address not in cache:
        result = await _route_verify(run, address, "sender", spec)
        cache[address] = (result.status, result.message, result.address_data)
    else:
        run.trace("using cached sender verify result")
    status, message, address_data = cache[address]
    run.variables["sender_address_data"] = address_data
    if status == "ok" or (status == "defer" and spec.defer_ok):
        return Rc.OK
    run.user_msg = run.log_msg = "Sender verify failed" if status == "fail" else "Could not complete sender verify"
    run.variables["sender_verify_failure"] = "route"
    if not spec.no_details:
        run.sender_verify_failure = (address, message or "", status == "defer")
    return Rc.FAIL if status == "fail" else Rc.DEFER


async def _helo_verified(run: AclRun) -> bool:
    """Does the HELO name belong to the client (Exim's smtp_verify_helo)?  Done once per connection."""
    ctx = run.ctx
    state = ctx.connection
    if state.helo_verified is not None:
        return state.helo_verified
    helo = ctx.helo_name
    if helo is None:
        verified = False
    elif ctx.host_address is None:
        verified = True  # -bs without an IP address
    elif helo.startswith("["):
        verified = same_ip(helo, ctx.host_address)
    elif ctx.host_name is not None and helo.lower() == ctx.host_name.lower():
        verified = True
    else:
        verified = False
        from mta.config.hostaddrs import parse_ip

        resolver = await run.engine.resolver()
        try:
            addresses = await resolver.lookup_addresses_async(helo)
        except (DeferError, FailError) as exc:
            run.trace(f"HELO name {helo} not verified: {exc.message}")
            addresses = []
        client = parse_ip(ctx.host_address)
        verified = any(parse_ip(a) == client for a in addresses)
    run.trace(f"HELO {helo} {'verified' if verified else 'not verified'}")
    state.helo_verified = verified
    return verified


def _header_syntax(run: AclRun) -> Rc:
    """Every address header (From, Sender, Reply-To, To, Cc, Bcc and the Resent- ones) must parse;
    unqualified addresses only from local submissions."""
    ctx = run.ctx
    lines = ctx.header_lines() if ctx.header_lines is not None else []
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or name.strip().lower() not in _ADDRESS_HEADERS:
            continue
        try:
            addresses = parse_header_addresses(value)
        except AddressError as exc:
            run.log_msg = f"syntax error in '{name.strip()}:' header: {exc.message}"
            return Rc.FAIL
        if ctx.host_address is not None:
            for found in addresses:
                if "@" not in found.address:
                    run.log_msg = f"unqualified address not permitted in '{name.strip()}:' header: {found.address}"
                    return Rc.FAIL
    return Rc.OK
