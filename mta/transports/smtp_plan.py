"""One delivery of the smtp transport: which hosts, in which order, which recipients, what outcome.

    job = SmtpJob(transport, message, items, env, wrapper=False)
    run(job.plan())          # a runner: smtp_sync or smtp_async
    job.outcomes             # one Delivered / DeferError / FailError per item

The plan tries the hosts (router's, or the transport's), then the fallback
hosts, opens a connection with mta.transports.smtp_session (or takes one
from the runner's cache), and runs transactions of at most max_rcpt
recipients until every item has an outcome.  A host that fails before a
message was sent takes nothing with it: the recipients go on to the next
host.  Whatever is left when the hosts run out is deferred with the last
host's error.  With mua_wrapper every failure becomes permanent.
"""

from __future__ import annotations

import _socket as socket  # the functions of socket without its enum classes (start-up)

from mta import process_info, record
from mta.errors import ConfigError, DeferError, DeliveryError, ExpansionError, FailError
from mta.transports.smtp import SmtpDeferError, SmtpFailError, remote_error
from mta.transports.smtp_session import Conversation, HostFailed, Retry, Spoiled, Stale
from mta.transports.smtp_wire import Close, Park, Resolve, Session, SmtpIoError
from mta.transports.write import header_edits, transport_return_path
from mta.values import split_list

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mta.transports.smtp_wire import Plan

if TYPE_CHECKING:
    from collections.abc import Generator

    from mta.auth._common import Authenticator
    from mta.hints.retry_state import HostCheck
    from mta.route.dns import Host
    from mta.route.item import AddressItem
    from mta.transports.base import DeliveryEnv, Outcome, OutgoingMessage
    from mta.transports.smtp import SmtpTransport
    from mta.transports.smtp_retry import SmtpRetry


def _domain(item: AddressItem) -> str:
    return (item.domain or item.address.rpartition("@")[2]).lower()


def _is_ip(text: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)
        except OSError:
            continue
        return True
    return False


def _split_host_port(item: str) -> tuple[str, str | None]:
    """``name``, ``name:port``, ``[ip]``, ``[ip]:port``, or a bare IPv6 address (no port)."""
    if item.startswith("["):
        end = item.find("]")
        name, rest = item[1:end], item[end + 1 :]
        return name, rest[1:] if rest.startswith(":") else None
    if item.count(":") == 1:
        name, port = item.split(":")
        return name.strip(), port.strip()
    return item, None


