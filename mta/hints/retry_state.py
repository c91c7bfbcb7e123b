"""The retry side of one delivery attempt: may this be tried now, and what to remember after.

Public API (mta.deliver.retrying makes one per attempt; the smtp transport
finds it in ``DeliveryEnv.extra["retry"]``)::

    state = RetryState(db, find_rule, message_id=..., received_time=..., now=...,
                       ignore_retry=False, run_started=None, interval_max=86400)
    # before trying something (each reads the database once):
    state.host_check(name, address, port, domain, include_ip=True) -> HostCheck
    state.routing_check(domain_key, address_key, sender, subject, domain) -> RetryTimeNotReached | None
    state.local_check(key, subject, domain) -> RetryTimeNotReached | None
    # while delivering (memory only):
    state.add(owners, RetryItem(...))      # a failure to remember, or a record to delete
    state.mark_skipped(owners)             # some host was left untried: no timeout this time
    # at the end (one write transaction):
    state.update(succeeded, failed, deferred) -> {id(owner): RetryTimeout}

"Owners" are the delivery's address items (any objects; they are told
apart by identity).  A retry item belongs to every address it concerns: a
host that refused the connection, to each address of the batch that was
being sent there.

The rules are Exim's (retry.c and the smtp transport), restated:

- A host whose next try time has not come is not tried, for any message,
  unless retry times are ignored (-M, -qf) or the message has been on the
  queue longer than the final cutoff of the host's rule (so that the
  address can finally time out).  A host past its final cutoff is
  "expired": the transport may bounce at once (delay_after_cutoff).
- An address (4xx to RCPT) or domain (routing deferral) whose retry time
  has not come is deferred without being tried, but only in a queue run
  that is not forced; a delivery straight after reception tries anyway.
- At the end, every failure updates its record (first failure kept, next
  try from the rule); every success deletes the records it proves stale.
  A deferred address whose every retry item has timed out fails ("retry
  timeout exceeded"), unless some host was skipped this time.

`ignore_retry` with `run_started` (a -qf queue run): retry times are
ignored, except that a host that failed during this run (its record was
written after the run started) is not tried again by the run's later
messages: one connection attempt per dead host per run, not one per message.

Errors: none raised; the database's trouble is RetryDb's (panic log, then
as if empty).
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Iterable

from mta import record
from mta.errors import DeferError
from mta.hints.retry import RetryRule, compute_retry
from mta.hints.retry_db import RetryDb, RetryRecord
from mta.memo import lru_cache

TYPE_CHECKING = False
if TYPE_CHECKING:
    import random

# Exim's error numbers for "not tried: retry time not reached" (macros.h, 4.96+).
ERRNO_RRETRY = -52  # routing
ERRNO_LRETRY = -53  # local delivery
ERRNO_HRETRY = -54  # every remote host
# Kinds of retry item.
HOST = "host"  # T:host:ip[:port]
MESSAGE = "message"  # T:host:ip[:port]:id
ADDRESS = "address"  # R:address[:<sender>]
ROUTING = "routing"  # R:domain or R:local@domain
LOCAL = "local"  # T:local@domain

# (subject, alternate domain or None, error name or None) -> the first rule that applies.
RuleFinder = Callable[[str, "str | None", "str | None"], "RetryRule | None"]


class RetryTimeNotReached(DeferError):
    """A deferral without an attempt: the destination's retry time has not come.

    It makes no retry item of its own (nothing was tried), and `log_kind`
    ("routing") is what the log line shows where a router would be named.
    """

    def __init__(self, message: str, errno: int, log_kind: str | None = None) -> None:
        super().__init__(message, errno=errno)
        self.log_kind = log_kind


@record.dataclass(slots=True)
class RetryItem:
    """One retry record to write (after a failure) or to delete (after a success)."""

    key: str
    kind: str
    subject: str  # matched against rule patterns: a host name, ``*@domain`` or an address
    domain: str | None = None  # the other subject rules are tried on (host items: the mail domain)
    delete: bool = False
    error: str | None = None  # retry-rule error name
    errno: int = 0
    more_errno: int = 0
    text: str = ""


@record.dataclass(frozen=True, slots=True)
class HostCheck:
    """What the retry data says about one host address before it is tried.

    `usable` false: skip it (``expired``: and it is past its final cutoff).
    `usable` true with `expired`: a host past its cutoff whose next try has
    come (it does not count against hosts_max_try).
    """

    key: str
    message_key: str
    usable: bool
    expired: bool = False
    last_try: int | None = None
    had_record: bool = False
    had_message_record: bool = False


@record.dataclass(frozen=True, slots=True)
class RetryTimeout:
    """Why a deferred address times out: its oldest record, for the bounce's "tried for"."""

    first_failed: int
    text: str


