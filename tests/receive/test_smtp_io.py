"""mta.receive.smtp_io: read deadlines of many sessions on one loop, served by one timer.

Each wait for input has its own deadline; a session that gets its line in
time is not timed out, one that does not is (ReadTimeout) at its own
deadline, whichever order the waits began in.  Real sockets (socketpairs)
on a real event loop.
"""

from __future__ import annotations

import asyncio
import socket
import time

from mta.receive.smtp_io import _DEADLINES, ReadTimeout, SmtpChannel


async def channel_pair() -> tuple[SmtpChannel, socket.socket]:
    ours, theirs = socket.socketpair()
    _transport, channel = await asyncio.get_running_loop().connect_accepted_socket(SmtpChannel, ours)
    return channel, theirs


async def timed_read(channel: SmtpChannel, timeout: float) -> tuple[str, float]:
    started = time.monotonic()
    try:
        line = await channel.read_line(100, timeout)
    except ReadTimeout:
        return "timeout", time.monotonic() - started
    return line.decode(), time.monotonic() - started


def test_each_wait_times_out_at_its_own_deadline_and_a_wait_answered_in_time_does_not() -> None:
    async def main() -> list[tuple[str, float]]:
        pairs = [await channel_pair() for _ in range(4)]
        # A long wait first (the timer is set for it), then shorter ones (each sets it earlier).
        reads = [asyncio.ensure_future(timed_read(pairs[0][0], 0.6)),
                 asyncio.ensure_future(timed_read(pairs[1][0], 0.2)),
                 asyncio.ensure_future(timed_read(pairs[2][0], 0.4)),
                 asyncio.ensure_future(timed_read(pairs[3][0], 0.4))]
        await asyncio.sleep(0.05)
        pairs[3][1].sendall(b"NOOP\r\n")  # answered in time
        results = await asyncio.gather(*reads)
        deadlines = _DEADLINES[asyncio.get_running_loop()]
        assert not deadlines.waiting and deadlines.timer is None  # nothing left behind
        for _channel, theirs in pairs:
            theirs.close()
        return results

    results = asyncio.run(main())
    assert [outcome for outcome, _ in results] == ["timeout", "timeout", "timeout", "NOOP\r\n"]
    waited = [seconds for _, seconds in results]
    assert 0.55 <= waited[0] < 1.5 and 0.15 <= waited[1] < 0.5 and 0.35 <= waited[2] < 1.0
    assert waited[3] < 0.3
