"""What every SMTP session of one receiving process shares: configuration, ACLs, TLS, AUTH, spool.

`ReceiverContext` answers the session's questions (what does EHLO offer
this host? does the RCPT ACL accept this address?) and does the work that
is not one connection's: spooling through the process's `Spooler`,
handing an accepted message to delivery, logging.  A session never reads
the configuration by itself, so the daemon, `-bs`, `-bS` and `-bh` differ
only in the context they give it.

ACL results become replies here, in Exim's words and codes: accept goes on,
deny is 550 (or the ACL's code), defer 451, drop 550 and the end of the
connection, discard accepts the command but not the recipient or message.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import threading
import time

from mta import debug
from mta.config.lists import match_domain, match_host
from mta.config.variables import expansion_context, list_context
from mta.errors import ExpansionError, SpoolError
from mta.log import ARRIVAL, escape, log_timestamp
from mta.spool.ids import new_message_id
from mta.taint import Tainted, taint

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from mta.receive.smtp_server import SmtpSession
    from mta.receive.spooler import PendingMessage, Spooler
    from mta.runtime import Runtime



class ReceiverContext:
    """Shared by the sessions of one process."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        spooler: Spooler | None,
        on_accepted: Callable[[str, Any], bool | None] | None = None,
        trace: Callable[[str], None] | None = None,
        batch_errors: Callable[[str], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.config = runtime.config
        self.spooler = spooler  # None: -bh, nothing is spooled
        self.on_accepted = on_accepted
        self.msglog_to_worker = False  # set by a daemon receiver whose messages go to workers
        self.msglog_after_reply = False  # set by a daemon receiver: see queued_msglog_line
        self.inflow: Any = None  # a daemon receiver's InflowGate (mta.daemon.flow), when inflow control is on
        # write_msglog_later's queue, and whether a spool thread is draining it.
        self._msglog_lock = threading.Lock()
        self._msglogs: list[tuple[str, str, Callable[[], None] | None]] = []
        self._msglog_draining = False
        # ACL decisions: -bh's reader, or -d+acl (the daemon's sessions too).
        self._trace = trace if trace is not None or "acl" not in debug.active else debug.write
        self._batch_errors = batch_errors
        self.lists = list_context(self.config)
        m = self.config.main
        self.enforce_sync = m.smtp_enforce_sync
        try:
            entry = pwd.getpwnam(m.mta_user)
            self.mta_login, self.mta_uid, self.mta_gid = entry.pw_name, entry.pw_uid, entry.pw_gid
        except KeyError:
            self.mta_login, self.mta_uid, self.mta_gid = str(os.getuid()), os.getuid(), os.getgid()
        if os.geteuid() != 0 and os.getuid() != self.mta_uid:
            # A per-user instance: its messages are the user's.
            entry = pwd.getpwuid(os.getuid())
            self.mta_login, self.mta_uid, self.mta_gid = entry.pw_name, entry.pw_uid, entry.pw_gid
        self._acl: Any = None
        self._run_acl: Any = None
        self._tls: Any = None
        self.on_etrn: Callable[[str], None] | None = None  # the daemon sets it

    # -- small helpers -----------------------------------------------------------------------
    @staticmethod
    def taint(text: str) -> Tainted:
        return taint(text)

    def trace(self, text: str) -> None:
        if self._trace is not None:
            self._trace(text)

    def batch_error(self, text: str) -> None:
        if self._batch_errors is not None:
            self._batch_errors(text)

    def host_in(self, option_value: str, session: SmtpSession) -> bool:
        if not option_value:
            return False
        if session.host_address is None:
            # Local SMTP (-bs, -bS): Exim matches an empty host list item; "*" matches too.
            return option_value.strip() in ("*", ":")
        # What EHLO offers is asked again at every MAIL, RCPT and DATA (which parameters are valid,
        # whether input may run ahead), and matching a host list costs far more than the rest of a
        # command.  The client is the same for the whole session, so each list is matched once per
        # session (and host name), as Exim decides these at EHLO.
        answers = session.host_answers
        key = (option_value, session.host_name)
        answer = answers.get(key)
        if answer is None:
            try:
                answer = match_host(session.host_address, session.host_name, option_value, self.lists).matched
            except ValueError:
                answer = False
            answers[key] = answer
        return answer

    def variables(self, session: SmtpSession) -> dict[str, Any]:
        """The session's facts as expansion variables (all network data tainted)."""
        t = session.transaction
        return {
            "sender_host_address": session.host_address,
            "sender_host_port": str(session.host_port) if session.host_port else None,
            "sender_host_name": session.host_name,
            "sender_helo_name": session.helo_name,
            "interface_address": session.interface_address,
            "interface_port": str(session.interface_port) if session.interface_port else None,
            "received_protocol": session.received_protocol,
            "authenticated_id": session.authenticated_id,
            "sender_host_authenticated": session.authenticator,
            "tls_in_cipher": session.tls_cipher,
            "tls_cipher": session.tls_cipher,
            "tls_in_ver": session.tls_version,
            **session.auth_variables,
            "sender_address": t.sender,
            "smtp_active_hostname": self.config.primary_hostname,
            "recipients_count": str(len(t.recipients)),
            "rcpt_count": str(len(t.recipients)),
        }

    def expand(self, text: str, session: SmtpSession) -> str:
        return expansion_context_expand(text, expansion_context(self.config, self.variables(session)))

    # -- what the session offers -----------------------------------------------------------
    def banner(self, session: SmtpSession) -> str:
        try:
            return self.expand(self.config.main.smtp_banner, session)
        except ExpansionError as exc:
            self.runtime.logger.panic(f"expansion of smtp_banner failed: {exc.message}")
            return f"{self.config.primary_hostname} ESMTP"

    def tls_advertised(self, session: SmtpSession) -> bool:
        if session.tls_cipher is not None or session.host_address is None:
            return False
        hosts = getattr(self.config.main, "tls_advertise_hosts", "*")
        return self.tls_available() and self.host_in(hosts, session)

    def tls_available(self) -> bool:
        return True

    def pipelining_advertised(self, session: SmtpSession) -> bool:
        return self.host_in(self.config.main.pipelining_advertise_hosts, session) or session.host_address is None

    def auth_mechanisms(self, session: SmtpSession) -> list[str]:
        if not self.runtime.authenticators:
            return []
        if session.tls_cipher is None and not self.host_in(self.config.main.auth_advertise_hosts, session):
            return []
        from mta.receive.smtp_auth import advertised_mechanisms

        return advertised_mechanisms(self, session)

    def extensions(self, session: SmtpSession) -> list[str]:
        """The EHLO reply's lines after the greeting (HELP is added by the session), Exim's order."""
        m = self.config.main
        lines = []
        if m.message_size_limit:
            lines.append(f"SIZE {m.message_size_limit}")
        lines.append("8BITMIME")
        if self.pipelining_advertised(session):
            lines.append("PIPELINING")
        if self.host_in(m.chunking_advertise_hosts, session):
            lines.append("CHUNKING")
        if self.host_in(m.dsn_advertise_hosts, session):
            lines.append("DSN")
        mechanisms = self.auth_mechanisms(session)
        if mechanisms:
            lines.append("AUTH " + " ".join(mechanisms))
        if self.tls_advertised(session):
            lines.append("STARTTLS")
        if self.host_in(m.smtputf8_advertise_hosts, session):
            lines.append("SMTPUTF8")
        return lines

    def extension_names(self, session: SmtpSession) -> set[str]:
        """The extensions EHLO offered (asked at every MAIL, RCPT and BDAT): made once per EHLO,
        as Exim decides them then, and again when TLS or the host's name has changed."""
        if not session.esmtp:
            return set()
        state = (session.helo_name, session.host_name, session.tls_cipher)
        known = session.extension_names
        if known is not None and known[0] == state:
            return known[1]
        names = {line.split()[0] for line in self.extensions(session)}
        session.extension_names = (state, names)
        return names

    def unqualified_sender_ok(self, session: SmtpSession) -> bool:
        return self.host_in(self.config.main.sender_unqualified_hosts, session)

    def unqualified_recipient_ok(self, session: SmtpSession) -> bool:
        return self.host_in(self.config.main.recipient_unqualified_hosts, session)

    def local_sender(self, session: SmtpSession, sender: str) -> str:
        """-bs by an untrusted caller: the envelope sender is the caller's own address (Exim)."""
        caller = session.local_caller
        if caller is None or getattr(caller, "trusted", True):
            return sender
        from mta.message.address import qualify

        return qualify(caller.login, self.config.qualify_domain)

    # -- ACLs ----------------------------------------------------------------------------------
    def _acl_engine(self) -> Any:
        if self._acl is None:
            from mta.receive.smtp_acl import acl_engine

            self._acl = acl_engine(self.runtime)
        return self._acl

    async def connection_refusal(self, session: SmtpSession) -> tuple[int, str, str] | None:
        """A connect ACL that does not accept closes the connection (Exim: 554 and goodbye)."""
        reply = await self.acl_check(session, "CONNECT", "", quiet=True)
        if reply is None or reply == "discard":
            return None
        return int(reply[:3]), reply[4:], ""

    async def acl_check(
        self,
        session: SmtpSession,
        stage: str,
        line: str,
        *,
        recipient: str | None = None,
        headers: list[Any] | None = None,
        size: int | None = None,
        quiet: bool = False,
    ) -> str | None:
        """Run the stage's ACL.  None: accepted (go on).  Otherwise the reply has been queued (unless
        `quiet`), the rejection logged, and its text ("550 relay not permitted") is returned."""
        run_acl = self._run_acl
        if run_acl is None:
            from mta.receive.smtp_acl import run_acl

            self._run_acl = run_acl  # (an import statement per command is a microsecond)
        result = await run_acl(self, session, stage, line, recipient=recipient, headers=headers, size=size)
        if result.verb == "accept":
            return None
        if result.verb == "discard":
            if stage == "RCPT":
                session.reply(250, "Accepted")  # accepted, then silently dropped
                return "discard"
            if stage in ("MAIL", "PREDATA", "DATA"):
                session.transaction.discard = True
            return None
        from mta.receive.acl_log import log_rejection, rejection_reply

        code, lines = rejection_reply(result, session.acl_ctx.stage)
        log_rejection(self.runtime.logger, result, session.acl_ctx)
        text = "\n".join(lines)
        if not quiet or result.verb == "drop":
            session.reply(int(code[:3]), (code[4:] + " " if len(code) > 3 else "") + text)
        if result.verb == "drop":
            from mta.receive.smtp_server import Drop

            raise Drop()
        return f"{code} {text}"

    async def verify_command(self, session: SmtpSession, verb: str, argument: str, line: str) -> None:
        if not argument:
            session.reply(501, f"{verb} must have an address argument")
            return
        reply = await self.acl_check(session, verb, line, recipient=taint(argument))
        if reply is None:
            session.reply(252, f"{verb} not available") if verb == "EXPN" else session.reply(
                252, "Administrative prohibition"
            )

    async def etrn(self, session: SmtpSession, argument: str, line: str) -> None:
        if not argument:
            session.reply(501, "ETRN must have an argument")
            return
        if await self.acl_check(session, "ETRN", line) is not None:
            return
        self.runtime.logger.main(f"ETRN {escape(argument)} received from {session.host_text().removeprefix('H=')}")
        from mta.receive.smtp_etrn import etrn_serialize_key, serialize_start, start_etrn

        key = etrn_serialize_key(self, argument)
        if key is not None and not await asyncio.to_thread(serialize_start, self, key):
            session.reply(458, f"Already processing {argument}")
            return
        session.reply(250, "OK")
        domain = argument[1:] if argument.startswith(("#", "@")) else argument
        if self.on_etrn is not None and not self.config.main.smtp_etrn_command and _plain_domain(domain):
            # The daemon: a queue run through its own workers; its end releases the key.
            self.on_etrn(domain if key is None else f"{domain} {argument}")
            return
        start_etrn(self, argument, key)

    # -- AUTH and TLS --------------------------------------------------------------------------
    async def authenticate(self, session: SmtpSession, argument: str, line: str) -> None:
        from mta.receive.smtp_auth import authenticate

        await authenticate(self, session, argument, line)

    def tls_context(self) -> Any:
        if self._tls is None:
            from mta.receive.tls import server_context

            self._tls = server_context(self.runtime)
        return self._tls

    def describe_tls(self, ssl_object: Any) -> tuple[str | None, str | None, str | None]:
        """(protocol version, standard cipher name, Exim's X= text) of a TLS session."""
        if ssl_object is None:
            return None, None, None
        from mta.receive.tls import cipher_text

        text = cipher_text(ssl_object)
        version, name, _bits = text.split(":", 2)
        return version, name, text

    # -- spooling and after ---------------------------------------------------------------------
    def new_message(self, session: SmtpSession) -> PendingMessage | None:
        if self.spooler is None:
            return None
        return self.spooler.new_message(new_message_id())

    @staticmethod
    def fake_message_id() -> str:
        return new_message_id()

    def log_arrival(self, message_id: str, text: str, started: float, msglog: bool = True) -> None:
        """Runs in the spool thread right after the commit: the <= line and (with `msglog`) the
        message log's first line."""
        logger = self.runtime.logger
        logger.main(f"{ARRIVAL} {text}", message_id, now=started)
        if msglog and self.config.main.message_logs:
            self.write_msglog(message_id, msglog_received_line(text, started))

    def write_msglog(self, message_id: str, line: str) -> None:
        try:
            self.runtime.spool.append_msglog(message_id, line, new=True)
        except SpoolError as exc:  # the msglog is a convenience copy; the message is safe
            self.runtime.logger.main(f"cannot write message log: {exc}", message_id)

    def write_msglog_later(self, message_id: str, line: str, then: Callable[[], None] | None = None) -> None:
        """write_msglog off the event loop (a thread of the spooler), then `then` (the message's
        lock let go: nobody delivers it, and removes its log, before the log is made)."""
        if self.spooler is None:
            self.write_msglog(message_id, line)
            if then is not None:
                then()
            return

        # One job at a time drains what is queued: a job (a pool thread woken, taking the GIL from
        # the event loop) per message cost a receiver with 1,000 sessions a sixth of its throughput.
        with self._msglog_lock:
            self._msglogs.append((message_id, line, then))
            if self._msglog_draining:
                return
            self._msglog_draining = True
        self.spooler.executor.submit(self._drain_msglogs)

    def _drain_msglogs(self) -> None:
        while True:
            with self._msglog_lock:
                if not self._msglogs:
                    self._msglog_draining = False
                    return
                batch, self._msglogs = self._msglogs, []
            for message_id, line, then in batch:
                try:
                    self.write_msglog(message_id, line)
                except Exception as exc:  # a bug: the log is a convenience copy; the rest go on
                    self.runtime.logger.panic(f"cannot write message log: {exc!r}", message_id)
                finally:
                    if then is not None:
                        then()

    def queued_msglog_line(self, text: str, started: float) -> str | None:
        """The message log's first line for a message that stays on the queue, when this daemon
        receiver writes it after the 250 instead of before: in the spool writer's thread it
        held up the replies of its whole batch (a new file each).  None: written before, with
        the arrival's log line (outside a daemon, or no message logs)."""
        if not self.msglog_after_reply or not self.config.main.message_logs:
            return None
        return msglog_received_line(text, started)

    def msglog_goes_to_worker(self, text: str, started: float) -> str | None:
        """The message log's first line for a message about to be handed to a delivery worker,
        which writes it only if the attempt leaves something to log; None when the receiver
        writes it itself (no workers, queue_only, preserve_message_logs, or a line too long to
        travel with the message's id)."""
        if not self.msglog_to_worker:
            return None
        line = msglog_received_line(text, started)
        return line if len(line.encode("utf-8", "surrogateescape")) < MSGLOG_LINE_MAX else None

    async def message_accepted(self, session: SmtpSession, pending: PendingMessage) -> bool:
        """True when the message was handed to a delivery worker."""
        if self.on_accepted is not None:
            return bool(self.on_accepted(pending.message_id, pending))
        pending.release_lock()
        return False


# A message log's first line travels with the message's id to a delivery worker in one datagram.
MSGLOG_LINE_MAX = 3800


def msglog_received_line(text: str, started: float) -> str:
    """The message log's first line, Exim's: the time of arrival and the <= line's text."""
    return f"{log_timestamp(started)} Received from {text}"


def expansion_context_expand(text: str, ctx: Any) -> str:
    from mta.expand.expander import expand

    return expand(text, ctx)


def _plain_domain(text: str) -> bool:
    """A domain name that may travel on the daemon's control socket (letters, digits, dots, hyphens)."""
    return 0 < len(text) <= 253 and all(c.isascii() and (c.isalnum() or c in ".-") for c in text)


def load_average() -> int:
    """The 1-minute load average times 1000, as Exim's smtp_load_reserve counts it."""
    try:
        return int(os.getloadavg()[0] * 1000)
    except OSError:
        return 0


def match_local_domain(config: Any, domain: str, lists: Any) -> bool:
    return match_domain(domain, config.local_domains, lists).matched


def elapsed(since: float) -> float:
    return time.time() - since
