"""The retry side of one smtp delivery: which hosts may be tried, and what to remember.

    retry = SmtpRetry(job, state)        # state: DeliveryEnv.extra["retry"] (mta.hints.retry_state)
    check = yield from retry.check(row)  # before a host address is tried; None: no retry data kept
    retry.connected(row, check) / retry.failed(row, check, error)
    retry.second_pass()                  # delay_after_cutoff = false: expired hosts to try after all
    retry.untried_error(item)            # why an item got no attempt at all
    retry.record(outcomes)               # at the end: the retry items, onto the state

Exim's smtp transport rules (transports/smtp.c), restated:

- A host address whose retry time has not come is skipped (for any
  message): counted, and the address may not time out this time.  A host
  past its final cutoff ("expired") is skipped too, but does not stop the
  address from failing.
- When every host was skipped: "retry time not reached for any host for
  'domain'" (a deferral, Exim's error -54); when every host was skipped
  and expired, the address fails without a try: "all hosts for 'domain'
  have been failing for a long time (and retry time not reached)".  With
  ``delay_after_cutoff = false`` the expired hosts not tried since the
  message arrived are tried first, and only if none is left or all fail
  does it fail ("... and were last tried after this message arrived").
- What is remembered: a host that failed (connection refused or timed out,
  a 4xx/5xx greeting, a lost connection, TLS required but missing ...)
  gets a host record ``T:name:ip[:port]``; a 4xx to MAIL or DATA a record
  for the host and this message; a 4xx to RCPT an address record
  ``R:address:<sender>``; a host that answered loses its stale records.

Diagnostics: none here; the delivery code logs the outcomes.
"""

from __future__ import annotations

import functools

from mta.errors import DeferError, DeliveryError
from mta.hints.retry_state import ADDRESS, ERRNO_HRETRY, HOST, MESSAGE, HostCheck, RetryItem, RetryTimeNotReached
from mta.transports.smtp import SmtpFailError, remote_error
from mta.transports.smtp_wire import Blocking

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Generator
    from typing import Any

    from mta.hints.retry_state import RetryState
    from mta.route.dns import Host
    from mta.route.item import AddressItem
    from mta.transports.base import Outcome
    from mta.transports.smtp_plan import SmtpJob

_TIMEOUT_CONNECT = 0x100  # Exim's RTEF_CTOUT in more_errno


def item_domain(item: AddressItem) -> str:
    return (item.domain or item.address.rpartition("@")[2]).lower()


