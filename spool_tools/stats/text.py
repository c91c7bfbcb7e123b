"""The text report, column for column as eximstats prints it.

Every section eximstats prints is here in its order, so that the output
can be compared with eximstats' (and read by scripts written for it).  Two
sections are ours, after the hourly histograms: "Volume per hour" and
"Volume per day" (eximstats counts messages per hour but shows no volume
over time, and folds days together); their titles contain neither
"Messages received per" nor "Deliveries per", so that eximstats -merge,
which looks for those, passes over them.
"""

from __future__ import annotations

from spool_tools.stats import report
from spool_tools.stats.aggregate import Bins, Stats


def underlined(title: str) -> str:
    return f"{title}\n{'-' * len(title)}\n"


def render(stats: Stats) -> str:
    opts = stats.opts
    out: list[str] = [f"\nExim statistics from {stats.begin} to {stats.end}\n"]
    out.append(grand_totals(stats))
    if opts.user_patterns:
        out.append(user_patterns(stats))
    if opts.show_transport:
        out.append(transports(stats))
    if opts.hist_opt > 0:
        out.append(histogram(report.histogram(stats, "Messages received", "message", stats.received_per_slot)))
        out.append(histogram(report.histogram(stats, "Deliveries", "delivery", stats.delivered_per_slot)))
        out.append(volume_per_hour(stats))
    out.append(volume_per_day(stats))
    for title, kind, bins in report.duration_tables(stats):
        out.append(duration_table(title, kind, bins))
    if opts.show_relay:
        out.append(relayed(stats))
    for league in report.leagues(stats):
        out.append(league_table(league))
    if opts.show_errors:
        out.append(errors(stats))
    return "".join(out)


def grand_totals(stats: Stats) -> str:
    g = report.grand_totals(stats)
    header = "".join(" " * (8 - len(k)) + k + "s" for k in g.sender_kinds)
    sender_format = "".join(f"   {{{i}:>6}}" for i in range(len(g.sender_kinds)))

    def row(name: str, volume: str, messages: int | str, addresses: str, keys: list[str]) -> str:
        return f"  {name:<16} {volume:>9}     {messages:>6}    {addresses:>6} " + sender_format.format(*keys)

    out = ["\nGrand total summary\n-------------------\n"]
    out.append(" " * 46 + " " * len(header) + "           At least one address\n")
    out.append(f"  TOTAL               Volume   Messages Addresses {header}      Delayed       Failed\n")
    received = g.received_messages
    delayed_pct = g.delayed * 100 / received if received else 0.0
    failed_pct = g.failed * 100 / received if received else 0.0
    out.append(
        row("Received", report.volume(stats, g.received_volume), received, "", [str(k) for k in g.received_keys])
        + f"  {g.delayed:6d} {delayed_pct:4.1f}% {g.failed:6d} {failed_pct:4.1f}%\n"
    )
    out.append(
        row("Delivered", report.volume(stats, g.delivered_volume), g.delivered_messages, str(g.delivered_addresses),
            [str(k) for k in g.delivered_keys]) + "\n"
    )
    for name, messages, hosts in g.others:
        keys = [str(hosts) if k == "Host" else "" for k in g.sender_kinds]
        out.append(row(name, "", messages, "", keys) + "\n")
    out.append("\n")
    return "".join(out)


def user_patterns(stats: Stats) -> str:
    out = ["User Specified Patterns\n-----------------------\n                       Total\n"]
    for (description, _pattern), total in zip(stats.opts.user_patterns, stats.pattern_totals, strict=True):
        out.append(f"  {description:<18}  {total:6d}\n")
    out.append("\n")
    if stats.opts.hist_opt > 0:
        for (description, _pattern), counts in zip(stats.opts.user_patterns, stats.pattern_per_slot, strict=True):
            out.append(histogram(report.histogram(stats, description, "occurence", counts)))
    return "".join(out)


def transports(stats: Stats) -> str:
    out = ["Deliveries by transport\n-----------------------\n                      Volume    Messages\n"]
    for name, data, messages in report.transport_rows(stats):
        out.append(f"  {name:<18}  {report.volume(stats, data):>6}      {messages:6d}\n")
    out.append("\n")
    return "".join(out)


