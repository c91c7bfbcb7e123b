"""Reception: from headers + a streamed body to a message on the spool.

Shared by local submission (-bm, -t, -bs) and the SMTP daemon.  The caller
streams the body into `Reception.data_file`, then calls `accept()` with the
envelope facts and the header list; `accept()` adds the Received: header
(and Message-ID:/Date: when missing), writes -H, fsyncs and renames it into
place, and only then logs the arrival.  Until `accept()` returns, nothing
may be acknowledged; on any error the caller calls `abort()`, which leaves
no file behind.
"""

from __future__ import annotations

import time

from mta import __version__, record
from mta.config.main import DEFAULT_RECEIVED_HEADER_TEXT
from mta.config.variables import expansion_context
from mta.errors import ExpansionError, SpoolError, SubmissionError
from mta.log import ARRIVAL, escape, escape_token
from mta.memo import per_second
from mta.message.headers import Header, find, fold_message_data, make_header
from mta.message.headers import rfc822_date as _rfc822_date
from mta.receive.body import BodyStats
from mta.spool.ids import new_message_id

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

if TYPE_CHECKING:
    from mta.spool.envelope import Envelope


@record.dataclass(slots=True)
class Arrival:
    """Envelope and origin of a message being received."""

    sender_address: str
    recipients: list[str]
    received_protocol: str
    caller_login: str
    caller_uid: int
    caller_gid: int
    ident: str | None = None
    host_address: str | None = None
    host_port: int | None = None
    host_name: str | None = None
    helo_name: str | None = None
    interface_address: str | None = None
    interface_port: int | None = None
    authenticator: str | None = None
    auth_id: str | None = None
    auth_sender: str | None = None
    tls_cipher: str | None = None
    local: bool = True
    sender_set_untrusted: bool = False
    # Addresses that are not to be qualified later (local submissions).
    allow_unqualified: bool = False
    # A report this mta makes about another message (bounce, delay warning):
    # -localerror in -H, and the other message's id as R= in the log line.
    localerror: bool = False
    parent_id: str | None = None
    # SMTP extras (RFC 3461 DSN, RFC 6531 SMTPUTF8, ACL variables): by recipient index.
    orcpts: dict[int, str] = record.field(default_factory=dict)
    dsn_flags: dict[int, int] = record.field(default_factory=dict)
    dsn_envid: str | None = None
    dsn_ret: int | None = None
    smtputf8: bool = False
    acl_variables: dict[str, str] = record.field(default_factory=dict)
    # Set once the rewriting rules have been applied (they are applied once per message).
    rewritten: bool = False


@record.dataclass(slots=True)
class Received:
    """The result of a successful reception."""

    message_id: str
    size: int
    envelope: Envelope
    lock: Any = None  # the held -D lock, when handed over for an immediate delivery


def sender_rcvhost(arrival: Arrival) -> str | None:
    """The ``from`` part of Received: for a remote host, as Exim builds $sender_rcvhost."""
    if arrival.host_address is None:
        return None
    text = f"[{arrival.host_address}]"
    if arrival.host_name:
        text = f"{arrival.host_name} {text}"
    if arrival.helo_name and arrival.helo_name != arrival.host_name:
        text += f" (helo={arrival.helo_name})"
    return text


