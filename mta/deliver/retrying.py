r"""Retry in a delivery attempt: which rule applies, what is skipped, what times out.

`DeliveryRetry` is made by mta.deliver.delivery for each attempt.  It
matches retry rules (their patterns are address lists: the configuration's
list matching), builds the keys of routing and local deliveries, hands the
smtp transport a mta.hints.retry_state.RetryState (``DeliveryEnv.extra
["retry"]``), and at the end of the attempt updates the hints and says which
deferred addresses have run out of time.

When retry times count (Exim's rules):

| attempt | routing / address records | local (T:address) | remote hosts |
| --- | --- | --- | --- |
| queue run | wait | wait | wait |
| delivery after reception, -Mc | ignored | ignored | wait |
| forced (-M, -qf) | ignored | ignored | ignored |

"Ignored" still writes records on failure; only the waiting is skipped.

Rule matching: a rule's pattern is a one-item address list (``*``, a
domain, ``*@domain``, ``local@domain``, ``^regex``, ``!``-negated,
``+named_list``), expanded first as Exim expands it (``\N...\N`` keeps a
regular expression as it is); an item that is not an address (a host name, a domain)
is matched as ``*@<it>``; a host item is tried against the host name first,
then the mail domain.  Then the error name (mta.hints.retry.error_matches)
and ``senders=`` (an address list, against the message's sender).  A
configuration with no retry rules at all uses Exim's default rule (see
docs/retry.md: Exim would bounce at the first temporary error).

Diagnostics: ``** <address>: retry timeout exceeded`` in the main log is the
caller's; a rule that cannot be matched (bad regex, failing lookup) is
logged once to the panic log and does not apply.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from mta import debug
from mta.config.lists import ListContext, match_address
from mta.errors import ConfigError, DeferError, DeliveryError, ExpansionError, FailError
from mta.hints.retry import RetryRule, default_rule, error_matches
from mta.hints.retry_db import RetryDb
from mta.hints.retry_state import LOCAL, ROUTING, RetryItem, RetryState, RetryTimeNotReached, RetryTimeout
from mta.message.headers import rfc822_date

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mta.route.item import AddressItem
    from mta.runtime import Runtime
    from mta.spool.envelope import Envelope

# A single-item list: no separator can split a pattern (a regex may hold colons).
_ONE_ITEM = "<\x01"


class RetryTimeoutError(FailError):
    """A deferred address whose retry rules have run out: it fails, and says for how long it was tried.

    `host` and `reply` are the last deferral's, so that the bounce names the
    remote host and its reply as a remote failure's does.
    """

    host: Any = None
    reply: Any = None


class DeliveryRetry:
    """The retry decisions of one delivery attempt (see the module docstring)."""

    def __init__(
        self,
        runtime: Runtime,
        envelope: Envelope,
        *,
        now: float,
        ignore_retry: bool,
        queue_run: bool,
        run_started: float | None = None,
        update: bool = True,
        is_local_domain: Callable[[str], bool] | None = None,
    ) -> None:
        config = runtime.config
        self.runtime = runtime
        self.sender = envelope.sender_address
        self.now = now
        self.queue_run = queue_run and not ignore_retry
        self.update_hints = update
        self.rules: list[RetryRule] = list(runtime.retry_rules) or [default_rule()]
        self._is_local_domain = is_local_domain or (lambda domain: False)
        # Patterns and senders= lists are expanded before use, as Exim's are (so \N...\N protects a regex).
        self._list_context = ListContext(
            primary_hostname=config.primary_hostname, named_list=config.named_list, expand=self._expand
        )
        self._expansion: Any = None
        self._rule_cache: dict[tuple[str, str | None, str | None], RetryRule | None] = {}
        self._bad_rules: set[int] = set()
        main = config.main
        db = RetryDb(
            os.path.join(main.spool_directory, "db"),
            panic=runtime.logger.panic,
            data_expire=main.retry_data_expire,
            interval_max=main.retry_interval_max,
        )
        self.state = RetryState(
            db,
            self.find_rule,
            message_id=envelope.message_id,
            received_time=envelope.received_time,
            now=now,
            ignore_retry=ignore_retry,
            run_started=run_started,
            interval_max=main.retry_interval_max,
        )

    # -- rules ----------------------------------------------------------------

    def find_rule(self, subject: str, domain: str | None, error: str | None) -> RetryRule | None:
        """The first rule for `subject` (or ``*@domain``), this error and this message's sender."""
        key = (subject, domain, error)
        if key not in self._rule_cache:
            self._rule_cache[key] = next(
                (rule for rule in self.rules if self._applies(rule, subject, domain, error)), None
            )
        return self._rule_cache[key]

    def _applies(self, rule: RetryRule, subject: str, domain: str | None, error: str | None) -> bool:
        if not error_matches(rule.error, error):
            return False
        try:
            if rule.senders is not None and not match_address(self.sender, rule.senders, self._list_context):
                return False
            candidates = [subject] + ([f"*@{domain}"] if domain else [])
            return any(
                match_address(c if "@" in c else f"*@{c}", _ONE_ITEM + rule.pattern, self._list_context)
                for c in candidates
            )
        except (ConfigError, DeferError, ExpansionError) as exc:
            if rule.line not in self._bad_rules:
                self._bad_rules.add(rule.line)
                self.runtime.logger.panic(f"retry rule at {rule.path}:{rule.line} cannot be matched: {exc}")
            return False

    def _expand(self, text: str) -> str:
        if "$" not in text and "\\" not in text:
            return text
        from mta.config.variables import expansion_context
        from mta.expand.expander import expand

        if self._expansion is None:
            self._expansion = expansion_context(self.runtime.config, {"sender_address": self.sender})
        return expand(text, self._expansion)

    # -- keys -----------------------------------------------------------------

    def _routing_key(self, item: AddressItem) -> tuple[str, str, str]:
        """(key, rule subject, domain) of routing `item`: the address for the directors (local
        domains), the domain for the routers, as Exim's retry_use_local_part defaults do."""
        local, _, domain = item.address.rpartition("@")
        domain = domain.lower()
        if self._is_local_domain(domain):
            address = f"{local.lower()}@{domain}"
            return f"R:{address}", address, domain
        return f"R:{domain}", f"*@{domain}", domain

    def _local_key(self, item: AddressItem, transport: Any) -> tuple[str, str, str]:
        domain = item.address.rpartition("@")[2].lower()
        by_address = transport.options.retry_use_local_part
        if by_address is None or by_address:
            subject = item.top.address if item.pipe_command or item.file_path else item.address
            return f"T:{item.unique_key()}", subject, domain
        return f"T:{domain}", f"*@{domain}", domain

    # -- before routing and delivering ------------------------------------------

    def routing_skip(self, item: AddressItem) -> DeferError | None:
        """For the routing engine in a queue run: defer `item` now if its retry time has not come."""
        if not self.queue_run or "@" not in item.address:
            return None
        local, _, domain = item.address.rpartition("@")
        domain = domain.lower()
        address = f"{local.lower()}@{domain}"
        held = self.state.routing_check(f"R:{domain}", f"R:{address}", self.sender, address, domain)
        if "retry" in debug.active:
            debug.write(f"retry for R:{address} (or R:{domain}): "
                        + ("retry time not reached: routing deferred" if held else "no retry record or time reached"))
        return held

    def local_skip(self, item: AddressItem, transport: Any) -> DeferError | None:
        """A local delivery in a queue run: defer `item` without trying if its retry time has not come."""
        if not self.queue_run:
            return None
        key, subject, domain = self._local_key(item, transport)
        held = self.state.local_check(key, subject, domain)
        if "retry" in debug.active:
            verdict = "retry time not reached" if held else "no retry record or time reached"
            debug.write(f"retry for {key}: {verdict}")
        return held

    # -- outcomes ---------------------------------------------------------------

    def routed(self, item: AddressItem) -> None:
        """`item` (and the addresses it came from) routed: their routing records are stale."""
        for routed in (item, *item.ancestors()):
            if routed.pipe_command is None and routed.file_path is None and "@" in routed.address:
                key, subject, domain = self._routing_key(routed)
                self.state.add([item], RetryItem(key, ROUTING, subject, domain, delete=True))

    def routing_deferred(self, item: AddressItem, error: DeferError) -> None:
        if isinstance(error, RetryTimeNotReached) or "@" not in item.address:
            return  # nothing was tried
        key, subject, domain = self._routing_key(item)
        if "retry" in debug.active:
            debug.write(f"retry record {key} updated: routing deferred: {error.message}")
        self.state.add([item], _failure_item(key, ROUTING, subject, domain, error))

    def local_done(self, item: AddressItem, transport: Any, error: DeliveryError | None) -> None:
        """A local delivery's outcome: a deferral is remembered, a success or failure clears the record."""
        if isinstance(error, RetryTimeNotReached):
            return
        key, subject, domain = self._local_key(item, transport)
        if "retry" in debug.active:
            debug.write(f"retry record {key} " + ("updated: " + error.message if isinstance(error, DeferError)
                                                  else "deleted (delivered or failed)"))
        if isinstance(error, DeferError):
            self.state.add([item], _failure_item(key, LOCAL, subject, domain, error))
        else:
            self.state.add([item], RetryItem(key, LOCAL, subject, domain, delete=True))

    def settled(self, item: AddressItem) -> None:
        """Delivered or failed: the address retry records of the smtp transport are stale too."""
        if item.pipe_command is not None or item.file_path is not None or "@" not in item.address:
            return
        local, _, domain = item.address.rpartition("@")
        address = f"{local.lower()}@{domain.lower()}"
        for key in (f"R:{address}", f"R:{address}:<{self.sender}>"):
            self.state.add([item], RetryItem(key, ROUTING, address, domain.lower(), delete=True))

    def release(self) -> None:
        """The attempt is over: drop the two parts that hold this object's own methods (the list
        context's expansion, the state's rule finder), so that reference counting frees the
        attempt's objects at once instead of the cyclic collector (50 us a message)."""
        del self._list_context, self.state

    def finish(
        self,
        delivered: list[AddressItem],
        failed: list[AddressItem],
        deferred: list[tuple[AddressItem, DeferError]],
    ) -> list[tuple[AddressItem, FailError]]:
        """Update the hints; the deferred addresses that time out, with the failure to bounce."""
        if not self.update_hints:
            return []
        for item in (*delivered, *failed):
            self.settled(item)
        timeouts = self.state.update(delivered, failed, [item for item, _ in deferred])
        return [
            (item, self._timeout_error(error, timeouts[id(item)]))
            for item, error in deferred
            if id(item) in timeouts
        ]

    def _timeout_error(self, error: DeferError, timeout: RetryTimeout) -> FailError:
        tried = max(0, int(self.now) - timeout.first_failed)
        # Two lines that fit the bounce's 78 columns once indented.
        detail = (
            f"Delivery was tried for {_duration(tried)}: from {rfc822_date(timeout.first_failed)}\n"
            f"to {rfc822_date(self.now)}."
        )
        failure = RetryTimeoutError(f"{error.message}: retry timeout exceeded", detail=detail)
        failure.host, failure.reply = getattr(error, "host", None), getattr(error, "reply", None)
        return failure


def _failure_item(key: str, kind: str, subject: str, domain: str | None, error: DeliveryError) -> RetryItem:
    return RetryItem(
        key, kind, subject, domain, error=error.retry_error, errno=error.errno, text=error.message,
    )


def _duration(seconds: int) -> str:
    """``4 days 5 hours``, ``2 hours 15 minutes``, ``45 minutes``: how long, to a person."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [(days, "day"), (hours, "hour")] if days else [(hours, "hour"), (minutes, "minute")]
    words = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in parts if n]
    return " ".join(words) or f"{minutes} minutes"
