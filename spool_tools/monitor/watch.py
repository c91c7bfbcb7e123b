"""What the page shows, gathered by one poller for every viewer, and sent as server-sent events.

    watcher = Watcher(spool, log_location, interval=1.0)
    asyncio.create_task(watcher.run())          # polls in a thread: the event loop never waits on disk
    viewer = watcher.subscribe(see_queue=True)  # its queue first holds the current state
    ... await viewer.queue.get() -> bytes of one event, or None when the viewer is dropped

Events (each ``event: NAME`` with one JSON line of data):

- ``queue``: the messages, as `mailq --json` describes them
  (spool_tools.queue_json.message_object) with their subject, age and size
  in -bp's columns (spool_tools.queue_list), and ``domains``, the per-domain
  counts mta-qsumm prints (spool_tools.qsumm, from the same -bp listing);
- ``log``: new main log lines (the first event has the tail);
- ``charts``: received, delivered, deferred and bounced per minute over the
  last hour and per 15 minutes over the last day, as SVG drawn by
  spool_tools.stats.svg, with each category's totals.

The main log is followed as ``tail -F`` does: by position, reopened when it
is rotated (another inode, or shorter than what was read).  At start the
last `BACKLOG` bytes are read, enough for a day of a busy host's counts.
Lines are split by spool_tools.stats.parse, as mta-stats splits them.

The queue is read again when a directory of input/ or msglog/ changed, and
at least every `QUEUE_REFRESH` seconds (a delivery attempt that only
appends to a message log changes no directory).  Reading takes no lock:
-H is replaced by rename, so a reader sees the old file or the new one.

Every event is encoded once and the same bytes are queued for every
viewer; a viewer whose queue is full (a client that stopped reading) is
dropped, so one slow client never holds the others up or fills memory.
"""

from __future__ import annotations

import asyncio
import collections
import io
import json
import os
import time
from collections.abc import Iterable

from mta.errors import SpoolError
from mta.spool.listing import list_messages
from spool_tools.qsumm import summarise, volume_text
from spool_tools.queue_json import error_object, message_object
from spool_tools.queue_list import format_age, format_message, format_size, read_messages
from spool_tools.stats import svg
from spool_tools.stats.parse import LineSplitter

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mta.spool.envelope import Envelope
    from mta.spool.store import Spool
    from spool_tools.logfiles import LogLocation

BACKLOG = 32 * 1024 * 1024
READ_MAX = 4 * 1024 * 1024  # per poll: a log growing faster is caught up over several polls
TAIL_LINES = 1000
LINE_MAX = 8 * 1024  # bytes of a log line kept; the rest is cut (a 1 MB line would cost 1 MB per line of the tail)
QUEUE_SHOWN = 1000  # messages listed in the page (oldest first); the counts cover all of them
QUEUE_REFRESH = 15.0
VIEWER_BACKLOG = 64  # events queued for one viewer before it is dropped as too slow
DAY_BIN = 15  # minutes per column of the day chart

# The four categories: the flag of their main log lines, and their colour in the charts.
CATEGORIES = (
    ("received", ("<=",), svg.RECEIVED),
    ("delivered", ("=>", "->"), svg.DELIVERED),
    ("deferred", ("==",), "#bcbd22"),
    ("bounced", ("**",), svg.TRANSPORT),
)
_FLAG_INDEX = {flag: i for i, (_name, flags, _colour) in enumerate(CATEGORIES) for flag in flags}