def histogram(h: report.Histogram) -> str:
    out = [underlined(h.title), "\n"]
    for label, count in zip(h.labels, h.counts, strict=True):
        out.append(f"{label} {count:6d} {'.' * (count // h.scale)}\n")
    out.append("\n")
    return "".join(out)


def volume_per_hour(stats: Stats) -> str:
    title = "Volume per hour" if stats.opts.hist_interval == 60 else f"Volume per {stats.opts.hist_interval} minutes"
    out = [underlined(title), "\n", "        Received     Volume  Deliveries     Volume\n"]
    for label, received, rvol, delivered, dvol in zip(
        report.slot_labels(stats), stats.received_per_slot, stats.received_volume_per_slot,
        stats.delivered_per_slot, stats.delivered_volume_per_slot, strict=True,
    ):
        out.append(f"{label} {received:10d} {report.volume(stats, rvol):>10} {delivered:11d} "
                   f"{report.volume(stats, dvol):>10}\n")
    out.append("\n")
    return "".join(out)


def volume_per_day(stats: Stats) -> str:
    out = [underlined("Volume per day"), "\n", "             Received     Volume  Deliveries     Volume\n"]
    for day, received, rvol, delivered, dvol in report.per_day_rows(stats):
        out.append(f"{day} {received:10d} {report.volume(stats, rvol):>10} {delivered:11d} "
                   f"{report.volume(stats, dvol):>10}\n")
    out.append("\n")
    return "".join(out)


def duration_table(title: str, kind: str, bins: Bins) -> str:
    heading = f"{title}: {kind}"
    out = [underlined(heading), "\n"]
    for r in report.duration_rows(bins):
        out.append(f"{r.label:>5} {r.time:>4}   {r.count:6d} {r.percent:5.1f}%  {r.cumulative:5.1f}%\n")
    out.append("\n")
    return "".join(out)


def relayed(stats: Stats) -> str:
    rows = report.relay_rows(stats)
    if not rows and stats.relayed_unshown <= 0:
        return "No relayed messages\n-------------------\n\n"
    out = [underlined("Relayed messages"), "\n"]
    shown = 0
    for count, one, two in rows:
        out.append(f"{count:7d} {one}\n      => {two}\n")
        shown += count
    spacing = "\n" if rows else ""
    out.append(f"{spacing}Total: {shown} (plus {stats.relayed_unshown} unshown)\n\n")
    return "".join(out)


def league_table(league: report.League) -> str:
    fmt_headers = "".join(f"{h:>10} " for h in league.headers)
    col_headers = f"{fmt_headers}  {league.column}\n"
    out = [underlined(league.title_count), col_headers]
    out += [_league_row(r) for r in league.by_count]
    out.append("\n")
    if league.by_volume is not None:
        out += [underlined(league.title_volume), col_headers]
        out += [_league_row(r) for r in league.by_volume]
        out.append("\n")
    return "".join(out)


def _league_row(r: report.LeagueRow) -> str:
    cells = [str(r.messages)]
    if r.addresses is not None:
        cells.append(str(r.addresses))
    if r.data is not None:
        cells += [r.volume, r.average]
    return "".join(f"{c:>10} " for c in cells) + f"  {r.key}\n"


def errors(stats: Stats) -> str:
    rows = report.error_rows(stats)
    if not rows:
        return ""
    import re

    out = [underlined("List of errors"), "\n"]
    total = 0
    for count, text in rows:
        total += count
        out.append(f"{count:5d} ")
        remaining = text
        # eximstats wraps long errors after 50 characters, at the next space.
        while len(remaining) > 65:
            m = re.match(r"(.{50}\S*)\s+(.+)", remaining, re.ASCII)
            if not m:
                break
            out.append(f"{m.group(1)}\n\t    ")
            remaining = m.group(2)
        out.append(f"{remaining}\n\n")
    title = f"Errors encountered: {total}"
    out.append(f"{title}\n{'-' * len(title)}\n")
    return "".join(out)
