"""The smtp transport's wire level, shared by the plan and both clients.

Replies and their parser, EHLO capabilities, xtext, the framing of DATA,
and the vocabulary between a plan (mta.transports.smtp_plan) and a runner
(smtp_sync, smtp_async): the op classes a plan yields, the `SmtpIoError` a
runner throws back, TLS set-up and the `Session` record of one connection.

Nothing here does I/O or imports asyncio; ssl is imported only inside
`make_ssl_context`.  The small types are plain slotted classes, not
dataclasses, because making a dataclass costs ~0.4 ms at import and
mua_wrapper's start-up time counts.
"""

from __future__ import annotations

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Generator, Iterable, Iterator
    from typing import Any

    from mta.route.dns import Host

ECONNREFUSED = 111
ETIMEDOUT = 110
# RFC 5321 §4.5.3.1.5 allows 512 octets; real servers send longer lines, so be lenient but bounded.
MAX_REPLY_LINE = 4096
MAX_REPLY_LINES = 200  # a multi-line reply longer than this is an attack, not an EHLO
WRITE_SIZE = 65536  # bytes of the message per write after DATA


# ---------------------------------------------------------------------------
# Replies and capabilities
# ---------------------------------------------------------------------------


class _Record:
    """A plain record (see the module docstring for why not a dataclass)."""

    __slots__ = ()

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


class Reply(_Record):
    """One SMTP reply; `lines` hold the text after each ``ddd-`` / ``ddd `` prefix."""

    __slots__ = ("code", "lines")

    def __init__(self, code: int, lines: tuple[str, ...]) -> None:
        self.code, self.lines = code, lines

    @property
    def text(self) -> str:
        """The reply as the server sent it, lines joined by newlines (Exim's form in logs and bounces)."""
        last = len(self.lines) - 1
        return "\n".join(f"{self.code}{'-' if i < last else ' '}{line}".rstrip() for i, line in enumerate(self.lines))

    @property
    def esc(self) -> str | None:
        """The RFC 3463 enhanced status code at the start of the reply, if its class agrees with the code."""
        first = self.lines[0].split(" ", 1)[0] if self.lines else ""
        parts = first.split(".")
        if (
            len(parts) == 3
            and all(p.isascii() and p.isdigit() and 0 < len(p) <= 3 for p in parts)
            and parts[0] == str(self.code)[0]
        ):
            return first
        return None

    def __str__(self) -> str:
        return self.text


class ReplyError(Exception):
    """The server broke the reply grammar (RFC 5321 §4.2); the connection cannot be trusted.

    `replies` are the complete replies that came before the bad line in the
    same read: they are still answers to commands, in order.
    """

    def __init__(self, text: str, replies: list[Reply] | None = None) -> None:
        super().__init__(text)
        self.replies = replies or []


