"""A user's Exim filter file as forwardfile runs it: as the user, and its result as routing children.

Public API
----------
filter_redirect(director, ctx, item, text, path, owner) -> RouteResult
    Obey the filter `text` (read from `path`) for `item` and turn what it
    asked for into the director's result:

    significant delivery set up        Redirect(children); nothing else for this address
    no significant delivery            Decline (the next director delivers as usual), or,
                                       if it set up unseen deliveries, Redirect(those + a
                                       copy of the address itself, which the engine's loop
                                       rule sends on to the next director), as Exim does
    "seen finish" and nothing else     Redirect([], discard=True)
    defer / fail / freeze              DeferError / FailError / a freezing DeferError
                                       (only with allow_defer / allow_fail / allow_freeze)
    an error (syntax, expansion ...)   DeferError naming the file and line: nothing is lost

encode_result / decode_result
    The result as JSON and back, taint kept, for the child that runs the filter.

Security: with `owner` (check_local_user) and mta running as root, the
whole filter run happens in a child that has become the user
(mta.privilege.run_as_user): ${readfile}, lookups, ${run} and logwrite
open files with the user's rights, never root's.  Message data that the
child needs and cannot read itself ($message_body from the spool) is read
before the fork.  The child reports JSON only; tainted strings come back
tainted.  Pipes, files and replies run later, in their transports, as the
user; with allow_pipe / allow_file false, or forbid_filter_reply, such a
delivery fails ("delivery to pipe forbidden"), as in Exim.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from mta import record
from mta.errors import DeferError, FailError
from mta.privilege import AsUserError, run_as_user
from mta.route.base import Decline, Redirect, RouteResult
from mta.route.directors._common import address_variables, expand_option, what
from mta.route.filter import FilterAction, FilterEnv, FilterResult, FilterStatus, run_filter
from mta.route.item import AddressItem, ReplyItem
from mta.taint import Tainted, tainted_spans

if TYPE_CHECKING:
    from mta.route.base import Director
    from mta.route.context import RoutingContext
    from mta.route.user_files import FileOwner

# Body variables are read from the spool, which the user cannot read: resolved before the fork.
_BODY_VARIABLES = ("message_body", "message_body_end", "message_body_size", "body_linecount", "body_zerocount")
# A pipe, file or reply that the director does not allow: the generated address fails, as in Exim.
FORBIDDEN = "forbidden"


class FrozenByFilter(DeferError):
    """The filter obeyed "freeze" (allow_freeze): the delivery code freezes the message."""

    freeze = True


def filter_redirect(
    director: Director, ctx: RoutingContext, item: AddressItem, text: str, path: str, owner: FileOwner | None
) -> RouteResult:
    opts = director.options
    source = f"{what(director)}: filter file {path}"
    extra: dict[str, Any] = dict(address_variables(item))
    for name in _BODY_VARIABLES:
        if name in text:
            value = ctx.base_variables.get(name)
            extra[name] = value() if callable(value) else value
    headers = list(ctx.headers.lines()) if ctx.headers is not None and hasattr(ctx.headers, "lines") else []
    policy_forbid = frozenset(
        name
        for name, option in (
            ("readfile", "forbid_filter_readfile"),
            ("lookup", "forbid_filter_lookup"),
            ("exists", "forbid_filter_existstest"),
        )
        if getattr(opts, option)
    )

    base = ctx.policy
    policy = record.replace(
        base,
        run=base.run and not opts.forbid_filter_run,
        readsocket=base.readsocket and not opts.forbid_filter_readsocket,
        forbid=policy_forbid,
    )

    def expand(template: str, variables: Mapping[str, Any]) -> str:
        names = dict(extra)
        names.update(variables)
        return ctx.expand(template, item, names, policy)

    allowed = {
        name
        for name, flag in (("defer", opts.allow_defer), ("fail", opts.allow_fail), ("freeze", opts.allow_freeze))
        if flag
    }
    env = FilterEnv(
        expand=expand,
        headers=headers,
        local_part=item.local_part,
        domain=item.domain,
        prefix=item.prefix,
        suffix=item.suffix,
        sender=ctx.sender_address,
        return_path=ctx.sender_address,
        home=item.home,
        qualify_domain=ctx.config.qualify_recipient,
        allowed=frozenset(allowed),
        log_writes=ctx.verify is None and not ctx.address_test,
        forbid_log=opts.forbid_filter_logwrite,
        first_delivery=ctx.first_delivery,
        manually_thawed=ctx.manually_thawed,
        has_message=ctx.verify is None and not ctx.address_test,
        sn=list(ctx.filter_sn),
    )
    result = _run(text, env, owner, source)
    return _outcome(director, ctx, item, result, source)


def run_filter_as(uid: int, gid: int, login: str, job: Callable[[], FilterResult]) -> FilterResult:
    """`job` (reading and obeying a filter) in a child that has become that user; its result
    comes back with its taint.  A child that could not run it, or said nothing sensible, is a
    DeferError with the reason (the user's filter, and the system filter, both use this)."""
    try:
        report = run_as_user(uid, gid, login, lambda: encode_result(job()))
    except AsUserError as exc:
        raise DeferError(f"cannot run it as {login}: {exc}") from None
    if "error" in report and "status" not in report:
        raise DeferError(str(report["error"]))
    try:
        return decode_result(report)
    except (KeyError, TypeError, ValueError):
        raise DeferError("malformed report from the process that ran it") from None


def _run(text: str, env: FilterEnv, owner: FileOwner | None, source: str) -> FilterResult:
    if owner is None or not owner.needs_child:
        return run_filter(text, env)
    try:
        return run_filter_as(owner.uid, owner.gid, owner.login, lambda: run_filter(text, env))
    except DeferError as exc:
        raise DeferError(f"{source}: {exc.message}") from None


def _outcome(
    director: Director, ctx: RoutingContext, item: AddressItem, result: FilterResult, source: str
) -> RouteResult:
    status = result.status
    if status is FilterStatus.ERROR:
        raise DeferError(f"{source}: {result.message}")
    if status is FilterStatus.DEFER:
        raise DeferError(result.message or "forced defer")
    if status is FilterStatus.FAIL:
        raise FailError(result.message or "forced rejection")
    if status is FilterStatus.FREEZE:
        if not ctx.manually_thawed:
            raise FrozenByFilter(result.message or "frozen by filter")
        status = FilterStatus.NOT_DELIVERED  # as Exim: a manual thaw overrides the filter's freeze
    children = [_child(director, ctx, item, action) for action in result.actions]
    if status is FilterStatus.DELIVERED:
        return Redirect(children) if children else Redirect([], discard=True)
    if not children:
        return Decline("the filter set up no significant delivery")
    # Unseen deliveries only: the address itself is delivered as usual too.  Its copy is a child,
    # so that delivering it does not mark the address done while a generated delivery is deferred.
    children.append(AddressItem(item.address))
    return Redirect(children)


def _child(director: Director, ctx: RoutingContext, item: AddressItem, action: FilterAction) -> AddressItem:
    opts = director.options
    allowed = {"pipe": opts.allow_pipe, "file": opts.allow_file, "reply": not opts.forbid_filter_reply}

    def transport(kind: str) -> str | None:
        option_name = f"{kind}_transport"
        setting = getattr(opts, option_name)
        name = expand_option(director, ctx, setting, item, option_name) if setting else None
        if not name:
            raise DeferError(f'{what(director)}: "{action.value}" needs {option_name}, which is not set')
        name = name.strip()
        if ctx.transports and name not in ctx.transports:
            raise DeferError(f'{what(director)}: {option_name} "{name}" is not defined')
        return name

    return filter_child(
        action,
        domain=item.domain,
        uid=item.uid,
        gid=item.gid,
        home=item.home,
        router_name=director.name,
        initgroups=opts.initgroups,
        allowed=allowed,
        transport=transport,
    )


def filter_child(
    action: FilterAction,
    *,
    domain: str,
    uid: int | None,
    gid: int | None,
    home: str | None,
    router_name: str,
    initgroups: bool,
    allowed: Mapping[str, bool],
    transport: Callable[[str], str | None],
) -> AddressItem:
    """The address for one delivery a filter set up.  `allowed` says whether "pipe", "file" and
    "reply" deliveries may happen (else the address fails, as in Exim); `transport(kind)` names the
    transport for kind "pipe", "file", "directory" or "reply" (it may raise DeferError)."""
    if action.kind == "deliver":
        child = AddressItem(action.value)
        if action.errors_to is not None:
            child.errors_to = action.errors_to
        _noerror(child, action)
        return child
    kind = {"pipe": "pipe", "mail": "reply"}.get(action.kind) or ("directory" if action.value.endswith("/") else "file")
    child = AddressItem(action.value, uid=uid, gid=gid, home=home)
    child.local_part, child.domain = action.value, domain
    child.router_name = router_name
    child.initgroups = initgroups
    if action.kind == "pipe":
        child.pipe_command = action.value
        child.extra["expand_pipe"] = dict(action.pipe_variables)
    elif action.kind == "mail":
        child.reply = action.reply
    else:
        child.file_path = action.value
        if action.mode >= 0:
            child.extra["mode"] = action.mode
    _noerror(child, action)
    if not allowed["file" if kind == "directory" else kind]:
        child.extra[FORBIDDEN] = "autoreply forbidden" if kind == "reply" else f"delivery to {kind} forbidden"
        return child
    child.transport_name = transport(kind)
    return child


def _noerror(child: AddressItem, action: FilterAction) -> None:
    """noerror: a failure of this delivery is not reported to anyone (as errors_to = <>)."""
    if action.noerror:
        child.errors_to = ""


# -- the report of the child that ran the filter ----------------------------------------------


def _text(value: str | None) -> Any:
    if isinstance(value, Tainted):
        return {"t": str.__str__(value), "s": [list(span) for span in value.spans]}
    return value


def _untext(value: Any) -> str | None:
    if isinstance(value, dict):
        return tainted_spans(str(value["t"]), [(int(a), int(b)) for a, b in value["s"]])
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"not a string: {value!r}")


