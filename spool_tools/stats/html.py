"""The HTML report: one self-contained page, eximstats' tables with charts drawn in SVG.

The page needs nothing else: no script, no image file, no style sheet or
font from elsewhere (the CSS is in the page, the charts are inline SVG from
spool_tools.stats.svg).  It has the sections of the text report, in the
same order, each table with a chart beside or under it.

Security: everything taken from a log (addresses, host names, error text,
HELO names) is escaped with html.escape before it is placed in the page,
in tables and in chart labels alike: a sender written
``"<script>alert(1)</script>"@example.com`` shows as that text.
"""

from __future__ import annotations

from html import escape

from spool_tools.stats import report, svg
from spool_tools.stats.aggregate import Bins, Stats
from spool_tools.stats.numbers import format_time, volume_text

CHART_ROWS = 15  # a top-N chart shows the first rows of its table

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; background: #fff; }
h1 { font-size: 1.5em; }
h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #bbb; padding: 2px 8px; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.k { font-family: monospace; }
svg.chart { display: block; margin: 0.5em 0 1em 0; }
nav li { margin: 0.1em 0; }
"""


def esc(text: object) -> str:
    return escape(str(text), quote=True)


def _anchor(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower())


class _Page:
    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.toc: list[str] = []
        self.body: list[str] = []

    def section(self, title: str, *content: str) -> None:
        anchor = _anchor(title)
        self.toc.append(f'<li><a href="#{esc(anchor)}">{esc(title)}</a></li>')
        self.body.append(f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{"".join(content)}</section>\n')

    def volume(self, total: int) -> str:
        return volume_text(total, self.stats.opts.volume_rounding).strip()


def table(headers: list[str], rows: list[list[object]], numeric: set[int] | None = None) -> str:
    """A table; columns in `numeric` are right-aligned.  Every cell is escaped."""
    numeric = numeric or set()
    head = "".join(f'<th{" class=n" if i in numeric else ""}>{esc(h)}</th>' for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f'<td class="{"n" if i in numeric else "k"}">{esc(c)}</td>' for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(stats: Stats) -> str:
    opts = stats.opts
    page = _Page(stats)
    _grand_totals(page)
    if opts.user_patterns:
        rows = [[d, t] for (d, _p), t in zip(opts.user_patterns, stats.pattern_totals, strict=True)]
        page.section("User specified patterns", table(["Pattern", "Total"], rows, {1}))
    if opts.show_transport:
        _transports(page)
    if opts.hist_opt > 0:
        _per_hour(page)
    _per_day(page)
    for title, kind, bins in report.duration_tables(stats):
        _duration(page, f"{title}: {kind}", bins)
    if opts.show_relay:
        _relayed(page)
    for league in report.leagues(stats):
        _league(page, league)
    if opts.show_errors:
        _errors(page)
    title = f"Exim statistics from {stats.begin} to {stats.end}"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{esc(title)}</h1>\n<p>Made by mta-stats.</p>\n<nav><ul>{''.join(page.toc)}</ul></nav>\n"
        + "".join(page.body)
        + "</body>\n</html>\n"
    )


def _grand_totals(page: _Page) -> None:
    g = report.grand_totals(page.stats)
    kinds = [f"{k}s" for k in g.sender_kinds]
    headers = ["", "Volume", "Messages", "Addresses", *kinds, "Delayed", "%", "Failed", "%"]
    received = g.received_messages
    rows: list[list[object]] = [
        ["Received", page.volume(g.received_volume), received, "", *g.received_keys, g.delayed,
         f"{g.delayed * 100 / received if received else 0:.1f}%", g.failed,
         f"{g.failed * 100 / received if received else 0:.1f}%"],
        ["Delivered", page.volume(g.delivered_volume), g.delivered_messages, g.delivered_addresses,
         *g.delivered_keys, "", "", "", ""],
    ]
    for name, messages, hosts in g.others:
        rows.append([name, "", messages, "", *[hosts if k == "Host" else "" for k in g.sender_kinds],
                     "", "", "", ""])
    page.section("Grand total summary", table(headers, rows, set(range(1, len(headers)))))


def _transports(page: _Page) -> None:
    rows = report.transport_rows(page.stats)
    chart = svg.bars("Messages by transport", [(name, messages) for name, _data, messages in rows], svg.TRANSPORT)
    page.section(
        "Deliveries by transport",
        table(["Transport", "Volume", "Messages"], [[n, page.volume(d), m] for n, d, m in rows], {1, 2}),
        chart,
    )


def _per_hour(page: _Page) -> None:
    stats = page.stats
    labels = report.slot_labels(stats)
    every = max(1, len(labels) // 8)  # a label every 3 hours: 24 of them would overlap
    for text, unit, counts, colour in (
        ("Messages received", "message", stats.received_per_slot, svg.RECEIVED),
        ("Deliveries", "delivery", stats.delivered_per_slot, svg.DELIVERED),
    ):
        h = report.histogram(stats, text, unit, counts)
        chart = svg.columns(h.title.split(" (")[0], labels, [(text, counts, colour)], label_every=every)
        page.section(h.title.split(" (")[0], chart)
    chart = svg.columns(
        "Volume per hour" if stats.opts.hist_interval == 60 else f"Volume per {stats.opts.hist_interval} minutes",
        labels,
        [("received", stats.received_volume_per_slot, svg.RECEIVED),
         ("delivered", stats.delivered_volume_per_slot, svg.DELIVERED)],
        value_text=page.volume,
        label_every=every,
    )
    page.section("Volume per hour", chart)


def _per_day(page: _Page) -> None:
    rows = report.per_day_rows(page.stats)
    chart = svg.columns(
        "Volume per day",
        [day for day, *_rest in rows],
        [("received", [r[2] for r in rows], svg.RECEIVED), ("delivered", [r[4] for r in rows], svg.DELIVERED)],
        value_text=page.volume,
        label_every=max(1, len(rows) // 12),
    )
    cells = [[day, received, page.volume(rv), delivered, page.volume(dv)] for day, received, rv, delivered, dv in rows]
    page.section(
        "Volume per day",
        chart,
        table(["Date", "Received", "Volume", "Deliveries", "Volume"], cells, {1, 2, 3, 4}),
    )


def _duration(page: _Page, title: str, bins: Bins) -> None:
    rows = report.duration_rows(bins)
    cells = [[f"{r.label.strip()} {r.time}", r.count, f"{r.percent:.1f}%", f"{r.cumulative:.1f}%"] for r in rows]
    chart = svg.bars(title, [(f"{r.label.strip()} {format_time(r.limit)}", r.count) for r in rows], svg.DURATION)
    page.section(title, table(["Time", "Messages", "Percentage", "Cumulative"], cells, {1, 2, 3}), chart)


def _relayed(page: _Page) -> None:
    rows = report.relay_rows(page.stats)
    unshown = page.stats.relayed_unshown
    if not rows and unshown <= 0:
        page.section("Relayed messages", "<p>No relayed messages.</p>")
        return
    shown = sum(count for count, _one, _two in rows)
    page.section(
        "Relayed messages",
        table(["Count", "From", "To"], [[c, one, two] for c, one, two in rows], {0}),
        f"<p>Total: {shown} (plus {unshown} unshown)</p>",
    )


def _league(page: _Page, league: report.League) -> None:
    def cells(rows: list[report.LeagueRow]) -> list[list[object]]:
        out: list[list[object]] = []
        for r in rows:
            row: list[object] = [r.messages]
            if r.addresses is not None and "Addresses" in league.headers:
                row.append(r.addresses)
            if r.data is not None:
                row += [r.volume.strip(), r.average.strip()]
            out.append([*row, r.key])
        return out

    headers = [*league.headers, league.column]
    numeric = set(range(len(league.headers)))
    chart = svg.bars("By message count", [(r.key, r.messages) for r in league.by_count[:CHART_ROWS]], svg.TOP)
    page.section(league.title_count, table(headers, cells(league.by_count), numeric), chart)
    if league.by_volume is not None:
        chart = svg.bars(
            "By volume",
            [(r.key, r.data or 0) for r in league.by_volume[:CHART_ROWS]],
            svg.TOP,
            value_text=page.volume,
        )
        page.section(league.title_volume, table(headers, cells(league.by_volume), numeric), chart)


def _errors(page: _Page) -> None:
    rows = report.error_rows(page.stats)
    if not rows:
        return
    total = sum(count for count, _text in rows)
    page.section(
        "List of errors",
        table(["Count", "Error"], [[c, t] for c, t in rows], {0}),
        f"<p>Errors encountered: {total}</p>",
    )
