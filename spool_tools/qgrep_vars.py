"""The variables `mta-qgrep` conditions test: exipick's names for what a message's spool files say.

    variables = MessageVariables(spool, envelope, now)
    variables.value("message_size")      -> 1542
    variables.value("h_subject")         -> "Meeting"   (header_, h_, rh_, bh_ forms)
    variables.addresses("recipients_undel") -> ["bob@example.net"]

Each name has a type, as exipick documents it: N (a number), S (text) or B
(true/false).  A variable the message does not have is 0, "" or false, as in
exipick.  Values come from the -H file (and the -D file's size, and a -J
journal of a delivery in progress); the body is never read.  Everything
here is data from a message: it is compared and printed, never expanded or
evaluated.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from mta.spool.envelope import FLAG_OLD

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from mta.spool.envelope import Envelope
    from mta.spool.store import Spool

Value = str | int | bool

NUMBER, TEXT, BOOLEAN = "N", "S", "B"

# Header variables: $h_subject: / $header_subject: (RFC 2047 decoded), $rh_ / $rheader_ (raw),
# $bh_ / $bheader_ (decoded, bytes not converted); the trailing colon is optional, as in exipick.
HEADER_VARIABLE = re.compile(r"(h|header|rh|rheader|bh|bheader)_([!-9;-~]+?):?\Z")
ACL_VARIABLE = re.compile(r"acl_[cm][A-Za-z0-9_]+\Z")
# exipick's "each_" pseudo-variables: the test applies to every address of the list on its own.
EACH_LISTS = ("recipients", "recipients_del", "recipients_undel")
# Headers whose several instances are joined by ",\n" (address lists), as Exim's $h_ does.
_ADDRESS_HEADERS = frozenset({"from", "to", "cc", "bcc", "reply-to", "sender"})


class MessageVariables:
    """The variables of one message, computed when first asked for."""

    def __init__(self, spool: Spool, envelope: Envelope, now: float | None = None,
                 journal: list[str] | None = None) -> None:
        self.spool = spool
        self.envelope = envelope
        self.now = time.time() if now is None else now
        self._journal = journal
        self._delivered: set[str] | None = None
        self._cache: dict[str, Value] = {}

    # -- what the conditions and the listing use ------------------------------------------------
    def value(self, name: str) -> Value:
        if name not in self._cache:
            self._cache[name] = self._compute(name)
        return self._cache[name]

    def addresses(self, name: str) -> list[str]:
        """The addresses of "recipients", "recipients_del" or "recipients_undel", one by one."""
        recipients = [r.address for r in self.envelope.recipients]
        delivered = self.delivered
        if name == "recipients":
            return recipients
        if name == "recipients_undel":
            return [a for a in recipients if a not in delivered]
        # Delivered top-level recipients in -H order, then generated addresses (Exim's +D).
        top = [a for a in recipients if a in delivered]
        return top + sorted(delivered - set(top), key=lambda a: a.encode("utf-8", "surrogateescape"))

    @property
    def delivered(self) -> set[str]:
        """The non-recipients tree and any -J journal: what -bp marks D (and -bpa +D)."""
        if self._delivered is None:
            if self._journal is None:
                self._journal = self.spool.read_journal(self.envelope.message_id)
            self._delivered = set(self.envelope.non_recipients) | set(self._journal)
        return self._delivered

    @property
    def size(self) -> int:
        return int(self.value("message_size"))

    # -- computing --------------------------------------------------------------------------------
    def _compute(self, name: str) -> Value:
        getter = _GETTERS.get(name)
        if getter is not None:
            return getter(self)
        header = HEADER_VARIABLE.match(name)
        if header is not None:
            return self._header(header[1], header[2].lower())
        if ACL_VARIABLE.match(name):
            return self.envelope.acl_variables.get(name, "")
        raise KeyError(name)

    def _header(self, kind: str, header_name: str) -> str:
        from mta.expand.textcodecs import rfc2047_decode

        values = []
        for flag, text in self.envelope.headers:
            name, colon, rest = text.partition(":")
            if flag != FLAG_OLD and colon and name.rstrip().lower() == header_name:
                values.append(rest)
        if not values:
            return ""
        if kind in ("rh", "rheader"):
            return "".join(values)
        stripped = [v.strip() for v in values]
        joined = (",\n" if header_name in _ADDRESS_HEADERS else "\n").join(stripped)
        return rfc2047_decode(joined, convert=kind in ("h", "header"), lenient=True)


def _message_size(v: MessageVariables) -> int:
    return v.envelope.header_size() + _body_size(v) + 1


def _body_size(v: MessageVariables) -> int:
    from mta.errors import SpoolError

    try:
        return v.spool.body_size(v.envelope.message_id)
    except SpoolError:
        return 0  # the -D is missing: $message_body_missing says so


def _body_missing(v: MessageVariables) -> bool:
    from mta.errors import SpoolError

    try:
        v.spool.body_size(v.envelope.message_id)
    except SpoolError:
        return True
    return False


def _shown_size(v: MessageVariables) -> str:
    from spool_tools.queue_list import format_size

    return format_size(v.size).strip()


def _domain(address: str) -> str:
    return address.rpartition("@")[2] if "@" in address else ""


def _local_part(address: str) -> str:
    return address.rpartition("@")[0] if "@" in address else address


def _joined(name: str) -> Callable[[MessageVariables], str]:
    return lambda v: ", ".join(v.addresses(name))


def _host(attr: str, part: str) -> Callable[[MessageVariables], Value]:
    def get(v: MessageVariables) -> Value:
        host = getattr(v.envelope, attr)
        if host is None:
            return "" if part == "ip" else 0
        return host.ip if part == "ip" else host.port

    return get


def _field(attr: str, default: Value = "") -> Callable[[MessageVariables], Value]:
    def get(v: MessageVariables) -> Value:
        value = getattr(v.envelope, attr)
        return default if value is None else value

    return get


# name -> (type, how to get it).  exipick's names, with Exim's older aliases beside them.
VARIABLES: dict[str, tuple[str, Callable[[MessageVariables], Value]]] = {
    "message_id": (TEXT, lambda v: v.envelope.message_id),
    "message_exim_id": (TEXT, lambda v: v.envelope.message_id),
    "message_size": (NUMBER, _message_size),
    "message_body_size": (NUMBER, _body_size),
    "message_body_missing": (BOOLEAN, _body_missing),
    "shown_message_size": (TEXT, _shown_size),
    "message_age": (NUMBER, lambda v: max(0, int(v.now - v.envelope.received_time))),
    "received_time": (NUMBER, lambda v: v.envelope.received_time),
    "warning_count": (NUMBER, lambda v: v.envelope.warning_count),
    "deliver_freeze": (BOOLEAN, lambda v: v.envelope.frozen is not None),
    "deliver_frozen_at": (NUMBER, _field("frozen", 0)),
    "first_delivery": (BOOLEAN, lambda v: v.envelope.deliver_firsttime),
    "deliver_firsttime": (BOOLEAN, lambda v: v.envelope.deliver_firsttime),
    "manually_thawed": (BOOLEAN, lambda v: v.envelope.manual_thaw),
    "deliver_manual_thaw": (BOOLEAN, lambda v: v.envelope.manual_thaw),
    "dont_deliver": (BOOLEAN, lambda v: v.envelope.dont_deliver),
    "sender_address": (TEXT, lambda v: v.envelope.sender_address),
    "sender_address_domain": (TEXT, lambda v: _domain(v.envelope.sender_address)),
    "sender_address_local_part": (TEXT, lambda v: _local_part(v.envelope.sender_address)),
    "originator_login": (TEXT, lambda v: v.envelope.originator_login),
    "originator_uid": (NUMBER, lambda v: v.envelope.originator_uid),
    "originator_gid": (NUMBER, lambda v: v.envelope.originator_gid),
    "recipients": (TEXT, _joined("recipients")),
    "recipients_del": (TEXT, _joined("recipients_del")),
    "recipients_undel": (TEXT, _joined("recipients_undel")),
    "recipients_count": (NUMBER, lambda v: len(v.envelope.recipients)),
    "recipients_del_count": (NUMBER, lambda v: sum(r.address in v.delivered for r in v.envelope.recipients)),
    "recipients_undel_count": (NUMBER, lambda v: len(v.addresses("recipients_undel"))),
    "received_protocol": (TEXT, _field("received_protocol")),
    "received_count": (NUMBER, lambda v: sum(h.flag == "P" for h in v.envelope.headers)),
    "sender_host_address": (TEXT, _host("host_address", "ip")),
    "sender_host_port": (NUMBER, _host("host_address", "port")),
    "sender_host_name": (TEXT, _field("host_name")),
    "sender_helo_name": (TEXT, _field("helo_name")),
    "sender_ident": (TEXT, _field("ident")),
    "sender_host_authenticated": (TEXT, _field("host_auth")),
    "authenticated_id": (TEXT, _field("auth_id")),
    "authenticated_sender": (TEXT, _field("auth_sender")),
    "received_ip_address": (TEXT, _host("interface_address", "ip")),
    "interface_address": (TEXT, _host("interface_address", "ip")),
    "received_port": (NUMBER, _host("interface_address", "port")),
    "interface_port": (NUMBER, _host("interface_address", "port")),
    "smtp_active_hostname": (TEXT, _field("active_hostname")),
    "body_linecount": (NUMBER, _field("body_linecount", 0)),
    "body_zerocount": (NUMBER, _field("body_zerocount", 0)),
    "max_received_linelength": (NUMBER, _field("max_received_linelength", 0)),
    "sender_local": (BOOLEAN, lambda v: v.envelope.local),
    "local_error_message": (BOOLEAN, lambda v: v.envelope.localerror),
    "sender_set_untrusted": (BOOLEAN, lambda v: v.envelope.sender_set_untrusted),
    "host_lookup_failed": (BOOLEAN, lambda v: v.envelope.host_lookup_failed),
    "host_lookup_deferred": (BOOLEAN, lambda v: v.envelope.host_lookup_deferred),
    "allow_unqualified_recipient": (BOOLEAN, lambda v: v.envelope.allow_unqualified_recipient),
    "allow_unqualified_sender": (BOOLEAN, lambda v: v.envelope.allow_unqualified_sender),
    "local_scan_data": (TEXT, _field("local_scan")),
    "spam_score": (TEXT, _field("spam_score")),
    "spam_score_int": (NUMBER, lambda v: int(v.envelope.spam_score_int or 0)
                       if (v.envelope.spam_score_int or "0").lstrip("-").isdigit() else 0),
    "tls_cipher": (TEXT, _field("tls_cipher")),
    "tls_peerdn": (TEXT, _field("tls_peerdn")),
    "tls_sni": (TEXT, _field("tls_sni")),
    "tls_certificate_verified": (BOOLEAN, lambda v: v.envelope.tls_certificate_verified),
    "dsn_envid": (TEXT, _field("dsn_envid")),
}
_GETTERS = {name: getter for name, (_kind, getter) in VARIABLES.items()}


def variable_type(name: str) -> str | None:
    """N, S or B for a name conditions may use (headers and ACL variables are S); None if unknown."""
    if name in VARIABLES:
        return VARIABLES[name][0]
    if HEADER_VARIABLE.match(name) or ACL_VARIABLE.match(name):
        return TEXT
    return None


def as_text(value: Value) -> str:
    """A value as exipick prints and string-compares it: booleans are 1 or empty."""
    if isinstance(value, bool):
        return "1" if value else ""
    return str(value)