def host_key(name: str, address: str | None, port: int | None, include_ip: bool = True) -> str:
    """``T:name:ip[:port]`` as Exim builds it: names and addresses that are IP literals in brackets,
    the port only when it is not 25, the address only with retry_include_ip_address."""
    key = f"T:[{name}]" if _is_ip(name) else f"T:{name.lower()}"
    if include_ip and address:
        key += f":[{address}]" if ":" in address else f":{address}"
    if port is not None and port != 25:
        key += f":{port}"
    return key


@lru_cache(maxsize=1024)
def _is_ip(text: str) -> bool:
    # (Remembered: a delivery asks for each host it tries, and ipaddress parses in Python.)
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class RetryState:
    """See the module docstring."""

    def __init__(
        self,
        db: RetryDb | None,
        find_rule: RuleFinder,
        *,
        message_id: str,
        received_time: float,
        now: float,
        ignore_retry: bool = False,
        run_started: float | None = None,
        interval_max: int = 86400,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.find_rule = find_rule
        self.message_id = message_id
        self.now = int(now)
        # A clock set back below the arrival time must not make the age negative.
        self.message_age = max(0, self.now - int(received_time))
        self.received_time = self.now - self.message_age
        self.ignore_retry = ignore_retry
        self.run_started = run_started
        self.interval_max = interval_max
        self.rng = rng
        self._lock = threading.Lock()
        self._items: dict[int, list[RetryItem]] = {}
        self._skipped: set[int] = set()
        # Hosts that failed in this attempt (Exim's "tree of unusables"): key -> past cutoff.
        self._unusable: dict[str, bool] = {}

    # -- before trying --------------------------------------------------------

    def host_check(self, name: str, address: str | None, port: int | None, domain: str,
                   include_ip: bool = True) -> HostCheck:
        """May this host address be tried now?  (Blocking: one database read.)"""
        key = host_key(name, address, port, include_ip)
        message_key = f"{key}:{self.message_id}"
        with self._lock:
            failed_here = self._unusable.get(key)
        if failed_here is not None:
            return HostCheck(key, message_key, usable=False, expired=failed_here)
        records = self.db.read([key, message_key], self.now) if self.db is not None else {}
        host, message = records.get(key), records.get(message_key)
        expired = False
        if host is not None:
            if not self._reached(host):
                if not host.expired and self._ultimate_timeout(name, domain, host):
                    return HostCheck(key, message_key, True, False, host.last_try, True, message is not None)
                return HostCheck(key, message_key, False, host.expired, host.last_try, True, message is not None)
            expired = host.expired
        if message is not None and not self._reached(message):
            usable = self._ultimate_timeout(name, domain, message)
            return HostCheck(key, message_key, usable, False, None, host is not None, True)
        last = host.last_try if host is not None else None
        return HostCheck(key, message_key, True, expired, last, host is not None, message is not None)

    def routing_check(
        self, domain_key: str, address_key: str, sender: str, subject: str, domain: str
    ) -> RetryTimeNotReached | None:
        """Routing in a queue run: defer an address whose domain or address retry time has not come.

        `domain_key` is ``R:domain``, `address_key` ``R:local@domain`` (also
        tried as ``R:local@domain:<sender>``, the smtp transport's form).
        An address record does not hold routing back once the message is
        older than its rule's final cutoff; a domain record past its own
        cutoff never does (the address is routed, and fails if it fails).
        """
        if self.ignore_retry or self.db is None:
            return None
        sender_key = f"{address_key}:<{sender}>"
        records = self.db.read([domain_key, address_key, sender_key], self.now)
        domain_rec = records.get(domain_key)
        address_rec = records.get(address_key) or records.get(sender_key)
        waiting = (domain_rec is not None and not self._reached(domain_rec) and not domain_rec.expired) or (
            address_rec is not None and not self._reached(address_rec)
        )
        if not waiting:
            return None
        if domain_rec is None and address_rec is not None and self._ultimate_timeout(subject, domain, address_rec):
            return None
        return RetryTimeNotReached("retry time not reached", ERRNO_RRETRY, log_kind="routing")

    def local_check(self, key: str, subject: str, domain: str | None) -> RetryTimeNotReached | None:
        """A local delivery in a queue run: not before its retry time (Exim's "Retry time not yet reached")."""
        if self.ignore_retry or self.db is None:
            return None
        rec = self.db.read([key], self.now).get(key)
        if rec is None or self._reached(rec) or rec.expired or self._ultimate_timeout(subject, domain, rec):
            return None
        return RetryTimeNotReached("Retry time not yet reached", ERRNO_LRETRY)

    def _reached(self, rec: RetryRecord) -> bool:
        if not self.ignore_retry:
            return self.now >= rec.next_try
        # Forced: every retry time counts as reached, except for a host this very run saw fail.
        # Records keep whole seconds: a try in the second the run began counts as the run's own.
        return self.run_started is None or rec.last_try < int(self.run_started)

    def _ultimate_timeout(self, subject: str, domain: str | None, rec: RetryRecord) -> bool:
        """Has the message been on the queue longer than the final cutoff of the record's rule?
        (No rule at all: yes.)  Such a message is tried whatever the retry time says."""
        rule = self.find_rule(subject, domain, rec.error)
        if rule is None or not rule.params:
            return True
        return self.message_age > rule.final_cutoff

    # -- while delivering -----------------------------------------------------

    def add(self, owners: Iterable[object], item: RetryItem, *, expired_host: bool = False) -> None:
        """Remember `item` for each owner.  A failed host is also unusable for the rest of the attempt."""
        with self._lock:
            for owner in owners:
                self._items.setdefault(id(owner), []).append(item)
            if item.kind == HOST and not item.delete:
                self._unusable[item.key] = expired_host or self._unusable.get(item.key, False)

    def mark_skipped(self, owners: Iterable[object]) -> None:
        """Hosts were left untried for these (retry time, hosts_max_try): they cannot time out now."""
        with self._lock:
            self._skipped.update(id(owner) for owner in owners)

    def items_of(self, owner: object) -> list[RetryItem]:
        with self._lock:
            return list(self._items.get(id(owner), ()))

    # -- at the end -----------------------------------------------------------

    def update(
        self, succeeded: Iterable[object], failed: Iterable[object], deferred: Iterable[object]
    ) -> dict[int, RetryTimeout]:
        """Write and delete the records of this attempt; the deferred owners that time out.

        Deletes first, then failures, as Exim does, so a record that one
        address proves stale and another renews is renewed.  A message
        record is deleted once nothing of the message is deferred.
        """
        deferred = list(deferred)
        owners = [*succeeded, *failed, *deferred]
        with self._lock:
            per_owner = {id(o): list(self._items.get(id(o), ())) for o in owners}
        keys = [item.key for items in per_owner.values() for item in items]
        if not keys or self.db is None:
            return {}
        message_done = not deferred
        every = [item for items in per_owner.values() for item in items]
        renewing = any(not (item.delete or (item.kind == MESSAGE and message_done)) for item in every)
        if not renewing and not self.db.read(keys, self.now):
            # Only stale records to remove, and there are none: the common case of a delivery
            # that succeeded needs no write transaction.
            return {}

        def change(old: dict[str, RetryRecord]) -> tuple[dict[str, RetryRecord | None], dict[int, RetryTimeout]]:
            writes: dict[str, RetryRecord | None] = {}
            outcome: dict[str, tuple[bool, int, str]] = {}  # key -> (timed out, first failed, text)
            for items in per_owner.values():
                for item in items:
                    if (item.delete or (item.kind == MESSAGE and message_done)) and item.key in old:
                        writes.setdefault(item.key, None)
            for items in per_owner.values():
                for item in items:
                    if item.delete or (item.kind == MESSAGE and message_done) or item.key in outcome:
                        continue
                    outcome[item.key] = self._renew(item, old.get(item.key), writes)
            timeouts: dict[int, RetryTimeout] = {}
            for owner in deferred:
                live = [i for i in per_owner[id(owner)] if not i.delete]
                if not live or id(owner) in self._skipped:
                    continue
                results = [outcome[i.key] for i in live if i.key in outcome]
                if len(results) == len(live) and all(r[0] for r in results):
                    oldest = min(results, key=lambda r: r[1])
                    timeouts[id(owner)] = RetryTimeout(oldest[1], oldest[2])
            return writes, timeouts

        return self.db.update(list(dict.fromkeys(keys)), self.now, change) or {}

    def _renew(self, item: RetryItem, old: RetryRecord | None,
               writes: dict[str, RetryRecord | None]) -> tuple[bool, int, str]:
        """The new record of a failed item into `writes`; (timed out, first failed, text)."""
        rule = self.find_rule(item.subject, item.domain, item.error)
        first = old.first_failed if old is not None else self.now
        if rule is None:
            # No rule applies: no retry time can be computed, so the item has timed out.
            return True, first, item.text
        decision = compute_retry(
            rule, old.times if old is not None else None, self.now, message_age=self.message_age,
            host_item=item.kind in (HOST, MESSAGE), interval_max=self.interval_max, rng=self.rng,
        )
        times = decision.times
        writes[item.key] = RetryRecord(
            first_failed=times.first_failed, last_try=times.last_try, next_try=times.next_try,
            expired=times.expired, errno=item.errno, more_errno=item.more_errno, error=item.error, text=item.text,
        )
        return decision.timed_out, times.first_failed, item.text
