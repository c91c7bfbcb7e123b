"""Delivering one message, start to end (Exim's deliver_message).

    lock -D -> read -H (+ -J of a crashed attempt) -> route every pending
    recipient -> local deliveries, one forked child each -> remote
    deliveries, batched, several hosts at once -> bounce the failures ->
    rewrite -H atomically (or remove the message when nothing is left).

Durability: every successful delivery is appended to -J (fsync) before the
next one starts, so a crash between two deliveries never delivers the same
recipient twice; -H is rewritten with the new non-recipients at the end,
then -J is removed.  A bounce is spooled before the failed address is
marked done, so a crash can at worst send a bounce twice, never lose it.

Security: this process runs as root (or as the invoking user when not
root); local deliveries run in a child that drops to the recipient's
uid/gid before it opens anything (mta.deliver.local_exec).

Diagnostics: main log and msglog lines `=>`, `->`, `**`, `==`,
`Completed`, `Frozen`; spool trouble goes to the panic log.  The only
broad exception handler (around one transport call) turns an unexpected
error into a deferral with the traceback in the panic log: the address
stays on the spool, it is never marked delivered.
"""

from __future__ import annotations

import functools
import io
import os
import threading
import time
import traceback

from mta import debug, process_info, record
from mta.deliver.aging import Frozen, frozen_action, ignore_bounce_errors, send_due_warning
from mta.deliver.deliverlog import (
    deferral_line,
    delivery_line,
    failure_line,
    msglog_success,
)
from mta.deliver.failures import failed_addresses, top_recipient, with_duplicates
from mta.deliver.grouping import group_local, group_remote, local_batch_shared
from mta.deliver.loop import DeliveryLoop, close_connections
from mta.deliver.message import outgoing_message, spool_headers
from mta.deliver.retrying import DeliveryRetry, RetryTimeoutError
from mta.deliver.waiting import record_waiting
from mta.errors import DeferError, DeliveryError, FailError, LockedError, SpoolError, SpoolFormatError
from mta.log import escape, log_timestamp
from mta.message.headers import header_lookup
from mta.route.context import RoutingContext
from mta.route.engine import RoutingEngine
from mta.route.host import wait_name
from mta.route.item import AddressItem
from mta.spool.files import NoSuchMessage
from mta.transports.base import DeliveryEnv, OutgoingMessage
from mta.values import format_time

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    from typing import Any

    from mta.runtime import Runtime
    from mta.spool.envelope import Envelope
    from mta.spool.files import MessageLock


# A body up to this size is read from -D once per attempt and handed to the remote transports from
# memory (as mta.transports.smtp_async reads a larger one from the file, 256 KB per trip).
BODY_IN_MEMORY = 256 * 1024

_DELIVERY_ITEMS = frozenset(
    {"sender_on_delivery", "return_path_on_delivery", "delivery_size", "queue_time", "deliver_time"}
)


@record.dataclass
class DeliveryReport:
    message_id: str
    delivered: list[AddressItem] = record.field(default_factory=list)
    failed: list[tuple[AddressItem, FailError]] = record.field(default_factory=list)
    deferred: list[tuple[AddressItem, DeferError]] = record.field(default_factory=list)
    completed: bool = False
    frozen: bool = False
    bounce_ids: list[str] = record.field(default_factory=list)
    skipped: str | None = None  # "locked", "frozen", "missing", "spool error"
    # (transport, host name) pairs: where remote deliveries went, and where they were held up
    # (for the wait-<transport> hints: other messages waiting for a host follow it there;
    # mta.route.host.wait_name says how a host is named there).
    delivered_hosts: set[tuple[str, str]] = record.field(default_factory=set)
    deferred_hosts: set[tuple[str, str]] = record.field(default_factory=set)
    spool_error: str | None = None  # with skipped == "spool error": what is wrong with which file


def _is_root() -> bool:
    return os.geteuid() == 0


