"""A hundred viewers on real sockets; those that vanish mid-stream cost the others nothing."""

from __future__ import annotations

import asyncio

from tests.monitor.conftest import Served, make_queue, run
from tests.support.mta import MtaEnv

VIEWERS = 100


async def _open_stream(served: Served, cookie: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = served.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /api/events HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: mta_monitor={cookie}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    await reader.readuntil(b"event: queue")  # the stream has started
    return reader, writer


def test_a_hundred_viewers_and_some_that_vanish(queue_env: MtaEnv) -> None:
    make_queue(queue_env)

    async def scenario() -> None:
        async with Served.start(queue_env) as served:
            await served.login()
            cookie = next(c.value for c in served.http.cookie_jar if c.key == "mta_monitor")
            streams = await asyncio.gather(*(_open_stream(served, cookie) for _ in range(VIEWERS)))
            watcher = served.monitor.watcher
            assert len(watcher.viewers) == VIEWERS
            # Half of them go away without a word, in the middle of the stream (a reset, not a close).
            gone, staying = streams[: VIEWERS // 2], streams[VIEWERS // 2 :]
            for _reader, writer in gone:
                writer.transport.abort()
            # Something happens: every remaining viewer hears of it.
            served.monitor.logger.main("a line for every viewer")
            for reader, _writer in staying:
                await asyncio.wait_for(reader.readuntil(b"a line for every viewer"), 10)
            # The vanished ones are forgotten once the server writes to them.
            served.monitor.logger.main("one more")
            for reader, _writer in staying:
                await asyncio.wait_for(reader.readuntil(b"one more"), 10)
            deadline = asyncio.get_running_loop().time() + 10
            while len(watcher.viewers) > VIEWERS // 2:
                assert asyncio.get_running_loop().time() < deadline, len(watcher.viewers)
                await asyncio.sleep(0.05)
            assert len(watcher.viewers) == VIEWERS // 2
            # And the server still answers.
            assert (await served.get("/api/session"))[0] == 200
            for _reader, writer in staying:
                writer.close()

    run(scenario())


def test_a_viewer_that_stops_reading_is_dropped() -> None:
    """A client that keeps its connection but reads nothing cannot make the server queue events
    for it without end: past its backlog it is told to go (the browser reconnects)."""
    from spool_tools.monitor import watch

    viewer = watch.Viewer(see_queue=True)
    for _ in range(watch.VIEWER_BACKLOG):
        assert viewer.offer(b"event")
    assert not viewer.offer(b"one too many")
    while (item := viewer.queue.get_nowait()) is not None:
        assert item == b"event"
