"""The mail transaction of an SMTP session: MAIL, RCPT, DATA, BDAT, and spooling the message.

The body is streamed: DATA through `DotDecoder` (only CRLF.CRLF ends it),
BDAT chunk by chunk, both into `MessageText` (headers kept, body sent on to
the spool's buffer, which spills to -D from a worker thread when large).
The size limit is checked as the text arrives (552 at the end, the rest
read and thrown away so the client can be told), a client that goes away
mid-message leaves nothing on the spool, and 250 is said only after
`PendingMessage.commit()` has made the message durable.

Replies are Exim's (``250 OK``, ``250 Accepted``, ``354 Enter message,
ending with "." on a line by itself``, ``250 OK id=...``).
"""

from __future__ import annotations

import errno
import os
import time

from mta.errors import SpoolError, SubmissionError
from mta.log import escape
from mta.message.address import qualify
from mta.message.headers import HeaderSyntaxError, parse_header_block
from mta.message.rewrite import SMTP, Rewriter
from mta.receive.reception import Arrival, arrival_log_text, prepare_envelope
from mta.receive.smtp_commands import CommandError, MailCommand, parse_bdat, parse_mail, parse_rcpt
from mta.receive.smtp_data import DotDecoder, MessageText
from mta.spool.files import space_shortage

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mta.receive.smtp_server import SmtpSession
    from mta.receive.spooler import PendingMessage

DATA_CHUNK_TIMEOUT_NOTE = "SMTP data timeout (message abandoned)"


