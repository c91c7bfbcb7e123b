"""The system filter (main option `system_filter`), run at the start of every delivery attempt.

Public API
----------
run_system_filter(runtime, envelope, message, now) -> SystemFilterRun | None
    Obey the system filter for this message (None when there is none).
    Its ``headers add``/``remove`` change `envelope.headers` at once, so
    every recipient's copy, every later filter and every expansion see the
    new set, and a deferred message keeps it in -H (as Exim: use
    ``first_delivery`` to change headers once).  The rest is in the result:
    the addresses it generated (children of a "system-filter" parent, pipes
    and files with the system_filter_*_transport options) and what is to
    happen to the original recipients.
after_system_filter(delivery, run, envelope, pending) -> the addresses to route

What the result means for the original recipients (Exim's deliver.c):

    a significant delivery  not delivered: "original recipients ignored (system filter)",
                            or "=> discarded (system filter)" when nothing was generated
    defer                   not routed, kept: "Delivery deferred by system filter"
    freeze                  not routed, the message frozen: "Frozen by the system filter: text"
                            (ignored when the message was thawed by hand)
    fail                    every one fails with the text: "cancelled by system filter: text";
                            "<<log text>>bounce text" puts only the first part in the log
    an error                nothing is routed or changed; "Error in system filter: ..." goes
                            to the main and panic logs and the message waits for the next
                            attempt: nothing is lost

Security: the filter is the administrator's file.  With system_filter_user
it runs, and its pipes and files are delivered, as that user (a child that
has dropped to it, as for a user's filter); otherwise as the delivering
process.
"""

from __future__ import annotations

import grp
import os
import pwd
from typing import TYPE_CHECKING, Any

from mta import record
from mta.errors import DeferError
from mta.expand.context import HeaderLines
from mta.message.headers import flag_for
from mta.route.context import RoutingContext
from mta.route.filter import FilterAction, FilterEnv, FilterResult, FilterStatus, run_filter
from mta.route.filter_redirect import filter_child, run_filter_as
from mta.route.item import AddressItem
from mta.route.redirect import read_list_file
from mta.spool.envelope import SpoolHeader
from mta.taint import Tainted

if TYPE_CHECKING:
    from mta.runtime import Runtime
    from mta.spool.envelope import Envelope
    from mta.transports.base import OutgoingMessage

PARENT = "system-filter"


@record.dataclass
class SystemFilterRun:
    status: FilterStatus
    message: str | None = None
    parent: AddressItem | None = None
    children: list[AddressItem] = record.field(default_factory=list)
    # Generated addresses that cannot be delivered this time (a transport option unset).
    held: list[tuple[AddressItem, DeferError]] = record.field(default_factory=list)
    sn: list[int] = record.field(default_factory=lambda: [0] * 10)


def run_system_filter(runtime: Runtime, envelope: Envelope, message: OutgoingMessage) -> SystemFilterRun | None:
    main = runtime.config.main
    path = main.system_filter
    if not path:
        return None
    identity = _identity(main.system_filter_user, main.system_filter_group)
    # The live header lines the filter sees and changes, each with its place in -H.
    placed = [(index, Tainted(h.text)) for index, h in enumerate(envelope.headers) if h.flag != "*"]
    live: list[str] = [line for _, line in placed]
    ctx = RoutingContext(
        runtime.config,
        envelope.sender_address,
        message_variables=message.variables,
        headers=HeaderLines(lambda: live),
        transports=runtime.transports,
        first_delivery=envelope.deliver_firsttime,
    )
    recipients = ", ".join(r.address for r in envelope.recipients)

    def expand(text: str, variables: Any) -> str:
        return ctx.expand(text, None, {"recipients": recipients, **variables})

    env = FilterEnv(
        expand=expand,
        headers=live,
        sender=envelope.sender_address,
        return_path=envelope.sender_address,
        qualify_domain=runtime.config.qualify_recipient,
        system=True,
        allowed=frozenset({"defer", "fail", "freeze"}),
        log_writes=True,
        first_delivery=envelope.deliver_firsttime,
        manually_thawed=envelope.manual_thaw,
    )
    result = _run(path, env, identity)
    if result.status is FilterStatus.ERROR:
        return SystemFilterRun(FilterStatus.ERROR, result.message)
    _apply_headers(envelope, live, placed)
    run = SystemFilterRun(result.status, result.message, sn=list(result.n))
    run.parent = parent = AddressItem(PARENT, original_index=-1)
    parent.local_part, parent.domain = PARENT, runtime.config.qualify_recipient
    for action in result.actions:
        try:
            child = _child(runtime, ctx, action, identity)
        except DeferError as exc:
            # As Exim: this one address is deferred (and the panic log told); the rest go on.
            held = AddressItem(action.value, parent=parent, original_index=-1)
            held.local_part, held.domain = action.value, parent.domain
            run.held.append((held, exc))
            continue
        child.parent, child.original_index = parent, -1
        run.children.append(child)
    return run


