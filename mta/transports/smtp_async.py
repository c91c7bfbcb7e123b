"""The smtp transport on asyncio: the client delivery processes use.

    outcomes = await transport.deliver_batch(message, items, env)
    ...
    await transport.close_connections()      # QUIT the connections kept for later messages

The conversation is mta.transports.smtp_plan's, the same as the blocking
client's, and so is the runner's bookkeeping (mta.transports.smtp_runner);
this module performs the I/O requests on the running event loop
and never blocks it: file reads of the body and TLS context set-up run in
threads, host names are looked up with ``env.extra["resolver"]`` (a
mta.route.dns.DnsResolver) when given, else with the loop's getaddrinfo
(a thread).  Except when the delivery says the loop has nothing else to do
(``env.extra["inline_io"]``: one batch of one message in flight, as in a
daemon worker's or a queue run's usual delivery): the body and the retry
data are then read on the loop itself, because a thread trip costs more
(two wake-ups, the GIL handed over and back, ~0.1 ms of CPU) than the read.

Why not aiosmtplib, though it is installed: its SMTPProtocol (5.1) cannot
pipeline — it drops reply bytes that arrive while no read is pending, and a
second reply that arrives in the same segment as the first stays in its
buffer until more data comes (the read hangs until the timeout) — it cannot
stream DATA with flow control without private API, and its implicit-TLS
connect verifies the certificate against the address it connects to, not
the host's name.  Our protocol below is small: bytes go to the shared
ReplyParser, replies are queued in order, writes wait for the transport's
flow control.

Idle connections are kept per transport for later calls on the same event
loop (connection_max_messages); `close_connections_async` must be awaited
before that loop ends.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from types import CoroutineType

from mta import debug
from mta.errors import DeferError, FailError
from mta.transports import smtp_trace
from mta.transports.smtp_plan import SmtpJob
from mta.transports.smtp_runner import (
    QUIT,
    QUIT_TIMEOUT,
    ConnectionPool,
    PlanSteps,
    ReplyQueue,
    Runner,
    addresses_of,
    connect_error,
    handshake_error,
    lookup_error,
    new_context,
)
from mta.transports.smtp_wire import Reply, SmtpIoError, TlsInfo, TlsSetup, tls_info

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

if TYPE_CHECKING:
    from mta.route.item import AddressItem
    from mta.transports.base import DeliveryEnv, Outcome, OutgoingMessage
    from mta.transports.smtp import SmtpTransport
    from mta.transports.smtp_wire import Blocking, Connect, Op, Receive, Resolve, Send, SendBody, StartTls


READ_SIZE = 16 * 1024  # bytes read from a connection at a time: replies are short


class _SmtpProtocol(asyncio.BufferedProtocol, ReplyQueue):
    """One connection: replies in order, writes under flow control, errors kept for the next read.

    `error` is set once: a protocol error, EOF or loss.  Replies are read into
    one buffer of the connection's (a BufferedProtocol): a plain Protocol gets
    a new bytes object per read, which asyncio makes 256 KB long and then
    shrinks (an mmap, an mremap and a munmap for every 14-byte reply).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        ReplyQueue.__init__(self)
        self.loop = loop
        self._buffer = memoryview(bytearray(READ_SIZE))
        self.transport: asyncio.Transport | None = None
        self._reply_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._paused = False

    # -- asyncio callbacks ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._buffer[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        if self.error is not None:
            return
        if not self.feed(data) and self.transport is not None:
            self.transport.abort()
        self._wake()

    def eof_received(self) -> bool:
        if self.error is None:
            self.error = SmtpIoError("lost", "connection closed by the server")
        self._wake()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self.error is None:
            text = (exc.strerror if isinstance(exc, OSError) else None) or str(exc or "connection closed")
            self.error = SmtpIoError("lost", text, getattr(exc, "errno", 0) or 0)
        self._wake()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    def _wake(self) -> None:
        for waiter in (self._reply_waiter, self._drain_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    # -- used by the runner -----------------------------------------------------

    async def read_reply(self, timeout: float) -> Reply:
        if self.replies:
            # (Pipelined replies usually arrive together: no timer for those already here.)
            return self.replies.pop(0)
        try:
            async with asyncio.timeout(timeout):
                while not self.replies:
                    if self.error is not None:
                        raise self.error
                    self._reply_waiter = self.loop.create_future()
                    await self._reply_waiter
        except TimeoutError:
            raise SmtpIoError("timeout", "timed out waiting for a reply") from None
        return self.replies.pop(0)

    async def write(self, data: bytes, timeout: float) -> None:
        if self.error is not None or self.transport is None or self.transport.is_closing():
            raise self.error or SmtpIoError("lost", "connection closed")
        self.transport.write(data)
        if not self._paused:
            return  # (most writes: the timeout below would be set up and torn down for nothing)
        try:
            async with asyncio.timeout(timeout):
                while self._paused:
                    if self.error is not None:
                        raise self.error
                    self._drain_waiter = self.loop.create_future()
                    await self._drain_waiter
        except TimeoutError:
            raise SmtpIoError("timeout", "timed out writing") from None

    def pending(self) -> bool:
        return self.has_unread()

    def close(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self.transport.get_extra_info("ssl_object") is not None:
            # A TLS close() waits for the server's close_notify, up to 30 s, before the
            # socket is closed: the event loop may be gone by then, leaking it.  Every
            # reply we wanted has been read when we close, so drop the connection now.
            self.transport.abort()
        else:
            self.transport.close()


class _Pool(ConnectionPool[_SmtpProtocol]):
    """Idle connections and TLS contexts a transport keeps, valid on one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop


class _Runner(Runner[_SmtpProtocol]):
    """Performs a plan's requests on the running event loop."""

    def __init__(self, pool: _Pool | None, env: DeliveryEnv) -> None:
        super().__init__(pool)
        self.loop = asyncio.get_running_loop()
        self.resolver = env.extra.get("resolver")
        self.inline = bool(env.extra.get("inline_io"))

    async def perform(self, op: Op) -> Any:
        value = self.method_for(op)(op)
        # The op_ methods are coroutine functions or plain ones (the Runner's own): a type test,
        # not inspect.isawaitable, whose ABC check of a plain value costs more than the op.
        return await value if type(value) is CoroutineType else value

    async def op_send(self, op: Send) -> None:
        await self.current().write(op.data, op.timeout)

    async def op_receive(self, op: Receive) -> Reply:
        return await self.current().read_reply(op.timeout)

    async def op_blocking(self, op: Blocking) -> Any:
        if self.inline:
            return op.function()
        return await asyncio.to_thread(op.function)

    async def _context(self, setup: TlsSetup) -> ssl.SSLContext:
        key = setup.context_key
        if key not in self.contexts:
            # Reading CA files: not on the loop.
            self.contexts[key] = await asyncio.to_thread(new_context, setup)
        return self.contexts[key]

    async def op_connect(self, op: Connect) -> TlsInfo | None:
        protocol = _SmtpProtocol(self.loop)
        context = await self._context(op.tls) if op.tls is not None else None
        try:
            async with asyncio.timeout(op.timeout):
                await self.loop.create_connection(
                    lambda: protocol,
                    host=op.host.address,
                    port=op.host.port or 25,
                    ssl=context,
                    # "" sends no SNI and checks no name (a non-verifying session).
                    server_hostname=(op.tls.server_hostname or "") if op.tls is not None else None,
                    ssl_handshake_timeout=op.timeout if context is not None else None,
                    local_addr=(op.interface, 0) if op.interface else None,
                )
        except ssl.SSLError as exc:  # the handshake of an implicit-TLS connection
            raise handshake_error(exc) from None
        except OSError as exc:  # TimeoutError and ConnectionRefusedError included
            if isinstance(exc, TimeoutError):
                protocol.close()
            raise connect_error(exc) from None
        self.conn = protocol
        sock = protocol.transport.get_extra_info("socket") if protocol.transport is not None else None
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if op.tls is None:
            return None
        return self._tls_info(op.tls)

    async def op_start_tls(self, op: StartTls) -> TlsInfo:
        protocol = self.current()
        context = await self._context(op.tls)
        if protocol.transport is None:
            raise SmtpIoError("lost", "connection closed")
        try:
            async with asyncio.timeout(op.timeout):
                transport = await self.loop.start_tls(
                    protocol.transport,
                    protocol,
                    context,
                    server_hostname=op.tls.server_hostname or "",
                    ssl_handshake_timeout=op.timeout,
                )
        except OSError as exc:  # ssl.SSLError, a reset, or the handshake timing out
            raise handshake_error(exc) from None
        if transport is None:
            raise SmtpIoError("lost", "connection closed during the TLS handshake")
        protocol.transport = transport  # type: ignore[assignment]
        return self._tls_info(op.tls)

    def _tls_info(self, setup: TlsSetup) -> TlsInfo:
        transport = self.current().transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if ssl_object is None:
            raise SmtpIoError("tls", "no TLS session after the handshake")
        return tls_info(ssl_object, setup.verify)

    async def op_send_body(self, op: SendBody) -> None:
        protocol = self.current()
        chunks = iter(op.chunks)
        while True:
            # The body is read from -D in a thread, up to BODY_BATCH bytes per trip (a small
            # message in one trip, not one per chunk and one more for the end).  A read failure
            # propagates as it is (not as an SmtpIoError): the dot is then never sent.
            if self.inline:
                batch, more = _take_chunks(chunks, BODY_BATCH)
            else:
                batch, more = await asyncio.to_thread(_take_chunks, chunks, BODY_BATCH)
            for chunk in batch:
                await protocol.write(chunk, op.timeout)
            if not more:
                return

    async def op_resolve(self, op: Resolve) -> list[str]:
        name = op.name
        if self.resolver is not None:
            try:
                hosts = await self.resolver.find_hosts_by_name_async(name)
            except FailError as exc:
                raise SmtpIoError("lookup", exc.message, permanent=True) from None
            except DeferError as exc:
                raise SmtpIoError("lookup", exc.message) from None
            return [host.address for host in hosts if host.address]
        try:
            return addresses_of(await self.loop.getaddrinfo(name, None, type=socket.SOCK_STREAM))
        except socket.gaierror as exc:
            raise lookup_error(name, exc) from None


BODY_BATCH = 256 * 1024  # bytes of the message read from -D per thread trip (at most one chunk more)


def _take_chunks(chunks: Iterator[bytes], limit: int) -> tuple[list[bytes], bool]:
    """The next chunks, up to `limit` bytes or the end; and whether any may follow."""
    batch: list[bytes] = []
    size = 0
    for chunk in chunks:
        batch.append(chunk)
        size += len(chunk)
        if size >= limit:
            return batch, True
    return batch, False


async def _run(job: SmtpJob, runner: _Runner) -> None:
    steps = PlanSteps(job.plan())
    try:
        while (op := steps.next()) is not None:
            if debug.active:  # -v / -d: the SMTP dialogue on stderr
                smtp_trace.before(runner, op)
            try:
                steps.value = await runner.perform(op)
            except SmtpIoError as exc:
                steps.error = exc
                if debug.active:
                    smtp_trace.failed(runner, op, exc)
            else:
                if debug.active:
                    smtp_trace.after(runner, op, steps.value)
    finally:
        # Also on cancellation: the current connection is never left open (the pool's are idle and clean).
        runner.close_current()


def _pool(transport: SmtpTransport) -> _Pool:
    loop = asyncio.get_running_loop()
    pool: _Pool | None = transport.async_pool
    if pool is None or pool.loop is not loop:
        # Connections of another event loop cannot be used here (close_connections_async
        # should have been awaited on it).
        pool = transport.async_pool = _Pool(loop)
    return pool


async def deliver_batch_async(
    transport: SmtpTransport, message: OutgoingMessage, items: list[AddressItem], env: DeliveryEnv
) -> dict[AddressItem, Outcome]:
    """SmtpTransport.deliver_batch: one outcome per item."""
    job = SmtpJob(transport, message, items, env)
    try:
        await _run(job, _Runner(_pool(transport) if job.use_cache else None, env))
        return job.results()
    finally:
        job.release()


async def close_connections_async(transport: SmtpTransport) -> None:
    """QUIT and close the idle connections `transport` keeps on the running loop."""
    pool: _Pool | None = transport.async_pool
    if pool is None:
        return
    transport.async_pool = None
    for conn in pool.drain():
        try:
            await conn.write(QUIT, QUIT_TIMEOUT)
            await conn.read_reply(QUIT_TIMEOUT)
        except SmtpIoError:
            pass  # we are hanging up anyway; the server's goodbye changes nothing
        finally:
            conn.close()