class ReplyParser:
    """Bytes in, complete replies out; strict about the grammar, lenient about bare LF.

    Both clients feed what they read here, so pipelined replies that arrive
    in one segment are all kept, in order (OpenSMTPD CVE-2020-8794: the
    client side of the protocol is attack surface too).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._lines: list[str] = []
        self._code: int | None = None

    @property
    def pending(self) -> bool:
        """True when bytes of a reply not yet complete are held."""
        return bool(self._buffer) or bool(self._lines)

    def feed(self, data: bytes) -> list[Reply]:
        """The replies `data` completes.  Raises ReplyError (carrying the replies before the fault)."""
        self._buffer += data
        replies: list[Reply] = []
        try:
            while True:
                end = self._buffer.find(b"\n")
                if end < 0:
                    if len(self._buffer) > MAX_REPLY_LINE:
                        raise ReplyError("reply line too long")
                    return replies
                raw = bytes(self._buffer[:end]).removesuffix(b"\r")
                del self._buffer[: end + 1]
                reply = self._line(raw)
                if reply is not None:
                    replies.append(reply)
        except ReplyError as exc:
            exc.replies = replies
            raise

    def _line(self, raw: bytes) -> Reply | None:
        if len(raw) > MAX_REPLY_LINE:
            raise ReplyError("reply line too long")
        digits, sep = raw[:3], raw[3:4]
        if not (len(digits) == 3 and digits.isdigit() and digits[:1] in b"2345") or sep not in (b"", b" ", b"-"):
            raise ReplyError(f"malformed reply line {raw[:60]!r}")
        code = int(digits)
        if self._code is not None and code != self._code:
            raise ReplyError("reply code changes within a multi-line reply")
        self._lines.append(raw[4:].decode("utf-8", "replace"))
        if len(self._lines) > MAX_REPLY_LINES:
            raise ReplyError("multi-line reply too long")
        if sep == b"-":
            self._code = code
            return None
        reply = Reply(code, tuple(self._lines))
        self._lines, self._code = [], None
        return reply


class Capabilities(_Record):
    """What an EHLO reply offers (RFC 5321 §4.1.1.1 and the extension RFCs)."""

    __slots__ = ("auth", "eightbitmime", "esmtp", "pipelining", "size", "smtputf8", "starttls")

    def __init__(self, esmtp: bool = False) -> None:
        self.esmtp = esmtp
        self.size: int | None = None  # None: SIZE not offered; 0: offered without a limit (RFC 1870)
        self.pipelining = self.starttls = self.eightbitmime = self.smtputf8 = False
        self.auth: frozenset[str] = frozenset()

    @classmethod
    def from_ehlo(cls, reply: Reply) -> Capabilities:
        caps = cls(esmtp=True)
        mechanisms: set[str] = set()
        for line in reply.lines[1:]:
            words = line.upper().split()
            if not words:
                continue
            keyword, params = words[0], words[1:]
            if keyword.startswith("AUTH="):  # the pre-RFC form some servers still send
                keyword, params = "AUTH", [keyword[5:], *params]
            if keyword == "SIZE":
                size = params[0] if params else ""
                caps.size = int(size) if size.isascii() and size.isdigit() and len(size) <= 18 else 0
            elif keyword == "PIPELINING":
                caps.pipelining = True
            elif keyword == "STARTTLS":
                caps.starttls = True
            elif keyword == "AUTH":
                mechanisms.update(params)
            elif keyword == "8BITMIME":
                caps.eightbitmime = True
            elif keyword == "SMTPUTF8":
                caps.smtputf8 = True
        caps.auth = frozenset(mechanisms)
        return caps


def xtext(text: str) -> str:
    """RFC 3461 §4 xtext, for MAIL FROM's AUTH= parameter."""
    return "".join(
        c if 33 <= ord(c) <= 126 and c not in "+=" else "".join(f"+{b:02X}" for b in c.encode()) for c in text
    )


# ---------------------------------------------------------------------------
# The I/O requests a plan yields, and the failures thrown back into it
# ---------------------------------------------------------------------------


class SmtpIoError(Exception):
    """An I/O failure, as a runner reports it to the plan.

    `kind`: ``refused`` / ``timeout_connect`` / ``connect`` (making the
    connection), ``timeout`` (waiting for a reply or writing), ``lost`` (the
    server closed), ``protocol`` (a malformed reply), ``tls`` (handshake or
    TLS set-up), ``verify`` (the certificate did not verify), ``lookup``
    (a host name has no address; `permanent` when it does not exist).
    """

    def __init__(self, kind: str, text: str, errno: int = 0, permanent: bool = False) -> None:
        super().__init__(text)
        self.kind, self.text, self.errno, self.permanent = kind, text, errno, permanent


class TlsSetup(_Record):
    """How to make one TLS session; `verify` covers chain and name (`server_hostname`)."""

    __slots__ = ("cafile", "capath", "certfile", "keyfile", "server_hostname", "verify")

    def __init__(
        self,
        verify: bool,
        server_hostname: str | None,
        cafile: str | None = None,
        capath: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
    ) -> None:
        self.verify, self.server_hostname = verify, server_hostname
        self.cafile, self.capath, self.certfile, self.keyfile = cafile, capath, certfile, keyfile

    @property
    def context_key(self) -> tuple[Any, ...]:
        return (self.verify, self.cafile, self.capath, self.certfile, self.keyfile)


class TlsInfo(_Record):
    __slots__ = ("cipher", "verified")

    def __init__(self, cipher: str, verified: bool) -> None:
        self.cipher = cipher  # Exim's X= form: TLS1.3:TLS_AES_256_GCM_SHA384:256
        self.verified = verified


def make_ssl_context(setup: TlsSetup) -> ssl.SSLContext:
    """A client context for `setup`; ssl is imported here, only when TLS is used.

    Raises OSError (ssl.SSLError is one) when a CA or certificate file is bad.
    """
    import ssl

    if setup.verify:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=setup.cafile, capath=setup.capath)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if setup.certfile:
        context.load_cert_chain(setup.certfile, setup.keyfile)
    return context


