"""The daemon's receiving processes: SMTP sessions on an asyncio loop, as mta_user.

The master accepts each connection and passes its socket to the least busy
receiver over a Unix socket (SCM_RIGHTS), with what it knows of it (the
listener, whether TLS starts at once).  The receiver runs an `SmtpSession`
on it and says "closed" when the session ends, so that the master's
connection counts (smtp_accept_max, smtp_accept_max_per_host) stay true.
Receivers also serve the submission socket, where ordinary users'
`sendmail` hands in messages (mta.daemon.submission).

After 250, the message id goes to the delivery workers through the
dispatch socket; if they are all busy for long (the socket's queue is
full), ids wait in a bounded backlog here, and past that they are left for
the next queue run: the message is safe on the spool either way.

Security: a receiver drops to mta_user/mta_group for good right after the
fork (its TLS keys are loaded before), so a hole in the SMTP code gives
away no more than mta_user's rights.

Shutdown: on SIGTERM a receiver stops taking new sessions, gives those in
progress `SHUTDOWN_GRACE` seconds, then closes the rest with 421; nothing
that was acknowledged is lost (acknowledgement follows the fsync).
"""

from __future__ import annotations

import array
import asyncio
import collections
import json
import os
import signal
import socket
import traceback

from mta import process_info
from mta.daemon.control import Outbox
from mta.receive.smtp_context import ReceiverContext
from mta.receive.smtp_io import ChannelClosed, SmtpChannel
from mta.receive.smtp_server import SmtpSession
from mta.receive.spooler import Spooler

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mta.daemon.flow import InflowTokens
    from mta.runtime import Runtime

SHUTDOWN_GRACE = 20.0
BACKLOG_MAX = 100_000


