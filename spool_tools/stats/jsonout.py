"""The figures as one JSON object, for monitoring scripts.

The same sections as the text report, with volumes in bytes (not rounded)
and times in seconds; the rounded volumes and averages of the top-N tables
are given too, as eximstats prints them.  Keys are stable: a script may rely
on them.  Output is ASCII (non-ASCII text from a log is \\u-escaped).
"""

from __future__ import annotations

import json
from typing import Any

from spool_tools.stats import report
from spool_tools.stats.aggregate import Stats

FORMAT_VERSION = 1


def document(stats: Stats) -> dict[str, Any]:
    opts = stats.opts
    g = report.grand_totals(stats)
    kinds = [k.lower() + "s" for k in g.sender_kinds]
    # eximstats' begin/end start out as 9999-... and 0000-... and end moves only on a second
    # line: give null for no lines, and the first time as the last when there was one line.
    first = None if stats.begin.startswith("9999") else stats.begin
    last = stats.end if not stats.end.startswith("0000") else first
    doc: dict[str, Any] = {
        "generator": "mta-stats",
        "format": FORMAT_VERSION,
        "from": first,
        "to": last,
        "grand_total": {
            "received": {
                "volume": g.received_volume,
                "messages": g.received_messages,
                **dict(zip(kinds, g.received_keys, strict=True)),
                "delayed": g.delayed,
                "failed": g.failed,
            },
            "delivered": {
                "volume": g.delivered_volume,
                "messages": g.delivered_messages,
                "addresses": g.delivered_addresses,
                **dict(zip(kinds, g.delivered_keys, strict=True)),
            },
            **{name.lower().replace(" ", "_"): {"messages": m, "hosts": h} for name, m, h in g.others},
        },
        "per_day": [
            {"date": day, "received": r, "received_volume": rv, "deliveries": d, "delivered_volume": dv}
            for day, r, rv, d, dv in report.per_day_rows(stats)
        ],
        "durations": [
            {
                "title": title,
                "messages": kind,
                "limits": bins.limits,
                "counts": bins.counts,
                "over": bins.overflow,
            }
            for title, kind, bins in report.duration_tables(stats)
        ],
        "top": [_league(league) for league in report.leagues(stats)],
    }
    if opts.show_transport:
        doc["transports"] = [
            {"transport": name, "volume": data, "messages": messages}
            for name, data, messages in report.transport_rows(stats)
        ]
    if opts.hist_opt > 0:
        doc["per_interval"] = {
            "minutes": opts.hist_interval,
            "slots": [
                {"start": label.strip(), "received": r, "received_volume": rv, "deliveries": d, "delivered_volume": dv}
                for label, r, rv, d, dv in zip(
                    _starts(stats), stats.received_per_slot, stats.received_volume_per_slot,
                    stats.delivered_per_slot, stats.delivered_volume_per_slot, strict=True,
                )
            ],
        }
    if opts.user_patterns:
        doc["patterns"] = [
            {"description": d, "total": t} for (d, _p), t in zip(opts.user_patterns, stats.pattern_totals, strict=True)
        ]
    if opts.show_relay:
        doc["relayed"] = [{"count": c, "from": one, "to": two} for c, one, two in report.relay_rows(stats)]
        doc["relayed_unshown"] = stats.relayed_unshown
    if opts.show_errors:
        doc["errors"] = [{"count": c, "text": t} for c, t in report.error_rows(stats)]
    return doc


def _starts(stats: Stats) -> list[str]:
    """Each slot's start as HH:MM (the text report's "  :30" labels are for the eye)."""
    step = stats.opts.hist_interval
    return [f"{m // 60:02d}:{m % 60:02d}" for m in range(0, 24 * 60, step)]


def _league(league: report.League) -> dict[str, Any]:
    def rows(items: list[report.LeagueRow]) -> list[dict[str, Any]]:
        out = []
        for r in items:
            row: dict[str, Any] = {"key": r.key, "messages": r.messages}
            if r.addresses is not None:
                row["addresses"] = r.addresses
            if r.data is not None:
                row["volume"] = r.data
                row["volume_rounded"] = r.volume.strip()
                row["average_rounded"] = r.average.strip()
            out.append(row)
        return out

    entry: dict[str, Any] = {"table": league.text, "by_count": rows(league.by_count)}
    if league.by_volume is not None:
        entry["by_volume"] = rows(league.by_volume)
    return entry


def render(stats: Stats) -> str:
    return json.dumps(document(stats), indent=2, ensure_ascii=True) + "\n"
