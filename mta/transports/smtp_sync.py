"""The smtp transport over blocking sockets: mua_wrapper's client (and any caller without an event loop).

    outcomes = deliver_batch_sync(transport, message, items, env, wrapper=True)
    for item, error in failures(items, outcomes):
        print(f"mta: {failure_message(item.address, error)}", file=sys.stderr)

The conversation is mta.transports.smtp_plan's, the same as the async
client's; this module only performs its I/O requests with `socket`.

Start-up cost: ``sendmail -t`` in mua_wrapper mode must finish in tens of
milliseconds, so nothing here imports asyncio, aiosmtplib or dnspython, and
ssl is imported only when a TLS session is made.

With ``wrapper=True`` (mua_wrapper): fallback_hosts are ignored, max_rcpt is
unlimited, no connection is kept, and every failure is permanent and fails
the whole message.  Otherwise idle connections are kept on the transport
for later calls in this process (connection_max_messages) until
`close_connections_sync(transport)`.

Diagnostics: nothing is logged here; outcomes carry the text.
"""

from __future__ import annotations

import select
import socket
import time
from typing import TYPE_CHECKING, Any

from mta.errors import DeliveryError
from mta.transports.smtp import failure_message
from mta.transports.smtp_plan import SmtpJob
from mta.transports.smtp_wire import (
    ECONNREFUSED,
    ETIMEDOUT,
    Blocking,
    Close,
    Connect,
    Park,
    Pending,
    Receive,
    Reply,
    ReplyError,
    ReplyParser,
    Resolve,
    Reuse,
    Send,
    SendBody,
    Session,
    SmtpIoError,
    StartTls,
    TlsInfo,
    TlsSetup,
    make_ssl_context,
    tls_info,
)

if TYPE_CHECKING:
    import ssl

    from mta.route.item import AddressItem
    from mta.transports.base import DeliveryEnv, Outcome, OutgoingMessage
    from mta.transports.smtp import SmtpTransport
    from mta.transports.smtp_wire import Op

__all__ = ["close_connections_sync", "deliver_batch_sync", "failure_message", "failures"]

RECV_SIZE = 65536


class _Connection:
    """A socket plus the replies read from it but not yet asked for."""

    def __init__(self, sock: socket.socket | ssl.SSLSocket) -> None:
        self.sock = sock
        self.parser = ReplyParser()
        self.replies: list[Reply] = []
        self.error: SmtpIoError | None = None  # a protocol error, reported after the replies before it

    def send(self, data: bytes, timeout: float) -> None:
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise SmtpIoError("timeout", "timed out writing") from None
        except OSError as exc:
            raise SmtpIoError("lost", exc.strerror or str(exc), exc.errno or 0) from None

    def receive(self, timeout: float) -> Reply:
        deadline = time.monotonic() + timeout
        while not self.replies:
            if self.error is not None:
                raise self.error
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SmtpIoError("timeout", "timed out waiting for a reply")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(RECV_SIZE)
            except TimeoutError:
                raise SmtpIoError("timeout", "timed out waiting for a reply") from None
            except OSError as exc:
                raise SmtpIoError("lost", exc.strerror or str(exc), exc.errno or 0) from None
            if not data:
                raise SmtpIoError("lost", "connection closed by the server")
            try:
                self.replies.extend(self.parser.feed(data))
            except ReplyError as exc:
                self.replies.extend(exc.replies)
                self.error = SmtpIoError("protocol", str(exc))
        return self.replies.pop(0)

    def pending(self) -> bool:
        """Anything from the server not yet read (including an EOF)?"""
        if self.replies or self.parser.pending or self.error is not None:
            return True
        tls_buffered = getattr(self.sock, "pending", None)
        if tls_buffered is not None and tls_buffered() > 0:
            return True
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def close(self) -> None:
        self.sock.close()


class _Pool:
    """Idle connections and TLS contexts a transport keeps between calls."""

    def __init__(self) -> None:
        self.idle: dict[tuple[str, int, str | None], list[tuple[_Connection, Session]]] = {}
        self.contexts: dict[tuple[Any, ...], ssl.SSLContext] = {}


