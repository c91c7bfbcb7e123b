"""The records the ACL engine and the SMTP session pass each other.

`AclStage` names the point of a session an ACL runs at (Exim's ACL_WHERE_*),
`AclContext` is what the session knows there (every value a client sent is
data, never configuration), and `AclResult` is the engine's verdict.  See
mta/receive/acl.py for the engine and docs/acl.md for the language.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from mta import record

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class AclStage(enum.Enum):
    """Where an ACL runs; the value is the main option that names its ACL."""

    CONNECT = "acl_smtp_connect"
    HELO = "acl_smtp_helo"
    MAIL = "acl_smtp_mail"
    RCPT = "acl_smtp_rcpt"
    PREDATA = "acl_smtp_predata"
    DATA = "acl_smtp_data"
    MIME = "acl_smtp_mime"
    NOT_SMTP = "acl_not_smtp"
    VRFY = "acl_smtp_vrfy"
    EXPN = "acl_smtp_expn"
    ETRN = "acl_smtp_etrn"
    AUTH = "acl_smtp_auth"
    QUIT = "acl_smtp_quit"
    STARTTLS = "acl_smtp_starttls"

    @property
    def option(self) -> str:
        return self.value

    @property
    def where_name(self) -> str:
        """The name Exim's logs and messages use (acl_wherenames)."""
        return _WHERE_NAMES[self]

    @property
    def reject_code(self) -> str:
        """The SMTP code of a "deny" here (acl_wherecodes)."""
        return _REJECT_CODES[self]

    @property
    def in_message(self) -> bool:
        """Stages concerned with receiving a message (Exim's where <= NOTSMTP)."""
        return self in _MESSAGE_STAGES

    @property
    def denies_when_unset(self) -> bool:
        """No ACL configured means deny here (RCPT, VRFY, EXPN, ETRN), else accept."""
        return self in (AclStage.RCPT, AclStage.VRFY, AclStage.EXPN, AclStage.ETRN)


_WHERE_NAMES = {
    AclStage.CONNECT: "connection",
    AclStage.HELO: "EHLO or HELO",
    AclStage.MAIL: "MAIL",
    AclStage.RCPT: "RCPT",
    AclStage.PREDATA: "PREDATA",
    AclStage.DATA: "DATA",
    AclStage.MIME: "MIME",
    AclStage.NOT_SMTP: "non-SMTP",
    AclStage.VRFY: "VRFY",
    AclStage.EXPN: "EXPN",
    AclStage.ETRN: "ETRN",
    AclStage.AUTH: "AUTH",
    AclStage.QUIT: "QUIT",
    AclStage.STARTTLS: "STARTTLS",
}
_REJECT_CODES = {
    AclStage.CONNECT: "550",
    AclStage.HELO: "550",
    AclStage.MAIL: "550",
    AclStage.RCPT: "550",
    AclStage.PREDATA: "550",
    AclStage.DATA: "550",
    AclStage.MIME: "550",
    AclStage.NOT_SMTP: "550",
    # RFC 5321 §3.5.3: a VRFY that is refused by policy gets 252, not 5xx.
    AclStage.VRFY: "252",
    AclStage.EXPN: "550",
    AclStage.ETRN: "458",
    AclStage.AUTH: "503",
    AclStage.QUIT: "221",
    AclStage.STARTTLS: "550",
}
_MESSAGE_STAGES = frozenset(
    {AclStage.RCPT, AclStage.MAIL, AclStage.PREDATA, AclStage.MIME, AclStage.DATA, AclStage.NOT_SMTP}
)


@record.dataclass
class SubmissionControl:
    """``control = submission[/sender_retain][/domain=...][/name=...]``: fix up headers as for a local MUA."""

    sender_retain: bool = False
    domain: str | None = None
    name: str | None = None


@record.dataclass
class MessageState:
    """What the ACLs remember while one message is received; the session starts a new one per message."""

    # control = ... that apply to the message being received.
    submission: SubmissionControl | None = None
    queue_only: bool = False
    freeze: bool = False
    # Header lines added so far by add_header (and warn's message), for Exim's duplicate rule.
    added_headers: list[str] = record.field(default_factory=list)
    # sender address -> (rc name, message, address_data): verify=sender is done once per message.
    sender_verified: dict[str, tuple[str, str | None, str | None]] = record.field(default_factory=dict)
    # ratelimit results for per_mail / per_byte / per_rcpt counted at DATA: key -> rate.
    ratelimits: dict[str, float] = record.field(default_factory=dict)
    # warn log lines written while receiving this message: each is written once.
    warnings_logged: set[str] = record.field(default_factory=set)


@record.dataclass
class ConnectionState:
    """What the ACLs remember for the whole connection."""

    pipelining: bool = True  # control = no_pipelining turns it off
    helo_verified: bool | None = None
    # dnslists answers already had: query name -> (status, addresses, text)
    dnslist_cache: dict[str, Any] = record.field(default_factory=dict)
    # $dnslist_* keep their values for the connection, as Exim's do.
    dnslist_variables: dict[str, str | None] = record.field(default_factory=dict)
    ratelimits: dict[str, float] = record.field(default_factory=dict)  # per_conn
    # hosts = answers for lists that read no file and resolve no name: (list, address, name) -> match.
    # They cannot change during the connection, and the RCPT ACL asks the same for every recipient.
    host_matches: dict[tuple[str, str | None, str | None], Any] = record.field(default_factory=dict)


