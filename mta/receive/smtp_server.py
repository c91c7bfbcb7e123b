"""One SMTP session, server side: greeting, commands, replies, limits (Exim's smtp_in.c).

`SmtpSession.run()` drives one connection from the banner to QUIT (or a
drop).  The transaction commands (MAIL, RCPT, DATA, BDAT) and spooling are
mta.receive.smtp_transaction's; AUTH and STARTTLS are here because they
change the session, not a message.  The same class serves a TCP connection
in the daemon, `-bs` on standard input and output, `-bS` batched SMTP and
the `-bh` test session (which spools nothing).

Security: everything the client sends is network data.  Addresses, the
HELO name and parameters are Tainted, reach expansions only as variable
values (through the ACL context), and are escaped in every log line.  No
exception text ever reaches the client: an unexpected error in a command
is logged to the panic log and answered 451, and the message in progress is
not acknowledged.  The session runs in a receiving process that has
dropped to mta_user.

Diagnostics: rejections go to the main and reject logs in Exim's shape
(``H=(helo) [ip] F=<sender> rejected RCPT <rcpt>: reason``); drops,
timeouts and synchronization errors to the main log.
"""

from __future__ import annotations

import asyncio
import time
import traceback

from mta import __version__, debug
from mta.log import escape
from mta.receive import smtp_transaction
from mta.receive.smtp_commands import is_valid_helo, split_verb
from mta.receive.smtp_io import ChannelClosed, LineTooLong, ReadTimeout, SmtpChannel

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mta.receive.smtp_context import ReceiverContext

COMMAND_LINE_MAX = 16384  # Exim's smtp_cmd_buffer_size: room for long AUTH and parameter lines
TLS_HANDSHAKE_TIMEOUT = 60.0
_NON_TRANSACTION = ("HELO", "EHLO", "NOOP", "RSET", "QUIT", "HELP", "VRFY", "EXPN", "ETRN", "STARTTLS", "AUTH")


class Drop(Exception):
    """End the session now (the reply, if any, has been queued)."""

    def __init__(self, log_reason: str | None = None) -> None:
        super().__init__(log_reason or "")
        self.log_reason = log_reason


