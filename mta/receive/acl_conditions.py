"""The conditions and modifiers of ACL statements (Exim's acl_check_condition cases).

`HANDLERS` maps each name to ``async (run, item, arg, verb) -> Rc``: `arg`
is the item's value, expanded already for the items Exim expands at the
outer level (lists expand themselves, as Exim's match_isinlist does).  A
handler returns OK when the condition holds (a modifier always does), FAIL
when not, DEFER when it cannot tell now and ERROR for a mistake in the
configuration; it may set ``run.user_msg`` / ``run.log_msg`` to explain.

What may block (file lookups in lists, host names to resolve, routing for
verify, the ratelimit database) runs in a thread; DNS lists and the HELO
check use the async resolver.
"""

from __future__ import annotations

import time

from mta.config.lists import (
    ListContext,
    ListMatch,
    default_resolve_host,
    local_interface_addresses,
    match_address,
    match_domain,
    match_host,
    match_local_part,
)
from mta.message.address import split_address
from mta.receive.acl_dnslists import DnslistCheck
from mta.receive.acl_ratelimit import HintsError, RatelimitFacts, parse_ratelimit, ratelimit_update, store_key
from mta.receive.acl_syntax import ControlSpec, parse_at, parse_log_targets, split_logwrite
from mta.receive.acl_types import AclStage, Rc, SubmissionControl
from mta.receive.acl_verify import verify
from mta.taint import taint
from mta.values import parse_time, split_list

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from mta.receive.acl_run import AclRun
    from mta.receive.acl_syntax import AclItem
    from mta.route.dns_query import Result

    Handler = Callable[[AclRun, AclItem, str, str], Awaitable[Rc]]

_BOOL_FALSE = ("no", "false")
_BOOL_TRUE = ("yes", "true")
# Expansion items that read files or the network.
_BLOCKING_WORDS = ("lookup", "readfile", "exists", "dnsdb", "match_")


# -- lists -----------------------------------------------------------------------


def list_context(run: AclRun, resolve: bool = True) -> ListContext:
    """List matching for this run: named lists, the expansion of lists, and (in a thread) name lookups.

    Made once per run and kind: most statements of an ACL match a list.
    """
    cached = run.list_contexts.get(resolve)
    if cached is not None:
        return cached
    config = run.config

    def named(list_type: str, name: str) -> str | None:
        if list_type == "domainlist" and name == "local_domains":
            return config.local_domains  # the main option means the same (DESIGN.md)
        return config.named_list(list_type, name)

    made = run.list_contexts[resolve] = ListContext(
        primary_hostname=config.primary_hostname,
        named_list=named,
        local_addresses=local_interface_addresses,
        resolve_host=default_resolve_host if resolve else None,
        expand=run.expand,
    )
    return made


def may_block(run: AclRun, text: str, list_type: str) -> bool:
    """Could matching this list read a file, run a lookup or resolve a host name?"""
    cache = run.engine.blocking_lists
    key = (text, list_type)
    if key not in cache:
        cache[key] = _may_block(run, text, list_type, 0)
    return cache[key]


def _may_block(run: AclRun, text: str, list_type: str, depth: int) -> bool:
    if depth > 20 or ("$" in text and any(word in text for word in _BLOCKING_WORDS)):
        return True
    if list_type == "hostlist" and "$" in text:
        return True  # what it expands to may be host names to resolve
    for entry in split_list(text):
        item = entry.lstrip("!").strip()
        if item.startswith("/") or ";" in item:
            return True
        if item.startswith("+") and len(item) > 1:
            named = list_context(run).named_list(list_type, item[1:])
            if named is not None and _may_block(run, named, list_type, depth + 1):
                return True
            continue
        if list_type == "hostlist" and _needs_resolving(item):
            return True
    return False


def _needs_resolving(item: str) -> bool:
    """A host list item that is a host name (looked up by address) rather than an address."""
    from mta.config.hostaddrs import parse_ip

    if item in ("", "*", "@[]") or item.startswith(("^", "*", "$")):
        return False
    if parse_ip(item) is not None or "/" in item or ":" in item:
        return False
    return not all(c.isdigit() or c == "." for c in item)


async def _in_thread_if(blocking: bool, function: Callable[[], ListMatch]) -> ListMatch:
    import asyncio  # here: -bV loads the conditions and needs no event loop

    return await asyncio.to_thread(function) if blocking else function()