class Reception:
    """One message being received onto the spool."""

    def __init__(self, runtime, now: float | None = None) -> None:  # type: ignore[no-untyped-def]
        self.runtime = runtime
        self.config = runtime.config
        self.started = time.time() if now is None else now
        self.message_id = new_message_id()
        self.writer = runtime.spool.new_message(self.message_id)
        self.finished = False

    @property
    def data_file(self) -> BinaryIO:
        return self.writer.data_file

    def abort(self) -> None:
        """Forget the message: remove every file written so far."""
        if not self.finished:
            self.finished = True
            self.writer.abort()

    def release(self):  # type: ignore[no-untyped-def]
        """After accept(): hand over the -D lock (for an immediate delivery), or None if closed."""
        return self.writer.detach_lock()

    def close(self) -> None:
        """After accept(): let go of the message (its lock) for a queue runner to find."""
        self.writer.close()

    # -- completion -------------------------------------------------------
    def accept(self, arrival: Arrival, headers: list[Header], body: BodyStats) -> Received:
        """Put the message on the spool for good; raise SpoolError/SubmissionError if that fails."""
        prepared = prepare_envelope(self.runtime, self.message_id, self.started, arrival, headers, body)
        self.writer.commit(prepared.envelope)
        self.finished = True
        self._log_arrival(arrival, prepared.envelope, prepared.size, prepared.headers, prepared.had_message_id)
        return Received(self.message_id, prepared.size, prepared.envelope)

    def _log_arrival(
        self, arrival: Arrival, envelope: Envelope, size: int, headers: list[Header], log_message_id: bool
    ) -> None:
        logger = self.runtime.logger
        text = arrival_log_text(logger, arrival, size, headers, log_message_id)
        logger.main(f"{ARRIVAL} {text}", self.message_id, now=self.started)
        if self.config.main.message_logs:
            try:
                self.runtime.spool.append_msglog(self.message_id, _stamp(self.started) + f" Received from {text}")
            except SpoolError as exc:
                logger.main(f"cannot write message log: {exc}", self.message_id)


@record.dataclass(slots=True)
class PreparedEnvelope:
    """A received message's -H contents, ready to be written, and what its log line needs."""

    envelope: Envelope
    headers: list[Header]
    size: int
    had_message_id: bool
    arrival: Arrival | None = None  # what it was made from, for the log line


def prepare_envelope(
    runtime: Any, message_id: str, started: float, arrival: Arrival, headers: list[Header], body: BodyStats
) -> PreparedEnvelope:
    """The checks and additions of finish_headers, and the envelope built from `arrival`.
    Shared by every way into the spool (command line, SMTP daemon)."""
    # The spool format is imported here, not at the top: mua_wrapper uses
    # this module without ever writing a spool file (start-up time).
    from mta.spool.format import Envelope, HostAddress, Recipient, SpoolHeader

    finished = finish_headers(runtime, message_id, started, arrival, headers, body)
    envelope = Envelope(
        message_id=message_id,
        originator_login=arrival.caller_login,
        originator_uid=arrival.caller_uid,
        originator_gid=arrival.caller_gid,
        sender_address=arrival.sender_address,
        received_time=int(started),
        received_time_usec=int((started % 1) * 1_000_000),
        received_time_complete=_seconds_usec(time.time()),
        warning_count=0,
        helo_name=arrival.helo_name,
        host_address=HostAddress(arrival.host_address, arrival.host_port or 0) if arrival.host_address else None,
        host_name=arrival.host_name,
        interface_address=(
            HostAddress(arrival.interface_address, arrival.interface_port or 0)
            if arrival.interface_address
            else None
        ),
        ident=arrival.ident,
        received_protocol=arrival.received_protocol,
        body_linecount=body.linecount,
        max_received_linelength=finished.max_line_length,
        body_zerocount=body.zero_count or None,
        auth_id=arrival.auth_id,
        auth_sender=arrival.auth_sender,
        host_auth=arrival.authenticator,
        tls_cipher=arrival.tls_cipher,
        allow_unqualified_recipient=arrival.allow_unqualified,
        allow_unqualified_sender=arrival.allow_unqualified,
        deliver_firsttime=True,
        local=arrival.local,
        sender_set_untrusted=arrival.sender_set_untrusted,
        localerror=arrival.localerror,
        recipients=[
            Recipient(address=r, orcpt=arrival.orcpts.get(i, ""), dsn_flags=arrival.dsn_flags.get(i, 0))
            for i, r in enumerate(arrival.recipients)
        ],
        headers=[SpoolHeader(h.flag, h.text) for h in finished.headers],
        dsn_envid=arrival.dsn_envid,
        dsn_ret=arrival.dsn_ret,
        smtputf8=arrival.smtputf8,
        acl_variables=dict(arrival.acl_variables),
    )
    return PreparedEnvelope(envelope, finished.headers, finished.size, finished.had_message_id)


