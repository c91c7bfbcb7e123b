"""The report's sections as data, shared by the text, HTML and JSON writers.

Each function turns the tallies of spool_tools.stats.aggregate into the
rows eximstats prints, in its order and with its rounding, so that the
three formats cannot disagree about a figure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from spool_tools.stats.aggregate import Bins, Stats, Table
from spool_tools.stats.numbers import format_time, rounded_average, top_n, volume_text
from spool_tools.stats.options import SENDER_KINDS


def lcfirst(text: str) -> str:
    return text[:1].lower() + text[1:]


def ucfirst(text: str) -> str:
    return text[:1].upper() + text[1:]


@dataclass
class GrandTotals:
    sender_kinds: list[str]  # "Host", "Domain", ... (the Hosts/Domains/... columns)
    received_volume: int
    received_messages: int
    received_keys: list[int]
    delayed: int
    failed: int
    delivered_volume: int
    delivered_messages: int
    delivered_addresses: int
    delivered_keys: list[int]
    others: list[tuple[str, int, int]]  # ("Rejects", messages, distinct ips) ...


def grand_totals(stats: Stats) -> GrandTotals:
    kinds = [k for k in SENDER_KINDS if stats.opts.do_sender.get(k)]
    others = []
    for name, by_ip in (
        ("Rejects", stats.rejected_by_ip),
        ("Temp Rejects", stats.temp_rejected_by_ip),
        ("Ham", stats.ham_by_ip),
        ("Spam", stats.spam_by_ip),
    ):
        total = sum(by_ip.values())
        if total > 0:
            others.append((name, total, len(by_ip)))
    return GrandTotals(
        sender_kinds=kinds,
        received_volume=stats.received_data,
        received_messages=stats.received_count,
        received_keys=[len(stats.received[k].data) for k in kinds],
        delayed=stats.delayed_count,
        failed=stats.message_errors,
        delivered_volume=stats.delivered_data,
        delivered_messages=stats.delivered_messages,
        delivered_addresses=stats.delivered_addresses,
        delivered_keys=[len(stats.delivered[k].data) for k in kinds],
        others=others,
    )


@dataclass
class DurationRow:
    label: str  # "Under", "     " or "Over "
    limit: int  # seconds
    count: int
    percent: float
    cumulative: float

    @property
    def time(self) -> str:
        return format_time(self.limit)


def duration_rows(bins: Bins) -> list[DurationRow]:
    """eximstats' print_duration_table rows: only the buckets that have messages."""
    total = bins.overflow + sum(bins.counts)
    rows: list[DurationRow] = []
    cumulative = 0.0
    for limit, count in zip(bins.limits, bins.counts, strict=True):
        if count > 0:
            percent = count * 100 / total
            cumulative += percent
            rows.append(DurationRow("     " if rows else "Under", limit, count, percent, cumulative))
    if bins.overflow > 0 and bins.limits:
        percent = bins.overflow * 100 / total
        cumulative += percent
        rows.append(DurationRow("Over ", bins.limits[-1], bins.overflow, percent, cumulative))
    return rows


def duration_tables(stats: Stats) -> list[tuple[str, str, Bins]]:
    """(title, message type, bins) of every duration table, in eximstats' order."""
    opts = stats.opts
    tables: list[tuple[str, str, Bins]] = []
    if opts.queue_times:
        tables.append(("Time spent on the queue", "all messages", stats.queue_all))
        tables.append(("Time spent on the queue", "messages with at least one remote delivery", stats.queue_remote))
    if opts.delivery_times:
        tables.append(("Delivery times", "all messages", stats.delivery_all))
        tables.append(("Delivery times", "messages with at least one remote delivery", stats.delivery_remote))
    if opts.rcpt_times:
        for protocol in ["all", *sorted(p for p in stats.rcpt_times if p != "all")]:
            tables.append(("Receipt times", f"{protocol} messages", stats.rcpt_times[protocol]))
    return tables


@dataclass
class Histogram:
    text: str  # "Messages received", "Deliveries", or a -pattern description
    title: str  # "Messages received per hour (each dot is 1 message)"
    scale: int
    labels: list[str]
    counts: list[int]


def histogram(stats: Stats, text: str, unit: str, counts: list[int]) -> Histogram:
    opts = stats.opts
    maxd = max(counts, default=0)
    scale = (maxd + 25) // 50 or 1
    if scale != 1:
        unit = unit[:-1] + "ies" if unit.endswith("y") else unit + "s"
    interval = opts.hist_interval
    per = "hour" if interval == 60 else "minute" if interval == 1 else f"{interval} minutes"
    return Histogram(text, f"{text} per {per} (each dot is {scale} {unit})", scale, slot_labels(stats), counts)


def slot_labels(stats: Stats) -> list[str]:
    """"00-01" for hours; "00:00", "  :30" for shorter slots (eximstats' labels)."""
    opts = stats.opts
    labels = []
    hour = minutes = 0
    for _ in range(opts.hist_number):
        if opts.hist_opt == 1:
            labels.append(f"{hour:02d}-{hour + 1:02d}")
            hour += 1
        else:
            labels.append(f"{hour:02d}:{minutes:02d}" if minutes == 0 else f"  :{minutes:02d}")
            minutes += opts.hist_interval
            if minutes >= 60:
                minutes = 0
                hour += 1
    return labels