class _Runner:
    """Performs a plan's requests on one current connection at a time."""

    def __init__(self, pool: _Pool | None, contexts: dict[tuple[Any, ...], ssl.SSLContext]) -> None:
        self.pool = pool
        self.contexts = contexts
        self.conn: _Connection | None = None

    def perform(self, op: Op) -> Any:
        if isinstance(op, Send):
            return self._current().send(op.data, op.timeout)
        if isinstance(op, Receive):
            return self._current().receive(op.timeout)
        if isinstance(op, Pending):
            return self._current().pending()
        if isinstance(op, SendBody):
            return self._send_body(op)
        if isinstance(op, Connect):
            return self._connect(op)
        if isinstance(op, StartTls):
            return self._start_tls(op)
        if isinstance(op, Close):
            return self.close_current()
        if isinstance(op, Reuse):
            return self._reuse(op)
        if isinstance(op, Park):
            return self._park(op)
        if isinstance(op, Resolve):
            return _resolve(op.name)
        if isinstance(op, Blocking):
            return op.function()
        raise TypeError(f"unknown smtp op {op!r}")

    def _current(self) -> _Connection:
        if self.conn is None:
            raise RuntimeError("smtp plan used a connection it had not opened")
        return self.conn

    def close_current(self) -> None:
        if self.conn is not None:
            conn, self.conn = self.conn, None
            conn.close()

    def _context(self, setup: TlsSetup) -> ssl.SSLContext:
        key = setup.context_key
        if key not in self.contexts:
            try:
                self.contexts[key] = make_ssl_context(setup)
            except OSError as exc:
                raise SmtpIoError("tls", f"TLS set-up failed: {exc}") from None
        return self.contexts[key]

    def _connect(self, op: Connect) -> TlsInfo | None:
        address, port = op.host.address or "", op.host.port or 25
        try:
            sock = socket.create_connection(
                (address, port), timeout=op.timeout, source_address=(op.interface, 0) if op.interface else None
            )
        except TimeoutError:
            raise SmtpIoError("timeout_connect", "Connection timed out", ETIMEDOUT) from None
        except ConnectionRefusedError:
            raise SmtpIoError("refused", "Connection refused", ECONNREFUSED) from None
        except OSError as exc:
            raise SmtpIoError("connect", exc.strerror or str(exc), exc.errno or 0) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = _Connection(sock)
        if op.tls is None:
            return None
        try:
            return self._handshake(op.tls, op.timeout)
        except SmtpIoError:
            self.close_current()  # the plan treats a failed connect as never opened
            raise

    def _start_tls(self, op: StartTls) -> TlsInfo:
        return self._handshake(op.tls, op.timeout)

    def _handshake(self, setup: TlsSetup, timeout: float) -> TlsInfo:
        import ssl

        conn = self._current()
        context = self._context(setup)
        conn.sock.settimeout(timeout)
        try:
            tls_sock = context.wrap_socket(conn.sock, server_hostname=setup.server_hostname)
        except ssl.SSLCertVerificationError as exc:
            raise SmtpIoError("verify", f"certificate verification failed: {exc.verify_message}") from None
        except OSError as exc:  # ssl.SSLError, a reset or a timeout during the handshake
            raise SmtpIoError("tls", str(exc) or type(exc).__name__) from None
        conn.sock = tls_sock
        return tls_info(tls_sock, setup.verify)

    def _send_body(self, op: SendBody) -> None:
        conn = self._current()
        # A failure to read -D propagates as it is (not as an SmtpIoError): the
        # dot is then never sent, and the caller closes the connection.
        for chunk in op.chunks:
            conn.send(chunk, op.timeout)

    def _reuse(self, op: Reuse) -> Session | None:
        idle = self.pool.idle.get(op.key) if self.pool is not None else None
        if not idle:
            return None
        self.conn, session = idle.pop()
        return session

    def _park(self, op: Park) -> None:
        conn, self.conn = self._current(), None
        if self.pool is None:
            conn.close()
            return
        self.pool.idle.setdefault(op.session.key, []).append((conn, op.session))


def _resolve(name: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        permanent = exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME))
        raise SmtpIoError("lookup", f"host lookup for {name} failed: {exc.strerror}", permanent=permanent) from None
    return [str(info[4][0]) for info in infos]


def _run(job: SmtpJob, runner: _Runner) -> None:
    plan = job.plan()
    value: Any = None
    error: SmtpIoError | None = None
    try:
        while True:
            try:
                op = plan.throw(error) if error is not None else plan.send(value)
            except StopIteration:
                return
            value, error = None, None
            try:
                value = runner.perform(op)
            except SmtpIoError as exc:
                error = exc
    finally:
        # A plan that stopped on an unexpected error leaves its connection open: never leak it.
        runner.close_current()


def deliver_batch_sync(
    transport: SmtpTransport,
    message: OutgoingMessage,
    items: list[AddressItem],
    env: DeliveryEnv,
    *,
    wrapper: bool = False,
) -> dict[AddressItem, Outcome]:
    """Deliver `items` (one host list, one sender) and return one outcome per item."""
    job = SmtpJob(transport, message, items, env, wrapper=wrapper)
    if wrapper:
        runner = _Runner(None, {})
    else:
        if transport.sync_pool is None:
            transport.sync_pool = _Pool()
        runner = _Runner(transport.sync_pool, transport.sync_pool.contexts)
    _run(job, runner)
    return {item: job.outcomes[item] for item in items}


def close_connections_sync(transport: SmtpTransport) -> None:
    """QUIT and close the idle connections `transport` keeps."""
    pool: _Pool | None = transport.sync_pool
    if pool is None:
        return
    connections = [conn for entries in pool.idle.values() for conn, _session in entries]
    pool.idle.clear()
    for conn in connections:
        try:
            conn.send(b"QUIT\r\n", 5)
            conn.receive(5)
        except SmtpIoError:
            pass  # we are hanging up anyway; the server's goodbye changes nothing
        finally:
            conn.close()


def failures(items: list[AddressItem], outcomes: dict[AddressItem, Outcome]) -> list[tuple[AddressItem, DeliveryError]]:
    """The failed items with their errors, in order (mua_wrapper prints one line for each)."""
    return [(item, outcome) for item in items if isinstance(outcome := outcomes.get(item), DeliveryError)]