def system_filter_for(delivery: Any, envelope: Envelope, message: OutgoingMessage) -> SystemFilterRun | None:
    """run_system_filter() for a Delivery: an error is logged (main and panic log, as Exim) and
    comes back as a run without a parent, which tells the delivery to route nothing."""
    try:
        run = run_system_filter(delivery.runtime, envelope, message)
    except DeferError as exc:
        run = SystemFilterRun(FilterStatus.ERROR, exc.message)
    if run is not None and run.parent is None:
        delivery.logger.panic(f"Error in system filter: {run.message}", envelope.message_id)
        delivery.report.skipped = "system filter error"
    return run


def _run(path: str, env: FilterEnv, identity: tuple[int, int, str] | None) -> FilterResult:
    """Read and obey the filter, as system_filter_user when one is set."""

    def job() -> FilterResult:
        try:
            text, _ = read_list_file(path, "system filter")
        except FileNotFoundError:
            return FilterResult(FilterStatus.ERROR, f"failed to open system filter {path}: no such file")
        except DeferError as exc:
            return FilterResult(FilterStatus.ERROR, exc.message)
        return run_filter(text, env)

    if identity is None:
        return job()
    try:
        return run_filter_as(*identity, job)
    except DeferError as exc:
        return FilterResult(FilterStatus.ERROR, exc.message)


def _identity(user: str | None, group: str | None) -> tuple[int, int, str] | None:
    if not user or os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
        gid = pw.pw_gid
        if group:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise DeferError(f"system_filter_user/group: unknown user or group {user}/{group}") from None
    return pw.pw_uid, gid, pw.pw_name


def _apply_headers(envelope: Envelope, live: list[str], placed: list[tuple[int, str]]) -> None:
    """The filter's header changes, made in -H: removed lines flagged deleted, new ones appended."""
    kept = {id(line) for line in live}
    originals = {id(line) for _, line in placed}
    for index, line in placed:
        if id(line) not in kept:
            envelope.headers[index] = SpoolHeader("*", envelope.headers[index].text)
    for line in live:
        if id(line) not in originals:
            name = line.split(":", 1)[0].strip()
            envelope.headers.append(SpoolHeader(flag_for(name), str.__str__(line)))


def _child(
    runtime: Runtime, ctx: RoutingContext, action: FilterAction, identity: tuple[int, int, str] | None
) -> AddressItem:
    main = runtime.config.main
    uid, gid = (identity[0], identity[1]) if identity is not None else (os.geteuid(), os.getegid())

    def transport(kind: str) -> str | None:
        option_name = f"system_filter_{kind}_transport"
        setting = getattr(main, option_name)
        name = ctx.expand_or_defer(setting, None, option_name) if setting else None
        if not name:
            raise DeferError(f"{option_name} is unset")
        name = name.strip()
        if name not in runtime.transports:
            raise DeferError(f'failed to find "{name}" transport for system filter delivery')
        return name

    return filter_child(
        action,
        domain=runtime.config.qualify_recipient,
        uid=uid,
        gid=gid,
        home=None,
        router_name=PARENT,
        initgroups=False,
        allowed={"pipe": True, "file": True, "reply": True},
        transport=transport,
    )


def after_system_filter(
    delivery: Any, run: SystemFilterRun, envelope: Envelope, pending: list[AddressItem]
) -> list[AddressItem]:
    """What is to be routed after the filter: its children, and the original recipients unless the
    filter decided otherwise (see the module docstring).  `delivery` is the mta.deliver.delivery
    Delivery: its log and records are used, and its `held_tops` keeps recipients on the spool."""
    for item, error in run.held:
        delivery.logger.panic(f"system filter delivery {item.address}: {error.message}", envelope.message_id)
        delivery._record_deferral(item, error)
    status, text = run.status, run.message
    if status is FilterStatus.FREEZE and envelope.manual_thaw:
        status = FilterStatus.NOT_DELIVERED  # a message thawed by hand is not frozen again by the filter
    if status is FilterStatus.NOT_DELIVERED:
        return [*run.children, *pending]
    if status is FilterStatus.DELIVERED:
        delivery._log(
            "original recipients ignored (system filter)"
            if run.children or run.held
            else "=> discarded (system filter)"
        )
        return run.children
    if status is FilterStatus.FAIL:
        log_text, bounce_text = text or "", text
        if log_text.startswith("<<") and ">>" in log_text:
            log_text, _, rest = log_text[2:].partition(">>")
            bounce_text = rest or None
        delivery._log(f"cancelled by system filter{': ' if text else ''}{log_text}")
        if envelope.sender_address:
            from mta.errors import FailError

            for item in pending:
                delivery._record_failure(item, FailError(bounce_text or "delivery cancelled"))
        return run.children
    # defer or freeze: the original recipients stay, unrouted.
    delivery.held_tops.update(item.original_index for item in pending)
    if status is FilterStatus.DEFER:
        delivery._log("Delivery deferred by system filter")
    else:
        envelope.frozen = int(delivery.now)
        envelope.manual_thaw = False
        delivery.report.frozen = True
        delivery._log(f"Frozen by the system filter{': ' + text if text else ''}")
    return run.children
