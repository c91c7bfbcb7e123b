"""Charts for the HTML report, drawn as inline SVG by hand (no plotting library).

Two shapes: columns over time (a histogram per hour or per day, one or two
series side by side) and horizontal bars (a top-N table, a duration table).
Every piece of text placed in a chart (a host name, an address from the
log) goes through `esc`, so a label can never become markup.  Each kind of
chart has its own fill colour (the constants below), which the screenshot
test looks for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

RECEIVED = "#1f77b4"  # arrivals (blue)
DELIVERED = "#ff7f0e"  # deliveries (orange)
DURATION = "#2ca02c"  # time on the queue (green)
TOP = "#9467bd"  # top-N tables (purple)
TRANSPORT = "#d62728"  # deliveries by transport (red)
AXIS = "#555555"
FONT = "font-family=\"sans-serif\" font-size=\"11\""


def esc(text: object) -> str:
    return escape(str(text), quote=True)


def _nice_max(value: float) -> float:
    """A round number at or above `value` for the top of an axis."""
    if value <= 0:
        return 1
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def columns(
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[int], str]],
    value_text: Callable[[int], str] = str,
    width: int = 760,
    height: int = 240,
    label_every: int = 1,
) -> str:
    """Columns for each label, one per series (name, values, colour), side by side."""
    left, right, top, bottom = 60, 10, 28, 42
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((v for _name, values, _colour in series for v in values), default=0)
    axis_max = _nice_max(peak)
    slot = plot_w / max(len(labels), 1)
    bar = min(max(slot * 0.8 / max(len(series), 1), 1.0), 40.0)
    parts = [_open(width, height, title), _title(title, left)]
    base_y = top + plot_h
    parts.append(f'<line x1="{left}" y1="{base_y}" x2="{left + plot_w}" y2="{base_y}" stroke="{AXIS}"/>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{base_y}" stroke="{AXIS}"/>')
    parts.append(f'<text x="{left - 4}" y="{top + 4}" text-anchor="end" {FONT}>{esc(value_text(int(axis_max)))}</text>')
    parts.append(f'<text x="{left - 4}" y="{base_y}" text-anchor="end" {FONT}>0</text>')
    for i, label in enumerate(labels):
        x0 = left + i * slot + (slot - bar * len(series)) / 2
        for j, (name, values, colour) in enumerate(series):
            value = values[i] if i < len(values) else 0
            if value <= 0:
                continue
            h = plot_h * value / axis_max
            parts.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{base_y - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{esc(label)} {esc(name)}: {esc(value_text(value))}</title></rect>'
            )
        if i % label_every == 0:
            cx = left + i * slot + slot / 2
            parts.append(
                f'<text x="{cx:.1f}" y="{base_y + 14}" text-anchor="middle" {FONT}>{esc(label.strip())}</text>'
            )
    if len(series) > 1:
        x = left
        for name, _values, colour in series:
            parts.append(f'<rect x="{x}" y="{height - 14}" width="10" height="10" fill="{colour}"/>')
            parts.append(f'<text x="{x + 14}" y="{height - 5}" {FONT}>{esc(name)}</text>')
            x += 14 + 8 * len(name) + 16
    parts.append("</svg>")
    return "".join(parts)


def bars(
    title: str,
    rows: Sequence[tuple[str, int]],
    colour: str,
    value_text: Callable[[int], str] = str,
    width: int = 760,
    label_chars: int = 48,
) -> str:
    """One horizontal bar per (label, value) row, labels on the left (shortened to fit)."""
    left, right, top, row_h = 330, 90, 28, 18
    height = top + row_h * max(len(rows), 1) + 8
    plot_w = width - left - right
    axis_max = _nice_max(max((v for _label, v in rows), default=0))
    parts = [_open(width, height, title), _title(title, 4)]
    for i, (label, value) in enumerate(rows):
        y = top + i * row_h
        shown = label if len(label) <= label_chars else label[: label_chars - 1] + "\u2026"
        parts.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end" {FONT}>{esc(shown)}'
                     f"<title>{esc(label)}</title></text>")
        w = plot_w * value / axis_max if value > 0 else 0
        if w > 0:
            parts.append(f'<rect x="{left}" y="{y + 2}" width="{w:.1f}" height="{row_h - 5}" fill="{colour}"/>')
        parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 12}" {FONT}>{esc(value_text(value))}</text>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - 8}" stroke="{AXIS}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _open(width: int, height: int, title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">'
    )


def _title(title: str, x: int) -> str:
    return f'<text x="{x}" y="16" font-family="sans-serif" font-size="13" font-weight="bold">{esc(title)}</text>'