def _list_trace(run: AclRun, what: str, subject: str, text: str, m: ListMatch) -> None:
    if not run.tracing:
        return
    if m.matched:
        how = f'yes (matched "{m.item}")' if m.item is not None else "yes"
    else:
        how = f'no (matched "{m.item}")' if m.item is not None else "no (end of list)"
    # Exim's debug wording: "host in ..." for host lists, the subject itself for the others.
    run.trace(f'{"host" if what == "hostlist" else subject} in "{text}"? {how}')


def _list_condition(
    list_type: str,
    subject_of: Callable[[AclRun], str | None],
    match: Callable[[AclRun, str, str, ListContext], ListMatch],
    variable: str | None,
) -> Handler:
    """A condition that matches one subject against the list in its value (Exim's match_isinlist)."""

    async def handler(run: AclRun, item: AclItem, arg: str, verb: str) -> Rc:
        subject = subject_of(run)
        if subject is None:
            return Rc.FAIL
        blocking = may_block(run, arg, list_type)
        if list_type == "hostlist" and not blocking:
            answers = run.ctx.connection.host_matches
            key = (arg, run.ctx.host_address, run.ctx.host_name)
            m = answers.get(key)
            if m is None:
                m = answers[key] = match(run, subject, arg, list_context(run))
        else:
            m = await _in_thread_if(blocking, lambda: match(run, subject, arg, list_context(run)))
        _list_trace(run, list_type, subject, arg, m)
        if m.matched and variable is not None:
            run.set_variable(variable, m.data)
        return Rc.OK if m.matched else Rc.FAIL

    return handler


def _match_host(run: AclRun, subject: str, text: str, lists: ListContext) -> ListMatch:
    return match_host(run.ctx.host_address, run.ctx.host_name, text, lists)


def _match_domain(run: AclRun, subject: str, text: str, lists: ListContext) -> ListMatch:
    return match_domain(subject, text, lists)


def _match_address(run: AclRun, subject: str, text: str, lists: ListContext) -> ListMatch:
    return match_address(subject, text, lists)


def _match_string(run: AclRun, subject: str, text: str, lists: ListContext) -> ListMatch:
    # Exim's MCL_STRING and MCL_LOCALPART lists: caseless, with regex and wildcard items.
    return match_local_part(subject, text, lists)


def _client(run: AclRun) -> str:
    return run.ctx.host_address or ""  # "" (a local submission) is what an empty item matches


def _caseful_local_part(run: AclRun) -> str | None:
    return run.caseful_local_part


def _authenticator(run: AclRun) -> str | None:
    return run.ctx.authenticator


def _cipher(run: AclRun) -> str | None:
    cipher = run.ctx.tls_cipher
    if cipher is not None and ":" in cipher:
        cipher = cipher.split(":")[1]  # "TLS1.3:TLS_AES_256_GCM_SHA384:256" -> the suite's name
    return cipher


def _recipient_domain(run: AclRun) -> str | None:
    value = run.variables.get("domain")
    return value if run.ctx.recipient is not None else None


def _sender_domain(run: AclRun) -> str | None:
    sender = run.ctx.sender_address
    if sender is None:
        return None
    return taint(sender.rpartition("@")[2].lower())


def _sender(run: AclRun) -> str | None:
    sender = run.ctx.sender_address
    return None if sender is None else taint(sender)


def _recipient(run: AclRun) -> str | None:
    recipient = run.ctx.recipient
    return None if recipient is None else taint(recipient)


# -- condition and acl -----------------------------------------------------------


async def _condition(run: AclRun, item: AclItem, arg: str, verb: str) -> Rc:
    text = arg.strip()
    digits = text[1:] if text.startswith("-") else text
    if digits.isdigit() or not text:
        return Rc.FAIL if not text or int(text) == 0 else Rc.OK
    if text.lower() in _BOOL_FALSE:
        return Rc.FAIL
    if text.lower() in _BOOL_TRUE:
        return Rc.OK
    run.log_msg = f'invalid "condition" value "{arg}"'
    return Rc.DEFER


