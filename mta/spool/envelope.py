"""The contents of a -H file as Python values: `Envelope` and its parts.

`mta.spool.format` turns an `Envelope` into the bytes of a -H file and
`mta.spool.format_read` back; this module only defines the values, the
text encoding, the file suffixes, the table of -option lines, and the bits
of grammar both directions share.  A
spooled header is a `SpoolHeader` (flag character, whole text); the
message layer's own header type is converted to and from it by the caller.
"""

from __future__ import annotations

import enum
import re
from typing import NamedTuple

from mta import record
from mta.taint import Tainted

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

ENCODING = "utf-8"
ENCODING_ERRORS = "surrogateescape"

# The spool files of a message: ID-H (envelope and headers), ID-D (body), ID-J (journal).
HEADER_SUFFIX = "-H"
DATA_SUFFIX = "-D"
JOURNAL_SUFFIX = "-J"

# Header flag characters (Exim's htype_*).
HEADER_FLAGS = " BCFIPRST*"
FLAG_OTHER = " "
FLAG_OLD = "*"  # deleted or rewritten away: kept for the record, never sent


def encode_text(text: str) -> bytes:
    """Spool text to bytes: UTF-8, with lone surrogates back to raw bytes."""
    return text.encode(ENCODING, ENCODING_ERRORS)


def decode_text(raw: bytes) -> str:
    """Spool bytes to text: UTF-8, with other bytes kept as lone surrogates."""
    return raw.decode(ENCODING, ENCODING_ERRORS)


def decode_tainted(raw: bytes) -> Tainted:
    """Spool bytes that came from the network, as a Tainted string."""
    return Tainted(decode_text(raw))


class SpoolHeader(NamedTuple):
    """One header as spooled: its flag character and its whole text
    (folded lines included), every line ending in "\\n"."""

    flag: str
    text: str


class HostAddress(NamedTuple):
    ip: str
    port: int


# Exim's -H recipient DSN bits (RFC 3461 NOTIFY): given at all, and FAILURE among its values.
DSN_HAS_NOTIFY, DSN_NOTIFY_FAILURE = 0x10, 0x02


@record.dataclass(slots=True)
class Recipient:
    """One envelope recipient.

    `pno` is the index in the recipient list of the original (top-level)
    parent of a one_time child, -1 for none; `errors_to` and `orcpt` are ""
    when unset; `dsn_flags` is Exim's NOTIFY bitmask.
    """

    address: str
    errors_to: str = ""
    pno: int = -1
    orcpt: str = ""
    dsn_flags: int = 0

    def is_plain(self) -> bool:
        return self.pno < 0 and not self.errors_to and not self.orcpt and self.dsn_flags == 0

    def wants_failure_report(self) -> bool:
        """False when the sender asked for no failure report (RFC 3461 NOTIFY given without
        FAILURE, NEVER included)."""
        return not self.dsn_flags & DSN_HAS_NOTIFY or bool(self.dsn_flags & DSN_NOTIFY_FAILURE)


@record.dataclass(frozen=True, slots=True)
class ExtraOption:
    """An option line this version does not know, kept verbatim.

    `after` names the known option slot it followed ("" = first), so the
    line is written back in the same place.
    """

    line: str
    after: str = ""


