"""Adding up a main log as eximstats does.

`Stats.add` is eximstats' generated parser (the defaults plus whatever the
options switch on), one branch per flag, in its order and with its quirks,
so that the grand totals and every table agree with eximstats on the same
log.  Where eximstats keeps a volume as bytes plus gigabytes to avoid
overflow, Python's integers just hold bytes; the rounding done for display
(spool_tools.stats.numbers) splits them the same way.

Two tallies are ours (eximstats has no such table): the received and
delivered volume per histogram slot and per day, for the "Volume per hour"
and "Volume per day" sections.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from dataclasses import dataclass, field

from mta.spool.ids import BASE62_DIGITS
from spool_tools.stats.options import SENDER_KINDS, StatsOptions
from spool_tools.stats.parse import WANTED_FLAG, LineSplitter, LogLine, ascii_lower, classify_rejection, origin

_SIZE = re.compile(r"\sS=(\d+)( |$)", re.ASCII)
_PROTOCOL = re.compile(r" P=(\S+)", re.ASCII)
_USER = re.compile(r"\sU=(\S+)", re.ASCII)
_FIRST = re.compile(r"^(\S+)", re.ASCII)
_RELAY_ADDRESSES = re.compile(r"^(\S+)(?:\s+\([^)]\))?\s+<([^>]+)>", re.ASCII)
_TRANSPORT = re.compile(r"\sT=(\S+)", re.ASCII)
_HAS_TRANSPORT = re.compile(r"\sT=\S+", re.ASCII)
_ANGLE = re.compile(r"\s<", re.ASCII)
_PARENT = re.compile(r" (<.+?>) ", re.ASCII)
_LOCAL_DOMAIN = re.compile(r"@(.+)>", re.ASCII)
_DT = re.compile(r" DT=(\S+)", re.ASCII)
_QT = re.compile(r" QT=(\S+)", re.ASCII)
_WDHMS = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", re.ASCII)
_SA_IP = re.compile(r"From.*?(\[[^]]+\])", re.ASCII)
_SA_LOCAL = re.compile(r"\((local)\)", re.ASCII)
_SA_SPAM = re.compile(
    r"Action: ((permanently|temporarily) rejected message|flagged as Spam but accepted): score=(\d+\.\d)", re.ASCII
)
_SA_HAM = re.compile(r"Action: scanned but message isn't spam: score=(-?\d+\.\d)", re.ASCII)
_SA_SKIPPED = re.compile(r"(Not running SA because SAEximRunCond expanded to false|check skipped due to message size)")


@dataclass(slots=True)
class _Message:
    """What eximstats remembers of a message between its lines."""

    size: int | None = None
    from_host: str | None = None
    from_address: str | None = None
    arrival_time: str | None = None
    remote_delivered: bool = False
    delayed: bool = False
    had_error: bool = False
    protocol: str | None = None


def _counter() -> defaultdict[str, int]:
    return defaultdict(int)


@dataclass
class Table:
    """A league table's figures by key: messages, addresses (destinations), bytes."""

    messages: defaultdict[str, int] = field(default_factory=_counter)
    addresses: defaultdict[str, int] = field(default_factory=_counter)
    data: defaultdict[str, int] = field(default_factory=_counter)


@dataclass
class Bins:
    """A duration table: counts below each limit, and above the last."""

    limits: list[int]
    counts: list[int] = field(default_factory=list)
    overflow: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.limits)

    def add(self, seconds: int) -> None:
        for i, limit in enumerate(self.limits):
            if seconds < limit:
                self.counts[i] += 1
                return
        self.overflow += 1


