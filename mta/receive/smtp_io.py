"""The server side of one SMTP connection's bytes: buffered reads, batched replies, TLS.

`SmtpChannel` is an asyncio Protocol.  The session reads whole lines and
body chunks from its buffer and queues replies; queued replies are written
in one go when the session asks for input that has not arrived yet, which is
RFC 2920's rule for a pipelining server (a client that sends MAIL, RCPT,
RCPT, DATA in one packet gets the four replies in one packet) and saves a
system call per command otherwise.  While a session waits for its next
command (`read_command`), the lines that arrive are run as they arrive, in
`data_received`: a command that waits for nothing (most MAIL, RCPT, RSET and
NOOP commands) costs no future and no task switch; one that has to wait is
handed to the session's task where it waits (`Suspended`).

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
import threading
import weakref

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Generator
    from typing import Any

_MAX_BUFFER = 1 << 20  # pause reading beyond this much unread input (flow control)
_READ_SIZE = 256 * 1024  # the most one read takes (asyncio's own figure)


class ChannelClosed(Exception):
    """The peer went away (EOF or a connection error) while we wanted input."""


class ReadTimeout(Exception):
    """No input within the allowed time."""


class LineTooLong(Exception):
    """A command line longer than the limit arrived; its remainder has been discarded."""


class Suspended:
    """A command begun in `data_received` that has to wait (an ACL's DNS lookup or thread, the
    message text, the spool's fsync): awaiting this in the session's task resumes the command
    where it waits and gives its result.  What Python 3.12's eager tasks do, for one command."""

    __slots__ = ("command", "waiting_on")

    def __init__(self, command: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self.command = command
        self.waiting_on = waiting_on  # what its first await yielded: a future (or None: sleep(0))

    def __await__(self) -> Generator[Any, Any, Any]:
        command, waiting_on = self.command, self.waiting_on
        while True:
            try:
                sent = yield waiting_on  # the task waits on it, as if the command had yielded it
            except GeneratorExit:
                command.close()
                raise
            except BaseException as exc:  # a timeout or a cancellation, thrown in by the task
                try:
                    waiting_on = command.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    waiting_on = command.send(sent)
                except StopIteration as stop:
                    return stop.value


class Finished:
    """A command that ran to its end in `data_received` and ended the session (QUIT)."""

    __slots__ = ("result",)

    def __init__(self, result: Any) -> None:
        self.result = result

    def __await__(self) -> Generator[Any, Any, Any]:
        return self.result
        yield  # (a generator: awaitable)


class SmtpChannel(asyncio.BufferedProtocol):
    """One connection: lines and chunks in, replies out.

    A socket's (or TLS's) input is read into one buffer per thread (get_buffer), then copied
    to the channel's: without it each read allocated 256 KiB for a few bytes, and glibc may
    serve that from a new mapping (mmap, a page fault, mremap, munmap: four system calls a
    read).  A pipe's (-bs) comes to data_received."""

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
        # While read_command waits: (run, at_once, line limit, timeout, its waiter); see there.
        self._commands: tuple[Any, ...] | None = None
        self._command_deadline: float | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if self._write_transport is None:
            self._write_transport = transport
        if self.tls is None:
            self.tls = transport.get_extra_info("ssl_object")  # a TLS-on-connect port (SMTPS)
        if not self.connected.done():
            self.connected.set_result(None)

    def get_buffer(self, sizehint: int) -> memoryview:
        try:
            return _read_buffer.view  # type: ignore[no-any-return]
        except AttributeError:
            view = _read_buffer.view = memoryview(bytearray(_READ_SIZE))
            return view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(_read_buffer.view[:nbytes])  # (copied into self._buffer, not kept)

    def data_received(self, data: bytes | memoryview) -> None:
        self._buffer += data
        self.bytes_received += len(data)
        if len(self._buffer) > _MAX_BUFFER and not self._paused and hasattr(self.transport, "pause_reading"):
            self._paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        if self._commands is not None:
            self._run_commands()
        else:
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

    async def _wait_for_input(self, timeout: float | None, commands: Any = None) -> Any:
        """Until input comes (None), or, with `commands` (read_command's), until a command run in
        data_received must be finished by the task or has ended the session (its Suspended or
        Finished)."""
        if self._eof:
            raise ChannelClosed(str(self._error) if self._error else "connection closed")
        await self.flush()
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        if commands is not None:
            self._commands = (*commands, waiter)
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
            return await waiter
        finally:
            if deadlines is not None:
                deadlines.discard(waiter)
            # A command run in data_received may be waiting for input of its own by now.
            if self._waiter is waiter:
                self._waiter = None
            if self._commands is not None and self._commands[4] is waiter:
                self._commands = None

    async def read_line(self, limit: int, timeout: float | None) -> bytes:
        """One line with its line end (LF, or CRLF).  `limit` counts the line without it.

        Raises LineTooLong after discarding the line up to its LF, ReadTimeout,
        or ChannelClosed (an unfinished last line counts as closed: SMTP
        commands end with CRLF)."""
        return await self.read_command(limit, timeout, None)  # type: ignore[return-value]

    async def read_command(self, limit: int, timeout: float | None,
                           run: Callable[[bytes], Coroutine[Any, Any, Any]] | None,
                           at_once: Callable[[bytes], bool] | None = None) -> bytes | Suspended | Finished:
        """The next command line, as read_line; but while it waits, each line that arrives is run
        at once by `run(line)` (a coroutine: the session's command) in data_received, with no
        future and no task switch for the commands that wait for nothing (most MAIL, RCPT, RSET
        and NOOP commands).  Their replies go out when the client's input is drained, as a
        read that waits sends them.  A command that has to wait is handed back (Suspended: the
        caller awaits it), and so is one that ended the session (Finished); a line that
        `at_once(line)` says always waits (DATA, which waits for the text) is returned, for the
        caller to run (each later resumption of a Suspended command costs a Python frame).
        The next line's deadline runs from the end of the last command run here."""
        loop = asyncio.get_running_loop()
        self._command_deadline = None if timeout is None else loop.time() + timeout
        scanned = 0
        discarding = False
        while True:
            end = self._buffer.find(b"\n", scanned)
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                if discarding or end > limit + 1:
                    raise LineTooLong()
                return line
            if len(self._buffer) > limit + 2:
                discarding = True  # thrown away as it comes, up to the LF, here and not in data_received
                del self._buffer[:]
            commands = None if discarding or run is None else (run, at_once, limit, timeout)
            # (data_received takes lines from the buffer's start when it runs them)
            scanned = len(self._buffer) if commands is None else 0
            handed = await self._wait_for_input(_remaining(self._command_deadline), commands)
            if handed is not None:
                return handed  # type: ignore[no-any-return]

    def _run_commands(self) -> None:
        """data_received's part of read_command: run the complete lines that have come."""
        assert self._commands is not None
        run, at_once, limit, timeout, waiter = self._commands
        if waiter.done() or self._paused or self._write_paused:
            self._wake()  # (the task is to run, or has to wait for the client: its own way)
            return
        buffer = self._buffer
        ran = False
        while True:
            end = buffer.find(b"\n")
            if end < 0 or end > limit + 1:
                if end > limit + 1 or len(buffer) > limit + 2:
                    self._wake()  # too long: read_command throws it away (LineTooLong)
                    return
                break
            if at_once is not None and not at_once(buffer[: end + 1]):
                self._wake()  # read_command returns it (after sending what is answered)
                return
            line = bytes(buffer[: end + 1])
            del buffer[: end + 1]
            ran = True
            command = run(line)
            try:
                waiting_on = command.send(None)
            except StopIteration as stop:
                if stop.value is False:  # the session is over
                    self._commands = None
                    waiter.set_result(Finished(False))
                    return
                continue
            except BaseException as exc:  # Drop, ChannelClosed...: for the session's task to handle
                self._commands = None
                waiter.set_exception(exc)
                return
            self._commands = None
            waiter.set_result(Suspended(command, waiting_on))
            return
        if not ran:
            return
        # Input drained: what a read that has to wait does (the replies out, a new deadline).
        try:
            self._send_replies()
        except ChannelClosed as exc:
            self._commands = None
            waiter.set_exception(exc)
            return
        if timeout is not None:
            loop = waiter.get_loop()
            self._command_deadline = loop.time() + timeout
            _deadlines(loop).move(waiter, self._command_deadline)

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

    def _send_replies(self) -> None:
        if self._pending_replies:
            data = b"".join(self._pending_replies) if len(self._pending_replies) > 1 else self._pending_replies[0]
            self._pending_replies.clear()
            transport = self._write_transport
            if transport is None or transport.is_closing():
                raise ChannelClosed("connection closed")
            transport.write(data)

    async def flush(self) -> None:
        self._send_replies()
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


# Where reads land before they are copied to their channel's buffer: one per thread (an event
# loop's), since a read is copied out before the next one (get_buffer, buffer_updated).
_read_buffer = threading.local()


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

    def move(self, waiter: asyncio.Future[Any], deadline: float) -> None:
        """A wait's deadline moved (later, as a rule: read_command's after a command)."""
        if waiter in self.waiting:
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
