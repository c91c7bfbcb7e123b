"""SMTP servers on loopback for the smtp transport's tests.

`FakeSmtpServer`: a raw asyncio SMTP responder in a background thread whose
every reply, and every way of misbehaving, is a knob: a greeting that never
comes, a 421 greeting, replies batched into one segment, a server that
advertises PIPELINING but answers only the first command of a group, a
connection dropped after the dot, STARTTLS answered with plaintext, DATA
opened with no recipient, a hang-up (or a 421) at the first command after
some messages, as a server that timed an idle connection out.  It
records each connection's command lines, each raw read, and the DATA
payloads exactly as they crossed the wire (still dot-stuffed).

`SmtpServer`: aiosmtpd (the real thing: tests/support/sink.py's `SmtpSink`,
whose reply knobs and record of messages it keeps) with the extras the tests need:
PIPELINING in its EHLO, STARTTLS or implicit TLS, AUTH PLAIN/LOGIN against a
user table and CRAM-MD5, SMTPUTF8, SIZE, per-command replies, and a count
of connections.

Both run until `stop()` (or the end of a ``with`` block); every wait in them
is bounded, so a client that misbehaves cannot hang a test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import secrets
import ssl
import threading
from collections.abc import Callable
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.support import sink

SERVER_WAIT = 5.0  # nothing in a test should take longer; a stuck client must not hang the server thread


@dataclasses.dataclass
class Behaviour:
    greeting: str | None = "220 fake.test ESMTP"  # None: accept the connection and never speak
    extensions: tuple[str, ...] = ("PIPELINING", "8BITMIME")
    ehlo_reply: str | None = None  # replaces the whole EHLO reply
    helo_reply: str = "250 fake.test"
    mail_reply: str = "250 2.1.0 Ok"
    rcpt_replies: dict[str, str] = dataclasses.field(default_factory=dict)  # address (lower case) -> reply
    data_reply: str = "354 End data with <CR><LF>.<CR><LF>"
    final_reply: str = "250 2.0.0 Ok: queued"
    batch_replies: bool = False  # answer a pipelined group in one write
    answer_first_only: bool = False  # broken pipelining: drop the rest of what arrived with a command
    drop_after_data: bool = False  # close the connection after the dot, without a reply
    starttls: str | None = None  # "plaintext": 220, then junk for a TLS hello; "inject": 220 plus an injected reply
    data_without_recipients: bool = False  # answer DATA with data_reply even when no RCPT was accepted
    hang_up_after: int | None = None  # messages; then the next command gets hang_up_reply and the connection ends
    hang_up_reply: str | None = None  # None: hang up without a word (as after an idle timeout)


@dataclasses.dataclass
class Connection:
    peer: tuple[Any, ...] = ()
    commands: list[str] = dataclasses.field(default_factory=list)
    reads: list[bytes] = dataclasses.field(default_factory=list)
    data: list[bytes] = dataclasses.field(default_factory=list)
    client_closed: bool = False  # a silent server saw the client hang up


class FakeSmtpServer:
    def __init__(self, host: str = "127.0.0.1", **behaviour: Any) -> None:
        self.host = host
        self.behaviour = Behaviour(**behaviour)
        self.connections: list[Connection] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __enter__(self) -> FakeSmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> FakeSmtpServer:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._session, self.host, 0), self._loop)
        self._server = future.result(SERVER_WAIT)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(SERVER_WAIT)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(SERVER_WAIT)
        self._loop.close()

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def data(self) -> list[bytes]:
        """Every DATA payload received, in order, as on the wire (dot-stuffed, CRLF, without the final dot)."""
        return [d for c in self.connections for d in c.data]

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = Connection(peer=tuple(writer.get_extra_info("peername") or ()))
        self.connections.append(conn)
        try:
            await self._converse(conn, reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the client went away or stalled: the test looks at what was recorded
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _converse(self, conn: Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        b = self.behaviour
        buffer = b""
        queued: list[str] = []

        async def read_more() -> bool:
            nonlocal buffer
            chunk = await asyncio.wait_for(reader.read(65536), SERVER_WAIT)
            if not chunk:
                return False
            conn.reads.append(chunk)
            buffer += chunk
            return True

        async def reply(text: str) -> None:
            queued.append(text)
            if b.batch_replies and b"\n" in buffer:
                return  # more commands of this group are waiting: answer them together
            data = "".join(line + "\r\n" for t in queued for line in t.split("\n"))
            queued.clear()
            writer.write(data.encode())
            await writer.drain()

        if b.greeting is None:
            while await read_more():
                pass
            conn.client_closed = True
            return
        await reply(b.greeting)
        accepted = 0  # recipients of the current transaction
        while True:
            while b"\n" not in buffer:
                if not await read_more():
                    return
            raw, buffer = buffer.split(b"\n", 1)
            if b.answer_first_only:
                buffer = b""
            line = raw.decode("utf-8", "replace").rstrip("\r")
            conn.commands.append(line)
            verb = line.split(" ", 1)[0].upper()
            if b.hang_up_after is not None and len(conn.data) >= b.hang_up_after and verb != "QUIT":
                if b.hang_up_reply is not None:
                    await reply(b.hang_up_reply)
                return
            if verb == "EHLO":
                extensions = ["fake.test", *b.extensions]
                text = "\n".join(f"250{'-' if i < len(extensions) - 1 else ' '}{e}" for i, e in enumerate(extensions))
                await reply(b.ehlo_reply or text)
            elif verb == "HELO":
                await reply(b.helo_reply)
            elif verb == "MAIL":
                accepted = 0
                await reply(b.mail_reply)
            elif verb == "RCPT":
                address = line.split(":", 1)[1].strip().strip("<>").lower()
                text = b.rcpt_replies.get(address, "250 2.1.5 Ok")
                accepted += text.startswith("2")
                await reply(text)
            elif verb == "DATA" and not accepted and not b.data_without_recipients:
                await reply("554 5.5.1 Error: no valid recipients")  # as Postfix (RFC 2920 §3.1)
            elif verb == "DATA":
                await reply(b.data_reply)
                if not b.data_reply.startswith("354"):
                    continue
                while b"\r\n.\r\n" not in b"\r\n" + buffer:
                    if not await read_more():
                        return
                payload, buffer = (b"\r\n" + buffer).split(b"\r\n.\r\n", 1)
                conn.data.append(payload[2:] + b"\r\n" if payload[2:] else b"")
                if b.drop_after_data:
                    return
                await reply(b.final_reply)
            elif verb == "STARTTLS" and b.starttls == "plaintext":
                await reply("220 go ahead")
                await read_more()  # the client's hello; answer it with something that is not TLS
                writer.write(b"this is not a TLS handshake\r\n")
                await writer.drain()
                return
            elif verb == "STARTTLS" and b.starttls == "inject":
                writer.write(b"220 go ahead\r\n250 injected before TLS\r\n")
                await writer.drain()
                await read_more()  # whatever the client does next; then hang up
                return
            elif verb in ("RSET", "NOOP"):
                await reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                await reply("221 2.0.0 Bye")
                return
            else:
                await reply("502 5.5.2 Error: command not recognized")


# ---------------------------------------------------------------------------
# aiosmtpd with extras
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Received(sink.Received):
    tls: bool
    authenticated: Any


class _Handler(sink.RecordingHandler):
    """aiosmtpd hooks.  No attribute may start with ``auth_`` but the mechanism below."""

    server: SmtpServer

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.server.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    def received(self, session: Session, envelope: Envelope) -> Received:
        return Received(
            envelope.mail_from or "",
            list(envelope.rcpt_tos),
            envelope.original_content or b"",
            list(envelope.mail_options),
            tls=session.ssl is not None,
            authenticated=session.auth_data,
        )

    async def auth_CRAM__MD5(self, server: SMTP, args: list[str]) -> AuthResult:
        challenge = f"<{secrets.token_hex(8)}@fake.test>".encode()
        response = await server.challenge_auth(challenge)
        if response is MISSING:
            return AuthResult(success=False, handled=False)
        assert isinstance(response, bytes)
        user, _, digest = response.decode().rpartition(" ")
        secret = self.server.users.get(user)
        if secret is None:
            return AuthResult(success=False, handled=False)
        expected = hmac.new(secret.encode(), challenge, "md5").hexdigest()
        return AuthResult(success=hmac.compare_digest(expected, digest), handled=False, auth_data=user)


class _AuthParamSMTP(SMTP):
    """aiosmtpd refuses MAIL FROM's AUTH= parameter (555), which RFC 4954 §5 says a server
    offering AUTH must take; accept it, leaving it in the mail options the handler sees."""

    def _getparams(self, params: Any) -> Any:
        result = super()._getparams(params)
        if result is not None:
            result.pop("AUTH", None)
        return result


class _CountingController(Controller):
    def __init__(self, server: SmtpServer, *args: Any, **kwargs: Any) -> None:
        self._counted = server
        super().__init__(*args, **kwargs)

    def factory(self) -> SMTP:
        self._counted.connections += 1
        return _AuthParamSMTP(self.handler, **self.SMTP_kwargs)


class SmtpServer(sink.SmtpSink):
    """aiosmtpd on loopback; see the module docstring."""

    messages: list[Received]  # type: ignore[assignment]

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        pipelining: bool = True,
        starttls: ssl.SSLContext | None = None,
        smtps: ssl.SSLContext | None = None,
        users: dict[str, str] | None = None,
        auth_in_clear: bool = False,
        smtputf8: bool = False,
        size_limit: int | None = None,
        port: int = 0,
    ) -> None:
        self.pipelining = pipelining
        self.users = dict(users or {})
        self.connections = 0
        self.auth_attempts: list[tuple[str, str]] = []  # (mechanism, login) as the server saw them
        kwargs: dict[str, Any] = {
            "enable_SMTPUTF8": smtputf8,
            "data_size_limit": size_limit,
            "auth_require_tls": not auth_in_clear,
            "authenticator": self._authenticate,
        }
        if starttls is not None:
            kwargs["tls_context"] = starttls
        if smtps is not None:
            kwargs["ssl_context"] = smtps
        super().__init__(host, port, ready_timeout=SERVER_WAIT, **kwargs)

    def make_controller(self, host: str, port: int, **controller_kwargs: Any) -> Controller:
        return _CountingController(self, _Handler(self), hostname=host, port=port, **controller_kwargs)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.auth_attempts.append((mechanism, login))
        ok = self.users.get(login) == password
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)

    def start(self) -> Self:
        super().start()
        self.connections = 0  # the controller's own readiness check is not a client
        return self


def wait_for(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    """Poll `predicate` (a server thread may record a moment after the client returns)."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# ---------------------------------------------------------------------------
# The client side: transports, messages and both clients, for the smtp tests
# ---------------------------------------------------------------------------