@record.dataclass
class AclContext:
    """What the conditions of an ACL see; the SMTP session (or local reception) fills it.

    Every string here that a client sent (addresses, HELO, host name,
    headers, the command line) is data: it is only ever the value of a
    variable, never expanded, never a file name.  The engine marks such
    values tainted itself, so the session need not.

    The session keeps one context per connection and calls `new_message()`
    after each message (and on RSET, HELO/EHLO and after STARTTLS, where
    Exim resets $acl_m_*).
    """

    stage: AclStage
    host_address: str | None = None  # None: a local (non-TCP) submission, which `hosts = :` matches
    host_port: int | None = None
    host_name: str | None = None  # the verified reverse DNS name, or None
    helo_name: str | None = None
    interface_address: str | None = None
    interface_port: int | None = None
    sender_address: str | None = None  # None before MAIL; "" for <>
    recipient: str | None = None  # RCPT/VRFY: the address being checked, internal form, qualified
    recipients: list[str] = record.field(default_factory=list)  # accepted so far
    rcpt_count: int = 0  # RCPT commands so far in this message, this one included
    authenticated_id: str | None = None
    authenticator: str | None = None  # the authenticator's name (public_name) when authenticated
    tls_cipher: str | None = None  # e.g. "TLS1.3:TLS_AES_256_GCM_SHA384:256"
    tls_certificate_verified: bool = False
    received_protocol: str | None = None
    ident: str | None = None  # the local user of a -bs session (U= in logs)
    # DATA stage: one header's raw value (all instances joined by "\n") by lower-case name, or None.
    headers: Callable[[str], str | None] | None = None
    # DATA stage: every header line as received ("Name: value\n", folds kept), for
    # verify = header_syntax and the reject log.
    header_lines: Callable[[], list[str]] | None = None
    message_size: int | None = None  # SIZE= before DATA, the real size at DATA
    smtp_command: str | None = None  # the raw command line, for $smtp_command
    connection_vars: dict[str, str] = record.field(default_factory=dict)  # "acl_c..." -> value
    message_vars: dict[str, str] = record.field(default_factory=dict)  # "acl_m..." -> value
    # -bh: called with one line per decision, in Exim's debug wording, without the ">>> "
    # that -bh prints before each; always on the session's event loop.
    trace: Callable[[str], None] | None = None
    host_checking: bool = False  # -bh: delays are not imposed
    now: float | None = None  # the time for ratelimit; None: the clock
    connection: ConnectionState = record.field(default_factory=ConnectionState)
    message: MessageState = record.field(default_factory=MessageState)

    def new_message(self) -> None:
        """Forget the message: $acl_m_*, the sender, the recipients and the per-message controls."""
        self.message_vars = {}
        self.message = MessageState()
        self.sender_address = None
        self.recipient = None
        self.recipients = []
        self.rcpt_count = 0
        self.message_size = None
        self.headers = None
        self.header_lines = None


@record.dataclass
class AclResult:
    """The verdict of one ACL run.

    `verb` is ``accept``, ``deny``, ``defer``, ``discard`` or ``drop``
    (deny, then close the connection).  At the non-SMTP stage there is no
    temporary failure, so a defer is given as ``deny`` (Exim's rule).
    `user_message` is for the SMTP reply (lines separated by "\\n"; None: the
    stage's default text, which for a defer hides the reason, as Exim does),
    already without any leading code; `code` is that code when
    ``message =`` began with one of the right class ("550" or "550 5.7.1").
    `log_message` is for the log line.  `add_headers` are the header lines
    this run asked to add (each ends in "\\n"; a line already added for this
    message is left out).  All the lines of the message so far are in
    ``ctx.message.added_headers``: as in Exim, those from the MAIL, RCPT and
    PREDATA ACLs (a rejected RCPT's too) are added to the message if it is
    accepted, and so are the DATA ACL's.
    """

    verb: str
    user_message: str | None = None
    log_message: str | None = None
    add_headers: list[str] = record.field(default_factory=list)
    code: str | None = None
    # The logs a rejection goes to (log_reject_target); empty: not logged.
    log_reject_target: frozenset[str] = frozenset({"main", "reject"})
    # verify = sender failed: (address, reason, deferred), for Exim's extra log line.
    sender_verify_failure: tuple[str, str, bool] | None = None
    # True when the ACL could not be evaluated (a configuration or expansion error).
    error: bool = False

    @property
    def accepted(self) -> bool:
        return self.verb in ("accept", "discard")


class Rc(enum.Enum):
    """The outcome of a condition, a statement or an ACL, as Exim's acl.c names them."""

    OK = "ok"
    FAIL = "fail"
    DEFER = "defer"
    ERROR = "error"
    DISCARD = "discard"
    FAIL_DROP = "fail_drop"