class Transaction:
    """MAIL ... DATA/BDAT LAST: one message's envelope and text."""

    def __init__(self, session: SmtpSession) -> None:
        self.session = session
        self.mail: MailCommand | None = None
        self.recipients: list[str] = []
        self.orcpts: dict[int, str] = {}
        self.notify: dict[int, int] = {}
        self.rejected_rcpt_replies: list[str] = []
        self.message_vars: dict[str, str] = {}
        self.rcpt_count = 0  # RCPT commands, refused ones included ($rcpt_count)
        self.discard = False  # an ACL said discard: accept the message and drop it
        self.in_data = False
        self.lost_in_data = False  # the connection went while message text was coming
        # BDAT state across chunks
        self._bdat: tuple[PendingMessage | None, MessageText | None] | None = None
        self._bdat_failed: Failure | None = None
        self._bdat_deadline: float | None = None
        self.started = 0.0
        self.inflow_token = False  # taken from the daemon's inflow control (mta.daemon.flow) for this message

    @property
    def sender(self) -> str | None:
        return None if self.mail is None else self.mail.sender

    async def reset(self) -> None:
        await self.abandon()
        self.mail = None
        self.recipients = []
        self.orcpts = {}
        self.notify = {}
        self.rejected_rcpt_replies = []
        self.message_vars = {}
        self.rcpt_count = 0
        self.discard = False
        self.session.acl_ctx.new_message()

    async def abandon(self) -> None:
        """Drop a message in progress (RSET, a lost connection): nothing of it stays."""
        if self._bdat is not None:
            pending = self._bdat[0]
            self._bdat = None
            if pending is not None:
                await pending.abort()
        self._bdat_failed = None
        self._bdat_deadline = None
        self.in_data = False
        if self.inflow_token:  # the workers were not handed this message
            self.inflow_token = False
            self.session.ctx.inflow.give_back()

    async def _wait_for_inflow(self) -> None:
        """Before a message's files are made: wait, a little at most, while the receivers are ahead
        of the delivery workers (mta.daemon.flow).  Nothing is acknowledged while it waits."""
        gate = self.session.ctx.inflow
        if gate is not None and not self.inflow_token:
            self.inflow_token = await gate.take()

    def _smtp_rewrite(self) -> Any:
        """The S rewriting rules for a MAIL or RCPT address, or None when there are none."""
        s = self.session
        rules = s.ctx.runtime.rewrite_rules
        if not any(rule.flags & SMTP for rule in rules):
            return None
        variables = {"sender_host_address": s.host_address, "sender_host_name": s.host_name,
                     "sender_helo_name": s.helo_name, "received_protocol": s.received_protocol}
        from mta.config.variables import rewrite_env

        rewriter = Rewriter(rules, rewrite_env(s.config, s.logger, variables))

        def rewrite(path: str, sender: bool) -> str | None:
            new = rewriter.rewrite_smtp(path, sender)
            return None if new is None else s.ctx.taint(new)

        return rewrite

    # -- MAIL ------------------------------------------------------------------------------------
    async def cmd_mail(self, argument: str, line: str) -> None:
        s = self.session
        if s.helo_name is None and s.local_caller is None:
            s.reply(503, "HELO or EHLO required")
            s._protocol_error()
            return
        if self.mail is not None:
            s.reply(503, "sender already given")
            s._protocol_error()
            return
        try:
            mail = parse_mail(argument, s.ctx.extension_names(s), self._smtp_rewrite())
        except CommandError as exc:
            s.reply(exc.code, exc.text)
            s._protocol_error()
            return
        limit = s.config.main.message_size_limit
        if limit and mail.size is not None and mail.size > limit:
            s.reply(552, "Message size exceeds maximum permitted")
            s.log_reject(f"F=<{escape(mail.sender)}> rejected MAIL FROM: message too big: "
                         f"size={mail.size} max={limit}")
            return
        shortage = space_shortage(s.config.main.spool_directory, s.config.main.check_spool_space,
                                  s.config.main.check_spool_inodes, mail.size or 0)
        if shortage is not None:
            # Exim's check_spool_space: refuse before the message is sent, not after it is read.
            s.logger.main(shortage)
            s.reply(452, "Space shortage, please try later")
            return
        sender = mail.sender
        if sender and "@" not in sender:
            if s.local_caller is None and not s.ctx.unqualified_sender_ok(s):
                s.reply(501, f"<{escape(sender)}>: sender address must contain a domain")
                s.log_reject(f"F=<{escape(sender)}> rejected MAIL FROM: unqualified sender")
                return
            mail.sender = s.ctx.taint(qualify(sender, s.config.qualify_domain))
        sender = s.ctx.local_sender(s, mail.sender)
        mail.sender = sender
        self.mail = mail
        self.started = time.time()
        refusal = await s.ctx.acl_check(s, "MAIL", line)
        if refusal is not None:
            self.mail = None
            return
        s.reply(250, "OK")

    # -- RCPT ------------------------------------------------------------------------------------
    async def cmd_rcpt(self, argument: str, line: str) -> None:
        s = self.session
        if self.mail is None:
            s.reply(503, "sender not yet given")
            s._protocol_error()
            return
        limit = s.config.main.recipients_max
        if limit and len(self.recipients) >= limit:
            s.reply(452, "too many recipients")
            return
        self.rcpt_count += 1
        try:
            rcpt = parse_rcpt(argument, s.ctx.extension_names(s), self.mail.smtputf8, self._smtp_rewrite())
        except CommandError as exc:
            s.reply(exc.code, exc.text)
            self.rejected_rcpt_replies.append(f"{exc.code} {exc.text}")
            s._protocol_error()
            return
        recipient = rcpt.recipient
        if "@" not in recipient:
            if s.local_caller is None and not s.ctx.unqualified_recipient_ok(s) and recipient != "postmaster":
                text = f"<{escape(recipient)}>: recipient address must contain a domain"
                s.reply(501, text)
                self.rejected_rcpt_replies.append(f"501 {text}")
                return
            recipient = s.ctx.taint(qualify(recipient, s.config.qualify_recipient))
        result = await s.ctx.acl_check(s, "RCPT", line, recipient=recipient)
        if result is not None:
            self.rejected_rcpt_replies.append(result)
            return
        index = len(self.recipients)
        self.recipients.append(recipient)
        if rcpt.orcpt:
            self.orcpts[index] = rcpt.orcpt
        if rcpt.notify:
            self.notify[index] = rcpt.notify
        s.reply(250, "Accepted")

    # -- DATA ------------------------------------------------------------------------------------
    def _data_refusal(self, verb: str) -> bool:
        """503 when the transaction cannot take message text yet (True if refused)."""
        s = self.session
        if self.mail is None:
            s.reply(503, "MAIL command must precede " + verb if verb != "BDAT" else "sender not yet given")
            return True
        if not self.recipients:
            if self.rejected_rcpt_replies:
                lines = ["All RCPT commands were rejected with this error:", self.rejected_rcpt_replies[-1]]
                s.reply(503, "\n".join([*lines, "valid RCPT command must precede " + verb]))
            else:
                s.reply(503, "valid RCPT command must precede " + verb)
            return True
        return False

    async def cmd_data(self, argument: str, line: str) -> None:
        s = self.session
        if argument:
            s.reply(501, "DATA takes no argument")
            return
        if self._data_refusal("DATA"):
            s._protocol_error()
            return
        if s.ctx.enforce_sync and not s.batched and not s.testing and s.host_address is not None \
                and s.channel.has_input:
            s.reply(554, "SMTP synchronization error")
            from mta.receive.smtp_server import Drop

            raise Drop(f"SMTP protocol synchronization error (next input sent too soon: DATA was not the last "
                       f"command of a pipelined group): {s.host_text()}")
        if await s.ctx.acl_check(s, "PREDATA", line) is not None:
            return
        await self._wait_for_inflow()
        pending = s.ctx.new_message(s)  # before the 354: once it is sent, the text follows regardless
        text = MessageText(pending if pending is not None else _NULL_SINK, s.config.main.header_maxsize,
                           s.config.main.message_size_limit)
        s.reply(354, 'Enter message, ending with "." on a line by itself')
        decoder = DotDecoder()
        self.in_data = True
        failure: Failure | None = None
        deadline = s.channel.text_deadline(s.timeout)  # each line of the text within smtp_receive_timeout
        try:
            while not decoder.ended:
                chunk = await s.channel.read_chunk(s.timeout, deadline)
                deadline = s.channel.deadline
                stored, rest = decoder.feed(chunk)
                if rest:
                    s.channel.unread(rest)
                if failure is None and stored:
                    try:
                        text.feed(stored)
                    except SubmissionError as exc:
                        failure = _size_failure(exc)
                    if pending is not None and pending.wants_spill and failure is None:
                        try:
                            await pending.spill()
                        except SpoolError as exc:
                            # A full disk mid-message: drop what was written, read the rest
                            # of the text (the client is sending it regardless), then answer.
                            failure = self._spool_failure(pending.message_id, exc)
                            await pending.abort()
        except BaseException:
            self.lost_in_data = True
            self.in_data = False
            if pending is not None:
                await pending.abort()
            raise
        self.in_data = False
        await self._end_of_message(pending, text, failure, line)

    # -- BDAT (RFC 3030 CHUNKING) --------------------------------------------------------------------
    async def cmd_bdat(self, argument: str, line: str) -> None:
        s = self.session
        try:
            size, last = parse_bdat(argument)
        except CommandError as exc:
            s.reply(exc.code, exc.text)
            s._protocol_error()
            return
        if self._bdat is None:
            refused = "CHUNKING" not in s.ctx.extension_names(s) or self._data_refusal("BDAT")
            if refused:
                # The chunk is on its way regardless: read it and throw it away.
                await s.channel.read_exactly(size, s.timeout, _discard)
                if "CHUNKING" not in s.ctx.extension_names(s):
                    s.reply(503, "BDAT command used when CHUNKING not advertised")
                return
            if await s.ctx.acl_check(s, "PREDATA", line) is not None:
                await s.channel.read_exactly(size, s.timeout, _discard)
                return
            await self._wait_for_inflow()
            pending = s.ctx.new_message(s)
            self._bdat = (pending, MessageText(pending if pending is not None else _NULL_SINK,
                                               s.config.main.header_maxsize, s.config.main.message_size_limit))
        pending, text = self._bdat
        assert text is not None
        self.in_data = True

        async def take(piece: bytes) -> None:
            if self._bdat_failed is not None:
                return
            try:
                text.feed(piece)
            except SubmissionError as exc:
                self._bdat_failed = _size_failure(exc)
                return
            if pending is not None and pending.wants_spill:
                try:
                    await pending.spill()
                except SpoolError as exc:
                    self._bdat_failed = self._spool_failure(pending.message_id, exc)
                    await pending.abort()

        try:
            # Each line of the text within smtp_receive_timeout, from one chunk to the next.
            deadline = self._bdat_deadline if self._bdat_deadline is not None else s.channel.text_deadline(s.timeout)
            await s.channel.read_exactly(size, s.timeout, take, deadline)
            self._bdat_deadline = s.channel.deadline
        except BaseException:
            self.lost_in_data = True
            await self.abandon()
            raise
        if not last:
            s.reply(250, f"{size} byte chunk received")
            return
        failure, self._bdat_failed, self._bdat = self._bdat_failed, None, None
        self.in_data = False
        await self._end_of_message(pending, text, failure, line)

    # -- the end of the message -----------------------------------------------------------------------
    async def _end_of_message(
        self, pending: PendingMessage | None, text: MessageText, failure: Failure | None, line: str
    ) -> None:
        s = self.session
        try:
            if failure is not None:
                code, reason, rejected = failure
                s.reply(code, reason)
                if rejected:
                    s.log_reject(f"F=<{escape(self.mail.sender if self.mail else '')}> rejected after DATA: "
                                 f"{reason}")
                return
            try:
                header_text, stats = text.finish()
                headers = parse_header_block(header_text) if header_text else []
            except (SubmissionError, HeaderSyntaxError) as exc:
                s.reply(552 if "too big" in str(exc) else 550, escape(str(exc)))
                s.log_reject(f"F=<{escape(self.mail.sender if self.mail else '')}> rejected after DATA: "
                             f"{escape(str(exc))}")
                return
            await self._accept(pending, headers, stats, line)
        finally:
            if pending is not None and not pending.is_committed:
                await pending.abort()
            await self.reset()

    async def _accept(self, pending: PendingMessage | None, headers: list[Any], stats: Any, line: str) -> None:
        s = self.session
        assert self.mail is not None
        message_id = pending.message_id if pending is not None else s.ctx.fake_message_id()
        prepared = self._prepare(message_id, headers, stats)
        if prepared is None:
            return
        # The DATA ACL sees the envelope as rewritten (Exim rewrites before it runs); one address each.
        self.mail.sender = prepared.arrival.sender_address
        self.recipients = list(prepared.arrival.recipients)
        refusal = await s.ctx.acl_check(s, "DATA", line, headers=prepared.headers, size=prepared.size)
        if refusal is not None:
            return
        added = s.acl_ctx.message.added_headers
        if added:
            # The ACLs' add_header lines (MAIL, RCPT, PREDATA, DATA), at the end, as Exim adds them.
            headers.extend(parse_header_block("".join(added)))
            # The same (rewritten) envelope: the ACLs' lines are not rewritten (Exim).
            prepared = self._prepare(message_id, headers, stats, prepared.arrival)
            if prepared is None:
                return
        if pending is None:  # -bh: nothing is spooled
            s.reply(250, f"OK id={message_id}")
            s.ctx.trace("**** SMTP testing: that is not a real message id!")
            return
        if self.discard:
            # An ACL said discard: the client is told the message was taken; nothing is kept (Exim).
            s.logger.main(f"{s.host_text()} F=<{escape(self.mail.sender)}> discarded by an ACL")
            s.reply(250, f"OK id={message_id}")
            return
        controls = s.acl_ctx.message
        if controls.freeze:
            prepared.envelope.frozen = int(time.time())
        arrival = prepared.arrival
        log_text = arrival_log_text(s.logger, arrival, prepared.size, prepared.headers, prepared.had_message_id)
        # For a delivery worker to write, if its attempt leaves anything to log (none: written now).
        queued = controls.queue_only or controls.freeze
        msglog_first = None if queued else s.ctx.msglog_goes_to_worker(log_text, self.started)
        # A daemon's receiver writes a queued message's log after the 250 (see there).
        msglog_later = s.ctx.queued_msglog_line(log_text, self.started) if queued else None
        try:
            unlogged = await pending.commit(
                prepared.envelope,
                lambda: s.ctx.log_arrival(message_id, log_text, self.started,
                                          msglog=msglog_first is None and msglog_later is None))
        except (SpoolError, OSError) as exc:
            code, reason, _rejected = self._spool_failure(message_id, exc)
            s.reply(code, reason)
            return
        if unlogged is not None:
            # On the spool and to be delivered: a 4xx would have the client send it again.
            s.logger.panic(f"message {message_id} is spooled but its arrival was not logged: {unlogged}")
        s.messages_accepted += 1
        s.reply(250, f"OK id={message_id}")
        if queued:
            if msglog_later is not None:
                s.ctx.write_msglog_later(message_id, msglog_later, then=pending.release_lock)
            else:
                pending.release_lock()  # for a queue run (or an administrator) to take
            return
        pending.msglog_first = msglog_first
        if await s.ctx.message_accepted(s, pending):
            self.inflow_token = False  # spent: a worker puts one back when it takes the message

    def _spool_failure(self, message_id: str, exc: SpoolError | OSError) -> Failure:
        """The message could not be written (Exim's "Spool write error"): log it, and the reply
        to give: 452 when the disk is full (RFC 5321's insufficient system storage), else 451.
        Nothing of the message is kept: the caller has aborted it, or commit() did."""
        s = self.session
        number = exc.errno or 0
        why = os.strerror(number) if number else str(exc)
        s.logger.main(f"Message abandoned: Spool write error ({why}) while receiving message from "
                      f"{s.host_text()}: {exc}", message_id)
        code = 452 if number in (errno.ENOSPC, errno.EDQUOT) else 451
        return code, "Error while writing spool file", False

    def _prepare(self, message_id: str, headers: list[Any], stats: Any, arrival: Arrival | None = None) -> Any:
        """The envelope from this transaction (or `arrival`) and `headers`; None (and 5xx said) if refused."""
        s = self.session
        assert self.mail is not None
        arrival = arrival or self._arrival()
        try:
            prepared = prepare_envelope(s.ctx.runtime, message_id, self.started, arrival, headers, stats)
        except SubmissionError as exc:
            s.reply(550 if "loop" in exc.message else 552, escape(exc.message))
            s.log_reject(f"F=<{escape(self.mail.sender)}> rejected after DATA: {escape(exc.message)}")
            return None
        prepared.arrival = arrival
        return prepared

    def _arrival(self) -> Arrival:
        s = self.session
        assert self.mail is not None
        caller = s.local_caller
        arrival = Arrival(
            sender_address=self.mail.sender,
            recipients=list(self.recipients),
            received_protocol=s.received_protocol,
            caller_login=caller.login if caller is not None else s.ctx.mta_login,
            caller_uid=caller.uid if caller is not None else s.ctx.mta_uid,
            caller_gid=caller.gid if caller is not None else s.ctx.mta_gid,
            ident=caller.login if caller is not None else None,
            host_address=s.host_address,
            host_port=s.host_port,
            host_name=s.host_name,
            helo_name=s.helo_name,
            interface_address=s.interface_address,
            interface_port=s.interface_port,
            authenticator=s.authenticator,
            auth_id=s.authenticated_id,
            auth_sender=self.mail.auth if self.mail.auth and self.mail.auth != "<>" else None,
            tls_cipher=s.tls_cipher,
            local=caller is not None,
            orcpts=dict(self.orcpts),
            dsn_flags=dict(self.notify),
            dsn_envid=self.mail.envid,
            dsn_ret=self.mail.ret,
            smtputf8=self.mail.smtputf8,
            acl_variables={**s.acl_ctx.connection_vars, **s.acl_ctx.message_vars},
        )
        return arrival


class _NullSink:
    """Where -bh's message text goes: nowhere."""

    def write(self, data: bytes) -> int:
        return len(data)


_NULL_SINK: Any = _NullSink()


async def _discard(piece: bytes) -> None:
    return None


Failure = tuple[int, str, bool]  # (code, reply text, whether to log it as a rejection)


def _size_failure(exc: SubmissionError) -> Failure:
    if "header_maxsize" in exc.message:
        return 552, "Message header section too big", True
    return 552, "Message size exceeds maximum permitted", True