CLIENT_WAIT = 15.0  # an upper bound on any one test's deliveries; the transport's own timeouts are 1-2 s

TEST_HEADERS = (
    "Received: from alice by client.test.example with local\n\tid 1xV6uE-0005SY-29\n",
    "From: Alice <alice@example.com>\n",
    "To: bob@example.org\n",
    "Subject: test\n",
)


def smtp_transport(name: str = "remote_smtp", **options: Any) -> Any:
    """An smtp transport with short timeouts that may deliver to loopback."""
    from mta.transports.smtp import SmtpOptions, SmtpTransport

    settings: dict[str, Any] = {
        "driver": "smtp",
        "allow_localhost": True,
        "connect_timeout": 2,
        "command_timeout": 2,
        "data_timeout": 2,
        "final_timeout": 2,
    }
    settings.update(options)
    return SmtpTransport(name, SmtpOptions(**settings), ("test.conf", 1))


def outgoing(
    body: bytes = b"Hello.\n", headers: tuple[str, ...] = TEST_HEADERS, sender: str = "alice@example.com"
) -> Any:
    """An OutgoingMessage whose -D is a BytesIO."""
    import io
    import time

    from mta.message.headers import Header
    from mta.transports.base import OutgoingMessage

    header_objects = [Header(text.split(":", 1)[0], text) for text in headers]
    size = sum(len(t.encode()) for t in headers) + 1 + len(body)
    return OutgoingMessage(
        message_id="1xV6uE-0005SY-29",
        sender_address=sender,
        headers=header_objects,
        received_time=time.time(),
        size=size,
        open_body=lambda: io.BytesIO(body),
    )