def _dequote(text: str) -> tuple[str, str]:
    """The first word of `text` (double quotes group, backslash escapes inside) and the rest."""
    text = text.lstrip()
    if not text.startswith('"'):
        word, _, rest = text.partition(" ")
        return word, rest
    out: list[str] = []
    i = 1
    while i < len(text) and text[i] != '"':
        if text[i] == "\\" and i + 1 < len(text):
            i += 1
        out.append(text[i])
        i += 1
    return "".join(out), text[i + 1 :]


async def _acl(run: AclRun, item: AclItem, arg: str, verb: str) -> Rc:
    """A nested ACL with up to nine arguments in $acl_arg1..9; its accept is true, deny false."""
    word, rest = _dequote(arg)
    name = run.expand(word)
    args: list[str] = []
    while rest.strip() and len(args) < 9:
        word, rest = _dequote(rest)
        args.append(run.expand(word))
    saved = {key: run.variables.get(key) for key in ["acl_narg", *(f"acl_arg{n}" for n in range(1, 10))]}
    run.variables["acl_narg"] = str(len(args))
    for n in range(1, 10):
        run.variables[f"acl_arg{n}"] = args[n - 1] if n <= len(args) else None
    run.level += 1
    try:
        rc = await run.check_acl(name)
    finally:
        run.level -= 1
        run.variables.update(saved)
    if rc is Rc.DISCARD and verb not in ("accept", "discard"):
        run.log_msg = f'nested ACL returned "discard" for "{verb}" command (only allowed with "accept" or "discard")'
        return Rc.ERROR
    return rc


# -- dnslists and ratelimit --------------------------------------------------------


async def _dnslists(run: AclRun, item: AclItem, arg: str, verb: str) -> Rc:
    prefix = ""
    if len(arg) >= 2 and arg[0] == "<" and not arg[1].isalnum() and not arg[1].isspace():
        prefix, arg = arg[:2], arg[2:]  # the separator is read before expanding, as Exim does
    expanded = run.expand(arg)
    resolver = await run.engine.resolver()
    cache = run.ctx.connection.dnslist_cache

    async def lookup(name: str, rdtype: str) -> Result:
        key = f"{rdtype} {name.lower()}"
        if key not in cache:
            cache[key] = await resolver.lookup_records_async(name, rdtype)
        result: Result = cache[key]
        return result

    check = DnslistCheck(lookup, run.logger.main, run.trace)
    rc, error = await check.run(prefix + expanded, run.ctx.host_address, run.ctx.stage is AclStage.NOT_SMTP)
    if error:
        run.log_msg = error
    if check.variables.get("dnslist_text"):
        # TXT records are network data: no control character may reach a header or log.
        check.variables["dnslist_text"] = taint(_one_line(check.variables["dnslist_text"] or ""))
    run.variables.update(check.variables)
    run.ctx.connection.dnslist_variables.update(check.variables)
    return rc


def _one_line(text: str) -> str:
    from mta.printable import printable

    return printable(text)


async def _ratelimit(run: AclRun, item: AclItem, arg: str, verb: str) -> Rc:
    ctx = run.ctx
    local_part, domain = split_address(ctx.recipient) if ctx.recipient else ("", "")
    facts = RatelimitFacts(len(ctx.recipients), ctx.message_size, f"{local_part.lower()}@{domain.lower()}")
    try:
        spec = parse_ratelimit(arg, ctx.stage, facts)
    except ValueError as exc:
        run.log_msg = str(exc)
        return Rc.ERROR
    run.variables["sender_rate_limit"] = spec.limit_text
    run.variables["sender_rate_period"] = spec.period_text
    key_text = store_key(spec, ctx.host_address)
    run.trace(f"ratelimit condition count={spec.count:.0f} {spec.limit:.1f}/{key_text}")
    remembered = {"cmd": run.ratelimits, "mail": ctx.message.ratelimits, "conn": ctx.connection.ratelimits}
    cache = remembered[spec.cache]
    if key_text in cache:
        rate = cache[key_text]
        run.trace(f"ratelimit found pre-computed rate {rate:.1f}")
    else:
        now = ctx.now if ctx.now is not None else time.time()
        try:
            import asyncio

            _rc, rate = await asyncio.to_thread(ratelimit_update, run.engine.ratelimit_db(), spec, key_text, now)
        except HintsError as exc:
            run.trace(f"ratelimit database not available: {exc}")
            run.log_msg = "ratelimit database not available"
            run.variables["sender_rate"] = None
            return Rc.DEFER
        cache[key_text] = rate
        run.trace(f"ratelimit computed rate {rate:.1f}")
    run.variables["sender_rate"] = f"{rate:.1f}"
    return Rc.FAIL if rate < spec.limit else Rc.OK


