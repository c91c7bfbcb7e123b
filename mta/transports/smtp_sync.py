"""The smtp transport over blocking sockets: mua_wrapper's client (and any caller without an event loop).

    outcomes = deliver_batch_sync(transport, message, items, env, wrapper=True)
    for item, error in failures(items, outcomes):
        print(f"mta: {failure_message(item.address, error)}", file=sys.stderr)

The conversation is mta.transports.smtp_plan's, the same as the async
client's, and so is the runner's bookkeeping (mta.transports.smtp_runner);
this module only performs the I/O requests with `socket`.

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

import _socket  # socket's functions and type without its enum classes (3 ms of start-up)
import time

from mta import debug
from mta.errors import DeliveryError
from mta.transports.smtp import failure_message
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
    from typing import Any

if TYPE_CHECKING:
    import ssl

    from mta.route.item import AddressItem
    from mta.transports.base import DeliveryEnv, Outcome, OutgoingMessage
    from mta.transports.smtp import SmtpTransport
    from mta.transports.smtp_wire import Blocking, Connect, Op, Receive, Resolve, Send, SendBody, StartTls

__all__ = ["close_connections_sync", "deliver_batch_sync", "failure_message", "failures"]

RECV_SIZE = 65536


class _Connection(ReplyQueue):
    """A socket plus the replies read from it but not yet asked for."""

    def __init__(self, sock: _socket.socket | ssl.SSLSocket) -> None:
        super().__init__()
        self.sock = sock

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
            self.feed(data)
        return self.replies.pop(0)

    def pending(self) -> bool:
        """Anything from the server not yet read (including an EOF)?"""
        if self.has_unread():
            return True
        tls_buffered = getattr(self.sock, "pending", None)
        if tls_buffered is not None and tls_buffered() > 0:
            return True
        # Here, not at the top: a sendmail in mua_wrapper mode never asks (select costs it 0.3 ms).
        from mta.readiness import readable

        return readable(self.sock, 0)

    def close(self) -> None:
        self.sock.close()


class _Runner(Runner[_Connection]):
    """Performs a plan's requests with blocking sockets."""

    def perform(self, op: Op) -> Any:
        return self.method_for(op)(op)

    def op_send(self, op: Send) -> None:
        self.current().send(op.data, op.timeout)

    def op_receive(self, op: Receive) -> Reply:
        return self.current().receive(op.timeout)

    def op_send_body(self, op: SendBody) -> None:
        conn = self.current()
        # A failure to read -D propagates as it is (not as an SmtpIoError): the
        # dot is then never sent, and the caller closes the connection.
        for chunk in op.chunks:
            conn.send(chunk, op.timeout)

    def op_connect(self, op: Connect) -> TlsInfo | None:
        address, port = op.host.address or "", op.host.port or 25
        try:
            sock = _connect(address, port, op.timeout, op.interface)
        except OSError as exc:
            raise connect_error(exc) from None
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        self.conn = _Connection(sock)
        if op.tls is None:
            return None
        try:
            return self._handshake(op.tls, op.timeout)
        except SmtpIoError:
            self.close_current()  # the plan treats a failed connect as never opened
            raise

    def op_start_tls(self, op: StartTls) -> TlsInfo:
        return self._handshake(op.tls, op.timeout)

    def _handshake(self, setup: TlsSetup, timeout: float) -> TlsInfo:
        conn = self.current()
        key = setup.context_key
        if key not in self.contexts:
            self.contexts[key] = new_context(setup)
        conn.sock.settimeout(timeout)
        try:
            tls_sock = self.contexts[key].wrap_socket(conn.sock, server_hostname=setup.server_hostname)
        except OSError as exc:  # ssl.SSLError, a reset or a timeout during the handshake
            raise handshake_error(exc) from None
        conn.sock = tls_sock
        return tls_info(tls_sock, setup.verify)

    def op_resolve(self, op: Resolve) -> list[str]:
        try:
            return addresses_of(_socket.getaddrinfo(op.name, None, type=_socket.SOCK_STREAM))
        except _socket.gaierror as exc:
            raise lookup_error(op.name, exc) from None

    def op_blocking(self, op: Blocking) -> Any:
        return op.function()


def _connect(address: str, port: int, timeout: float, interface: str | None) -> Any:
    """A connected socket (_socket's: ssl wraps it as it would socket's).  An IP address is
    connected to as it is: socket.create_connection would pass it through getaddrinfo(),
    which imports the idna codec (2 ms of mua_wrapper's start-up) to look up what needs no
    looking up."""
    family = _socket.AF_INET6 if ":" in address else _socket.AF_INET
    try:
        _socket.inet_pton(family, address)
    except OSError:
        import socket

        source = (interface, 0) if interface else None
        return socket.create_connection((address, port), timeout=timeout, source_address=source)
    sock = _socket.socket(family, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        if interface:
            sock.bind((interface, 0))
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _run(job: SmtpJob, runner: _Runner) -> None:
    steps = PlanSteps(job.plan())
    if debug.active:
        from mta.transports import smtp_trace
    try:
        while (op := steps.next()) is not None:
            if debug.active:  # -v / -d: the SMTP dialogue on stderr
                smtp_trace.before(runner, op)
            try:
                steps.value = runner.perform(op)
            except SmtpIoError as exc:
                steps.error = exc
                if debug.active:
                    smtp_trace.failed(runner, op, exc)
            else:
                if debug.active:
                    smtp_trace.after(runner, op, steps.value)
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
    if not wrapper and transport.sync_pool is None:
        transport.sync_pool = ConnectionPool[_Connection]()
    _run(job, _Runner(None if wrapper else transport.sync_pool))
    return job.results()


def close_connections_sync(transport: SmtpTransport) -> None:
    """QUIT and close the idle connections `transport` keeps."""
    pool: ConnectionPool[_Connection] | None = transport.sync_pool
    if pool is None:
        return
    for conn in pool.drain():
        try:
            conn.send(QUIT, QUIT_TIMEOUT)
            conn.receive(QUIT_TIMEOUT)
        except SmtpIoError:
            pass  # we are hanging up anyway; the server's goodbye changes nothing
        finally:
            conn.close()


def failures(items: list[AddressItem], outcomes: dict[AddressItem, Outcome]) -> list[tuple[AddressItem, DeliveryError]]:
    """The failed items with their errors, in order (mua_wrapper prints one line for each)."""
    return [(item, outcome) for item in items if isinstance(outcome := outcomes.get(item), DeliveryError)]