class SmtpSession:
    """The state of one SMTP conversation."""

    def __init__(
        self,
        context: ReceiverContext,
        channel: SmtpChannel,
        *,
        host_address: str | None = None,
        host_port: int | None = None,
        interface_address: str | None = None,
        interface_port: int | None = None,
        local_caller: Any = None,
        batched: bool = False,
        testing: bool = False,
    ) -> None:
        self.ctx = context
        self.config = context.runtime.config
        self.logger = context.runtime.logger
        self.channel = channel
        self.host_address = host_address
        self.host_port = host_port
        self.host_name: str | None = None
        self.interface_address = interface_address
        self.interface_port = interface_port
        # -bs / -bS: no remote host; the caller's identity instead (Exim's local SMTP).
        self.local_caller = local_caller
        self.batched = batched  # -bS: no replies, errors to stderr
        self.testing = testing  # -bh: nothing is spooled
        self.helo_name: str | None = None
        self.esmtp = False
        self.authenticated_id: str | None = None
        self.authenticator: str | None = None
        self.auth_failures = 0
        self.auth_variables: dict[str, str | None] = {}
        self.tls_cipher: str | None = None
        self.tls_version: str | None = None
        self.tls_cipher_std: str | None = None
        self.connection_vars: dict[str, str] = {}
        # The context's answers for this session: host lists matched (host_in), what EHLO
        # offered and the state it was decided in (extension_names).
        self.host_answers: dict[tuple[str, str | None], bool] = {}
        self.extension_names: tuple[tuple[Any, ...], set[str]] | None = None
        self.unknown_commands = 0
        self.protocol_errors = 0
        self.messages_accepted = 0
        self.transaction = smtp_transaction.Transaction(self)
        self._handlers: dict[str, Any] | None = None
        self.errors_seen = False  # -bS: exit status
        from mta.receive.smtp_acl import session_acl_context

        self.acl_ctx = session_acl_context(context, self)
        m = self.config.main
        self.timeout: float | None = float(m.smtp_receive_timeout) or None

    # -- facts for logs, ACLs and the Received: header ---------------------------------------
    @property
    def received_protocol(self) -> str:
        if self.local_caller is not None:
            base = "local-bsmtp" if self.batched else ("local-esmtp" if self.esmtp else "local-smtp")
            return base
        protocol = "esmtp" if self.esmtp else "smtp"
        if self.tls_cipher:
            protocol += "s"
        if self.authenticator is not None:
            protocol += "a"
        return protocol

    def host_text(self) -> str:
        """Exim's H= value: name (helo) [ip], leaving out what is unknown or the same."""
        if self.host_address is None:
            if self.local_caller is not None:
                return f"U={self.local_caller.login}"
            return "H=local"
        host = f"[{self.host_address}]"
        if self.helo_name and self.helo_name != self.host_name:
            host = f"({escape(self.helo_name)}) {host}"
        if self.host_name:
            host = f"{escape(self.host_name)} {host}"
        return f"H={host}"

    def log_reject(self, text: str, headers: list[str] | None = None) -> None:
        """A rejection: main log and reject log, Exim's shape."""
        self.logger.reject(f"{self.host_text()} {text}", headers or [])

    # -- replies -------------------------------------------------------------------------------
    def reply(self, code: int, text: str) -> None:
        """Queue a reply; multi-line text gets "code-" continuation lines (RFC 5321 §4.2.1)."""
        if not self.batched and "\n" not in text and "receive" not in debug.active:
            self.channel.reply(f"{code} {text}\r\n".encode("utf-8", "surrogateescape"))  # (nearly all)
            return
        lines = text.split("\n") or [""]
        if self.batched:
            if code >= 400:
                self.errors_seen = True
                self.ctx.batch_error(f"{code} {' '.join(lines)}")
            return
        out = [f"{code}-{line}\r\n" for line in lines[:-1]]
        out.append(f"{code} {lines[-1]}\r\n")
        if "receive" in debug.active:
            debug.write("SMTP>> " + "\n       ".join(o.rstrip("\r\n") for o in out))
        self.channel.reply("".join(out).encode("utf-8", "surrogateescape"))

    # -- the session ---------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            try:
                await self._greet()
                while True:
                    if not await self._one_command():
                        break
            except Drop as drop:
                if drop.log_reason:
                    self.logger.main(drop.log_reason)
            except ReadTimeout:
                self.reply(421, f"{self.config.primary_hostname} SMTP incoming data timeout - closing connection")
                if self.transaction.in_data or self.transaction.lost_in_data:
                    self.logger.main(f"SMTP data timeout (message abandoned) on connection from {self._peer_for_log()}")
                else:
                    self.logger.main(f"SMTP command timeout on connection from {self._peer_for_log()}")
            except ChannelClosed:
                self._log_lost()
            try:
                await self.channel.flush()
            except ChannelClosed:
                pass
        finally:
            await self.transaction.abandon()
            self.channel.close()

    def _peer_for_log(self) -> str:
        return self.host_text().removeprefix("H=") if self.host_address else "local process"

    def _log_lost(self) -> None:
        if self.transaction.in_data or self.transaction.lost_in_data:
            self.logger.main(
                f"SMTP connection from {self._peer_for_log()} lost while reading message data"
            )
        elif self.ctx.runtime.logger.selected("lost_incoming_connection") and self.host_address is not None:
            self.logger.main(f"SMTP connection from {self._peer_for_log()} lost")

    async def _greet(self) -> None:
        refusal = await self.ctx.connection_refusal(self)
        if refusal is not None:
            code, text, log = refusal
            self.reply(code, text)
            raise Drop(log)
        if (self.ctx.runtime.config.main.smtp_enforce_sync and not self.batched and not self.testing
                and self.host_address is not None):
            # A client that talks before the banner is not following the protocol (and is often
            # a spam engine that does not wait): Exim drops it, and so do we.
            await asyncio.sleep(0)
            if self.channel.has_input:
                self.reply(554, "SMTP synchronization error")
                raise Drop(
                    "SMTP protocol synchronization error (input sent without waiting for greeting): "
                    f"rejected connection from {self._peer_for_log()} input=\"{self._input_sample()}\""
                )
        self.reply(220, self.ctx.banner(self))

    def _input_sample(self) -> str:
        return escape(bytes(self.channel._buffer[:60]).decode("utf-8", "replace"))

    async def _one_command(self) -> bool:
        """Read and act on one command (or several: see read_command); False when the session is over."""
        try:
            got = await self.channel.read_command(COMMAND_LINE_MAX, self.timeout, self._command, _runs_at_once)
        except LineTooLong:
            self.reply(500, "Command line too long")
            self._protocol_error()
            return True
        if isinstance(got, bytes):
            return await self._command(got)
        return await got  # type: ignore[no-any-return]  # begun as it arrived, to be finished here

    async def _command(self, raw: bytes) -> bool:
        """Act on one command line; False when the session is over.  Runs in the session's task, or
        in the channel's data_received until it has to wait (SmtpChannel.read_command)."""
        line = raw.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
        verb, argument = split_verb(line)
        if "receive" in debug.active:  # never AUTH's data: it holds the password
            debug.write("SMTP<< " + (f"AUTH {argument.split(' ')[0]} ****" if verb == "AUTH" else line))
        handler = self._handler_table.get(verb)
        if handler is None:
            self.unknown_commands += 1
            if self.unknown_commands > self.config.main.smtp_max_unknown_commands:
                self.reply(500, "Too many unrecognized commands")
                raise Drop(f"SMTP call from {self._peer_for_log()} dropped: too many unrecognized commands "
                           f"(last was \"{escape(line[:60])}\")")
            self.reply(500, "unrecognized command")
            return True
        try:
            result = await handler(argument, line)
        except (Drop, ChannelClosed, ReadTimeout):
            raise
        except Exception as exc:
            # A bug must not leak to the client, nor acknowledge anything: log, answer 451.  In the
            # middle of message text the conversation cannot be resynchronised: end it.
            in_text = self.transaction.in_data or verb in ("DATA", "BDAT")
            self.logger.panic(
                f"unexpected error in SMTP {verb} from {self._peer_for_log()}: {exc!r}\n{traceback.format_exc()}"
            )
            await self.transaction.abandon()
            self.reply(451, "Temporary local problem - please try later")
            if in_text:
                raise Drop() from None
            return True
        if verb not in ("DATA", "BDAT") and self.ctx.enforce_sync and self._out_of_sync(verb):
            self.reply(554, "SMTP synchronization error")
            raise Drop(
                f"SMTP protocol synchronization error (next input sent too soon: pipelining was not advertised):"
                f" rejected \"{escape(line[:60])}\" {self.host_text()} next input=\"{self._input_sample()}\""
            )
        return result is not False

    def _out_of_sync(self, verb: str) -> bool:
        """RFC 2920: without PIPELINING (HELO, or not advertised), a client must wait for each reply."""
        if self.batched or self.testing or self.host_address is None or not self.channel.has_input:
            return False
        if verb in ("STARTTLS", "AUTH", "QUIT"):
            # STARTTLS threw away what came before the handshake (what is there now came after);
            # AUTH reads its own continuation lines.
            return False
        if self.esmtp and self.ctx.pipelining_advertised(self) and verb in ("MAIL", "RCPT", "RSET", "NOOP"):
            return False
        return verb not in ("QUIT",)

    def _protocol_error(self) -> None:
        self.protocol_errors += 1
        if self.protocol_errors > self.config.main.smtp_max_synprot_errors:
            self.reply(554, "Too many syntax or protocol errors")
            raise Drop(f"SMTP call from {self._peer_for_log()} dropped: too many syntax or protocol errors")

    @property
    def _handler_table(self) -> dict[str, Any]:
        """The commands' handlers, made once per Transaction (tls_started makes a new one)."""
        if self._handlers is None:
            self._handlers = self._make_handlers()
        return self._handlers

    def _make_handlers(self) -> dict[str, Any]:
        t = self.transaction
        return {
            "HELO": self.cmd_helo,
            "EHLO": self.cmd_ehlo,
            "MAIL": t.cmd_mail,
            "RCPT": t.cmd_rcpt,
            "DATA": t.cmd_data,
            "BDAT": t.cmd_bdat,
            "RSET": self.cmd_rset,
            "NOOP": self.cmd_noop,
            "QUIT": self.cmd_quit,
            "HELP": self.cmd_help,
            "VRFY": self.cmd_vrfy,
            "EXPN": self.cmd_expn,
            "ETRN": self.cmd_etrn,
            "STARTTLS": self.cmd_starttls,
            "AUTH": self.cmd_auth,
        }

    # -- commands that are not the transaction ----------------------------------------------------
    async def cmd_helo(self, argument: str, line: str) -> None:
        await self._hello(argument, line, esmtp=False)

    async def cmd_ehlo(self, argument: str, line: str) -> None:
        await self._hello(argument, line, esmtp=True)

    async def _hello(self, argument: str, line: str, esmtp: bool) -> None:
        name = argument.strip()
        verb = "EHLO" if esmtp else "HELO"
        if not name or not is_valid_helo(name):
            self.reply(501, f"Syntactically invalid {verb} argument(s)")
            self.log_reject(f"rejected {verb} from {self.host_text().removeprefix('H=')}: syntactically invalid"
                            f" argument(s): {escape(name[:60])}")
            self._protocol_error()
            return
        await self.transaction.reset()
        self.helo_name = self.ctx.taint(name)
        refusal = await self.ctx.acl_check(self, "HELO", line)
        if refusal is not None:
            self.helo_name = None
            return
        self.esmtp = esmtp
        greeting = f"{self.config.primary_hostname} Hello {escape(name)} [{self.host_address or '127.0.0.1'}]"
        if self.host_address is None and self.local_caller is not None:
            greeting = f"{self.config.primary_hostname} Hello {self.local_caller.login} at {escape(name)}"
        if not esmtp:
            self.reply(250, greeting)
            return
        self.reply(250, "\n".join([greeting, *self.ctx.extensions(self), "HELP"]))

    async def cmd_rset(self, argument: str, line: str) -> None:
        await self.transaction.reset()
        self.reply(250, "Reset OK")

    async def cmd_noop(self, argument: str, line: str) -> None:
        self.reply(250, "OK")

    async def cmd_quit(self, argument: str, line: str) -> bool:
        await self.ctx.acl_check(self, "QUIT", line)
        self.reply(221, f"{self.config.primary_hostname} closing connection")
        return False

    async def cmd_help(self, argument: str, line: str) -> None:
        self.reply(214, "Commands supported:\nHELO EHLO MAIL RCPT DATA BDAT AUTH STARTTLS NOOP QUIT RSET HELP")

    async def cmd_vrfy(self, argument: str, line: str) -> None:
        await self.ctx.verify_command(self, "VRFY", argument, line)

    async def cmd_expn(self, argument: str, line: str) -> None:
        await self.ctx.verify_command(self, "EXPN", argument, line)

    async def cmd_etrn(self, argument: str, line: str) -> None:
        await self.ctx.etrn(self, argument, line)

    async def cmd_starttls(self, argument: str, line: str) -> None:
        if self.tls_cipher is not None or not self.ctx.tls_advertised(self):
            self.reply(503, "STARTTLS command used when not advertised" if self.tls_cipher is None
                       else "STARTTLS already used")
            self._protocol_error()
            return
        if argument:
            self.reply(501, "STARTTLS takes no argument")
            return
        if await self.ctx.acl_check(self, "STARTTLS", line) is not None:
            return
        context = self.ctx.tls_context()
        self.reply(220, "TLS go ahead")
        try:
            await self.channel.start_tls(context, TLS_HANDSHAKE_TIMEOUT)
        except (OSError, TimeoutError, ChannelClosed, asyncio.IncompleteReadError) as exc:
            raise Drop(
                f"TLS error on connection from {self._peer_for_log()} (SSL_accept): {escape(str(exc))}"
            ) from None
        self.tls_started()

    def tls_started(self) -> None:
        """After a handshake (STARTTLS, or a tls_on_connect port): RFC 3207 §4.2, forget everything."""
        ssl_object = self.channel.tls
        self.tls_version, self.tls_cipher_std, self.tls_cipher = self.ctx.describe_tls(ssl_object)
        self.helo_name = None
        self.esmtp = False
        self.transaction = smtp_transaction.Transaction(self)
        self._handlers = None

    async def cmd_auth(self, argument: str, line: str) -> None:
        await self.ctx.authenticate(self, argument, line)

    # -- timing ----------------------------------------------------------------------------------------
    @staticmethod
    def now() -> float:
        return time.time()


def _runs_at_once(line: bytearray) -> bool:
    """Whether a command may be run as it arrives (read_command): not DATA nor BDAT, which wait
    for the message text (and the fsync) and are better run by the session's task."""
    return line[:4].upper() not in (b"DATA", b"BDAT")


def version_banner(primary_hostname: str) -> str:
    return f"{primary_hostname} ESMTP mta {__version__}"
