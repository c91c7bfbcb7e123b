"""mta-stats -html: nothing from a log becomes markup, and the charts are drawn (headless Chromium)."""

from __future__ import annotations

import os
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from spool_tools.stats import svg
from tests.spool_tools.conftest import run, tool
from tests.support import cdp, png
from tests.support.adminlogs import SCRIPT_SENDER, World

MIXED = Path(__file__).resolve().parents[1] / "data" / "admin-logs" / "mixed-mainlog"
# Every element the report may contain: anything else came from a log line.
ALLOWED = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "nav", "ul", "li", "a", "section",
           "table", "thead", "tbody", "tr", "th", "td", "svg", "line", "rect", "text"}


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.update(name for name, _value in attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> _Elements:
    parser = _Elements()
    parser.feed(page)
    parser.close()
    return parser


@pytest.mark.parametrize("options", [["-byemail", "-byedomain", "-bydomain"], ["-include_original_destination"]])
def test_log_text_is_escaped(options: list[str]) -> None:
    """The hand-written log has a sender <script>, a HELO <b>bold</b>, a recipient <img onerror=...>
    and an error text with <script>: in tables, chart labels and the error list alike, each
    shows as text."""
    page = run("stats", "-html", *options, str(MIXED)).stdout
    found = parse(page)
    assert found.tags <= ALLOWED, found.tags - ALLOWED
    assert not any(a.startswith("on") for a in found.attributes)
    text = "".join(found.text)
    assert '"<script>alert(1)</script>"@evil.example' in text
    assert "<script>x</script>" in text  # the error list
    assert "&lt;script&gt;" in page and "<script" not in page


def test_real_sender_is_escaped(world: World) -> None:
    page = run("stats", "-html", "-byemail", str(world.mainlog)).stdout
    assert SCRIPT_SENDER in "".join(parse(page).text)
    assert "<script" not in page


def chromium() -> str:
    return cdp.chromium("the HTML report's charts are not screenshot")


def test_charts_are_drawn(world: World, tmp_path: Path) -> None:
    """A screenshot of the report, in headless Chromium: each kind of chart has its colour on the
    page, and the arrivals chart has its column in the hour the messages came."""
    report = tmp_path / "report.html"
    tool("stats", f"-html={report}", str(world.mainlog))
    shot = tmp_path / "shot.png"
    scale = 0.5  # half-size pixels: the PNG is decoded in Python, and the bars stay several pixels wide
    result = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         f"--force-device-scale-factor={scale}", "--window-size=900,7000", f"--screenshot={shot}",
         f"--user-data-dir={tmp_path / 'profile'}", report.as_uri()],
        capture_output=True, text=True, timeout=90, cwd=tmp_path, env={**os.environ, "HOME": str(tmp_path)},
    )
    assert shot.exists(), f"chromium made no screenshot: {result.stderr[-2000:]}"
    width, height, rows = png.decode(shot.read_bytes())
    counts = {name: png.count_colour(rows, png.hex_colour(colour)) for name, colour in (
        ("received", svg.RECEIVED), ("delivered", svg.DELIVERED), ("duration", svg.DURATION), ("top", svg.TOP),
        ("transport", svg.TRANSPORT))}
    # A bar is at least a few pixels each way; every chart has at least one.
    assert all(n >= 20 for n in counts.values()), counts
    # The first blue rows are the "Messages received per hour" chart: 24 columns of 690/24 CSS
    # pixels from x = 60 in the chart, which starts at the body's 1.5em margin (24 CSS pixels).
    blue = png.hex_colour(svg.RECEIVED)
    first = next(y for y, row in enumerate(rows) if png.columns_with(row, blue))
    xs = png.columns_with(rows[first + 2], blue)
    slot = 690 / 24
    hours = {int(((x / scale) - 24 - 60) // slot) for x in xs}
    arrival_hours = {int(line[11:13]) for line in world.lines() if " <= " in line}
    assert hours == arrival_hours, (hours, arrival_hours)
    # The chart's baseline: nothing blue in the white rows just above the first bar's top.
    assert not any(png.columns_with(rows[y], blue) for y in range(max(first - 5, 0), first))
    assert width == int(900 * scale) and height > 1000


def test_empty_report_is_still_a_page(tmp_path: Path) -> None:
    empty = tmp_path / "mainlog"
    empty.write_text("")
    page = run("stats", "-html", "-emptyok", str(empty)).stdout
    assert parse(page).tags <= ALLOWED
    assert re.search(r"<h2>Grand total summary</h2>", page)