@record.dataclass(kw_only=True)
class Envelope:
    """Everything in a -H file.  Optional values are None (or False) when
    the file has no such line; a present-but-empty value is ""."""

    message_id: str
    originator_login: str
    originator_uid: int
    originator_gid: int
    sender_address: str  # "" for the null sender <>
    received_time: int
    warning_count: int = 0
    received_time_usec: int | None = None
    received_time_complete: tuple[int, int] | None = None  # (seconds, microseconds)
    helo_name: str | None = None
    host_address: HostAddress | None = None
    host_name: str | None = None
    host_auth: str | None = None
    host_auth_pubname: str | None = None
    interface_address: HostAddress | None = None
    active_hostname: str | None = None
    ident: str | None = None
    received_protocol: str | None = None
    # "acl_c0", "acl_m_foo" ... -> value (may hold newlines).
    acl_variables: dict[str, str] = record.field(default_factory=dict)
    debug_selector: str | None = None
    debuglog_name: str | None = None
    spool_file_wireformat: bool = False
    body_linecount: int | None = None
    max_received_linelength: int | None = None
    body_zerocount: int | None = None
    auth_id: str | None = None
    auth_sender: str | None = None
    allow_unqualified_recipient: bool = False
    allow_unqualified_sender: bool = False
    deliver_firsttime: bool = False
    frozen: int | None = None  # frozen since (epoch seconds)
    dont_deliver: bool = False  # -N
    host_lookup_deferred: bool = False
    host_lookup_failed: bool = False
    local: bool = False
    localerror: bool = False
    local_scan: str | None = None
    spam_bar: str | None = None
    spam_score: str | None = None
    spam_score_int: str | None = None
    manual_thaw: bool = False
    sender_set_untrusted: bool = False
    tls_certificate_verified: bool = False
    tls_cipher: str | None = None
    tls_peercert: str | None = None
    tls_peerdn: str | None = None
    tls_sni: str | None = None
    tls_ourcert: str | None = None
    tls_ocsp: int | None = None
    tls_resumption: str | None = None
    tls_ver: str | None = None
    smtputf8: bool = False
    utf8_downcvt: bool = False
    utf8_optdowncvt: bool = False
    dsn_envid: str | None = None
    dsn_ret: int | None = None
    # Lookup quoter of a tainted option ("--(name)helo_name ..."), by option name.
    quoters: dict[str, str] = record.field(default_factory=dict)
    extra: list[ExtraOption] = record.field(default_factory=list)
    non_recipients: set[str] = record.field(default_factory=set)
    recipients: list[Recipient] = record.field(default_factory=list)
    headers: list[SpoolHeader] = record.field(default_factory=list)
    # The tree exactly as read, reused while non_recipients is unchanged so
    # that a file written by Exim (whose tree shape depends on insertion
    # order) is written back byte for byte.
    _tree_as_read: tuple[frozenset[str], bytes] | None = record.field(
        default=None, init=False, compare=False, repr=False
    )
    # Set when the -H was read without building its headers (a queue listing's read:
    # mta.spool.format_read.read_header_file with headers=False): the bytes of the transmitted
    # headers.  `headers` is then empty, so such an envelope is never written back.
    _listed_header_size: int | None = record.field(default=None, init=False, compare=False, repr=False)

    def pending_recipients(self) -> list[Recipient]:
        """Recipients not yet delivered (not in the non-recipients tree)."""
        return [r for r in self.recipients if r.address not in self.non_recipients]

    def header_size(self) -> int:
        """Bytes of the headers that are transmitted (flag not '*')."""
        if self._listed_header_size is not None:
            return self._listed_header_size
        return sum(len(encode_text(h.text)) for h in self.headers if h.flag != FLAG_OLD)


_ENVELOPE_TEMPLATE: tuple[dict[str, object], tuple[tuple[str, Callable[[], object]], ...]] | None = None


def new_envelope(**values: object) -> Envelope:
    """`Envelope(**values)`, made faster for the -H reader: the record's __init__ makes one call
    for each of the sixty fields, a fifth of the reading of a small -H, and a queue listing
    reads 100,000 of them.  Here the defaults are copied in one step and only the fields with
    a default factory are called.  `values` must name init fields (the reader's own calls)."""
    global _ENVELOPE_TEMPLATE
    if _ENVELOPE_TEMPLATE is None:
        assert not hasattr(Envelope, "__post_init__"), "new_envelope would skip Envelope.__post_init__"
        defaults: dict[str, object] = {}
        factories: list[tuple[str, Callable[[], object]]] = []
        for spec in record.fields(Envelope):
            if spec.default is not record.MISSING:
                defaults[spec.name] = spec.default
            elif spec.default_factory is not record.MISSING:
                factories.append((spec.name, spec.default_factory))
        _ENVELOPE_TEMPLATE = defaults, tuple(factories)
    defaults, factories = _ENVELOPE_TEMPLATE
    env = Envelope.__new__(Envelope)
    state = env.__dict__
    state.update(defaults)
    for name, factory in factories:
        state[name] = factory()
    state.update(values)
    return env


# ---------------------------------------------------------------------------
# Option table: every -option line we model, in the order Exim 4.97+
# (spool_out.c) writes them.  Writing in this order makes a file written by
# Exim round-trip exactly.


class OptionKind(enum.Enum):
    FLAG = "flag"  # -name
    TEXT = "text"  # -name value  (may be tainted: --name value)
    INT = "int"  # -name digits
    USEC = "usec"  # -received_time_usec .NNNNNN
    TIMEVAL = "timeval"  # -received_time_complete S.UUUUUU
    HOSTPORT = "hostport"  # -host_address [ip]:port   (older: ip.port)
    ACL = "acl"  # -aclc name len / -aclm name len, then len bytes and "\n"