@dataclass
class LeagueRow:
    key: str
    messages: int
    addresses: int | None
    data: int | None
    volume: str = ""  # rounded, as printed
    average: str = ""


@dataclass
class League:
    text: str  # "sending host", "local destination", ...
    headers: list[str]
    by_count: list[LeagueRow]
    by_volume: list[LeagueRow] | None  # None: a table without volumes (rejections)
    title_count: str = ""
    title_volume: str = ""
    name: str = field(default="")

    @property
    def column(self) -> str:
        return ucfirst(self.text)


def _league(stats: Stats, text: str, table: Table | Mapping[str, int], with_addresses: bool,
            with_data: bool) -> League:
    opts = stats.opts
    n = opts.topcount
    counts = table.messages if isinstance(table, Table) else table
    addresses = table.addresses if isinstance(table, Table) and with_addresses else None
    data = table.data if isinstance(table, Table) and with_data else None
    headers = ["Messages"]
    if addresses:
        headers.append("Addresses")
    if data is not None:
        headers += ["Bytes", "Average"]

    def row(key: str) -> LeagueRow:
        r = LeagueRow(key, counts[key], addresses.get(key, 0) if addresses is not None else None,
                      data.get(key, 0) if data is not None else None)
        if data is not None:
            r.volume, r.average = rounded_average(data.get(key, 0), counts[key], opts.volume_rounding)
        return r

    name = text if n == 1 else f"{n} {text}s"
    by_count = [row(k) for k in top_n(n, counts, _gigs(data), data)]
    by_volume = None
    if data is not None:
        by_volume = [row(k) for k in top_n(n, _gigs(data), data, counts)]
    return League(text, headers, by_count, by_volume, f"Top {name} by message count", f"Top {name} by volume", name)


def _gigs(data: Mapping[str, int] | None) -> dict[str, int]:
    """The gigabytes part of each volume: eximstats sorts on it before the bytes."""
    if data is None:
        return {}
    from spool_tools.stats.numbers import split_volume

    return {k: split_volume(v)[1] for k, v in data.items()}


def leagues(stats: Stats) -> list[League]:
    """Every top-N table, in eximstats' order."""
    opts = stats.opts
    if opts.topcount <= 0:
        return []
    users = opts.local_league_table or opts.include_remote_users
    kinds = [k for k in SENDER_KINDS if opts.do_sender.get(k)]
    out: list[League] = []
    if stats.rejected_by_reason:
        out.append(_league(stats, "mail rejection reason", stats.rejected_by_reason, False, False))
    if stats.temp_rejected_by_reason:
        out.append(_league(stats, "mail temporary rejection reason", stats.temp_rejected_by_reason, False, False))
    for kind in kinds:
        out.append(_league(stats, f"sending {lcfirst(kind)}", stats.received[kind], False, True))
    if users and stats.received_user.messages:
        out.append(_league(stats, "local sender", stats.received_user, False, True))
    for kind in kinds:
        out.append(_league(stats, f"{lcfirst(kind)} destination", stats.delivered[kind], True, True))
    if users and stats.delivered_user.messages:
        out.append(_league(stats, "local destination", stats.delivered_user, True, True))
    if users and stats.delivered_local_domain.messages:
        out.append(_league(stats, "local domain destination", stats.delivered_local_domain, True, True))
    if stats.rejected_by_ip:
        out.append(_league(stats, "rejected ip", stats.rejected_by_ip, False, False))
    if stats.temp_rejected_by_ip:
        out.append(_league(stats, "temporarily rejected ip", stats.temp_rejected_by_ip, False, False))
    if stats.spam_by_ip:
        out.append(_league(stats, "non-rejected spamming ip", stats.spam_by_ip, False, False))
    return out


def relay_rows(stats: Stats) -> list[tuple[int, str, str]]:
    """(count, from, to) of each relayed route, sorted as eximstats sorts its keys."""
    rows = []
    for key in sorted(stats.relayed):
        text = key.replace("H=", "").replace("A=", "")
        one, _, two = text.partition("=> ")
        rows.append((stats.relayed[key], one, two))
    return rows


def error_rows(stats: Stats) -> list[tuple[int, str]]:
    """(count, text) of each distinct error, text with runs of white space made one space."""
    import re

    rows = []
    for key in sorted(stats.errors):
        text = key[:-1] if key.endswith("\n") else key
        rows.append((stats.errors[key], re.sub(r"\s\s+", " ", text, flags=re.ASCII)))
    return rows


def transport_rows(stats: Stats) -> list[tuple[str, int, int]]:
    """(transport, bytes, messages), by transport name."""
    t = stats.transported
    return [(name, t.data[name], t.messages[name]) for name in sorted(t.data)]


def per_day_rows(stats: Stats) -> list[tuple[str, int, int, int, int]]:
    """(date, received, received bytes, deliveries, delivered bytes) for each day of the logs."""
    return [(day, *figures) for day, figures in sorted(stats.per_day.items())]  # type: ignore[misc]


def volume(stats: Stats, total: int) -> str:
    return volume_text(total, stats.opts.volume_rounding)
