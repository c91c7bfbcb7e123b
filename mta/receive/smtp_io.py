"""The server side of one SMTP connection's bytes: buffered reads, batched replies, TLS.

`SmtpChannel` is an asyncio Protocol.  The session reads whole lines and
body chunks from its buffer and queues replies; queued replies are written
in one go when the session asks for input that has not arrived yet, which is
RFC 2920's rule for a pipelining server (a client that sends MAIL, RCPT,
RCPT, DATA in one packet gets the four replies in one packet) and saves a
system call per command otherwise.

It knows nothing of SMTP commands.  It enforces the limits a server must
have on input it has not parsed yet: the longest line (`LineTooLong`, with
the rest of that line thrown away so the session can answer 500 and go
on), and how long a line may take (`ReadTimeout`).  The timeout is a
deadline for a whole line, a command's or one of the message text's, as
Exim documents smtp_receive_timeout: a client that sends a byte now and
then without ever ending the line (slowloris) is timed out like a silent
one, instead of holding its connection for ever.  The same class runs on
a TCP connection, on a TLS connection after STARTTLS (the protocol stays,
the transport changes), and on standard input and output (-bs).

Security: everything read here is network data; it is handed on as bytes
and never interpreted.  Nothing here blocks: reads wait on futures, writes
go into the transport's buffer, and a peer that stops reading while we
write is stopped by `drain()` pausing the session until it catches up.
"""

from __future__ import annotations

import asyncio
import ssl
import weakref

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_MAX_BUFFER = 1 << 20  # pause reading beyond this much unread input (flow control)


class ChannelClosed(Exception):
    """The peer went away (EOF or a connection error) while we wanted input."""


class ReadTimeout(Exception):
    """No input within the allowed time."""


class LineTooLong(Exception):
    """A command line longer than the limit arrived; its remainder has been discarded."""


class SmtpChannel(asyncio.Protocol):
    """One connection: lines and chunks in, replies out."""

    def __init__(self) -> None:
        self.transport: asyncio.BaseTransport | None = None
        self._write_transport: Any = None  # where replies go (stdout for -bs)
        self._buffer = bytearray()
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._pending_replies: list[bytes] = []
        self._drain_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.tls: ssl.SSLObject | None = None
        self.bytes_received = 0
        self.deadline: float | None = None  # of the line of message text being read (read_chunk)

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if self._write_transport is None:
            self._write_transport = transport
        if self.tls is None:
            self.tls = transport.get_extra_info("ssl_object")  # a TLS-on-connect port (SMTPS)
        if not self.connected.done():
            self.connected.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self.bytes_received += len(data)
        if len(self._buffer) > _MAX_BUFFER and not self._paused and hasattr(self.transport, "pause_reading"):
            self._paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        self._wake()

    def eof_received(self) -> bool | None:
        self._eof = True
        self._wake()
        return None  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        if exc is not None and self._error is None:
            self._error = exc
        self._wake()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- reading -------------------------------------------------------------------------------
    @property
    def has_input(self) -> bool:
        """True if input is waiting (a pipelining client, or one that talks out of turn)."""
        return bool(self._buffer)

    async def _wait_for_input(self, timeout: float | None) -> None:
        if self._eof:
            raise ChannelClosed(str(self._error) if self._error else "connection closed")
        await self.flush()
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        if self._paused and hasattr(self.transport, "resume_reading"):
            self._paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        # Not asyncio.wait_for (a second future and a callback) nor a timer of its own (a heap
        # push and a cancelled entry, at every command of every session): one timer serves the
        # deadlines of every session waiting on this loop.
        deadlines = _deadlines(loop) if timeout is not None else None
        if deadlines is not None:
            deadlines.add(waiter, loop.time() + timeout)  # type: ignore[operator]
        try:
            await waiter
        finally:
            if deadlines is not None:
                deadlines.discard(waiter)
            self._waiter = None

    async def read_line(self, limit: int, timeout: float | None) -> bytes:
        """One line with its line end (LF, or CRLF).  `limit` counts the line without it.

        Raises LineTooLong after discarding the line up to its LF, ReadTimeout,
        or ChannelClosed (an unfinished last line counts as closed: SMTP
        commands end with CRLF)."""
        scanned = 0
        discarding = False
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        while True:
            end = self._buffer.find(b"\n", scanned)
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                if discarding or end > limit + 1:
                    raise LineTooLong()
                return line
            if len(self._buffer) > limit + 2:
                # Too long already: throw it away as it comes, up to the LF.
                discarding = True
                del self._buffer[:]
                scanned = 0
            else:
                scanned = len(self._buffer)
            await self._wait_for_input(_remaining(deadline))

    def text_deadline(self, timeout: float | None) -> float | None:
        """The time by which the current line of message text must end (read_chunk, read_exactly)."""
        return None if timeout is None else asyncio.get_running_loop().time() + timeout

    async def read_chunk(self, timeout: float | None, deadline: float | None = None) -> bytes:
        """Whatever input is there (at least one byte), for message bodies.

        With `deadline` (from text_deadline()), a line must end by then: the
        wait is cut short at it (ReadTimeout) and it moves `timeout` on from
        each chunk that holds a line end; the caller keeps the new one
        (`self.deadline`)."""
        while not self._buffer:
            await self._wait_for_input(timeout if deadline is None else _remaining(deadline))
        data = bytes(self._buffer)
        del self._buffer[:]
        if deadline is not None and timeout is not None and b"\n" in data:
            deadline = asyncio.get_running_loop().time() + timeout
        self.deadline = deadline
        return data

    async def read_exactly(self, count: int, timeout: float | None, sink: Any,
                           deadline: float | None = None) -> None:
        """`count` bytes (BDAT), handed to `sink(bytes)` as they come, never all in memory.
        `deadline` as for read_chunk; the one in force at the end is left in `self.deadline`."""
        while count:
            while not self._buffer:
                await self._wait_for_input(timeout if deadline is None else _remaining(deadline))
            take = min(count, len(self._buffer))
            piece = bytes(self._buffer[:take])
            del self._buffer[:take]
            count -= take
            if deadline is not None and timeout is not None and b"\n" in piece:
                deadline = asyncio.get_running_loop().time() + timeout
            await sink(piece)
        self.deadline = deadline

    def unread(self, data: bytes) -> None:
        """Give back bytes read too far (what follows the end of a message)."""
        self._buffer[:0] = data

    def discard_input(self) -> None:
        del self._buffer[:]

    # -- writing -------------------------------------------------------------------------------
    def reply(self, text: bytes) -> None:
        """Queue a reply; it goes out at the next read that has to wait, or at flush()."""
        self._pending_replies.append(text)

    async def flush(self) -> None:
        if self._pending_replies:
            data = b"".join(self._pending_replies)
            self._pending_replies.clear()
            transport = self._write_transport
            if transport is None or transport.is_closing():
                raise ChannelClosed("connection closed")
            transport.write(data)
        if self._write_paused:
            loop = asyncio.get_running_loop()
            self._drain_waiter = loop.create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None

    # -- TLS -------------------------------------------------------------------------------------
    async def start_tls(self, context: ssl.SSLContext, timeout: float) -> None:
        """Upgrade to TLS (after "220 go ahead" has been flushed).  Input that arrived before the
        handshake is discarded: a client must wait for the 220 (RFC 3207 §4.2; the STARTTLS
        command injection of CVE-2011-0411)."""
        await self.flush()
        self.discard_input()
        loop = asyncio.get_running_loop()
        transport = self.transport
        assert transport is not None
        new = await asyncio.wait_for(
            loop.start_tls(transport, self, context, server_side=True),  # type: ignore[arg-type]
            timeout,
        )
        if new is None:
            raise ChannelClosed("TLS handshake failed")
        self.transport = self._write_transport = new
        self.tls = new.get_extra_info("ssl_object")
        self._eof = False

    # -- the end --------------------------------------------------------------------------------
    def close(self) -> None:
        for transport in {id(t): t for t in (self.transport, self._write_transport) if t is not None}.values():
            if not transport.is_closing():
                transport.close()

    def abort(self) -> None:
        for transport in (self.transport, self._write_transport):
            if transport is not None and hasattr(transport, "abort"):
                transport.abort()

    def peer(self) -> tuple[str | None, int | None]:
        info = self.transport.get_extra_info("peername") if self.transport is not None else None
        if isinstance(info, tuple) and len(info) >= 2:
            return str(info[0]), int(info[1])
        return None, None

    def local(self) -> tuple[str | None, int | None]:
        info = self.transport.get_extra_info("sockname") if self.transport is not None else None
        if isinstance(info, tuple) and len(info) >= 2:
            return str(info[0]), int(info[1])
        return None, None