def arrival_log_text(
    logger: Any, arrival: Arrival, size: int, headers: list[Header], log_message_id: bool = True
) -> str:
    """The fields of the ``<=`` line: sender [R=] H= U= P= X= A= S= id= [T=] [for ...]."""
    fields = [escape(arrival.sender_address) if arrival.sender_address else "<>"]
    if arrival.parent_id:
        fields.append(f"R={arrival.parent_id}")  # the message a bounce or warning reports on
    if arrival.host_address:
        # Exim's form: H=name (helo) [ip], leaving out what is unknown or the same.
        host = f"[{arrival.host_address}]"
        if arrival.host_port is not None and logger.selected("incoming_port"):
            host += f":{arrival.host_port}"
        if arrival.helo_name and arrival.helo_name != arrival.host_name:
            host = f"({escape(arrival.helo_name)}) {host}"
        if arrival.host_name:
            host = f"{escape(arrival.host_name)} {host}"
        fields.append(f"H={host}")
    if arrival.local or arrival.ident:
        fields.append(f"U={escape_token(arrival.ident or arrival.caller_login)}")
    if arrival.interface_address and logger.selected("incoming_interface"):
        port = f":{arrival.interface_port}" if arrival.interface_port is not None else ""
        fields.append(f"I=[{arrival.interface_address}]{port}")
    fields.append(f"P={escape_token(arrival.received_protocol)}")
    if arrival.tls_cipher and logger.selected("tls_cipher"):
        fields.append(f"X={arrival.tls_cipher}")
    if arrival.authenticator:
        fields.append(f"A={arrival.authenticator}" + (f":{escape(arrival.auth_id)}" if arrival.auth_id else ""))
    fields.append(f"S={size}")
    msgid = find(headers, "message-id")
    if msgid and log_message_id and logger.selected("msg_id"):
        value = msgid[0].text.split(":", 1)[1].strip()
        if value.startswith("<") and value.endswith(">"):
            value = value[1:-1]
        fields.append(f"id={escape(value)}")
    if logger.selected("subject"):
        subject = find(headers, "subject")
        if subject:
            fields.append(f'T="{escape(subject[0].text.split(":", 1)[1].strip())}"')
    if logger.selected("received_recipients"):
        fields.append("for " + " ".join(escape(r) for r in arrival.recipients))
    return " ".join(fields)


@record.dataclass(slots=True)
class FinishedHeaders:
    headers: list[Header]  # Received: first, then the message's, then any added
    size: int  # Exim's message size: live headers + blank line + body
    max_line_length: int  # longest line as received
    had_message_id: bool = True  # False when we added Message-Id: (not logged as id=)


def finish_headers(
    runtime: Any, message_id: str, started: float, arrival: Arrival, headers: list[Header], body: BodyStats
) -> FinishedHeaders:
    """Checks and additions every received message gets, spooled or not (mua_wrapper).

    Refuses a message with no recipients, too many Received: headers (a
    loop) or over message_size_limit; adds Message-Id:/Date: when missing
    and Received: at the top.
    """
    config = runtime.config
    if not arrival.recipients:
        raise SubmissionError("no recipients")
    max_received = config.main.received_headers_max
    received_count = len(find(headers, "received"))
    if received_count >= max_received:
        raise SubmissionError(
            f"too many Received: headers ({received_count}; limit {max_received}): suspected mail loop"
        )
    # Longest line as received (Exim's max_received_linelength): before our additions.
    max_line = max([body.max_line_length] + [len(line) for h in headers for line in h.text.rstrip("\n").split("\n")])
    had_message_id = bool(find(headers, "message-id"))
    rewrote = rewrite_arrival(runtime, message_id, arrival, headers)
    add_missing_headers(config, message_id, started, headers, rewrote)
    all_headers = [received_header(runtime, message_id, started, arrival), *headers]
    header_size = sum(len(h.text.encode("utf-8", "surrogateescape")) for h in all_headers if h.flag != "*")
    size = header_size + 1 + body.size
    limit = config.main.message_size_limit
    if limit and size > limit:
        raise SubmissionError(f"message too big (size {size}, limit {limit})")
    return FinishedHeaders(all_headers, size, max_line, had_message_id)