class Dispatcher:
    """Hands accepted message ids to the delivery workers without ever blocking the loop."""

    def __init__(self, sock: socket.socket | None, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.loop = loop
        self.backlog: collections.deque[bytes] = collections.deque()
        self._writer_armed = False
        if sock is not None:
            sock.setblocking(False)

    def send(self, message_id: str, msglog_first: str | None = None) -> bool:
        """Hand `message_id` to a worker, with the line its message log starts with when the
        worker has to make one (mta.deliver.delivery, msglog_first).  False when nothing was
        handed over (no workers: the next queue run delivers it), so the caller writes the line."""
        if self.sock is None:
            return False
        data = message_id.encode("ascii")
        if msglog_first is not None:
            data += b"\n" + msglog_first.encode("utf-8", "surrogateescape")
        if self.backlog:
            return self._queue(data)
        try:
            self.sock.send(data)
        except BlockingIOError:
            return self._queue(data)
        except OSError:
            return False  # no workers (shutting down): the next queue run delivers it
        return True

    def _queue(self, data: bytes) -> bool:
        if len(self.backlog) >= BACKLOG_MAX:
            return False
        self.backlog.append(data)
        if not self._writer_armed and self.sock is not None:
            self._writer_armed = True
            self.loop.add_writer(self.sock, self._drain)
        return True

    def _drain(self) -> None:
        assert self.sock is not None
        while self.backlog:
            try:
                self.sock.send(self.backlog[0])
            except BlockingIOError:
                return
            except OSError:
                self.backlog.clear()
                break
            self.backlog.popleft()
        self.loop.remove_writer(self.sock)
        self._writer_armed = False


class Receiver:
    """One receiving process."""

    def __init__(self, runtime: Runtime, control: socket.socket, dispatch: socket.socket | None,
                 submission: socket.socket | None, tls_context: Any, queue_only: bool,
                 inflow: InflowTokens | None = None) -> None:
        self.runtime = runtime
        self.inflow = inflow
        self.control = control
        self.dispatch_sock = dispatch
        self.submission = submission
        self.tls_context = tls_context
        self.queue_only = queue_only
        self.sessions: dict[int, tuple[asyncio.Task[None], SmtpSession | None]] = {}
        self.stopping = asyncio.Event()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._loop_error)
        self.dispatcher = Dispatcher(self.dispatch_sock, loop)
        spooler = Spooler(self.runtime.spool, sync_method=self.runtime.config.main.spool_sync_method)
        self.context = ReceiverContext(self.runtime, spooler=spooler, on_accepted=self._accepted)
        main = self.runtime.config.main
        # A message the workers deliver at once gets its message log from its worker, and only
        # if the attempt leaves something to say (docs/delivery.md, "Message logs").
        self.context.msglog_to_worker = (self.dispatch_sock is not None and not self.queue_only
                                         and main.message_logs and not main.preserve_message_logs)
        self.context.msglog_after_reply = True
        if self.inflow is not None and self.dispatch_sock is not None and not self.queue_only:
            from mta.daemon.flow import InflowGate

            self.context.inflow = InflowGate(self.inflow, main.in_flow_delay, loop)
        if self.tls_context is not None:
            self.context._tls = self.tls_context
        self.context.on_etrn = lambda domain: self._tell_master(f"etrn {domain}")
        self.control.setblocking(False)
        self.outbox = Outbox(self.control, loop)  # "closed N" must reach the master, however busy
        loop.add_reader(self.control, self._on_control)
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: None)
        loop.add_signal_handler(signal.SIGUSR1, process_info.write_report)  # for mta-what
        server = None
        if self.submission is not None:
            from mta.daemon.submission import serve_submission

            server = await serve_submission(self, self.submission)
        await self.stopping.wait()
        loop.remove_reader(self.control)
        if server is not None:
            server.close()
        await self._finish_sessions()
        spooler.close()

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """A task that failed with nobody waiting for it (a bug): the panic log, not a lost stderr."""
        exc = context.get("exception")
        detail = "".join(traceback.format_exception(exc)) if exc is not None else ""
        self.runtime.logger.panic(f"receiving process: {context.get('message')}: {exc!r}\n{detail}")

    async def _finish_sessions(self) -> None:
        tasks = [task for task, _session in self.sessions.values()]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE)
            for task, session in list(self.sessions.values()):
                if task in pending and session is not None:
                    session.reply(421, f"{self.runtime.config.primary_hostname} shutting down")
                    try:
                        await asyncio.wait_for(session.channel.flush(), 2)
                    except (OSError, TimeoutError, ChannelClosed):
                        pass  # closing anyway
                    task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def _accepted(self, message_id: str, pending: Any) -> bool:
        """Hand an accepted message to the workers; True if they have it."""
        msglog_first = getattr(pending, "msglog_first", None)
        if not self.queue_only and not _load_says_queue(self.runtime):
            pending.release_lock()  # for the worker to take
            if self.dispatcher.send(message_id, msglog_first):
                return True
            if msglog_first is not None:
                self.context.write_msglog_later(message_id, msglog_first)  # no worker took it
        elif msglog_first is not None:  # kept on the queue after all: its log, then its lock
            self.context.write_msglog_later(message_id, msglog_first, then=pending.release_lock)
        else:
            pending.release_lock()
        return False

    def _on_control(self) -> None:
        try:
            fds = array.array("i")
            data, ancdata, _flags, _addr = self.control.recvmsg(4096, socket.CMSG_SPACE(4 * fds.itemsize))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, ancdata = b"", []
        if not data:
            # The master has gone (exit or re-exec): finish what is in progress and end.
            self.stopping.set()
            return
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
        meta = json.loads(data)
        for fd in fds:
            sock = socket.socket(fileno=fd)
            task = asyncio.get_running_loop().create_task(self._session(sock, meta))
            self.sessions[meta["id"]] = (task, None)

    async def _session(self, sock: socket.socket, meta: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        connection_id = meta["id"]
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            channel = SmtpChannel()
            ssl_context = self.context.tls_context() if meta.get("tls") else None
            try:
                await loop.connect_accepted_socket(lambda: channel, sock, ssl=ssl_context,
                                                   ssl_handshake_timeout=60 if ssl_context else None)
            except (OSError, TimeoutError) as exc:
                self.runtime.logger.main(f"TLS error on connection from [{meta.get('peer')}] (SSL_accept): {exc}")
                sock.close()
                return
            peer, peer_port = channel.peer()
            process_info.sessions[connection_id] = f"handling incoming connection from [{_plain_ip(peer)}]"
            local, local_port = channel.local()
            session = SmtpSession(self.context, channel, host_address=_plain_ip(peer), host_port=peer_port,
                                  interface_address=_plain_ip(local), interface_port=local_port)
            self.sessions[connection_id] = (self.sessions[connection_id][0], session)
            if ssl_context is not None:
                session.tls_started()
            await session.run()
        finally:
            self.sessions.pop(connection_id, None)
            process_info.sessions.pop(connection_id, None)
            self._tell_master(f"closed {connection_id}")

    def _tell_master(self, text: str) -> None:
        self.outbox.send(text.encode())


def _plain_ip(address: str | None) -> str | None:
    """An IPv4 client on an IPv6 socket shows as ::ffff:a.b.c.d; Exim logs a.b.c.d."""
    if address is not None and address.startswith("::ffff:") and "." in address:
        return address[7:]
    return address


def _load_says_queue(runtime: Runtime) -> bool:
    limit = runtime.config.main.queue_only_load
    if not limit:
        return False
    try:
        return os.getloadavg()[0] * 1000 >= limit
    except OSError:
        return False


def receiver_main(runtime: Runtime, control: socket.socket, dispatch: socket.socket | None,
                  submission: socket.socket | None, identity: tuple[int, int, str] | None,
                  inflow: InflowTokens | None = None) -> int:
    """The body of a receiving process (after fork)."""
    tls_context = None
    try:
        from mta.receive.tls import server_context

        tls_context = server_context(runtime)  # keys are read before the privileges go
    except ImportError:
        tls_context = None
    if runtime.config.main.spool_sync_method == "syncfs":
        from mta.spool.syncfs import available

        available()  # loads ctypes while the privileges allow (a Python under /root)
    if runtime.config.main.spool_spare_files:
        from mta.spool.spare import available as spares_available

        spares_available()  # the same, for renameat2 (mta.spool.spare)
    if identity is not None and os.geteuid() == 0:
        from mta.privilege import become_user

        uid, gid, login = identity
        become_user(uid, gid, login)
    receiver = Receiver(runtime, control, dispatch, submission, tls_context, runtime.config.main.queue_only,
                        inflow)
    asyncio.run(receiver.serve())
    return 0
