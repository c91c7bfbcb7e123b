"""The page in headless Chromium, against a running mta daemon, a real queue and a real mta-monitor.

The monitor is started as root, as an administrator would start it: it drops
to mta_user, forks its delivery helper, and prints its URL.  The browser logs
in with the token `mta-monitor --print-token` prints, sees the chart and the
queue (the message whose subject, sender and recipient are markup shows them
as text, and nothing of it runs), freezes a message from the page, and
`mta -bp` then reports it frozen.

MTA_MONITOR_SCREENSHOT=FILE keeps the screenshot (docs/monitor.png is made so).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from spool_tools.stats import svg
from tests.monitor.conftest import SCRIPT_RECIPIENT, SCRIPT_SENDER, SCRIPT_SUBJECT
from tests.support import png
from tests.support.cdp import Browser, chromium
from tests.support.daemon import DaemonWorld
from tests.support.queue import submit_batch

MONITOR = [sys.executable, "-m", "spool_tools.monitor.cli"]


@pytest.fixture
def monitor(daemon: DaemonWorld) -> Iterator[tuple[DaemonWorld, str]]:
    """The running daemon's world, and the URL of an mta-monitor serving it."""
    process = subprocess.Popen(
        [*MONITOR, "-C", str(daemon.config), "--port", "0", "--poll", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("mta-monitor: listening on http://127.0.0.1:"), line + process.stderr.read()
        yield daemon, line.split()[-1]
    finally:
        process.terminate()
        _out, errors = process.communicate(timeout=20)
        assert process.returncode == 0, errors


def test_freeze_from_the_page(monitor: tuple[DaemonWorld, str], tmp_path: Path) -> None:
    chromium()
    world, url = monitor
    ids = submit_batch(
        world,
        [
            (SCRIPT_SENDER, [SCRIPT_RECIPIENT], f"Subject: {SCRIPT_SUBJECT}\n\nhello\n"),
            ("alice@example.com", ["bob@example.com", "carol@example.com"], "Subject: to freeze\n\nbody\n"),
        ],
    )
    token = subprocess.run(
        [*MONITOR, "-C", str(world.config), "--print-token"], capture_output=True, text=True, check=True
    ).stdout.strip()
    profile = tmp_path / "profile"
    profile.mkdir()

    async def scenario() -> bytes:
        async with Browser.start(profile) as browser:
            await browser.navigate(url)
            await browser.wait_for("location.pathname === '/login'")
            await browser.evaluate(
                f"document.getElementById('token').value = {json.dumps(token)};"
                "document.getElementById('token-login').click()"
            )
            await browser.wait_for("location.pathname === '/' && document.getElementById('user')?.textContent")
            # The queue, live: both messages; the markup of the first shows as text.
            await browser.wait_for("document.querySelectorAll('#queue tbody tr').length === 2")
            cells = await browser.evaluate(
                "[...document.querySelector('#queue tbody tr').cells].map((c) => c.textContent)"
            )
            assert cells[2] == ids[0] and cells[6] != "unreadable", cells[7]
            assert cells[3] == f"<{SCRIPT_SENDER}>" and cells[4] == SCRIPT_SUBJECT
            assert SCRIPT_RECIPIENT in cells[5]
            assert await browser.evaluate("window.__xss === undefined")
            assert await browser.evaluate("document.querySelectorAll('script').length") == 1
            assert await browser.evaluate("document.querySelectorAll('#queue img, #queue script').length") == 0
            # The chart: a received column for the two arrivals.
            await browser.wait_for(f"!!document.querySelector('#chart-hour svg rect[fill=\"{svg.RECEIVED}\"]')")
            # Freeze the second message from the page.
            await browser.evaluate(f"document.querySelector('#queue tr[data-id=\"{ids[1]}\"]').click()")
            await browser.wait_for(f"document.getElementById('detail-id').textContent === '{ids[1]}'")
            await browser.evaluate("document.querySelector('#actions button[data-action=freeze]').click()")
            await browser.wait_for("document.getElementById('result').textContent.includes('is now frozen')")
            await browser.wait_for(
                f"document.querySelector('#queue tr[data-id=\"{ids[1]}\"]').classList.contains('frozen')"
            )
            await browser.wait_for("document.getElementById('log').textContent.includes('frozen by')")
            return await browser.screenshot()

    shot = asyncio.run(asyncio.wait_for(scenario(), 90))
    listing = world.run("-bp")
    frozen = [line for line in listing.stdout.splitlines() if ids[1] in line]
    assert frozen and frozen[0].endswith("*** frozen ***"), listing.stdout
    assert f"{ids[1]} frozen by mail (mta-monitor, 127.0.0.1)" in world.mainlog.read_text()
    _width, _height, rows = png.decode(shot)
    assert png.count_colour(rows, png.hex_colour(svg.RECEIVED)) > 20  # the chart is drawn, not only in the DOM
    if keep := os.environ.get("MTA_MONITOR_SCREENSHOT"):
        Path(keep).write_bytes(shot)