def received_header(runtime: Any, message_id: str, started: float, arrival: Arrival) -> Header:
    config = runtime.config
    received_for = arrival.recipients[0] if len(arrival.recipients) == 1 else None
    variables = {
        "sender_rcvhost": sender_rcvhost(arrival),
        "sender_ident": arrival.ident,
        "sender_helo_name": arrival.helo_name if arrival.host_address is None else None,
        "sender_host_address": arrival.host_address,
        "sender_host_name": arrival.host_name,
        "received_protocol": arrival.received_protocol,
        "tls_cipher": arrival.tls_cipher,
        "sender_address": arrival.sender_address,
        "message_exim_id": message_id,
        "message_id": message_id,
        "received_for": received_for,
        "version_number": __version__,
        "authenticated_id": arrival.auth_id,
        "sender_host_authenticated": arrival.authenticator,
        # From Exim's X= text "TLS1.3:TLS_AES_256_GCM_SHA384:256": the version and the cipher's name.
        "tls_in_ver": arrival.tls_cipher.split(":")[0] if arrival.tls_cipher else None,
        "tls_in_cipher_std": arrival.tls_cipher.split(":")[1] if arrival.tls_cipher and ":" in arrival.tls_cipher
        else None,
    }
    text = None
    if config.main.received_header_text == DEFAULT_RECEIVED_HEADER_TEXT:
        text = default_received_text(config.primary_hostname, variables)
    if text is not None:
        name, _, value = text.partition(":")
        return make_header(name.strip(), f"{value.strip()};\n\t{_date(started)}")
    ctx = expansion_context(config, variables)
    try:
        text = fold_message_data(_expand(config.main.received_header_text, ctx))
    except ExpansionError as exc:
        if exc.forced:
            text = ""
        else:
            # A broken received_header_text must not lose the message; Exim
            # logs to the panic log and uses a minimal header.
            runtime.logger.panic(f"expansion of received_header_text failed: {exc.message}")
            text = f"Received: by {config.primary_hostname} id {message_id}"
    name, _, value = text.partition(":")
    return make_header(name.strip() or "Received", f"{value.strip()};\n\t{_date(started)}")


def default_received_text(primary_hostname: str, variables: dict[str, str | None]) -> str | None:
    """What the default received_header_text expands to with `variables`, made without the
    expander: that expansion was a sixth of a receiving process's work per message.  None when a
    value holds a line break, CR or NUL: then the expander's result goes through
    fold_message_data, which treats such characters by where they sit in the message's data.
    tests/receive/test_received_header.py checks that both ways give the same text."""
    for value in variables.values():
        if value and ("\n" in value or "\r" in value or "\0" in value):
            return None
    v = variables.get
    parts = ["Received: "]
    rcvhost = v("sender_rcvhost")
    if rcvhost:
        parts += ("from ", rcvhost, "\n\t")
    else:
        if v("sender_ident"):
            parts += ("from ", v("sender_ident"), " ")  # type: ignore[arg-type]
        if v("sender_helo_name"):
            parts += ("(helo=", v("sender_helo_name"), ")\n\t")  # type: ignore[arg-type]
    parts += ("by ", primary_hostname, " ")
    if v("received_protocol"):
        parts += ("with ", v("received_protocol"), " ")  # type: ignore[arg-type]
    if v("tls_in_ver"):
        parts += (" (", v("tls_in_ver"), ")")  # type: ignore[arg-type]
    if v("tls_in_cipher_std"):
        parts += (" tls ", v("tls_in_cipher_std"), "\n\t")  # type: ignore[arg-type]
    parts += ("(mta ", v("version_number") or "", ")\n\t")
    if v("sender_host_authenticated"):
        parts += ("(authenticated as ", v("authenticated_id") or "", ")\n\t")
    if v("sender_address"):
        parts += ("(envelope-from <", v("sender_address"), ">)\n\t")  # type: ignore[arg-type]
    parts += ("id ", v("message_exim_id") or "")
    if v("received_for"):
        parts += ("\n\tfor ", v("received_for"))  # type: ignore[arg-type]
    return "".join(parts)