class SmtpRetry:
    """See the module docstring; one per SmtpJob that has retry data."""

    def __init__(self, job: SmtpJob, state: RetryState) -> None:
        self.job = job
        self.state = state
        self.checked = 0  # host addresses looked at
        self.skipped = 0  # ... of which skipped for their retry time
        self.all_expired = True  # stays true only while every host looked at was skipped and expired
        self.some_skipped = False  # an unexpired host was skipped, or hosts_max_try cut the list
        self._expired_rows: list[tuple[Host, HostCheck]] = []
        self._connected: list[tuple[Host, HostCheck]] = []
        self._failed: list[tuple[Host, HostCheck, DeliveryError]] = []

    def check(self, row: Host) -> Generator[Any, Any, HostCheck]:
        """Ask the retry data about `row` (a database read: a Blocking op); count a skip."""
        job = self.job
        ask = functools.partial(
            self.state.host_check, row.name, row.address, row.port or job.port, item_domain(job.items[0]),
            job.options.retry_include_ip_address,
        )
        check: HostCheck = yield Blocking(ask)
        self.checked += 1
        if not check.usable:
            self.skipped += 1
            if check.expired:
                self._expired_rows.append((row, check))
            else:
                self.all_expired = False
                self.some_skipped = True
        else:
            self.all_expired = False
        return check

    def second_pass(self) -> list[tuple[Host, HostCheck]]:
        """delay_after_cutoff = false, every host skipped as expired: those not tried since the
        message arrived, to be tried once more before the address fails."""
        if self.job.options.delay_after_cutoff or not self.all_expired:
            return []
        received = self.state.received_time
        rows = [(row, check) for row, check in self._expired_rows if (check.last_try or 0) <= received]
        if rows:
            self.all_expired = False
        return rows

    def connected(self, row: Host, check: HostCheck) -> None:
        self._connected.append((row, check))

    def failed(self, row: Host, check: HostCheck, error: DeliveryError) -> None:
        self._failed.append((row, check, error))

    def untried_error(self, item: AddressItem) -> DeliveryError | None:
        """The outcome of an item no host was tried for because of retry data; None if that is not why."""
        if not self.checked or self.skipped != self.checked:
            return None
        domain = item_domain(item)
        if self.all_expired:
            how = (
                "(and retry time not reached)" if self.job.options.delay_after_cutoff
                else "and were last tried after this message arrived"
            )
            failure = remote_error(SmtpFailError, f"all hosts for '{domain}' have been failing for a long time {how}",
                                   None, errno=ERRNO_HRETRY)
            return failure
        return RetryTimeNotReached(f"retry time not reached for any host for '{domain}'", ERRNO_HRETRY)

    def record(self, outcomes: dict[AddressItem, Outcome]) -> None:
        """Hand this delivery's retry items to the state (memory only; written at the end of the attempt)."""
        job, state = self.job, self.state
        items, domain = job.items, item_domain(job.items[0])
        for row, check in self._connected:
            # It answered: a record saying it was down is stale (a failure below renews it).
            if check.had_record:
                state.add(items, RetryItem(check.key, HOST, row.name, domain, delete=True))
            message_errors = [
                (item, o) for item, o in outcomes.items()
                if isinstance(o, DeferError) and _same_host(o, row) and (o.retry_error or "")[:5] in ("mail_", "data_")
            ]
            if message_errors:
                state.add([i for i, _ in message_errors], _item(check.message_key, MESSAGE, row.name, domain,
                                                                message_errors[0][1]))
            elif check.had_message_record:
                state.add(items, RetryItem(check.message_key, MESSAGE, row.name, domain, delete=True))
        for row, check, error in self._failed:
            state.add(items, _item(check.key, HOST, row.name, domain, error), expired_host=check.expired)
            if check.had_message_record:  # a host failure replaces a message failure at that host
                state.add(items, RetryItem(check.message_key, MESSAGE, row.name, domain, delete=True))
        sender = job.message.sender_address
        for item, outcome in outcomes.items():
            if isinstance(outcome, DeferError) and (outcome.retry_error or "").startswith("rcpt_"):
                address = _address(item)
                key = f"R:{address}:<{sender}>" if job.options.address_retry_include_sender else f"R:{address}"
                state.add([item], _item(key, ADDRESS, address, item_domain(item), outcome))
        if self.some_skipped:
            state.mark_skipped(items)


def _same_host(error: DeliveryError, row: Host) -> bool:
    host = getattr(error, "host", None)
    return host is not None and host.address == row.address and host.name == row.name


def _address(item: AddressItem) -> str:
    local, _, domain = item.address.rpartition("@")
    return f"{local.lower()}@{domain.lower()}"


def _more_errno(error: DeliveryError) -> int:
    """Exim's more_errno: 'A' or 'M' (how the host was found), the connect-timeout flag, or the 4xx code."""
    name = error.retry_error or ""
    value = ord("M") if name.endswith("_MX") else ord("A") if name.endswith("_A") else 0
    if name.startswith("timeout_connect"):
        value |= _TIMEOUT_CONNECT
    if name[:5] in ("rcpt_", "mail_", "data_") and name[5:].isdigit():
        value |= (int(name[5:]) - 400) << 8
    return value


def _item(key: str, kind: str, subject: str, domain: str, error: DeliveryError) -> RetryItem:
    return RetryItem(
        key, kind, subject, domain, error=error.retry_error, errno=error.errno, more_errno=_more_errno(error),
        text=error.message,
    )