def tls_info(ssl_object: ssl.SSLObject | ssl.SSLSocket, verified: bool) -> TlsInfo:
    name, _version, bits = ssl_object.cipher() or ("unknown", "", 0)
    protocol = (ssl_object.version() or "TLS").replace("TLSv", "TLS")
    return TlsInfo(f"{protocol}:{name}:{bits}", verified)


class Resolve(_Record):
    """Addresses of a host name -> list[str]."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class Connect(_Record):
    """Open a connection to host.address:host.port (TLS at once if `tls`) -> TlsInfo | None."""

    __slots__ = ("host", "interface", "timeout", "tls")

    def __init__(self, host: Host, interface: str | None, timeout: float, tls: TlsSetup | None) -> None:
        self.host, self.interface, self.timeout, self.tls = host, interface, timeout, tls


class Reuse(_Record):
    """Take an idle connection from the runner's cache -> Session | None."""

    __slots__ = ("key",)

    def __init__(self, key: tuple[str, int, str | None]) -> None:
        self.key = key


class Park(_Record):
    """Put the current connection, idle after a clean transaction, in the cache."""

    __slots__ = ("session",)

    def __init__(self, session: Session) -> None:
        self.session = session


class Send(_Record):
    __slots__ = ("data", "timeout")

    def __init__(self, data: bytes, timeout: float) -> None:
        self.data, self.timeout = data, timeout


class Receive(_Record):
    """Read one reply -> Reply."""

    __slots__ = ("timeout",)

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout


class Pending(_Record):
    """Has the server sent anything not read yet (or closed)? -> bool."""

    __slots__ = ()


class StartTls(_Record):
    """Start TLS on the current connection -> TlsInfo."""

    __slots__ = ("timeout", "tls")

    def __init__(self, tls: TlsSetup, timeout: float) -> None:
        self.tls, self.timeout = tls, timeout


class SendBody(_Record):
    """Write these chunks (the message, then the dot), each within `timeout`."""

    __slots__ = ("chunks", "timeout")

    def __init__(self, chunks: Iterator[bytes], timeout: float) -> None:
        self.chunks, self.timeout = chunks, timeout


class Blocking(_Record):
    """Call a function that reads files (in a thread, for the async runner) -> its result."""

    __slots__ = ("function",)

    def __init__(self, function: Callable[[], Any]) -> None:
        self.function = function


class Close(_Record):
    """Close the current connection (QUIT, if wanted, has been sent by the plan)."""

    __slots__ = ()


if TYPE_CHECKING:
    Op = Resolve | Connect | Reuse | Park | Send | Receive | Pending | StartTls | SendBody | Blocking | Close
    Plan = Generator[Op, Any, None]


class Session(_Record):
    """What we know about one open connection; kept with it in the connection cache."""

    __slots__ = ("authenticated", "caps", "host", "key", "messages", "needs_rset", "reused", "tls", "untested")

    def __init__(self, host: Host, key: tuple[str, int, str | None], tls: TlsInfo | None = None) -> None:
        self.host, self.key, self.tls = host, key, tls
        self.caps = Capabilities()
        self.authenticated: str | None = None
        self.messages = 0  # transactions that ended with the message taken
        self.reused = False  # taken from the cache: an earlier call sent a message over it
        self.needs_rset = False
        self.untested = False  # taken from the cache and not yet answered: the server may have dropped it


def data_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The message as written after DATA: its chunks, a CRLF if the last line lacks one, then ``.CRLF``.

    Small pieces (the header block, the blank line) are gathered into writes
    of up to WRITE_SIZE bytes, and the terminator travels with the last one:
    a separate tiny write could wait for a delayed ACK (Nagle) before leaving.
    """
    held = bytearray()
    tail = b"\r\n"  # nothing sent yet: the DATA command's own CRLF ends the previous line
    for chunk in chunks:
        if not chunk:
            continue
        tail = chunk[-2:] if len(chunk) >= 2 else tail[-1:] + chunk
        if held and len(held) + len(chunk) > WRITE_SIZE:
            yield bytes(held)
            held.clear()
        held += chunk
    held += (b"" if tail == b"\r\n" else b"\r\n") + b".\r\n"
    yield bytes(held)