_REPLY_FIELDS = ("to", "cc", "bcc", "from_", "reply_to", "subject", "headers", "text", "file", "once", "log")


def encode_result(result: FilterResult) -> dict[str, Any]:
    actions = []
    for action in result.actions:
        entry: dict[str, Any] = {
            "kind": action.kind,
            "value": _text(action.value),
            "seen": action.seen,
            "noerror": action.noerror,
            "errors_to": _text(action.errors_to),
            "mode": action.mode,
            "vacation": action.vacation,
            "pipe_variables": {k: _text(v) for k, v in action.pipe_variables.items()},
        }
        if action.reply is not None:
            reply = action.reply
            entry["reply"] = {name: _text(getattr(reply, name)) for name in _REPLY_FIELDS}
            entry["reply"].update(
                file_expand=reply.file_expand, return_message=reply.return_message, once_repeat=reply.once_repeat
            )
        actions.append(entry)
    return {"status": result.status.value, "message": _text(result.message), "actions": actions, "n": result.n}


def decode_result(report: Mapping[str, Any]) -> FilterResult:
    actions = []
    for entry in report["actions"]:
        reply = None
        if entry.get("reply") is not None:
            fields = entry["reply"]
            reply = ReplyItem(
                **{name: _untext(fields[name]) for name in _REPLY_FIELDS},
                file_expand=bool(fields["file_expand"]),
                return_message=bool(fields["return_message"]),
                once_repeat=int(fields["once_repeat"]),
            )
        value = _untext(entry["value"])
        assert value is not None
        actions.append(
            FilterAction(
                str(entry["kind"]),
                value,
                bool(entry["seen"]),
                bool(entry["noerror"]),
                errors_to=_untext(entry["errors_to"]),
                mode=int(entry["mode"]),
                reply=reply,
                vacation=bool(entry["vacation"]),
                pipe_variables={str(k): _untext(v) or "" for k, v in dict(entry["pipe_variables"]).items()},
            )
        )
    n = [int(v) for v in report["n"]][:10]
    return FilterResult(FilterStatus(report["status"]), _untext(report["message"]), actions, n)