def _remaining(deadline: float | None) -> float | None:
    """Seconds left until `deadline` (never below zero: a wait that is due times out at once)."""
    return None if deadline is None else max(deadline - asyncio.get_running_loop().time(), 0.0)


class _Deadlines:
    """The read deadlines of the sessions waiting on one event loop, served by one timer set for
    the earliest.  A wait that starts later than that timer (nearly all: every session has the
    same timeouts) sets no timer; when it fires, it times out the waits that are due and is set
    again for the earliest of the rest.  With nobody waiting there is no timer, and nothing here
    refers to the loop (it is the key of a weak mapping)."""

    def __init__(self) -> None:
        self.waiting: dict[asyncio.Future[None], float] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = float("inf")

    def add(self, waiter: asyncio.Future[None], deadline: float) -> None:
        self.waiting[waiter] = deadline
        if deadline < self.timer_at:
            self._arm(waiter.get_loop(), deadline)

    def discard(self, waiter: asyncio.Future[None]) -> None:
        self.waiting.pop(waiter, None)
        if not self.waiting and self.timer is not None:
            self.timer.cancel()
            self.timer, self.timer_at = None, float("inf")

    def _arm(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer, self.timer_at = loop.call_at(deadline, self._fire, loop), deadline

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self.timer, self.timer_at = None, float("inf")
        now = loop.time()
        earliest = float("inf")
        for waiter, deadline in list(self.waiting.items()):
            if deadline <= now:
                del self.waiting[waiter]
                if not waiter.done():
                    waiter.set_exception(ReadTimeout())
            elif deadline < earliest:
                earliest = deadline
        if earliest < float("inf"):
            self._arm(loop, earliest)


_DEADLINES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Deadlines] = weakref.WeakKeyDictionary()


def _deadlines(loop: asyncio.AbstractEventLoop) -> _Deadlines:
    deadlines = _DEADLINES.get(loop)
    if deadlines is None:
        deadlines = _DEADLINES[loop] = _Deadlines()
    return deadlines


def stdio_channel_for(transport_out: Any, channel: SmtpChannel) -> SmtpChannel:
    """For -bs: replies go to standard output while input comes from standard input."""
    channel._write_transport = transport_out
    return channel