def rewrite_arrival(runtime: Any, message_id: str, arrival: Arrival, headers: list[Header]) -> list[Header]:
    """Qualify the addresses in headers (when unqualified addresses are allowed) and apply the
    rules of ``begin rewrite``: to the recipients, then the sender, then the headers (Exim's order,
    receive.c).  Changed headers are kept marked deleted, the new one after each.  Returns the
    ``X-rewrote-`` headers (deleted ones) that record the old envelope addresses.  Done once per
    message: `arrival.rewritten` says it has been."""
    if arrival.rewritten:
        return []
    arrival.rewritten = True
    rules = runtime.rewrite_rules
    if not rules and not arrival.allow_unqualified:
        return []
    from mta import debug
    from mta.config.variables import rewrite_env
    from mta.message.rewrite import Rewriter

    variables = {
        "sender_address": arrival.sender_address,
        "sender_host_address": arrival.host_address,
        "sender_host_name": arrival.host_name,
        "sender_helo_name": arrival.helo_name,
        "sender_ident": arrival.ident,
        "received_protocol": arrival.received_protocol,
        "authenticated_id": arrival.auth_id,
        "message_exim_id": message_id,
        "message_id": message_id,
    }
    rewriter = Rewriter(rules, rewrite_env(runtime.config, runtime.logger, variables, message_id))
    added: list[Header] = []
    if rules:
        debug.debug("rewrite", "qualify & rewrite recipients list")
        arrival.recipients = [rewriter.rewrite_address(r, True, added) for r in arrival.recipients]
        debug.debug("rewrite", "rewrite rules on sender address")
        arrival.sender_address = rewriter.rewrite_address(arrival.sender_address, False, added)
    debug.debug("rewrite", "qualify and rewrite headers")
    rewriter.rewrite_headers(headers, arrival.allow_unqualified)
    return added


def add_missing_headers(
    config: Any, message_id: str, started: float, headers: list[Header], rewrote: list[Header] | None = None
) -> None:
    """Message-ID: and Date: when the message lacks them (Exim does so for all messages); the
    X-rewrote- headers of `rewrote` go between them, where Exim has them."""
    if not find(headers, "message-id"):
        domain = config.primary_hostname
        if config.main.message_id_header_domain:
            domain = _expand(config.main.message_id_header_domain, expansion_context(config))
        text = f"E{message_id}"
        if config.main.message_id_header_text:
            text = _expand(config.main.message_id_header_text, expansion_context(config)) + "." + text
        headers.append(make_header("Message-Id", f"<{text}@{domain}>"))
    headers.extend(rewrote or ())
    if not find(headers, "date"):
        headers.append(make_header("Date", _date(started)))


# rfc822_date, made once a second: a busy receiver dates every message's Received:, and Date:
# when it has none, with the same few seconds.
_date = per_second(_rfc822_date)


def _seconds_usec(now: float) -> tuple[int, int]:
    seconds = int(now)
    return seconds, int((now - seconds) * 1_000_000)


def _stamp(now: float) -> str:
    from mta.log import log_timestamp

    return log_timestamp(now)


def _expand(text: str, ctx: Any) -> str:
    # The expander is loaded only when an option here needs it: with the defaults a sendmail -t
    # expands nothing, and loading it was a tenth of its start-up.
    from mta.expand.expander import expand

    return expand(text, ctx)
