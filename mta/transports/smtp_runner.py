"""What the two runners of an smtp plan share: smtp_sync (sockets) and smtp_async (asyncio).

A runner performs the I/O requests a plan (mta.transports.smtp_plan) yields
and throws an `SmtpIoError` back into it when one fails.  The two runners
differ only in how they wait; everything else is here:

    ReplyQueue        replies parsed from what a connection read, in order
    ConnectionPool    the idle connections and TLS contexts a transport keeps
    Runner            the current connection, the pool, and which method serves which op
    PlanSteps         feeds a plan the value or the error of each request
    connect_error, handshake_error, lookup_error, new_context
                      OS, ssl and resolver failures as the plan sees them

Start-up cost: mua_wrapper's blocking client imports this, so nothing here
imports asyncio, and ssl is imported only once a TLS handshake has failed.
"""

from __future__ import annotations

import _socket as socket  # the functions of socket without its enum classes (start-up)

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
    TlsSetup,
    make_ssl_context,
)

# typing is imported only by type checkers (it costs milliseconds of every
# sendmail's start-up); at run time the generic bases below are plain classes.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable
    from typing import Any, Generic, Protocol, TypeVar

    from mta.transports.smtp_wire import Op, Plan

    class Connection(Protocol):
        def pending(self) -> bool: ...

        def close(self) -> None: ...

    C = TypeVar("C", bound=Connection)
    _Generic = Generic
else:
    C = None

    class _Generic:
        """Subscriptable like typing.Generic (Runner[_Connection]), and nothing more."""

        def __class_getitem__(cls, item: object) -> type:
            return cls

QUIT = b"QUIT\r\n"
QUIT_TIMEOUT = 5  # seconds for QUIT and its reply when idle connections are closed

# The method of a runner that performs each op: "op_" + this name.
_OP_METHODS: dict[type, str] = {
    Send: "send",
    Receive: "receive",
    Pending: "pending",
    SendBody: "send_body",
    Connect: "connect",
    StartTls: "start_tls",
    Close: "close",
    Reuse: "reuse",
    Park: "park",
    Resolve: "resolve",
    Blocking: "blocking",
}


class ReplyQueue:
    """Replies read from a connection but not yet asked for, and the protocol error after them."""

    def __init__(self) -> None:
        self.parser = ReplyParser()
        self.replies: list[Reply] = []
        self.error: SmtpIoError | None = None  # reported once the replies before it have been read

    def feed(self, data: bytes) -> bool:
        """Parse bytes read; False when they broke the reply grammar (`error` is then set)."""
        try:
            self.replies.extend(self.parser.feed(data))
        except ReplyError as exc:
            self.replies.extend(exc.replies)
            self.error = SmtpIoError("protocol", str(exc))
            return False
        return True

    def has_unread(self) -> bool:
        """Anything from the server not yet asked for: a reply, part of one, or an error?"""
        return bool(self.replies) or self.parser.pending or self.error is not None


class ConnectionPool(_Generic[C]):
    """Idle connections and TLS contexts a transport keeps between calls."""

    def __init__(self) -> None:
        self.idle: dict[tuple[str, int, str | None], list[tuple[C, Session]]] = {}
        self.contexts: dict[tuple[Any, ...], ssl.SSLContext] = {}

    def drain(self) -> list[C]:
        """Take every idle connection out of the pool (to QUIT and close them)."""
        connections = [conn for entries in self.idle.values() for conn, _session in entries]
        self.idle.clear()
        return connections


class Runner(_Generic[C]):
    """Performs a plan's requests on one current connection at a time.

    `perform` hands each op to the method named in _OP_METHODS; the ops
    that do no I/O are served here, the others by the subclass.
    """

    def __init__(self, pool: ConnectionPool[C] | None) -> None:
        self.pool = pool
        self.contexts: dict[tuple[Any, ...], ssl.SSLContext] = pool.contexts if pool is not None else {}
        self.conn: C | None = None

    def method_for(self, op: Op) -> Callable[[Any], Any]:
        name = _OP_METHODS.get(type(op))
        if name is None:
            raise TypeError(f"unknown smtp op {op!r}")
        method: Callable[[Any], Any] = getattr(self, "op_" + name)
        return method

    def current(self) -> C:
        if self.conn is None:
            raise RuntimeError("smtp plan used a connection it had not opened")
        return self.conn

    def close_current(self) -> None:
        if self.conn is not None:
            conn, self.conn = self.conn, None
            conn.close()

    def op_pending(self, op: Pending) -> bool:
        return self.current().pending()

    def op_close(self, op: Close) -> None:
        self.close_current()

    def op_reuse(self, op: Reuse) -> Session | None:
        idle = self.pool.idle.get(op.key) if self.pool is not None else None
        if not idle:
            return None
        self.conn, session = idle.pop()
        return session

    def op_park(self, op: Park) -> None:
        conn, self.conn = self.current(), None
        if self.pool is None:
            conn.close()
            return
        self.pool.idle.setdefault(op.session.key, []).append((conn, op.session))


class PlanSteps:
    """Feeds a plan the value (or the SmtpIoError) of each request it yields."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.value: Any = None
        self.error: SmtpIoError | None = None

    def next(self) -> Op | None:
        """The next request, or None when the plan has finished."""
        try:
            op = self.plan.throw(self.error) if self.error is not None else self.plan.send(self.value)
        except StopIteration:
            return None
        self.value, self.error = None, None
        return op


# -- failures as the plan sees them -------------------------------------------------------------


def new_context(setup: TlsSetup) -> ssl.SSLContext:
    """make_ssl_context, with a bad CA or certificate file as a TLS failure."""
    try:
        return make_ssl_context(setup)
    except OSError as exc:
        raise SmtpIoError("tls", f"TLS set-up failed: {exc}") from None


def connect_error(exc: OSError) -> SmtpIoError:
    """A TCP connection that could not be made."""
    if isinstance(exc, TimeoutError):
        return SmtpIoError("timeout_connect", "Connection timed out", ETIMEDOUT)
    if isinstance(exc, ConnectionRefusedError):
        return SmtpIoError("refused", "Connection refused", ECONNREFUSED)
    return SmtpIoError("connect", exc.strerror or str(exc), exc.errno or 0)


def handshake_error(exc: OSError) -> SmtpIoError:
    """A TLS handshake that failed: the certificate did not verify, an ssl.SSLError, a reset or a timeout."""
    import ssl  # already loaded: a handshake was tried

    if isinstance(exc, ssl.SSLCertVerificationError):
        return SmtpIoError("verify", f"certificate verification failed: {exc.verify_message}")
    return SmtpIoError("tls", str(exc) or type(exc).__name__)


def lookup_error(name: str, exc: socket.gaierror) -> SmtpIoError:
    """getaddrinfo's failure; `permanent` when the name does not exist."""
    permanent = exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME))
    return SmtpIoError("lookup", f"host lookup for {name} failed: {exc.strerror}", permanent=permanent)


def addresses_of(infos: list[Any]) -> list[str]:
    """The addresses in getaddrinfo's answer."""
    return [str(info[4][0]) for info in infos]
