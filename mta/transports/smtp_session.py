"""One connection of the smtp transport: greeting, EHLO, STARTTLS, AUTH, and the transactions.

`Conversation(job)` holds the SMTP side of a delivery (mta.transports.smtp_plan
decides which host and which recipients): every method is a piece of plan
that yields the ops of mta.transports.smtp_wire.

    session = yield from talk.open(host, talk.tls_policy(host))   # or raise HostFailed / Retry
    yield from talk.transaction(session, batch)                    # settles the batch, or raises
    yield from talk.quit(session)

Exceptions steer the job: `HostFailed` (this host cannot be used now: record
why, go on to the next host with the recipients not yet settled), `Retry`
(same host again with another TLS policy: in clear after a TLS failure, or
without verification after a tls_try_verify_hosts failure) and `Spoiled`
(the transaction's outcomes are settled, but the connection cannot go on).
Texts follow Exim's ("SMTP error from remote mail server after RCPT
TO:<...>: 550 ...", "SMTP timeout after ...").
"""

from __future__ import annotations

import os

from mta.errors import DeferError, DeliveryError, ExpansionError
from mta.lazy_pattern import lazy_compile
from mta.transports.base import Delivered
from mta.transports.smtp import SmtpDeferError, SmtpFailError, remote_error
from mta.transports.smtp_wire import (
    ETIMEDOUT,
    Blocking,
    Capabilities,
    Close,
    Connect,
    Pending,
    Receive,
    Reply,
    Reuse,
    Send,
    SendBody,
    Session,
    SmtpIoError,
    StartTls,
    TlsSetup,
    data_chunks,
    xtext,
)
from mta.transports.write import WriteSpec, message_chunks
from mta.values import split_list

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Generator
    from typing import Any

    from mta.transports.smtp_wire import Plan

if TYPE_CHECKING:
    from mta.route.dns import Host
    from mta.route.item import AddressItem
    from mta.transports.smtp_plan import SmtpJob

DATA_SPEC = WriteSpec(crlf=True, dot_stuff=True, bare_cr_to_space=True)
QUIT_TIMEOUT = 10.0  # a polite goodbye is not worth waiting command_timeout for


# helo_data's default, and its other spelling: the configured primary_hostname.
_PRIMARY_HOSTNAME = frozenset({"$primary_hostname", "${primary_hostname}"})


class HostFailed(Exception):
    def __init__(self, error: SmtpDeferError | SmtpFailError) -> None:
        super().__init__(error.message)
        self.error = error


class Spoiled(HostFailed):
    """The transaction's outcomes are settled, but the connection is unusable."""


class TlsPolicy:
    """What TLS to use with one host (a plain class: see smtp_wire)."""

    __slots__ = ("implicit", "initial", "required", "starttls", "verify")

    def __init__(self, implicit: bool, starttls: bool, required: bool, verify: str, initial: bool = True) -> None:
        self.implicit = implicit  # protocol = smtps
        self.starttls = starttls  # STARTTLS may be tried
        self.required = required  # hosts_require_tls
        self.verify = verify  # "require", "try" or "none"
        self.initial = initial  # False after a Retry: a cached connection would have been made another way

    def without(self, what: str) -> TlsPolicy:
        """The policy for a retry: without certificate verification, or without STARTTLS."""
        if what == "verify":
            return TlsPolicy(self.implicit, self.starttls, self.required, "none", initial=False)
        return TlsPolicy(self.implicit, False, self.required, self.verify, initial=False)


class Stale(Exception):
    """A cached connection failed before its first reply: the server had dropped it while idle.

    Nothing of the transaction was taken; its recipients go to a new connection (never a host failure).
    """


class Retry(Exception):
    def __init__(self, policy: TlsPolicy) -> None:
        super().__init__("retry")
        self.policy = policy


_CONTROL_CHARACTER = lazy_compile("[\x00-\x1f\x7f]")