OPTIONS: tuple[tuple[str, str, OptionKind], ...] = (
    # (name in the file, Envelope attribute, kind)
    ("received_time_usec", "received_time_usec", OptionKind.USEC),
    ("received_time_complete", "received_time_complete", OptionKind.TIMEVAL),
    ("helo_name", "helo_name", OptionKind.TEXT),
    ("host_address", "host_address", OptionKind.HOSTPORT),
    ("host_name", "host_name", OptionKind.TEXT),
    ("host_auth", "host_auth", OptionKind.TEXT),
    ("host_auth_pubname", "host_auth_pubname", OptionKind.TEXT),
    ("interface_address", "interface_address", OptionKind.HOSTPORT),
    ("active_hostname", "active_hostname", OptionKind.TEXT),
    ("ident", "ident", OptionKind.TEXT),
    ("received_protocol", "received_protocol", OptionKind.TEXT),
    ("acl", "acl_variables", OptionKind.ACL),
    ("debug_selector", "debug_selector", OptionKind.TEXT),
    ("debuglog_name", "debuglog_name", OptionKind.TEXT),
    ("spool_file_wireformat", "spool_file_wireformat", OptionKind.FLAG),
    ("body_linecount", "body_linecount", OptionKind.INT),
    ("max_received_linelength", "max_received_linelength", OptionKind.INT),
    ("body_zerocount", "body_zerocount", OptionKind.INT),
    ("auth_id", "auth_id", OptionKind.TEXT),
    ("auth_sender", "auth_sender", OptionKind.TEXT),
    ("allow_unqualified_recipient", "allow_unqualified_recipient", OptionKind.FLAG),
    ("allow_unqualified_sender", "allow_unqualified_sender", OptionKind.FLAG),
    ("deliver_firsttime", "deliver_firsttime", OptionKind.FLAG),
    ("frozen", "frozen", OptionKind.INT),
    ("N", "dont_deliver", OptionKind.FLAG),
    ("host_lookup_deferred", "host_lookup_deferred", OptionKind.FLAG),
    ("host_lookup_failed", "host_lookup_failed", OptionKind.FLAG),
    ("local", "local", OptionKind.FLAG),
    ("localerror", "localerror", OptionKind.FLAG),
    ("local_scan", "local_scan", OptionKind.TEXT),
    ("spam_bar", "spam_bar", OptionKind.TEXT),
    ("spam_score", "spam_score", OptionKind.TEXT),
    ("spam_score_int", "spam_score_int", OptionKind.TEXT),
    ("manual_thaw", "manual_thaw", OptionKind.FLAG),
    ("sender_set_untrusted", "sender_set_untrusted", OptionKind.FLAG),
    ("tls_certificate_verified", "tls_certificate_verified", OptionKind.FLAG),
    ("tls_cipher", "tls_cipher", OptionKind.TEXT),
    ("tls_peercert", "tls_peercert", OptionKind.TEXT),
    ("tls_peerdn", "tls_peerdn", OptionKind.TEXT),
    ("tls_sni", "tls_sni", OptionKind.TEXT),
    ("tls_ourcert", "tls_ourcert", OptionKind.TEXT),
    ("tls_ocsp", "tls_ocsp", OptionKind.INT),
    ("tls_resumption", "tls_resumption", OptionKind.TEXT),
    ("tls_ver", "tls_ver", OptionKind.TEXT),
    ("smtputf8", "smtputf8", OptionKind.FLAG),
    ("utf8_downcvt", "utf8_downcvt", OptionKind.FLAG),
    ("utf8_optdowncvt", "utf8_optdowncvt", OptionKind.FLAG),
    ("dsn_envid", "dsn_envid", OptionKind.TEXT),
    ("dsn_ret", "dsn_ret", OptionKind.INT),
)
OPTION_BY_NAME = {name: (attr, kind) for name, attr, kind in OPTIONS}
ACL_LINE_NAMES = {"aclc": "acl_c", "aclm": "acl_m"}  # line name -> variable prefix

# The grammar of the lines the table describes, for the writer and the reader
# (mta.spool.format, mta.spool.format_read): "-name value", "--name value"
# (tainted), "--(quoter)name value"; acl_cNAME / acl_mNAME variables.
OPTION_LINE = re.compile(rb"-(-(?:\(([A-Za-z0-9_]*)\))?)?([A-Za-z0-9_]+)(?: (.*))?\Z", re.DOTALL)
ACL_VARIABLE = re.compile(r"acl_([cm])([A-Za-z0-9_]+)\Z")
EMPTY_TREE = b"XX"  # the non-recipients tree when there are none


def recipient_safe_plain(raw: bytes) -> bool:
    """True if a plain recipient line cannot be mistaken for an extended or
    obsolete form by Exim's right-to-left parse: after any trailing digits,
    the last character must not be '#', ',' or ' '."""
    stripped = raw.rstrip(b"0123456789")
    return bool(stripped) and stripped[-1:] not in (b"#", b",", b" ")