# -- modifiers ---------------------------------------------------------------------


async def _add_header(run: AclRun, item: AclItem, arg: str, verb: str) -> Rc:
    run.add_header(arg)
    return Rc.OK


async def _set(run: AclRun, item: AclItem, arg: str, verb: str) -> Rc:
    run.set_acl_variable(item.variable or "", arg)
    return Rc.OK


async def _logwrite(run: AclRun, item: AclItem, arg: str, verb: str) -> Rc:
    try:
        logs, text = split_logwrite(arg)
    except ValueError as exc:
        logs, text = frozenset({"main", "panic"}), f'{exc} in "logwrite" in {run.ctx.stage.where_name} ACL'
    if "panic" in logs:
        run.logger.panic(text)  # the panic log also writes the main log
    elif "main" in logs:
        run.logger.main(text)
    if "reject" in logs:
        run.logger.reject(text, main=False)
    return Rc.OK


async def _delay(run: AclRun, item: AclItem, arg: str, verb: str) -> Rc:
    try:
        seconds = parse_time(arg)
    except ValueError:
        run.log_msg = f'syntax error in argument for "delay" modifier: "{arg}" is not a time value'
        return Rc.ERROR
    run.trace(f"delay modifier requests {seconds}-second delay")
    if run.ctx.host_checking:
        run.trace("delay skipped in -bh checking mode")
    else:
        import asyncio

        await asyncio.sleep(seconds)
    return Rc.OK


async def _control(run: AclRun, item: AclItem, arg: str, verb: str) -> Rc:
    try:
        spec = parse_at("control", arg, run.ctx.stage)
    except ValueError as exc:
        run.log_msg = str(exc)
        return Rc.ERROR
    assert isinstance(spec, ControlSpec)
    ctx = run.ctx
    if spec.name == "submission":
        ctx.message.submission = SubmissionControl(
            "sender_retain" in spec.options, spec.options.get("domain"), spec.options.get("name")
        )
    elif spec.name == "no_pipelining":
        ctx.connection.pipelining = False
    elif spec.name == "queue":
        ctx.message.queue_only = True
    elif spec.name == "freeze":
        ctx.message.freeze = True
    elif spec.name == "caseful_local_part":
        run.variables["local_part"] = run.caseful_local_part
    elif spec.name == "caselower_local_part" and run.caseful_local_part is not None:
        run.variables["local_part"] = taint(run.caseful_local_part.lower())
    return Rc.OK


async def _log_reject_target(run: AclRun, item: AclItem, arg: str, verb: str) -> Rc:
    try:
        run.log_reject_target = parse_log_targets(arg)
    except ValueError as exc:
        run.logger.panic(f'{exc} in "log_reject_target" in {run.ctx.stage.where_name} ACL')
        run.log_reject_target = frozenset({"main", "reject"})
    return Rc.OK


async def _nothing(run: AclRun, item: AclItem, arg: str, verb: str) -> Rc:
    return Rc.OK  # continue: the expansion was the point


HANDLERS: dict[str, Handler] = {
    "acl": _acl,
    "add_header": _add_header,
    "authenticated": _list_condition("localpartlist", _authenticator, _match_string, None),
    "condition": _condition,
    "continue": _nothing,
    "control": _control,
    "delay": _delay,
    "dnslists": _dnslists,
    "domains": _list_condition("domainlist", _recipient_domain, _match_domain, "domain_data"),
    "encrypted": _list_condition("localpartlist", _cipher, _match_string, None),
    "hosts": _list_condition("hostlist", _client, _match_host, "host_data"),
    "local_parts": _list_condition("localpartlist", _caseful_local_part, _match_string, "local_part_data"),
    "log_reject_target": _log_reject_target,
    "logwrite": _logwrite,
    "ratelimit": _ratelimit,
    "recipients": _list_condition("addresslist", _recipient, _match_address, "recipient_data"),
    "sender_domains": _list_condition("domainlist", _sender_domain, _match_domain, None),
    "senders": _list_condition("addresslist", _sender, _match_address, "sender_data"),
    "set": _set,
    "verify": verify,
}