def command_bytes(text: str) -> bytes:
    # Addresses were checked at reception, but an expansion (authenticated_sender, helo_data)
    # must not be able to inject a second command either.  (One search in C, not a Python
    # step per character: ~8 commands a message.)
    if not (text.isascii() and text.isprintable()) and _CONTROL_CHARACTER.search(text):
        raise DeferError(f"refusing to send an SMTP command containing control characters: {text[:60]!r}")
    return text.encode("utf-8")


class Conversation:
    """The SMTP conversation for one SmtpJob (see the module docstring)."""

    def __init__(self, job: SmtpJob) -> None:
        self.job = job
        self.options = job.options
        self.env = job.env
        self._eight_bit: bool | None = None  # does the message have 8-bit bytes? (asked once)

    def tls_policy(self, host: Host) -> TlsPolicy:
        implicit = self.options.protocol == "smtps"
        if self.job.in_list("tls_verify_hosts", host):
            verify = "require"
        elif self.job.in_list("tls_try_verify_hosts", host):
            verify = "try"
        else:
            verify = "none"
        return TlsPolicy(
            implicit=implicit,
            starttls=not implicit and not self.job.in_list("hosts_avoid_tls", host),
            required=self.job.in_list("hosts_require_tls", host),
            verify=verify,
        )

    def open(self, host: Host, policy: TlsPolicy) -> Generator[Any, Any, Session]:
        """A connection ready for MAIL: from the cache, or new (greeting, EHLO, STARTTLS, AUTH)."""
        try:
            key = (host.address or "", host.port or self.job.port, self._interface(host))
            tls = self._tls_setup(host, policy) if policy.implicit else None
        except DeliveryError as error:
            raise HostFailed(remote_error(SmtpDeferError, error.message, host)) from None
        if self.job.use_cache and policy.initial:
            session = yield Reuse(key)
            if session is not None and (yield from self._revive(session, host)):
                return session
        try:
            info = yield Connect(host, key[2], self.options.connect_timeout, tls)
        except SmtpIoError as exc:
            raise self._connect_failure(host, exc, policy) from None
        session = Session(host=host, key=key, tls=info)
        try:
            yield from self._greeting(session)
            yield from self._hello(session)
            yield from self._starttls(session, policy)
            yield from self._authenticate(session)
        except (HostFailed, Retry):
            yield Close()
            raise
        except DeliveryError as error:  # an option failed to expand
            yield Close()
            raise HostFailed(remote_error(SmtpDeferError, error.message, host)) from None
        return session

    def _revive(self, session: Session, host: Host) -> Generator[Any, Any, bool]:
        """A cached connection, unless the server has spoken on it while it was idle (a 421, EOF).

        No RSET is sent to find out whether it is still there, when the last
        transaction on it ended (Exim's send_rset after a message): the first
        reply of the next transaction tells, and if that reply never comes
        (the server dropped the idle connection) the transaction raises
        `Stale` and goes to a new connection; the server took nothing of it.
        """
        if (yield Pending()):
            yield Close()
            return False
        session.host, session.reused, session.untested = host, True, True
        return True

    def _connect_failure(self, host: Host, exc: SmtpIoError, policy: TlsPolicy) -> Exception:
        if exc.kind in ("tls", "verify"):
            if exc.kind == "verify" and policy.verify == "try":
                return Retry(policy.without("verify"))
            return HostFailed(remote_error(SmtpDeferError, f"TLS negotiation failed: {exc.text}", host,
                                           retry_error="tls_required"))
        via = "_MX" if host.mx is not None and host.mx >= 0 else "_A"
        if exc.kind == "refused":
            error = remote_error(SmtpDeferError, exc.text, host, retry_error="refused" + via, errno=exc.errno)
        elif exc.kind == "timeout_connect":
            error = remote_error(SmtpDeferError, exc.text, host, retry_error="timeout_connect" + via, errno=ETIMEDOUT)
        else:
            error = remote_error(SmtpDeferError, exc.text, host, errno=exc.errno)
        return HostFailed(error)

    def _io_error(self, exc: SmtpIoError, what: str, host: Host) -> SmtpDeferError | SmtpFailError:
        via = "_MX" if host.mx is not None and host.mx >= 0 else "_A"
        if exc.kind == "timeout":
            return remote_error(SmtpDeferError, f"SMTP timeout after {what}", host, retry_error="timeout" + via,
                                errno=ETIMEDOUT)
        if exc.kind == "lost":
            return remote_error(SmtpDeferError, f"Remote host closed connection in response to {what}", host,
                                retry_error="lost_connection", errno=exc.errno)
        return remote_error(SmtpDeferError, f"{exc.text} (in response to {what})", host, errno=exc.errno)

    def _command(self, line: bytes, what: str, host: Host, session: Session | None = None
                 ) -> Generator[Any, Any, Reply]:
        """One command, one reply; I/O trouble makes the host fail (or the cached `session` Stale)."""
        timeout = self.options.command_timeout
        try:
            yield Send(line + b"\r\n", timeout)
            reply: Reply = yield Receive(timeout)
        except SmtpIoError as exc:
            if session is not None and session.untested:
                raise Stale(exc.text) from None
            raise HostFailed(self._io_error(exc, what, host)) from None
        if session is not None and session.untested:
            self._tested(session, reply)
        if reply.code == 421:  # RFC 5321 §3.8: the server is going away; another host may do better
            raise HostFailed(self._reply_error(reply, what, host, stage=None))
        return reply

    def _reply_error(self, reply: Reply, what: str, host: Host, stage: str | None) -> SmtpDeferError | SmtpFailError:
        text = f"SMTP error from remote mail server after {what}: {reply.text}"
        if reply.code // 100 == 5 and stage is not None:
            return remote_error(SmtpFailError, text, host, reply)
        retry = f"{stage}_{reply.code}" if stage is not None and reply.code // 100 == 4 else None
        return remote_error(SmtpDeferError, text, host, reply, retry_error=retry, code=451 if stage is None else None)

    def _greeting(self, session: Session) -> Plan:
        try:
            reply = yield Receive(self.options.command_timeout)
        except SmtpIoError as exc:
            raise HostFailed(self._io_error(exc, "initial connection", session.host)) from None
        if reply.code // 100 != 2:
            raise HostFailed(self._reply_error(reply, "initial connection", session.host, stage=None))

    def _hello(self, session: Session) -> Plan:
        host = session.host
        helo_data = self.options.helo_data
        if helo_data in _PRIMARY_HOSTNAME:  # the default: its value without loading the expander
            name = self.env.primary_hostname
        else:
            name = self.job.expand_option(helo_data, "helo_data", host) or self.env.primary_hostname
        if not name or " " in name:
            raise DeferError(f"helo_data for the {self.job.transport.name} transport expands to an unusable name")
        session.caps = Capabilities()
        if not self.job.in_list("hosts_avoid_esmtp", host):
            reply = yield from self._command(command_bytes(f"EHLO {name}"), f"EHLO {name}", host)
            if reply.code // 100 == 2:
                session.caps = Capabilities.from_ehlo(reply)
                return
            if reply.code // 100 != 5:  # only a 5xx means "try HELO" (RFC 5321 §4.1.4)
                raise HostFailed(self._reply_error(reply, f"EHLO {name}", host, stage=None))
        reply = yield from self._command(command_bytes(f"HELO {name}"), f"HELO {name}", host)
        if reply.code // 100 != 2:
            raise HostFailed(self._reply_error(reply, f"HELO {name}", host, stage=None))

    def _starttls(self, session: Session, policy: TlsPolicy) -> Plan:
        host = session.host
        if session.tls is None and policy.starttls and session.caps.starttls:
            reply = yield from self._command(b"STARTTLS", "STARTTLS", host)
            if reply.code == 220:
                setup = self._tls_setup(host, policy)
                try:
                    # Anything already sent is plaintext that must not be read as if it came
                    # over TLS (CVE-2021-38371, "NO STARTTLS"): refuse the connection.
                    if (yield Pending()):
                        raise SmtpIoError("tls", "the server sent data after its reply to STARTTLS")
                    session.tls = yield StartTls(setup, self.options.command_timeout)
                except SmtpIoError as exc:
                    raise self._tls_failure(host, policy, exc) from None
                yield from self._hello(session)  # RFC 3207 §4.2: forget what was learned in clear
            elif policy.required or not self.options.tls_tempfail_tryclear:
                raise HostFailed(self._tls_error(f"the server refused STARTTLS: {reply.text}", host, policy))
            # else: the server declined; tls_tempfail_tryclear lets us go on in clear on this connection.
        if session.tls is None and policy.required:
            why = "the server did not offer STARTTLS" if not session.caps.starttls else "TLS was not tried"
            raise HostFailed(self._tls_error(why, host, policy))

    def _tls_error(self, why: str, host: Host, policy: TlsPolicy) -> SmtpDeferError | SmtpFailError:
        if policy.required:
            return remote_error(SmtpDeferError, f"TLS session required, but {why}", host, retry_error="tls_required")
        # Exim's tls_required retry rules cover a failed negotiation too.
        return remote_error(SmtpDeferError, f"TLS negotiation failed: {why}", host, retry_error="tls_required")

    def _tls_failure(self, host: Host, policy: TlsPolicy, exc: SmtpIoError) -> Exception:
        if exc.kind == "verify" and policy.verify == "try":
            return Retry(policy.without("verify"))
        if exc.kind in ("tls", "verify") and not policy.required and self.options.tls_tempfail_tryclear:
            return Retry(policy.without("starttls"))
        if exc.kind in ("tls", "verify"):
            return HostFailed(self._tls_error(exc.text, host, policy))
        return HostFailed(self._io_error(exc, "STARTTLS", host))

    def _tls_setup(self, host: Host, policy: TlsPolicy) -> TlsSetup:
        o = self.options
        verify = policy.verify != "none"
        sni = self.job.expand_option(o.tls_sni, "tls_sni", host) if o.tls_sni else None
        # Python checks the certificate against the name it sends as SNI, so a
        # verifying session names the host; a non-verifying one sends only tls_sni.
        server_hostname = sni or ((host.name or "").rstrip(".") if verify else None)
        ca = None
        if verify and o.tls_verify_certificates:
            ca = self.job.expand_option(o.tls_verify_certificates, "tls_verify_certificates", host)
        certfile = self.job.expand_option(o.tls_certificate, "tls_certificate", host) if o.tls_certificate else None
        keyfile = self.job.expand_option(o.tls_privatekey, "tls_privatekey", host) if o.tls_privatekey else None
        if ca and os.path.isdir(ca):
            return TlsSetup(verify, server_hostname, None, ca, certfile, keyfile)
        return TlsSetup(verify, server_hostname, ca or None, None, certfile, keyfile)

    def _interface(self, host: Host) -> str | None:
        if not self.options.interface:
            return None
        text = self.job.expand_option(self.options.interface, "interface", host)
        ipv6 = ":" in (host.address or "")
        for item in split_list(text or ""):
            if item and (":" in item) == ipv6:
                return item
        return None

    def _authenticate(self, session: Session) -> Plan:
        host, offered = session.host, session.caps.auth
        required = self.job.in_list("hosts_require_auth", host)
        if not required and not self.job.in_list("hosts_try_auth", host):
            return
        # Credentials go in clear only to a host we must authenticate to and that offers AUTH in clear.
        if session.tls is None and not required:
            return
        from mta.auth._common import AuthenticationCancelled, ClientExchange

        failures: list[str] = []
        for authenticator in self.job.authenticators if offered else ():
            mechanism = authenticator.public_name
            if mechanism not in offered:
                continue  # never a mechanism the server did not offer
            variables = self.job.host_variables(host)

            def expand(text: str, _variables: dict[str, Any] | None = variables) -> str:
                return self.env.expand(text, self.job.items[0], _variables)

            try:
                if not authenticator.client_usable(expand):
                    continue
                exchange = ClientExchange(authenticator, expand)
                line = exchange.first_command()
            except AuthenticationCancelled:
                continue
            except ExpansionError as exc:
                failures.append(f"{authenticator.name} authenticator: expansion failed: {exc.message}")
                continue
            what = f"AUTH {mechanism}"  # never the data: it holds the secret
            reply = yield from self._command(line, what, host)
            while reply.code == 334:
                reply = yield from self._command(exchange.respond(reply.lines[0] if reply.lines else ""), what, host)
            if reply.code == 235:
                session.authenticated = authenticator.name
                return
            failures.append(f"{authenticator.name}: {exchange.error or reply.text}")
        if required:
            if not offered:
                text = "authentication required but the server did not offer AUTH"
            elif not failures:
                text = f"authentication required but no client authenticator matches {' '.join(sorted(offered))}"
            else:
                text = f"authentication required but authentication attempt(s) failed ({failures[-1]})"
            raise HostFailed(remote_error(SmtpDeferError, text, host, retry_error="auth_failed"))

    def quit(self, session: Session) -> Plan:
        timeout = min(float(self.options.command_timeout), QUIT_TIMEOUT)
        try:
            yield Send(b"QUIT\r\n", timeout)
            yield Receive(timeout)
        except SmtpIoError:
            pass  # the work is done; a server that hangs up first has lost nothing of ours
        yield Close()

    def transaction(self, session: Session, batch: list[AddressItem]) -> Plan:
        host, caps = session.host, session.caps
        if caps.size and self.job.message.size > caps.size:  # RFC 1870 §6.2: the server would refuse it
            text = f"message size {self.job.message.size} exceeds the remote server's size limit of {caps.size}"
            self.job.settle(batch, remote_error(SmtpFailError, text, host, code=552, esc="5.3.4"))
            return
        utf8 = not all(a.isascii() for a in (self.job.sender, *(item.address for item in batch)))
        if utf8 and not caps.smtputf8:
            text = "the message has a non-ASCII address and the remote server does not offer SMTPUTF8"
            self.job.settle(batch, remote_error(SmtpFailError, text, host, code=553, esc="5.6.7"))
            return
        mail = yield from self._mail_command(session, utf8)
        rcpts = [f"RCPT TO:<{item.address}>" for item in batch]
        if caps.pipelining and not self.job.in_list("hosts_avoid_pipelining", host):
            accepted, reply = yield from self._pipelined_envelope(session, batch, mail, rcpts)
        else:
            accepted, reply = yield from self._envelope(session, batch, mail, rcpts)
        if not accepted or self._wrapper_refused(batch, accepted):
            return
        if reply is None:
            reply = yield from self._command(b"DATA", "DATA", host)
        if self._data_refused(reply, accepted, host):
            return
        yield from self._send_message(session, accepted)

    def _envelope(self, session: Session, batch: list[AddressItem], mail: str, rcpts: list[str]
                  ) -> Generator[Any, Any, tuple[list[AddressItem], None]]:
        """[RSET,] MAIL and the RCPTs one at a time; the recipients accepted."""
        host = session.host
        if session.needs_rset:
            self._check_rset((yield from self._command(b"RSET", "RSET", host, session)), host)
        session.needs_rset = True  # until a transaction ends after DATA
        mail_reply = yield from self._command(command_bytes(mail), mail, host, session)
        rcpt_replies = []
        if mail_reply.code // 100 == 2:
            for rcpt in rcpts:
                rcpt_replies.append((yield from self._command(command_bytes(rcpt), rcpt, host)))
        return self._envelope_replies(batch, mail, rcpts, mail_reply, rcpt_replies, host), None

    def _pipelined_envelope(self, session: Session, batch: list[AddressItem], mail: str, rcpts: list[str]
                            ) -> Generator[Any, Any, tuple[list[AddressItem], Reply | None]]:
        """RFC 2920: [RSET,] MAIL, every RCPT and DATA in one write; the recipients accepted, DATA's reply.

        As Exim does, DATA goes with the group (the last command a group may
        hold), so a message on a reused connection costs two round trips:
        the group, and the body with its dot.  Its reply is ignored when no
        recipient was accepted.  Not for mua_wrapper, which must be able to
        withdraw the message after one refused recipient.
        """
        host = session.host
        with_data = not self.job.wrapper
        commands = ["RSET"] * session.needs_rset + [mail, *rcpts] + ["DATA"] * with_data
        session.needs_rset = True  # until a transaction ends after DATA
        replies = yield from self._pipelined(commands, host, session)
        if commands[0] == "RSET":
            self._check_rset(replies.pop(0), host)
        accepted = self._envelope_replies(batch, mail, rcpts, replies[0], replies[1 : 1 + len(rcpts)], host)
        if not with_data:
            return accepted, None
        if not accepted and replies[-1].code == 354:
            # A server that opened DATA with no recipient (RFC 2920 §3.1 says it must refuse):
            # whatever is sent next would be message text, so the connection ends here.
            raise Stale("DATA accepted without recipients")
        # (Without recipients, DATA's refusal follows from theirs and is not reported, as in Exim.)
        return accepted, replies[-1]

    def _check_rset(self, reply: Reply, host: Host) -> None:
        if reply.code // 100 != 2:
            raise HostFailed(self._reply_error(reply, "RSET", host, stage=None))

    def _envelope_replies(self, batch: list[AddressItem], mail: str, rcpts: list[str], mail_reply: Reply,
                          rcpt_replies: list[Reply], host: Host) -> list[AddressItem]:
        """Settle what MAIL's and the RCPTs' replies settle; the recipients accepted."""
        for what, reply in zip([mail, *rcpts], [mail_reply, *rcpt_replies], strict=False):
            if reply.code // 100 == 3 or reply.code == 421:
                raise HostFailed(self._reply_error(reply, what, host, stage=None))
        if mail_reply.code // 100 != 2:
            self.job.settle(batch, self._reply_error(mail_reply, mail, host, stage="mail"))
            return []
        accepted = []
        for item, rcpt, reply in zip(batch, rcpts, rcpt_replies, strict=True):
            if reply.code // 100 == 2:
                accepted.append(item)
            else:
                self.job.outcomes[item] = self._reply_error(reply, rcpt, host, stage="rcpt")
        return accepted

    def _wrapper_refused(self, batch: list[AddressItem], accepted: list[AddressItem]) -> bool:
        """mua_wrapper: one refused recipient fails the whole message, so it is never sent."""
        if not self.job.wrapper or len(accepted) == len(batch):
            return False
        self.job.settle(accepted, next(self.job.outcomes[item] for item in batch if item not in accepted))
        return True

    def _data_refused(self, reply: Reply, accepted: list[AddressItem], host: Host) -> bool:
        """DATA's reply: False for 354 (send the message); True when it settled the recipients."""
        if reply.code == 354:
            return False
        if reply.code == 421:  # the server is going away (RFC 5321 §3.8)
            raise HostFailed(self._reply_error(reply, "DATA", host, stage=None))
        if reply.code // 100 in (4, 5):
            self.job.settle(accepted, self._reply_error(reply, "DATA", host, stage="data"))
            return True
        raise HostFailed(self._reply_error(reply, "DATA", host, stage=None))

    def _pipelined(self, commands: list[str], host: Host, session: Session) -> Generator[Any, Any, list[Reply]]:
        """The commands in one write, then the replies, matched in order."""
        timeout = self.options.command_timeout
        replies: list[Reply] = []
        try:
            yield Send(b"".join(command_bytes(c) + b"\r\n" for c in commands), timeout)
            for _command in commands:
                reply = yield Receive(timeout)
                if session.untested:
                    self._tested(session, reply)
                replies.append(reply)
            extra = yield Pending()
        except SmtpIoError as exc:
            if session.untested:
                raise Stale(exc.text) from None
            raise HostFailed(self._io_error(exc, commands[len(replies)], host)) from None
        if extra:  # more replies than commands: nothing read so far can be trusted
            error = SmtpIoError("protocol", "unexpected extra data after the replies to pipelined commands")
            raise HostFailed(self._io_error(error, commands[-1], host))
        return replies

    @staticmethod
    def _tested(session: Session, reply: Reply) -> None:
        """The first reply on a connection taken from the cache: a 421 is the server's idle timeout."""
        if reply.code == 421:
            raise Stale(reply.text)
        session.untested = False

    def _send_message(self, session: Session, accepted: list[AddressItem]) -> Plan:
        host = session.host
        edits = self.job.edits
        chunks = data_chunks(message_chunks(self.job.message, DATA_SPEC, edits.top, edits.bottom, edits.remove,
                                            edits.headers))
        # From here the server may have the message at any moment: a failure defers, and the
        # recipients are not offered to another host (that could deliver twice).
        try:
            yield SendBody(chunks, self.options.data_timeout)
            final = yield Receive(self.options.final_timeout)
        except SmtpIoError as exc:
            error = self._io_error(exc, "end of data", host)
            self.job.settle(accepted, error)
            raise Spoiled(error) from None
        session.needs_rset = False
        if final.code // 100 == 2:
            session.messages += 1
            tls = session.tls
            delivered = Delivered(
                host=host,
                confirmation=final.text,
                cipher=tls.cipher if tls else None,
                reused_connection=session.reused,
                tls_verified=tls.verified if tls else None,
            )
            self.job.settle(accepted, delivered)
        elif final.code // 100 in (4, 5):
            self.job.settle(accepted, self._reply_error(final, "end of data", host, stage="data"))
        else:
            error = self._io_error(SmtpIoError("protocol", f"unexpected reply {final.text}"), "end of data", host)
            self.job.settle(accepted, error)
            raise Spoiled(error)
        if final.code == 421:
            raise Spoiled(self._reply_error(final, "end of data", host, stage=None))

    def _mail_command(self, session: Session, utf8: bool) -> Generator[Any, Any, str]:
        caps, params = session.caps, []
        if caps.size is not None and self.options.size_addition >= 0:
            params.append(f"SIZE={self.job.message.size + self.options.size_addition}")
        if caps.eightbitmime:
            if self._eight_bit is None:
                self._eight_bit = yield Blocking(self._message_is_8bit)
            if self._eight_bit:
                params.append("BODY=8BITMIME")
        if utf8:
            params.append("SMTPUTF8")
        if session.authenticated:
            value = None
            if self.options.authenticated_sender:
                value = self.job.expand_option(self.options.authenticated_sender, "authenticated_sender", session.host)
            value = value or self.job.message.variables.get("authenticated_sender") or None
            params.append(f"AUTH={xtext(value)}" if value else "AUTH=<>")
        return " ".join([f"MAIL FROM:<{self.job.sender}>", *params])

    def _message_is_8bit(self) -> bool:
        """Any byte above 127 in what will be sent?  Reads the body once (a file read: Blocking)."""
        edits, message = self.job.edits, self.job.message
        texts = [*edits.top, *edits.bottom, *(h.text for h in message.headers if h.flag != "*")]
        if not all(t.isascii() for t in texts):
            return True
        with message.open_body() as body:
            while chunk := body.read(65536):
                if not chunk.isascii():
                    return True
        return False