def wire_message(body: bytes = b"Hello.\n", headers: tuple[str, ...] = TEST_HEADERS) -> bytes:
    """What the server should receive after un-stuffing: headers, blank line, body, all CRLF."""
    text = "".join(headers).encode() + b"\n" + body
    return text.replace(b"\n", b"\r\n")


def host_of(server: FakeSmtpServer | SmtpServer, name: str | None = None, mx: int | None = None) -> Any:
    from mta.route.dns import Host

    return Host(name=name or server.host, address=server.host, mx=mx, port=server.port)


def recipients(*addresses: str, hosts: list[Any], fallback: list[Any] | None = None) -> list[Any]:
    from mta.route.item import AddressItem

    items = []
    for address in addresses:
        local, _, domain = address.rpartition("@")
        items.append(
            AddressItem(
                address, local_part=local, domain=domain, hosts=list(hosts), fallback_hosts=list(fallback or []),
                transport_name="remote_smtp", router_name="smarthost",
            )
        )
    return items


def smtp_env(authenticators: tuple[Any, ...] = (), **extra: Any) -> Any:
    """A DeliveryEnv whose expand() is the real expander."""
    import time

    from mta.expand import ExpandContext, expand, time_variables
    from mta.transports.base import DeliveryEnv

    def expand_option(text: str, item: Any = None, more: dict[str, Any] | None = None) -> str:
        variables: dict[str, Any] = {
            "primary_hostname": "client.test.example",
            "qualify_domain": "test.example",
            **time_variables(),
        }
        if item is not None:
            variables.update(item.variables())
        if more:
            variables.update(more)
        return expand(text, ExpandContext(variables=variables))

    return DeliveryEnv(
        expand=expand_option,
        primary_hostname="client.test.example",
        qualify_domain="test.example",
        now=time.time(),
        extra={"authenticators": list(authenticators), **extra},
    )


class SmtpClient:
    """Runs deliveries with one of the two clients, then closes the connections it kept."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"SmtpClient({self.name})"

    def deliver(self, transport: Any, message: Any, items: list[Any], env: Any) -> dict[Any, Any]:
        return self.deliver_all(transport, [(message, items)], env)[0]

    def deliver_all(self, transport: Any, batches: list[tuple[Any, list[Any]]], env: Any) -> list[dict[Any, Any]]:
        if self.name == "sync":
            from mta.transports.smtp_sync import close_connections_sync, deliver_batch_sync

            try:
                return [deliver_batch_sync(transport, message, items, env) for message, items in batches]
            finally:
                close_connections_sync(transport)

        async def run() -> list[dict[Any, Any]]:
            try:
                return [await transport.deliver_batch(message, items, env) for message, items in batches]
            finally:
                await transport.close_connections()

        return asyncio.run(asyncio.wait_for(run(), CLIENT_WAIT))