class SmtpJob:
    """One deliver_batch call: options worked out once, outcomes filled in as the plan runs."""

    def __init__(
        self,
        transport: SmtpTransport,
        message: OutgoingMessage,
        items: list[AddressItem],
        env: DeliveryEnv,
        *,
        wrapper: bool = False,
    ) -> None:
        self.transport, self.options = transport, transport.options
        self.message, self.items, self.env, self.wrapper = message, items, env, wrapper
        self.outcomes: dict[AddressItem, Outcome] = {}
        self.pending: list[AddressItem] = []
        self.host_errors: list[SmtpDeferError | SmtpFailError] = []
        # Connection reuse across calls; mua_wrapper makes one transaction and exits.
        self.use_cache = not wrapper and self.options.connection_max_messages != 1
        self._lists: dict[tuple[str, str | None], bool] = {}
        self._local: set[str] | None = None
        self.talk = Conversation(self)
        self._check: HostCheck | None = None  # the retry check of the host being tried
        self._permanent_lookup_failures = 0
        # Retry data, when the delivery keeps it (never with mua_wrapper, which neither reads nor writes it).
        state = None if wrapper else env.extra.get("retry")
        self.retry: SmtpRetry | None = None
        if state is not None and items:
            # Imported here: the hints modules under it cost mua_wrapper's start-up 10 ms.
            from mta.transports.smtp_retry import SmtpRetry

            self.retry = SmtpRetry(self, state)
        if not items:
            return
        try:
            self._setup()
        except DeliveryError as error:
            self.settle(items, error)
            self._finish()
        else:
            self.pending = list(items)

    # -- set-up ---------------------------------------------------------------

    def _setup(self) -> None:
        o = self.options
        self.sender = transport_return_path(self.transport, self.message, self.items[0], self.env)
        if o.message_size_limit and self.message.size > o.message_size_limit:
            raise FailError(f"message is too big (transport limit = {o.message_size_limit})", code=552, esc="5.3.4")
        self.edits = header_edits(self.transport, self.message, self.items, self.env, self.sender)
        port_text = self.expand_option(o.port, "port") if o.port else None
        try:
            self.port = self.transport.port_number(port_text) if port_text else (465 if o.protocol == "smtps" else 25)
        except ValueError as exc:
            raise DeferError(f"{self.transport.name} transport: {exc}") from None
        routed = self.items[0].hosts
        if o.hosts and (o.hosts_override or not routed):
            self.hosts = self._option_hosts(o.hosts, "hosts")
        elif routed:
            self.hosts = list(routed)
        else:
            raise DeferError(f"no hosts for the {self.transport.name} transport (none from the router, no hosts)")
        self.fallback: list[Host] = []
        if not self.wrapper:
            routed_fallback = self.items[0].fallback_hosts
            if routed_fallback:
                self.fallback = list(routed_fallback)
            elif o.fallback_hosts:
                self.fallback = self._option_hosts(o.fallback_hosts, "fallback_hosts")
        self.max_rcpt = 0 if self.wrapper else o.max_rcpt
        extra = self.env.extra
        runtime = extra.get("runtime")
        candidates = extra.get("authenticators")
        if candidates is None:
            candidates = runtime.authenticators if runtime is not None else self.transport.authenticators
        self.authenticators: list[Authenticator] = [a for a in candidates if getattr(a, "is_client", False)]

    def _option_hosts(self, text: str, what: str) -> list[Host]:
        from mta.route.host import Host

        expanded = self.expand_option(text, what)
        hosts = []
        for item in split_list(expanded or ""):
            if not item:
                continue
            name, port_text = _split_host_port(item)
            try:
                port = self.transport.port_number(port_text) if port_text else None
            except ValueError as exc:
                raise DeferError(f"{what} for the {self.transport.name} transport: {exc}") from None
            hosts.append(Host(name=name, address=name if _is_ip(name) else None, port=port))
        if self.options.hosts_randomize:
            import random

            random.shuffle(hosts)
        return hosts

    def expand_option(self, text: str, what: str, host: Host | None = None) -> str | None:
        """Expand an option; None for a forced failure; DeferError for any other failure."""
        try:
            return self.env.expand(text, self.items[0], self.host_variables(host))
        except ExpansionError as exc:
            if exc.forced:
                return None
            name = self.transport.name
            raise DeferError(f"failed to expand {what} for the {name} transport: {exc.message}") from None

    @staticmethod
    def host_variables(host: Host | None) -> dict[str, Any] | None:
        if host is None:
            return None
        return {"host": host.name, "host_address": host.address, "host_port": str(host.port or "")}

    def in_list(self, name: str, host: Host) -> bool:
        """Is the host in the host list option `name` (matched by IP and name)?"""
        text = getattr(self.options, name)
        if text is None:
            return False
        if text.strip() == "*":  # the default of tls_try_verify_hosts: no need to load list matching
            return True
        key = (name, host.address)
        if key not in self._lists:
            from mta.config.lists import ListContext, match_host

            runtime = self.env.extra.get("runtime")
            ctx = ListContext(
                primary_hostname=self.env.primary_hostname,
                expand=lambda t: self.env.expand(t, self.items[0], self.host_variables(host)),
            )
            if runtime is not None:
                ctx.named_list = runtime.config.named_list
            elif self.transport.named_list is not None:
                ctx.named_list = self.transport.named_list
            # No resolve_host: the host's own name is known, and a DNS lookup here would block.
            host_name = host.name if host.name != host.address else None
            try:
                self._lists[key] = bool(match_host(host.address, host_name, text, ctx))
            except (ConfigError, ExpansionError) as exc:
                raise DeferError(f"{name} of the {self.transport.name} transport: {exc}") from None
        return self._lists[key]

    def _is_local(self, address: str) -> bool:
        if self.options.allow_localhost:
            return False
        if self._local is None:
            local = self.env.extra.get("local_addresses")
            if local is None:
                from mta.config.lists import local_interface_addresses

                local = local_interface_addresses()
            self._local = set(local)
        return address in self._local or address.startswith("127.") or address == "::1"

    # -- the plan -------------------------------------------------------------

    def plan(self) -> Plan:
        """Try the hosts, then the fallback hosts, until every item has an outcome.

        A host address whose retry time has not come is skipped (SmtpRetry);
        hosts_max_try counts the addresses tried that are not past their
        final cutoff.
        """
        limit = self.options.hosts_max_try
        for hosts in (self.hosts, self.fallback) if self.pending else ():
            tried = 0
            for host in hosts:
                if not self.pending:
                    break
                if tried >= limit:
                    self._cut_short()
                    break
                for row in (yield from self._addresses(host)):
                    if not self.pending:
                        break
                    if tried >= limit:
                        self._cut_short()
                        break
                    if self._is_local(row.address or ""):
                        self.host_errors.append(
                            remote_error(SmtpDeferError, "remote host address is the local host", row)
                        )
                        continue
                    check = None
                    if self.retry is not None:
                        check = yield from self.retry.check(row)
                        if not check.usable:
                            continue
                    if check is None or not check.expired:
                        tried += 1
                    yield from self._try_host(row, check)
        if self.retry is not None and self.pending:
            for row, check in self.retry.second_pass():
                if not self.pending:
                    break
                yield from self._try_host(row, check)
        self._finish()

    def _cut_short(self) -> None:
        # Hosts left untried because of hosts_max_try count as skipped: the address cannot time out now.
        if self.retry is not None and self.pending:
            self.retry.some_skipped = True

    def _addresses(self, host: Host) -> Generator[Any, Any, list[Host]]:
        port = host.port or self.port
        if host.address:
            return [record.replace(host, port=port)]
        try:
            addresses = yield Resolve(host.name)
        except SmtpIoError as exc:
            self._permanent_lookup_failures += exc.permanent
            self.host_errors.append(remote_error(SmtpDeferError, exc.text, host, retry_error="lookup"))
            return []
        return [record.replace(host, address=a, port=port) for a in dict.fromkeys(addresses)]

    def _try_host(self, host: Host, check: HostCheck | None = None) -> Plan:
        process_info.remote_delivery(self.message.message_id, host.name, host.address, host.port,
                                     [item.address for item in self.pending])  # for mta-what
        try:
            policy = self.talk.tls_policy(host)
        except DeliveryError as error:
            self.host_errors.append(remote_error(SmtpDeferError, error.message, host))
            return
        self._check = check
        retries, connected = 0, False
        while self.pending:
            try:
                session = yield from self.talk.open(host, policy)
            except Retry as retry:
                retries += 1
                if retries > 2:  # each retry turns something off, so this cannot loop; be sure anyway
                    raise RuntimeError("smtp transport: TLS retry loop") from None
                policy = retry.policy
                continue
            except HostFailed as failed:
                self._host_failed(host, failed.error)
                return
            if self.retry is not None and check is not None and not connected:
                self.retry.connected(host, check)
                connected = True  # (a second connection, after a stale cached one, is the same host)
            if not (yield from self._deliver_on(session)):
                return

    def _host_failed(self, host: Host, error: SmtpDeferError | SmtpFailError) -> None:
        self.host_errors.append(error)
        if self.retry is not None and self._check is not None:
            self.retry.failed(host, self._check, error)

    def _deliver_on(self, session: Session) -> Generator[Any, Any, bool]:
        """Run transactions on this connection; False when the host failed (go to the next one)."""
        limit = self.options.connection_max_messages
        while self.pending:
            if limit and session.messages >= limit:
                yield from self.talk.quit(session)
                return True  # the caller opens a fresh connection to the same host
            batch = self._take_batch()
            try:
                yield from self.talk.transaction(session, batch)
            except Stale:
                # A cached connection the server had dropped while idle (or that cannot go on without
                # a recipient): the recipients not settled go down a new connection to the same host.
                self.pending[:0] = [item for item in batch if item not in self.outcomes]
                yield Close()
                return True
            except Spoiled as spoiled:
                self._host_failed(session.host, spoiled.error)
                yield Close()
                return False
            except HostFailed as failed:
                # Nothing of this batch was taken as a message: another host may take it.
                self.pending[:0] = [item for item in batch if item not in self.outcomes]
                self._host_failed(session.host, failed.error)
                yield Close()
                return False
            except DeliveryError as error:  # an option (authenticated_sender ...) failed to expand
                self.settle([item for item in batch if item not in self.outcomes], error)
        if self.use_cache and not (limit and session.messages >= limit):
            yield Park(session)
        else:
            yield from self.talk.quit(session)
        return True

    def _take_batch(self) -> list[AddressItem]:
        candidates = self.pending
        if not self.options.multi_domain:
            domain = _domain(self.pending[0])
            candidates = [item for item in self.pending if _domain(item) == domain]
        batch = candidates[: self.max_rcpt] if self.max_rcpt else list(candidates)
        taken = set(map(id, batch))
        self.pending = [item for item in self.pending if id(item) not in taken]
        return batch

    # -- outcomes ---------------------------------------------------------------

    def release(self) -> None:
        """Done with: drop the parts that point back at the job (its conversation and retry
        bookkeeping), so that reference counting frees the whole job at once.  A delivery
        worker's collector otherwise traced each message's objects, 50 us a message."""
        del self.talk, self.retry

    def results(self) -> dict[AddressItem, Outcome]:
        """One outcome per item, in the order of the items (what deliver_batch returns)."""
        return {item: self.outcomes[item] for item in self.items}

    def settle(self, items: list[AddressItem], outcome: Outcome) -> None:
        for item in items:
            self.outcomes[item] = outcome

    def _finish(self) -> None:
        if self.pending:
            untried = None if self.host_errors or self.retry is None else self.retry.untried_error(self.pending[0])
            if untried is not None:
                # Every host was skipped for its retry time: each address says so for its own domain.
                for item in self.pending:
                    self.outcomes[item] = self.retry.untried_error(item) or untried  # type: ignore[union-attr]
            else:
                self.settle(self.pending, self._all_hosts_error())
            self.pending = []
        if self.retry is not None:
            self.retry.record(self.outcomes)
        if self.wrapper:
            self._fail_whole_message()

    def _all_hosts_error(self) -> DeliveryError:
        if not self.host_errors:
            return DeferError(f"no host could be tried by the {self.transport.name} transport")
        last, count = self.host_errors[-1], len(self.host_errors)
        if self._permanent_lookup_failures == count:
            error = remote_error(SmtpFailError, "all host address lookups failed permanently", last.host, esc="5.4.4")
        else:
            text = last.message if count == 1 else f"all hosts failed; last error: {last.message}"
            error = remote_error(
                SmtpDeferError, text, last.host, last.reply, retry_error=last.retry_error, errno=last.errno,
                code=last.code, esc=last.esc,
            )
        error.host_errors = tuple((e.host, e.message) for e in self.host_errors if e.host is not None)
        return error

    def _fail_whole_message(self) -> None:
        """mua_wrapper: no retries, so every failure is permanent, and one failure fails all."""
        for item in self.items:
            outcome = self.outcomes.get(item)
            if isinstance(outcome, DeferError):
                reply = getattr(outcome, "reply", None)
                failure = remote_error(
                    SmtpFailError, outcome.message, getattr(outcome, "host", None), reply,
                    code=reply.code if reply is not None and reply.code >= 500 else 550,
                )
                failure.host_errors = getattr(outcome, "host_errors", ())
                self.outcomes[item] = failure