class Stats:
    def __init__(self, opts: StatsOptions) -> None:
        self.opts = opts
        self.splitter = LineSplitter()
        self.begin = "9999-99-99 99:99:99"
        self.end = "0000-00-00 00:00:00"
        self.messages: dict[str, _Message] = {}
        self.received_count = 0
        self.received_data = 0
        self.delivered_messages = 0
        self.delivered_addresses = 0
        self.delivered_data = 0
        self.delayed_count = 0
        self.message_errors = 0
        self.received = {kind: Table() for kind in SENDER_KINDS if opts.do_sender.get(kind)}
        self.delivered = {kind: Table() for kind in SENDER_KINDS if opts.do_sender.get(kind)}
        self.received_user = Table()
        self.delivered_user = Table()
        self.delivered_local_domain = Table()
        self.transported = Table()
        self.relayed: defaultdict[str, int] = _counter()
        self.relayed_unshown = 0
        self.errors: defaultdict[str, int] = _counter()
        self.rejected_by_reason: defaultdict[str, int] = _counter()
        self.rejected_by_ip: defaultdict[str, int] = _counter()
        self.temp_rejected_by_reason: defaultdict[str, int] = _counter()
        self.temp_rejected_by_ip: defaultdict[str, int] = _counter()
        self.spam_by_ip: defaultdict[str, int] = _counter()
        self.ham_by_ip: defaultdict[str, int] = _counter()
        slots = opts.hist_number
        self.received_per_slot = [0] * slots
        self.delivered_per_slot = [0] * slots
        self.received_volume_per_slot = [0] * slots
        self.delivered_volume_per_slot = [0] * slots
        self.per_day: dict[str, list[int]] = {}  # date -> [received, received bytes, deliveries, delivered bytes]
        self.queue_all = Bins(opts.queue_times)
        self.queue_remote = Bins(opts.queue_times)
        self.delivery_all = Bins(opts.delivery_times)
        self.delivery_remote = Bins(opts.delivery_times)
        self.rcpt_times: dict[str, Bins] = {"all": Bins(opts.rcpt_times)}
        self.pattern_totals = [0] * len(opts.user_patterns)
        self.pattern_per_slot = [[0] * slots for _ in opts.user_patterns]
        self._date_seconds: dict[str, int] = {}
        self._localtime_offset: int | None = None if opts.utc else _localtime_offset()

    # -- one line -----------------------------------------------------------------------
    def add(self, raw: str) -> None:
        line, whole = self.splitter.split(raw)
        if line is None:
            return
        opts = self.opts
        for index, (_description, pattern) in enumerate(opts.user_patterns):
            if pattern.search(whole):
                self.pattern_totals[index] += 1
                if opts.hist_opt > 0:
                    self.pattern_per_slot[index][self._slot(line)] += 1
        if not WANTED_FLAG.search(line.flag):
            return
        text = line.text
        message = self.messages.get(line.message_id)
        if message is None:
            message = self.messages[line.message_id] = _Message()
        if opts.transport_pattern is not None and (t := _TRANSPORT.search(text)):
            if opts.transport_pattern.search(t.group(1)):
                return
        who = origin(
            text,
            bool(opts.do_sender.get("Domain")),
            bool(opts.do_sender.get("Email")),
            bool(opts.do_sender.get("Edomain")),
            opts.include_original_destination,
        )
        keys = {"Host": who.host, "Domain": who.domain, "Email": who.email, "Edomain": who.edomain}
        if line.tod < self.begin:
            self.begin = line.tod
        elif line.tod > self.end:
            self.end = line.tod
        flag = line.flag
        if flag == "<=":
            self._arrival(line, message, who.host, who.ip, keys)
        elif flag == "=>":
            self._delivery(line, message, who.host, who.ip, keys)
        elif flag == "->":
            self._more_delivery(text, who.host, keys)
        elif flag == "==" and message.size is not None and not message.delayed:
            self.delayed_count += 1
            message.delayed = True
        elif flag == "**":
            if message.size is not None and not message.had_error:
                self.message_errors += 1
                message.had_error = True
            if opts.show_errors:
                self.errors[text] += 1
        elif flag == "Co":
            self._completed(line, message)
        elif flag == "SA":
            self._spamassassin(text)
        if flag == "Re" or (flag == "=>" and not _HAS_TRANSPORT.search(text)):
            temporary, reason, ip = classify_rejection(text, who.ip)
            if temporary:
                self.temp_rejected_by_reason[reason] += 1
                self.temp_rejected_by_ip[ip] += 1
            else:
                self.rejected_by_reason[reason] += 1
                self.rejected_by_ip[ip] += 1

    def _slot(self, line: LogLine) -> int:
        return (line.hour * 60 + line.minute) // self.opts.hist_interval

    def _day(self, line: LogLine) -> list[int]:
        return self.per_day.setdefault(line.tod[:10], [0, 0, 0, 0])

    def _arrival(self, line: LogLine, message: _Message, host: str, ip: str, keys: dict[str, str]) -> None:
        opts, text = self.opts, line.text
        s = _SIZE.search(text)
        size = int(s.group(1)) if s else 0
        message.size = size
        p = _PROTOCOL.search(text)
        message.protocol = p.group(1) if p else None
        if opts.show_relay and host != "local":
            # Kept in case a delivery line later shows the message was relayed.
            message.from_host = host + ip
            f = _FIRST.match(text)
            message.from_address = f.group(1) if f else None
        if (opts.local_league_table or opts.include_remote_users) and (u := _USER.search(text)):
            if self._counts_user(host):
                user = u.group(1)
                self.received_user.messages[user] += 1
                self.received_user.data[user] += size
        for kind, table in self.received.items():
            if kind == "Domain" and keys[kind] in ("", "0"):  # Perl's false strings
                continue
            table.messages[keys[kind]] += 1
            table.data[keys[kind]] += size
        self.received_count += 1
        self.received_data += size
        if opts.queue_times or opts.rcpt_times:
            message.arrival_time = line.tod
        if opts.hist_opt > 0:
            slot = self._slot(line)
            self.received_per_slot[slot] += 1
            self.received_volume_per_slot[slot] += size
        day = self._day(line)
        day[0] += 1
        day[1] += size

    def _counts_user(self, host: str) -> bool:
        """Whether this line's user goes in the local sender/destination tables (-tnl, -t_remote_users)."""
        local, remote = self.opts.local_league_table, self.opts.include_remote_users
        if local and remote:
            return True
        return host == "local" if local else host != "local"

    def _user(self, text: str, count_local_domain: bool, size: int) -> str | None:
        """The local destination of a delivery line, as eximstats names it ("alice", "|cmd <parent>")."""
        # Perl's split(" ") (awk mode) is Python's split(); split(" <") keeps a leading "".
        parts = text.split(" <") if _ANGLE.search(text) else text.split()
        if not parts:
            return None
        user = parts[0]
        if self.opts.include_original_destination or user[:1] in ("/", "|"):
            parent = _PARENT.search(text)
            if parent:
                user = f"{user} {parent.group(1)}"
                if count_local_domain and self.opts.do_local_domain and (d := _LOCAL_DOMAIN.search(parent.group(1))):
                    local_domain = ascii_lower(d.group(1))
                    self.delivered_local_domain.messages[local_domain] += 1
                    self.delivered_local_domain.addresses[local_domain] += 1
                    self.delivered_local_domain.data[local_domain] += size
        return user

    def _delivery(self, line: LogLine, message: _Message, host: str, ip: str, keys: dict[str, str]) -> None:
        opts, text = self.opts, line.text
        size = message.size or 0
        if host != "local":
            message.remote_delivered = True
            if opts.show_relay and message.from_host is not None:
                self._relay(text, message, host, ip)
        if (opts.local_league_table or opts.include_remote_users) and self._counts_user(host):
            user = self._user(text, True, size)
            if user is not None:
                self.delivered_user.messages[user] += 1
                self.delivered_user.addresses[user] += 1
                self.delivered_user.data[user] += size
        for kind, table in self.delivered.items():
            if kind == "Domain" and keys[kind] in ("", "0"):  # Perl's false strings
                continue
            table.messages[keys[kind]] += 1
            table.addresses[keys[kind]] += 1
            table.data[keys[kind]] += size
        self.delivered_messages += 1
        self.delivered_addresses += 1
        self.delivered_data += size
        if opts.show_transport:
            t = _TRANSPORT.search(text)
            transport = t.group(1) if t else ":blackhole:"
            self.transported.messages[transport] += 1
            self.transported.data[transport] += size
        if opts.hist_opt > 0:
            slot = self._slot(line)
            self.delivered_per_slot[slot] += 1
            self.delivered_volume_per_slot[slot] += size
        day = self._day(line)
        day[2] += 1
        day[3] += size
        # eximstats tests "$#delivery_times > 0": a list of one time shows no delivery times.
        if len(opts.delivery_times) > 1 and (dt := _DT.search(text)):
            seconds = wdhms_seconds(dt.group(1))
            self.delivery_all.add(seconds)
            if message.remote_delivered:
                self.delivery_remote.add(seconds)

    def _relay(self, text: str, message: _Message, host: str, ip: str) -> None:
        """A message that came from a remote host and leaves for one, to the address it arrived
        for (not aliased or forwarded on the way), is relayed."""
        m = _RELAY_ADDRESSES.match(text)
        old, new = (m.group(1), m.group(2)) if m else ("", "")
        if ascii_lower(new) != ascii_lower(old):
            return
        if old == "":
            f = _FIRST.match(text)
            old = f.group(1) if f else ""
        key = (
            f"H={ascii_lower(message.from_host or '')} A={ascii_lower(message.from_address or '')} => "
            f"H={ascii_lower(host)}{ip} A={ascii_lower(old)}"
        )
        if self.opts.relay_pattern is None or not self.opts.relay_pattern.search(key):
            self.relayed[key] += 1
        else:
            self.relayed_unshown += 1

    def _more_delivery(self, text: str, host: str, keys: dict[str, str]) -> None:
        opts = self.opts
        if (opts.local_league_table or opts.include_remote_users) and self._counts_user(host):
            user = self._user(text, False, 0)
            if user is not None:
                self.delivered_user.addresses[user] += 1
        for kind, table in self.delivered.items():
            if kind == "Domain" and keys[kind] in ("", "0"):  # Perl's false strings
                continue
            table.addresses[keys[kind]] += 1
        self.delivered_addresses += 1

    def _completed(self, line: LogLine, message: _Message) -> None:
        opts = self.opts
        queued: int | None = None
        if opts.queue_times:
            queued = self.queue_time(line.tod, message.arrival_time, line.message_id)
            self.queue_all.add(queued)
            if message.remote_delivered:
                self.queue_remote.add(queued)
        if opts.rcpt_times and (qt := _QT.search(line.text)):
            if queued is None:
                queued = self.queue_time(line.tod, message.arrival_time, line.message_id)
            receipt = wdhms_seconds(qt.group(1)) - queued
            self.rcpt_times["all"].add(receipt)
            if message.protocol is not None:
                self.rcpt_times.setdefault(message.protocol, Bins(opts.rcpt_times)).add(receipt)
        del self.messages[line.message_id]

    def _spamassassin(self, text: str) -> None:
        m = _SA_IP.search(text) or _SA_LOCAL.search(text)
        ip = m.group(1) if m else ""
        if _SA_SPAM.search(text):
            self.spam_by_ip[ip] += 1
        elif _SA_HAM.search(text) or _SA_SKIPPED.search(text):
            self.ham_by_ip[ip] += 1

    # -- times ----------------------------------------------------------------------------
    def seconds(self, tod: str) -> int:
        """eximstats' seconds(): the date through mktime (local), the time of day added, then
        the zone offset (or eximstats' local offset, unless -utc) taken off."""
        date = tod[:10]
        base = self._date_seconds.get(date)
        if base is None:
            try:
                base = int(time.mktime((int(tod[0:4]), int(tod[5:7]), int(tod[8:10]), 0, 0, 0, 0, 0, -1)))
            except (OverflowError, ValueError):
                base = 0
            self._date_seconds[date] = base
        value = base + int(tod[11:13]) * 3600 + int(tod[14:16]) * 60 + int(tod[17:19])
        if len(tod) > 19:
            zone = tod[20:]
            offset = (int(zone[1:3]) * 60 + int(zone[3:5])) * 60
            value -= offset if zone[0] == "+" else -offset
        elif self._localtime_offset is not None:
            value -= self._localtime_offset
        return value

    def queue_time(self, completed: str, arrival: str | None, message_id: str) -> int:
        if arrival is not None:
            return self.seconds(completed) - self.seconds(arrival)
        # The arrival was in an earlier log: the id says when it came.
        return self.seconds(completed) - id_seconds(message_id)


def _localtime_offset() -> int:
    """eximstats' calculate_localtime_offset (mktime(gmtime(now)) - now)."""
    now = int(time.time())
    return int(time.mktime(time.gmtime(now))) - now


def id_seconds(message_id: str) -> int:
    """The arrival time in a message id's first six base-62 digits (eximstats' tab62: 0 for
    anything else)."""
    value = 0
    for ch in message_id[:6]:
        index = BASE62_DIGITS.find(ch)
        value = value * 62 + (index if index >= 0 else 0)
    return value


def wdhms_seconds(text: str) -> int:
    m = _WDHMS.match(text)
    if m is None:
        return 0
    w, d, h, mi, s = (int(g) if g else 0 for g in m.groups())
    return w * 7 * 86400 + d * 86400 + h * 3600 + mi * 60 + s