class Delivery:
    """One delivery attempt of one message."""

    def __init__(
        self,
        runtime: Runtime,
        message_id: str,
        *,
        forced: bool = False,
        lock: MessageLock | None = None,
        dont_deliver: bool = False,
        now: float | None = None,
        loop_runner: DeliveryLoop | asyncio.Runner | None = None,
        ignore_retry: bool | None = None,
        queue_run: bool = False,
        run_started: float | None = None,
        msglog_first: str | None = None,
    ) -> None:
        """`forced` thaws a frozen message (-M, -qff).  `ignore_retry` tries every destination
        whatever its retry time says (-M, -qf; default: as `forced`); `queue_run` makes routing
        and local deliveries wait for their retry times too, as a queue run's do; `run_started`
        (a -qf run's start) keeps a host that failed during the run from being tried again by
        it.  `now` fixes the time the attempt runs at (tests).  `msglog_first`: the message has no
        message log yet (a daemon worker's new arrival); the first line written to it starts one
        with this line (Exim's "Received from"), so a message delivered at once never has one."""
        self.runtime = runtime
        # A queue run passes one loop for all its messages, so that SMTP connections are
        # reused from message to message (connection_max_messages); its owner closes them
        # at the end (mta.deliver.loop).
        self.loop_runner = loop_runner
        self.config = runtime.config
        self.spool = runtime.spool
        self.logger = runtime.logger
        self.message_id = message_id
        self.forced = forced
        self.lock = lock
        self.dont_deliver = dont_deliver
        self.now = time.time() if now is None else now
        self.ignore_retry = forced if ignore_retry is None else ignore_retry
        self.queue_run = queue_run
        self.run_started = run_started
        self.retry: DeliveryRetry | None = None
        self.report = DeliveryReport(message_id)
        self._record_lock = threading.Lock()
        self._delivered_keys: list[str] = []
        self._freeze_reason: str | None = None
        self._logged_host_errors: set[tuple[str, str | None, str]] = set()
        self._envelope: Envelope | None = None  # the -H being worked on, once read
        self._ctx: RoutingContext | None = None
        # The system filter's: recipients it deferred or froze, and the parent of what it generated.
        self.held_tops: set[int] = set()
        self._filter_parent: AddressItem | None = None
        self._last_batch = False  # the batch being delivered (local or remote) is the attempt's last delivery
        self._retired = False  # -H already removed: every recipient is done (_completes)
        self._body: bytes | None = None  # the body, when small (held_body), for the remote transports
        self._msglog_first = msglog_first

    # -- logging helpers ------------------------------------------------------
    def _log(self, text: str) -> None:
        self.logger.main(text, self.message_id)
        if self.config.main.message_logs and not self._retired:
            self._msglog(text)

    def _as_local(self, item: AddressItem) -> bool:
        transport = self.runtime.transports.get(item.transport_name or "")
        return bool(transport is not None and transport.is_local)

    # -- the attempt ------------------------------------------------------------
    def run(self) -> DeliveryReport:
        process_info.set_activity(f"delivering {self.message_id}")  # for mta-what
        if "deliver" in debug.active:
            debug.write(f"delivering message {self.message_id}")
        lock = self.lock
        if lock is None:
            try:
                lock = self.spool.lock(self.message_id)
            except LockedError:
                self.report.skipped = "locked"
                if self.runtime.verbose:
                    self.logger.main("Spool file is locked (another process is handling this message)",
                                     self.message_id)
                return self.report
            except NoSuchMessage:
                if self.spool.exists(self.message_id):
                    # An -H without its -D: the message cannot be delivered, but it is not gone.
                    problem = f"data file {self.message_id}-D is missing"
                    self.logger.panic(f"spool format error: {problem}; message left for the administrator",
                                      self.message_id)
                    self.report.skipped, self.report.spool_error = "spool error", problem
                else:
                    self.report.skipped = "missing"
                return self.report
        try:
            self._run_locked()
        finally:
            lock.release()
            if self.retry is not None:
                self.retry.release()
        if self.report.deferred_hosts and not self.report.completed and not self.dont_deliver:
            # Held up for these hosts: whoever reaches one next sends this message down its
            # connection (mta.queue.wait).
            record_waiting(self.runtime, self.report.deferred_hosts, self.message_id)
        for bounce_id in self.report.bounce_ids:
            # Bounces go out at once, in this process, each under its own lock.
            Delivery(self.runtime, bounce_id, loop_runner=self.loop_runner).run()
        return self.report

    def _run_locked(self) -> None:
        try:
            envelope = self.spool.read_envelope(self.message_id)
        except NoSuchMessage:
            self.report.skipped = "missing"
            return
        except SpoolFormatError as exc:
            # The -H cannot be rewritten to say "frozen" without guessing at its contents: it is
            # left exactly as it is, which freezes it just as well, since nothing can deliver it
            # until an administrator repairs or removes it (-bp shows it with the error).
            self.logger.panic(f"spool format error: {exc}; message frozen until the file is repaired",
                              self.message_id)
            self.report.skipped, self.report.spool_error, self.report.frozen = "spool error", str(exc), True
            return
        try:
            journal = self.spool.read_journal(self.message_id)
            # A -D that is not this message's (or is truncated) must stop the attempt now, not
            # half-way through the transports.  A small body is read here, once, through the
            # lock's descriptor: the smtp transport reads it twice (8-bit scan, DATA).
            self._body = self.spool.held_body(self.message_id, BODY_IN_MEMORY)
            if self._body is None:
                self.spool.open_body(self.message_id).close()
        except SpoolFormatError as exc:
            self._freeze_for_spool_error(envelope, exc)
            return
        if journal:
            # A previous attempt crashed after these deliveries: never repeat them.
            envelope.non_recipients |= set(journal)
        if envelope.frozen is not None:
            decision = frozen_action(envelope, self.config.main, self.now, self.forced)
            if decision.action is Frozen.SKIP:
                self.logger.main(decision.log, self.message_id)
                self.report.skipped = "frozen"
                self.report.frozen = True
                return
            envelope.frozen = None
            envelope.manual_thaw = decision.manual
            self._log(decision.log)
            if decision.action is Frozen.CANCEL:
                self._cancel(envelope)
                return
        self._attempt(envelope)

    def _cancel(self, envelope: Envelope) -> None:
        """timeout_frozen_after: every pending recipient fails (a bounce's are just dropped)."""
        if envelope.sender_address:
            for index, recipient in enumerate(envelope.recipients):
                if recipient.address not in envelope.non_recipients:
                    item = AddressItem(recipient.address, original_index=index, errors_to=recipient.errors_to or None)
                    self._record_failure(item, FailError("delivery cancelled; message timed out"))
        self._finish(envelope)

    def _freeze_for_spool_error(self, envelope: Envelope, error: SpoolFormatError) -> None:
        """A malformed -J or -D: which recipients were delivered, or what the message is, is
        unknown, so nothing is delivered (never twice) and the message is frozen for the
        administrator.  The damaged file is left as it is, for inspection."""
        self.report.skipped, self.report.spool_error, self.report.frozen = "spool error", str(error), True
        self.logger.panic(f"spool format error: {error}; message frozen", self.message_id)
        if envelope.frozen is None:
            envelope.frozen = int(self.now)
            envelope.manual_thaw = False
            self.spool.rewrite_envelope(envelope)
            self._msglog(f"Frozen: spool format error: {error}")

    def _attempt(self, envelope: Envelope) -> None:
        self._envelope = envelope
        system = self._system_filter(envelope)
        if system is not None and system.parent is None:
            return  # an error in the system filter: logged, nothing routed, the message waits
        headers = spool_headers(envelope)
        message = outgoing_message(self.spool, envelope, headers)
        ctx = RoutingContext(
            self.config,
            envelope.sender_address,
            message_variables=message.variables,
            headers=header_lookup(headers),
            transports=self.runtime.transports,
            first_delivery=envelope.deliver_firsttime,
            manually_thawed=envelope.manual_thaw,
            filter_sn=system.sn if system is not None else [0] * 10,
        )
        engine = RoutingEngine(self.runtime.directors, self.runtime.routers, self.config)
        self._ctx = ctx
        self.retry = retry = DeliveryRetry(
            self.runtime, envelope, now=self.now, ignore_retry=self.ignore_retry, queue_run=self.queue_run,
            run_started=self.run_started, update=not self.dont_deliver,
            is_local_domain=lambda domain: engine.is_local_domain(domain, ctx),
        )
        done_keys = set(envelope.non_recipients) | {a.lower() for a in envelope.non_recipients}
        pending = [
            AddressItem(r.address, original_index=index, errors_to=(r.errors_to or None))
            for index, r in enumerate(envelope.recipients)
            if r.address not in envelope.non_recipients
        ]
        if system is not None:
            from mta.deliver.system_filter import after_system_filter

            self._filter_parent = system.parent
            pending = after_system_filter(self, system, envelope, pending)
        outcome = engine.route(pending, ctx, done=done_keys, hold=retry.routing_skip if retry.queue_run else None)
        for item in outcome.accepted:
            retry.routed(item)
        for item, error in outcome.failed:
            if item.parent is not None and item.unique_key() in done_keys:
                # Failed and bounced in an earlier attempt that left a sibling deferred: not again.
                continue
            self._record_failure(item, error)
        for item, error in outcome.deferred:
            retry.routing_deferred(item, error)
            self._record_deferral(item, error)
        for item in outcome.discarded:
            self._log(f"=> :blackhole: <{item.top.address}> R={next(iter(item.handled_by), '')}")
            self._delivered_keys.append(item.unique_key())
        # Duplicates are delivered with their first copy; Envelope-to names all originals.
        for dup, first in outcome.duplicates:
            first.extra.setdefault("envelope_to", [first.top.address])
            if dup.top.address not in first.extra["envelope_to"]:
                first.extra["envelope_to"].append(dup.top.address)
            first.extra.setdefault("duplicates", []).append(dup)
        env = self._delivery_env(ctx)
        local = [i for i in outcome.accepted if self._as_local(i)]
        remote = [i for i in outcome.accepted if not self._as_local(i)]
        ready = []
        for item in local:
            held = retry.local_skip(item, self.runtime.transports[item.transport_name or ""])
            if held is not None:
                self._record_deferral(item, held)
            else:
                ready.append(item)
        # batch_max: addresses that can share one run of their local transport (mta.deliver.grouping).
        batches = list(group_local(ready, self.runtime.transports,
                                   lambda t, i: local_batch_shared(t, i, env, self.logger.panic)))
        for index, batch in enumerate(batches):
            self._last_batch = index == len(batches) - 1 and not remote
            self._deliver_local(batch, message, env)
        if remote:
            from mta.privilege import EffectiveUser

            identity = self.runtime.remote_identity or self._dropped_identity
            # The daemon's workers send as mta_user; a command-line delivery as whoever ran it
            # (as mta_user too with deliver_drop_privilege).
            with EffectiveUser(*identity) if identity is not None else _nothing():
                if self.loop_runner is not None:
                    self.loop_runner.run(self._deliver_remote(remote, message, env, close=False))
                else:
                    import asyncio

                    asyncio.run(self._deliver_remote(remote, message, env, close=True))
        self._finish(envelope)

    def _system_filter(self, envelope: Envelope) -> Any:
        """Run the system filter, if there is one (mta.deliver.system_filter)."""
        if not self.config.main.system_filter:
            return None
        from mta.deliver.system_filter import system_filter_for

        return system_filter_for(self, envelope, outgoing_message(self.spool, envelope))

    def _delivery_env(self, ctx: RoutingContext) -> DeliveryEnv:
        def expand(text: str, item: AddressItem | None = None, extra: dict[str, Any] | None = None) -> str:
            return ctx.expand(text, item, extra)

        return DeliveryEnv(
            expand=expand,
            primary_hostname=self.config.primary_hostname,
            qualify_domain=self.config.qualify_domain,
            now=self.now,
            # The smtp transport asks the retry data before it contacts a host (mta.transports.smtp_retry).
            extra={"runtime": self.runtime, "retry": self.retry.state if self.retry is not None else None},
        )

    # -- local ------------------------------------------------------------------
    def _deliver_local(self, batch: list[AddressItem], message: OutgoingMessage, env: DeliveryEnv) -> None:
        """One run of a local transport for `batch` (one address unless batch_max): all succeed,
        fail or defer together."""
        from mta.deliver.local_exec import resolve_delivery_identity, run_local_delivery

        item = batch[0]
        transport = self.runtime.transports[item.transport_name or ""]
        process_info.set_activity(f"delivering {self.message_id} to {item.address} using {transport.name}")
        if self.dont_deliver:
            self._record_successes(batch, None)
            return
        try:
            identity = resolve_delivery_identity(transport, item, env)
            if "deliver" in debug.active:
                debug.write(f"local delivery of {item.address} by the {transport.name} transport "
                            f"(uid={identity.uid} gid={identity.gid})")
            uid, gid = (identity.uid, identity.gid) if _is_root() else (None, None)
            if self._dropped_identity is not None:
                uid, gid = self._only_as_mta_user(identity.uid, transport.name)
            elif identity.uid is None and _is_root():
                raise DeferError(
                    f"no user is set for the local delivery of {item.address} "
                    f"(set user on the {transport.name} transport or its director)"
                )
            if transport.generates_messages:
                # An autoreply: its new message goes to the spool as the delivery's user sends it.
                from mta.receive.local_submit import generated_message_submitter

                env = record.replace(env, submit=generated_message_submitter(self.runtime), generated=[])
            generated = run_local_delivery(
                transport,
                message,
                item,
                env,
                uid=uid,
                gid=gid,
                initgroups=identity.initgroups,
                home=identity.home,
                current_directory=identity.current_directory,
                never_users=self._never_users,
                batch=batch if len(batch) > 1 else None,
            )
        except FailError as error:
            for one in batch:
                self._record_failure(one, error)
                self._retry_local(one, transport, error)
        except DeferError as error:
            for one in batch:
                self._record_deferral(one, error)
                self._retry_local(one, transport, error)
        else:
            if not transport.generates_messages and self._completes(batch, dict.fromkeys(batch)):
                # As for a remote batch (_record_batch): the message is done, and removing its -H
                # durably stands for the -J line, with the same window for a crash to repeat it.
                self.spool.retire_message(self.message_id)
                self._retired = True
            self._record_successes(batch, None)
            for one in batch:
                self._retry_local(one, transport, None)
            # Delivered at the end of this attempt, as bounces are.
            self.report.bounce_ids.extend(generated)

    def _retry_local(self, item: AddressItem, transport: Any, error: DeliveryError | None) -> None:
        if self.retry is not None:
            self.retry.local_done(item, transport, error)

    @functools.cached_property
    def _dropped_identity(self) -> tuple[int, int] | None:
        """(uid, gid) of mta_user when deliver_drop_privilege is set and we are root: every
        delivery, local or remote, then runs as mta_user and nothing else."""
        if not (self.config.main.deliver_drop_privilege and _is_root()):
            return None
        from mta.config.caller import mta_identity

        _, uid, gid = mta_identity(self.config)
        return uid, gid

    def _only_as_mta_user(self, uid: int | None, transport_name: str) -> tuple[int, int]:
        """deliver_drop_privilege: a local delivery runs as mta_user; one that needs another
        user is deferred (Exim's delivery process, already mta_user, fails to setuid then)."""
        assert self._dropped_identity is not None
        mta_uid, mta_gid = self._dropped_identity
        if uid is not None and uid != mta_uid:
            raise DeferError(
                f"deliver_drop_privilege is set: the {transport_name} transport cannot run as uid {uid} "
                f"(deliveries run as mta_user {self.config.main.mta_user} only)"
            )
        return mta_uid, mta_gid

    @functools.cached_property
    def _never_users(self) -> set[int]:
        """never_users as uids, resolved once per delivery attempt."""
        import pwd

        from mta.values import split_list

        uids: set[int] = set()
        for name in split_list(self.config.main.never_users):
            if name.isdigit():
                uids.add(int(name))
            elif name:
                try:
                    uids.add(pwd.getpwnam(name).pw_uid)
                except KeyError:
                    continue  # a user that does not exist here cannot be delivered as
        return uids

    # -- remote -----------------------------------------------------------------
    async def _deliver_remote(
        self, items: list[AddressItem], message: OutgoingMessage, env: DeliveryEnv, close: bool
    ) -> None:
        import asyncio

        body = self._body
        if body is not None:
            # From memory: local deliveries still get the file (their child reads its descriptor).
            message = record.replace(message, open_body=lambda: io.BytesIO(body))
        groups = group_remote(items)
        limit = asyncio.Semaphore(max(1, self.config.main.remote_max_parallel))
        # One batch in flight: nothing else on this loop waits while a file is read or -J is
        # fsynced, so those run on the loop; a thread trip would cost more than it saves.
        inline = env.extra["inline_io"] = self._last_batch = len(groups) == 1

        async def one(group: list[AddressItem]) -> None:
            async with limit:
                transport = self.runtime.transports[group[0].transport_name or ""]
                if "deliver" in debug.active:
                    hosts = " ".join(h.name for h in group[0].hosts or ()) or "(from the transport)"
                    debug.write(f"remote delivery of {' '.join(i.address for i in group)} by the "
                                f"{transport.name} transport to {hosts}")
                if self.dont_deliver:
                    for item in group:
                        self._record_success(item, None)
                    return
                try:
                    outcomes = await transport.deliver_batch(message, group, env)
                except DeliveryError as error:
                    outcomes = dict.fromkeys(group, error)
                except Exception as exc:
                    self.logger.panic(
                        f"unexpected error in transport {transport.name}: {exc!r}\n{traceback.format_exc()}",
                        self.message_id,
                    )
                    outcomes = dict.fromkeys(group, DeferError(f"internal error in {transport.name} transport"))
                if inline:
                    self._record_batch(group, outcomes)
                else:
                    await asyncio.to_thread(self._record_batch, group, outcomes)

        try:
            if inline:
                await one(groups[0])  # (no task of its own, and none of gather's wake-ups)
            else:
                await asyncio.gather(*(one(g) for g in groups))
        finally:
            if close:
                await close_connections(self.runtime)

    def _record_batch(self, group: list[AddressItem], outcomes: dict[AddressItem, Any]) -> None:
        if self._completes(group, outcomes):
            # The message is done: removing its -H (durably) stands for the -J lines, with the
            # same window for a crash to repeat the delivery (docs/reliability.md).
            self.spool.retire_message(self.message_id)
            self._retired = True
        previous: Any = object()
        for item in group:
            outcome = outcomes.get(item, DeferError("the transport gave no result for this address"))
            transport_name = item.transport_name or ""
            if isinstance(outcome, DeferError):
                self.report.deferred_hosts.update((transport_name, wait_name(h)) for h in item.hosts or () if h.name)
            elif not isinstance(outcome, FailError) and getattr(outcome, "host", None) is not None:
                self.report.delivered_hosts.add((transport_name, wait_name(outcome.host)))
            if isinstance(outcome, FailError):
                self._record_failure(item, outcome)
            elif isinstance(outcome, DeferError):
                self._record_deferral(item, outcome)
            else:
                key = (getattr(outcome, "host", None), getattr(outcome, "confirmation", None))
                self._record_success(item, outcome, first=key != previous)
                previous = key

    def _completes(self, group: list[AddressItem], outcomes: dict[AddressItem, Any]) -> bool:
        """Does this batch, delivered in full, complete every recipient of the message?  Only
        when it is the attempt's last delivery and nothing before it failed or was deferred:
        _finish then removes the message (which it must, or -H would have to come back)."""
        if not self._last_batch or self.dont_deliver or self.config.main.preserve_message_logs:
            return False
        if self.report.failed or self.report.deferred or self._freeze_reason is not None or self.held_tops:
            return False
        return all(item in outcomes and not isinstance(outcomes[item], DeliveryError) for item in group)

    # -- recording outcomes ------------------------------------------------------
    def _record_success(self, item: AddressItem, info: Any, first: bool = True) -> None:
        self._record_successes([item], info, first)

    def _record_successes(self, items: list[AddressItem], info: Any, first: bool = True) -> None:
        """Addresses delivered by one transport run; the first logs "=>", the others "->" unless `first`
        is false (a later transaction on a reused connection logs them all "->")."""
        with self._record_lock:
            names = [name for item in items for name in self._journal_names(item)]
            if not self._retired:
                # Durable before anything else happens: -J is the crash-safety net, and a batch's
                # addresses go into it in one write, so a crash cannot leave some of them unrecorded.
                self.spool.append_journal(self.message_id, *names)
            self._delivered_keys.extend(names)
            for index, item in enumerate(items):
                self._log_success(item, info, first and index == 0)

    def _log_success(self, item: AddressItem, info: Any, first: bool) -> None:
        for dup in item.extra.get("duplicates", []):
            self._delivered_keys.append(dup.unique or dup.unique_key())
        self.report.delivered.append(item)
        line = delivery_line(
            item,
            self._as_local(item),
            info,
            first_in_transaction=first,
            selectors=self.runtime.log_selectors,
            fake=self.dont_deliver,
            **self._optional_fields(item),
        )
        self.logger.main(line, self.message_id)
        if self.config.main.message_logs and not self._retired:
            self._msglog(msglog_success(item))

    def _optional_fields(self, item: AddressItem) -> dict[str, Any]:
        """The log_selector items of a delivery line that are not the transport's (F= P= S= QT= DT=)."""
        selectors, envelope = self.runtime.log_selectors, self._envelope
        if envelope is None or not selectors & _DELIVERY_ITEMS:
            return {}
        leading, trailing, size = [], [], None
        if "sender_on_delivery" in selectors:
            leading.append(f"F=<{escape(envelope.sender_address)}>")
        if "return_path_on_delivery" in selectors:
            return_path = envelope.sender_address if item.errors_to is None else item.errors_to
            leading.append(f"P=<{escape(return_path)}>")
        if "delivery_size" in selectors:
            from mta.deliver.message import message_size

            size = message_size(self.spool, envelope)
        now = time.time()
        if "queue_time" in selectors:
            trailing.append(f"QT={format_time(max(0, int(now - envelope.received_time)))}")
        if "deliver_time" in selectors:
            trailing.append(f"DT={format_time(max(0, int(now - self.now)))}")
        return {"leading": tuple(leading), "size": size, "trailing": tuple(trailing)}

    def _journal_names(self, item: AddressItem) -> list[str]:
        """What -J records for a delivered item: first the key routing checks against what is
        already delivered (caseful when the router is: a lower-cased key would not stop a
        caseful router delivering again after a crash); then each top-level recipient this
        delivery completes, spelt as in -H, which is what -bp and the next attempt's list of
        pending recipients compare exactly (as Exim's -J holds a top-level address as given),
        so an upper-case local part shows as delivered at once.  An item an `unseen` router
        split does not complete its recipient: the other copy may still be pending."""
        names = [item.unique or item.unique_key()]
        for copy in with_duplicates(item):
            if copy.parent is None and not copy.split and not (copy.is_pipe or copy.is_file):
                recipient = top_recipient(self._envelope, copy) if self._envelope is not None else None
                if recipient is not None and recipient.address not in names:
                    names.append(recipient.address)
        return names

    def _record_failure(self, item: AddressItem, error: FailError) -> None:
        with self._record_lock:
            self.report.failed.append((item, error))
            self._log(failure_line(item, error, self._as_local(item)))

    def _record_deferral(self, item: AddressItem, error: DeferError) -> None:
        with self._record_lock:
            self.report.deferred.append((item, error))
            # Exim logs each host that failed before the == line: "H=name [ip] Connection refused".
            for host, why in getattr(error, "host_errors", ()):
                if (host.name, host.address, why) not in self._logged_host_errors:
                    self._logged_host_errors.add((host.name, host.address, why))
                    self._log(f"H={host.name} [{host.address}] {why}" if host.address else f"H={host.name} {why}")
            self._log(deferral_line(item, error, self._as_local(item)))
            if getattr(error, "freeze", False):
                # Routing asked for the message to be frozen (self = freeze, host_find_failed ...).
                self._freeze_reason = error.message

    def _msglog(self, text: str) -> None:
        try:
            self.spool.append_msglog(self.message_id, f"{log_timestamp()} {text}", first=self._msglog_first)
            self._msglog_first = None
        except SpoolError as exc:
            self.logger.main(f"cannot write message log: {exc}", self.message_id)

    # -- the end of the attempt ----------------------------------------------------
    def _finish(self, envelope: Envelope) -> None:
        self._apply_retry()
        frozen_failures: list[tuple[AddressItem, FailError]] = []
        if self.report.failed:
            if envelope.sender_address == "":
                # A bounce never bounces: freeze it for the administrator (Exim's rule), unless its
                # failures are to be ignored (retry timeout, ignore_bounce_errors_after).
                frozen_failures = self._kept_bounce_failures(envelope)
                if frozen_failures:
                    envelope.frozen = int(self.now)
                    self.report.frozen = True
                    self._log("Frozen (delivery error message)")
            else:
                self._send_bounces(envelope)
        # A duplicate shares the fate of the copy it was folded into: its recipient is not done
        # while that copy is deferred (or frozen), however it was reached.
        deferred_tops = {i.top.original_index for item, _ in self.report.deferred for i in with_duplicates(item)}
        failed_tops = {i.top.original_index for item, _ in frozen_failures for i in with_duplicates(item)}
        deferred_tops |= self.held_tops
        if self._freeze_reason is not None and envelope.frozen is None:
            envelope.frozen = int(self.now)
            self.report.frozen = True
            self._log(f"Frozen: {self._freeze_reason}")
        for key in self._delivered_keys:
            envelope.non_recipients.add(key)
        kept = {id(item) for item, _ in frozen_failures}
        for item, _ in self.report.failed:
            # Bounced (or ignored) for good, like a delivery (Exim's child_done): a generated address
            # must not fail and bounce again when its top-level recipient stays for a deferred sibling.
            if item.parent is not None and id(item) not in kept:
                envelope.non_recipients.add(item.unique_key())
        for index, recipient in enumerate(envelope.recipients):
            if recipient.address in envelope.non_recipients:
                continue
            if index in deferred_tops or index in failed_tops:
                continue
            # Everything that descended from this recipient is delivered or bounced.
            envelope.non_recipients.add(recipient.address)
        pending = [r for r in envelope.recipients if r.address not in envelope.non_recipients]
        # A deferred address the system filter made keeps the message too (it makes it again next time).
        filter_waiting = any(item.top is self._filter_parent for item, _ in self.report.deferred)
        if (pending or filter_waiting) and self._retired:
            # _completes was wrong (a bug): the -H written below brings the message back.
            self.logger.panic("message retired with recipients pending; -H rewritten", self.message_id)
            self._retired = False
        if not pending and not filter_waiting:
            overall = ""
            if "queue_time_overall" in self.runtime.log_selectors:
                overall = f" QT={format_time(max(0, int(time.time() - envelope.received_time)))}"
            self._log("Completed" + overall)
            self.spool.remove_message(self.message_id, preserve_msglog=self.config.main.preserve_message_logs)
            self.report.completed = True
            return
        self._delay_warning(envelope)
        envelope.deliver_firsttime = False
        self.spool.rewrite_envelope(envelope)
        self.spool.remove_journal(self.message_id)

    def _apply_retry(self) -> None:
        """Update the retry hints; a deferred address whose retry rules have run out fails now."""
        if self.retry is None:
            return
        failed = [item for item, _ in self.report.failed]
        timed_out = self.retry.finish(self.report.delivered, failed, self.report.deferred)
        for item, failure in timed_out:
            self.report.deferred = [(i, e) for i, e in self.report.deferred if i is not item]
            self.report.failed.append((item, failure))
            self._log(f"** {escape(item.log_name(False))}: retry timeout exceeded")

    def _kept_bounce_failures(self, envelope: Envelope) -> list[tuple[AddressItem, FailError]]:
        """The failures of a bounce that freeze it; the others (timed out, or the bounce is older
        than ignore_bounce_errors_after) are discarded, as Exim discards them."""
        ignore_all = ignore_bounce_errors(envelope, self.config.main, self.now)
        kept = []
        for item, error in self.report.failed:
            if ignore_all or isinstance(error, RetryTimeoutError) or item.errors_to == "":
                self._log(f"{escape(item.log_name(False))}: error ignored")
            else:
                kept.append((item, error))
        return kept

    def _delay_warning(self, envelope: Envelope) -> None:
        """Warn the sender once per delay_warning interval while addresses stay deferred."""
        deferred = self.report.deferred
        if not deferred or self.dont_deliver or self._ctx is None:
            return
        ctx = self._ctx
        domains = {item.address.rpartition("@")[2].lower() for item, _ in deferred}
        extra = {"domain": domains.pop()} if len(domains) == 1 else None
        warning_id = send_due_warning(
            self.runtime, envelope, deferred, lambda text: ctx.expand(text, None, extra), self.now,
            arrival=max(self.now, time.time()),
        )
        if warning_id is not None:
            self.report.bounce_ids.append(warning_id)

    def _send_bounces(self, envelope: Envelope) -> None:
        from mta.deliver.bounce import send_bounces

        failures = failed_addresses(envelope, self.report.failed, self._log, self._as_local)
        if not failures:
            return
        # The bounce arrives now, not when this attempt started: a pipe that ran for an hour
        # must not give the bounce an arrival time (log line, Received:, -H) an hour old.
        self.report.bounce_ids.extend(send_bounces(self.runtime, envelope, failures, now=time.time()))


def _nothing():  # type: ignore[no-untyped-def]
    import contextlib

    return contextlib.nullcontext()


def deliver_message(runtime: Runtime, message_id: str, **kwargs: Any) -> DeliveryReport:
    return Delivery(runtime, message_id, **kwargs).run()


def deliver_messages(runtime: Runtime, message_ids: list[str], **kwargs: Any) -> list[DeliveryReport]:
    """Deliver several messages in turn on one event loop (connections are reused), as a queue run does."""
    reports = []
    with DeliveryLoop(runtime) as loop:
        for message_id in message_ids:
            reports.append(Delivery(runtime, message_id, loop_runner=loop, **kwargs).run())
    return reports
