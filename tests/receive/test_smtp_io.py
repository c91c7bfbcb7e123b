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


class Commands:
    """A session's commands, as read_command runs them: each line answered, WAIT after a pause."""

    def __init__(self, channel: SmtpChannel) -> None:
        self.channel = channel
        self.ran: list[bytes] = []
        self.in_task: list[bool] = []  # whether each ran in the session's task (else data_received)

    async def run(self, line: bytes) -> bool:
        self.ran.append(line)
        self.in_task.append(asyncio.current_task() is not None)
        if line.startswith(b"FAIL"):
            raise RuntimeError("this command fails")
        if line.startswith(b"WAIT"):
            await asyncio.sleep(0.01)
        if line.startswith(b"QUIT"):
            self.channel.reply(b"221 bye\r\n")
            return False
        self.channel.reply(b"250 " + line)
        return True

    async def next(self, timeout: float | None = 5) -> bool:
        """What the session does: read a command (or several), finish the one that waits."""
        got = await self.channel.read_command(100, timeout, self.run, lambda line: not line.startswith(b"TEXT"))
        if isinstance(got, bytes):
            return await self.run(got)
        return await got  # type: ignore[no-any-return]


def receive(sock: socket.socket, expected: bytes) -> bytes:
    data = b""
    while len(data) < len(expected):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_commands_run_as_they_arrive_and_one_that_waits_is_finished_by_the_task() -> None:
    async def main() -> None:
        channel, theirs = await channel_pair()
        commands = Commands(channel)
        theirs.setblocking(True)
        loop = asyncio.get_running_loop()
        session = asyncio.ensure_future(commands.next())
        await asyncio.sleep(0)  # the session's read is waiting
        theirs.sendall(b"NOOP 1\r\nNOOP 2\r\n")
        # Answered in data_received, in order, while the session's read still waits.
        assert await loop.run_in_executor(None, receive, theirs, b"250 NOOP 1\r\n250 NOOP 2\r\n") == (
            b"250 NOOP 1\r\n250 NOOP 2\r\n")
        assert not session.done()
        # One that waits is handed to the task; what came after it is run there, in order.
        theirs.sendall(b"WAIT\r\nNOOP 3\r\n")
        assert await session is True
        assert await commands.next() is True
        session = asyncio.ensure_future(commands.next())  # its wait sends the replies
        await asyncio.sleep(0)
        assert await loop.run_in_executor(None, receive, theirs, b"250 WAIT\r\n250 NOOP 3\r\n") == (
            b"250 WAIT\r\n250 NOOP 3\r\n")
        assert commands.ran == [b"NOOP 1\r\n", b"NOOP 2\r\n", b"WAIT\r\n", b"NOOP 3\r\n"]
        assert commands.in_task == [False, False, False, True]
        # One that at_once declines (as DATA is) is returned to the task, after those before it.
        theirs.sendall(b"NOOP 4\r\nTEXT\r\n")
        assert await session is True
        assert commands.ran[-2:] == [b"NOOP 4\r\n", b"TEXT\r\n"] and commands.in_task[-2:] == [False, True]
        session = asyncio.ensure_future(commands.next())
        await asyncio.sleep(0)
        assert await loop.run_in_executor(None, receive, theirs, b"250 NOOP 4\r\n250 TEXT\r\n") == (
            b"250 NOOP 4\r\n250 TEXT\r\n")
        # One that ends the session (QUIT), and one that fails: the session's task hears of both.
        theirs.sendall(b"QUIT\r\n")
        assert await session is False
        session = asyncio.ensure_future(commands.next())
        await asyncio.sleep(0)
        theirs.sendall(b"FAIL\r\n")
        try:
            await session
        except RuntimeError as exc:
            assert str(exc) == "this command fails"
        else:
            raise AssertionError("the failure was lost")
        theirs.close()

    asyncio.run(main())


def test_the_next_command_has_its_whole_timeout_after_each_command_run_as_it_came() -> None:
    async def main() -> tuple[float, float]:
        channel, theirs = await channel_pair()
        commands = Commands(channel)
        started = time.monotonic()
        session = asyncio.ensure_future(commands.next(timeout=0.4))
        for n in range(5):  # past the first wait's deadline: 0.75 s in all
            await asyncio.sleep(0.15)
            theirs.send(f"NOOP {n}\r\n".encode())
        await asyncio.sleep(0.01)
        last = time.monotonic()
        try:
            await session
        except ReadTimeout:
            pass
        ended = time.monotonic()
        assert len(commands.ran) == 5 and not any(commands.in_task)
        theirs.close()
        return ended - started, ended - last

    total, after_last = asyncio.run(main())
    assert total > 0.75 and 0.3 <= after_last < 1.0