def sse(event: str, data: Any) -> bytes:
    """One server-sent event; the JSON has no newline, so it is one data line."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=True, separators=(',', ':'))}\n\n".encode()


# -- the main log --------------------------------------------------------------------------


class LogFollower:
    """The main log's new lines, its tail, and its counts per minute (keys: minutes since the epoch)."""

    def __init__(self, location: LogLocation) -> None:
        self.location = location
        self.identity: tuple[int, int] | None = None
        self.offset = 0
        self.partial = b""
        self.skip_to_line = False
        self.counts: dict[int, list[int]] = {}
        self.splitter = LineSplitter()
        self._minute_cache: dict[str, int] = {}

    def poll(self, now: float) -> list[str]:
        """The lines added since the last call (blocking: call it in a thread)."""
        from spool_tools.admin_command import ToolError

        try:
            path = self.location.path("main")
            st = os.stat(path)
        except ToolError:
            return []  # the configuration logs to syslog only
        except OSError:
            return []  # no log yet
        identity = (st.st_dev, st.st_ino)
        if identity != self.identity or st.st_size < self.offset:
            # The first look starts a backlog from the end; a rotated log is read from its start.
            self.offset = max(st.st_size - BACKLOG, 0) if self.identity is None else 0
            self.identity, self.partial, self.skip_to_line = identity, b"", self.offset > 0
        if st.st_size == self.offset:
            self._prune(now)
            return []
        try:
            with open(path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read(READ_MAX)
        except OSError:
            return []
        self.offset += len(data)
        if self.skip_to_line:
            if b"\n" not in data:
                return []
            self.skip_to_line = False
            data = data[data.index(b"\n") + 1 :]
        whole, newline, self.partial = (self.partial + data).rpartition(b"\n")
        lines = [_cut(raw).decode("utf-8", "surrogateescape") for raw in whole.split(b"\n")] if newline else []
        # A line still without its end keeps no more than LINE_MAX bytes (plus one, to mark it cut).
        self.partial = self.partial[: LINE_MAX + 1]
        for line in lines:
            self._count(line)
        self._prune(now)
        return lines

    def _count(self, line: str) -> None:
        parts, _line = self.splitter.split(line + "\n")
        if parts is None:
            return
        index = _FLAG_INDEX.get(parts.flag)
        if index is None:
            return
        stamp = parts.tod[:16]  # "YYYY-MM-DD HH:MM"
        minute = self._minute_cache.get(stamp + parts.tod[19:])
        if minute is None:
            from spool_tools.logfiles import stamp_seconds

            zone = parts.tod[20:] or None
            minute = stamp_seconds(stamp + ":00", zone) // 60
            if len(self._minute_cache) > 4096:
                self._minute_cache.clear()
            self._minute_cache[stamp + parts.tod[19:]] = minute
        self.counts.setdefault(minute, [0, 0, 0, 0])[index] += 1

    def _prune(self, now: float) -> None:
        oldest = int(now // 60) - 24 * 60
        for minute in [m for m in self.counts if m < oldest]:
            del self.counts[minute]

    def charts(self, now: float) -> dict[str, Any]:
        """The two charts as SVG, and each category's totals over the hour and the day."""
        current = int(now // 60)
        hour_minutes = range(current - 59, current + 1)
        zero = [0, 0, 0, 0]
        hour = [self.counts.get(m, zero) for m in hour_minutes]
        day_start = current - 24 * 60 + 1
        bins = 24 * 60 // DAY_BIN
        day = [[0, 0, 0, 0] for _ in range(bins)]
        for minute, values in self.counts.items():
            slot = (minute - day_start) // DAY_BIN
            if 0 <= slot < bins:
                for i, value in enumerate(values):
                    day[slot][i] += value
        hour_labels = [time.strftime("%H:%M", time.localtime(m * 60)) for m in hour_minutes]
        day_labels = [time.strftime("%H:%M", time.localtime((day_start + i * DAY_BIN) * 60)) for i in range(bins)]
        return {
            "hour": _chart("Messages per minute, last hour", hour_labels, hour, 10),
            "day": _chart(f"Messages per {DAY_BIN} minutes, last day", day_labels, day, 12),
            "totals": {
                name: {"hour": sum(v[i] for v in hour), "day": sum(v[i] for v in day)}
                for i, (name, _flags, _colour) in enumerate(CATEGORIES)
            },
        }


def _cut(raw: bytes) -> bytes:
    return raw if len(raw) <= LINE_MAX else raw[:LINE_MAX] + b" [...]"


def _chart(title: str, labels: list[str], values: list[list[int]], label_every: int) -> str:
    series = [(name, [v[i] for v in values], colour) for i, (name, _flags, colour) in enumerate(CATEGORIES)]
    return svg.columns(title, labels, series, label_every=label_every)


# -- the queue -----------------------------------------------------------------------------


def subject(envelope: Envelope) -> str:
    """The Subject: header's text, MIME encoded words decoded ("" without one)."""
    from mta.spool.envelope import FLAG_OLD

    for header in envelope.headers:
        if header.flag != FLAG_OLD and header.text[:8].lower() == "subject:":
            text = " ".join(header.text[8:].split())
            return _decoded(text)
    return ""


def _decoded(text: str) -> str:
    if "=?" not in text:
        return text
    import email.errors
    import email.header

    try:
        return str(email.header.make_header(email.header.decode_header(text)))
    except (email.errors.HeaderParseError, LookupError, UnicodeError, ValueError):
        return text


def queue_state(spool: Spool, now: float) -> dict[str, Any]:
    """The queue event's data (blocking: call it in a thread)."""
    try:
        queued = list_messages(spool)
    except SpoolError as exc:
        return {"count": 0, "messages": [], "domains": [], "error": f"cannot list the queue: {exc}"}
    messages: list[dict[str, Any]] = []
    listing = io.StringIO()
    for message_id, listed in read_messages(spool, queued, headers=True):  # (the subjects)
        if isinstance(listed, str):
            item = error_object(message_id, listed)
        else:
            envelope, size, delivered = listed
            listing.write(format_message(envelope, size, delivered, now))
            if len(messages) >= QUEUE_SHOWN:
                continue
            item = message_object(spool, envelope, size, delivered, False)
            item.update(
                subject=subject(envelope),
                age=format_age(now - envelope.received_time).strip(),
                size=format_size(size).strip() or "0",
                recipients_all=[r.address for r in envelope.recipients],
            )
        if len(messages) < QUEUE_SHOWN:
            messages.append(item)
    return {"count": len(queued), "messages": messages, "domains": domain_rows(listing.getvalue().splitlines())}


def domain_rows(listing: Iterable[str]) -> list[dict[str, Any]]:
    """mta-qsumm's rows for a -bp listing, by domain, and its TOTAL."""
    summary = summarise(listing)
    rows = [
        {
            "domain": name,
            "count": row.count,
            "volume": volume_text(row.volume).strip(),
            "oldest": row.oldest,
            "newest": row.newest,
        }
        for name, row in sorted(summary.rows.items())
    ]
    return rows


def _queue_directories(spool: Spool) -> list[str]:
    top = [spool.directory / "input", spool.directory / "msglog"]
    found = []
    for directory in top:
        found.append(str(directory))
        try:
            with os.scandir(directory) as entries:
                found.extend(e.path for e in entries if len(e.name) == 1 and e.is_dir(follow_symlinks=False))
        except OSError:
            continue
    return found


def _stamps(directories: list[str]) -> tuple[int, ...]:
    stamps = []
    for directory in directories:
        try:
            stamps.append(os.stat(directory).st_mtime_ns)
        except OSError:
            stamps.append(0)
    return tuple(stamps)


# -- the viewers ---------------------------------------------------------------------------


class Viewer:
    def __init__(self, see_queue: bool) -> None:
        self.see_queue = see_queue
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(VIEWER_BACKLOG + 4)

    def offer(self, event: bytes) -> bool:
        """Queue an event; False when the viewer is too far behind (it is then told to stop)."""
        if self.queue.qsize() >= VIEWER_BACKLOG:
            self.queue.put_nowait(None)
            return False
        self.queue.put_nowait(event)
        return True


class Watcher:
    def __init__(self, spool: Spool, location: LogLocation, interval: float = 1.0) -> None:
        self.spool = spool
        self.log = LogFollower(location)
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.interval = interval
        self.viewers: set[Viewer] = set()
        self.queue_event = sse("queue", {"count": 0, "messages": [], "domains": []})
        self.charts_event = b""
        self._queue_stamps: tuple[int, ...] = ()
        self._queue_time = 0.0
        self._charts_minute = -1
        self._wake = asyncio.Event()
        self.polls = 0

    def subscribe(self, see_queue: bool) -> Viewer:
        viewer = Viewer(see_queue)
        if see_queue:
            viewer.queue.put_nowait(self.queue_event)
        viewer.queue.put_nowait(sse("log", {"lines": list(self.tail), "reset": True}))
        if self.charts_event:
            viewer.queue.put_nowait(self.charts_event)
        self.viewers.add(viewer)
        return viewer

    def unsubscribe(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)

    def close(self) -> None:
        """Tell every viewer to stop (the server is shutting down)."""
        for viewer in list(self.viewers):
            viewer.queue.put_nowait(None)
        self.viewers.clear()

    def wake(self) -> None:
        """Poll at once (after an action), and read the queue whatever its directories say."""
        self._queue_time = 0.0
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self.poll()
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except TimeoutError:
                pass

    def prime(self) -> None:
        """A first round before serving, without an event loop: the first viewers get the state at
        once, and whatever reading imports on first use is imported (before privileges are dropped)."""
        self._apply(*self._read(time.time()))

    async def poll(self) -> None:
        """One round: read in a thread, then hand the events to the viewers on the loop's thread."""
        self._wake.clear()
        events = self._apply(*await asyncio.to_thread(self._read, time.time()))
        self.polls += 1
        for viewer in list(self.viewers):
            for queue_only, event in events:
                if queue_only and not viewer.see_queue:
                    continue
                if not viewer.offer(event):
                    self.viewers.discard(viewer)
                    break

    def _apply(self, lines: list[str], charts: bytes | None, queue: bytes | None) -> list[tuple[bool, bytes]]:
        """Keep what a round read; the events to send (True: for those who may see the queue)."""
        events: list[tuple[bool, bytes]] = []
        if lines:
            self.tail.extend(lines)
            # A round may read megabytes of a log (catching up at start): the page shows the tail.
            events.append((False, sse("log", {"lines": lines[-TAIL_LINES:]})))
        if charts is not None:
            self.charts_event = charts
            events.append((False, charts))
        if queue is not None and queue != self.queue_event:
            self.queue_event = queue
            events.append((True, queue))
        return events

    def _read(self, now: float) -> tuple[list[str], bytes | None, bytes | None]:
        """The new log lines, the charts if they changed, the queue if it may have (blocking)."""
        lines = self.log.poll(now)
        charts = None
        if lines or int(now // 60) != self._charts_minute:
            self._charts_minute = int(now // 60)
            charts = sse("charts", self.log.charts(now))
        queue = None
        stamps = _stamps(_queue_directories(self.spool))
        if stamps != self._queue_stamps or now - self._queue_time >= QUEUE_REFRESH:
            self._queue_stamps, self._queue_time = stamps, now
            queue = sse("queue", queue_state(self.spool, now))
        return lines, charts, queue
