"""The variables of the expansion language, as Exim 4.96 names and types them.

Every name Exim's var_table knows (for a build like Debian's
exim4-daemon-light: DKIM, SRS, I18N, SOCKS, TLS resumption and events on;
content scanning, SPF, DMARC, ARC and LDAP off) is known here too, so that a
configuration written for Exim never meets "unknown variable" for a name
Exim has.  What a variable is worth comes from the ExpandContext the caller
built; a known variable the context does not set has Exim's value for "not
set": "" for text, "0" for counters ("-1" for ports), "no" for flags.

`find_variable()` is Exim's find_variable(): it also knows the families
$acl_c*/$acl_m*, $r_*, $auth1..$auth4, and the headers ($h_, $rh_, $bh_,
$lh_ and their long forms) through `find_header()`.
"""

from __future__ import annotations

from mta.expand.context import ExpandContext, HeaderLines
from mta.lazy_pattern import lazy_compile
from mta.taint import Tainted, concat

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_STRING = """
acl_arg1 acl_arg2 acl_arg3 acl_arg4 acl_arg5 acl_arg6 acl_arg7 acl_arg8 acl_arg9 acl_verify_message
address_data address_file address_pipe authenticated_fail_id authenticated_id authenticated_sender
bounce_recipient callout_address compile_date compile_number config_dir config_file csa_status
dkim_cur_signer dkim_domain dkim_selector dkim_signers dkim_verify_reason dkim_verify_status
dnslist_domain dnslist_matched dnslist_text dnslist_value domain domain_data event_data event_name
exim_path exim_version home host host_address host_data initial_cwd interface_address item local_part
local_part_data local_part_prefix local_part_prefix_v local_part_suffix local_part_suffix_v
local_scan_data lookup_dnssec_authenticated mailstore_basename message_exim_id message_id
original_domain original_local_part parent_domain parent_local_part primary_hostname
proxy_external_address proxy_local_address prvscheck_address prvscheck_keynum prvscheck_result
qualify_domain qualify_recipient queue_name received_for received_ip_address received_protocol
recipient_data recipient_verify_failure return_path router_name self_hostname sender_address
sender_address_data sender_data sender_fullhost sender_helo_name sender_host_address
sender_host_authenticated sender_ident sender_rate sender_rate_limit sender_rate_period sender_rcvhost
sender_verify_failure sending_ip_address smtp_active_hostname smtp_command smtp_command_argument
smtp_notquit_reason spool_directory srs_recipient thisaddress tls_cipher tls_in_cipher tls_in_cipher_std
tls_in_peerdn tls_in_sni tls_in_ver tls_out_cipher tls_out_cipher_std tls_out_peerdn tls_out_sni
tls_out_ver tls_peerdn tls_sni transport_name value verify_mode version_number warn_message_delay
warn_message_recipient warn_message_recipients warnmsg_delay warnmsg_recipient warnmsg_recipients
headers_added queue_size recipients smtp_command_history
message_body message_body_end message_headers message_headers_raw reply_address
sender_address_domain sender_address_local_part sender_host_name
tls_in_ourcert tls_in_peercert tls_out_ourcert tls_out_peercert
dkim_algo dkim_canon_body dkim_canon_headers dkim_copiedheaders dkim_headernames dkim_identity
dkim_key_notes
tod_bsdinbox tod_epoch tod_epoch_l tod_full tod_log tod_logfile tod_zone tod_zulu
"""

_INT = """
acl_narg authentication_failed body_linecount body_zerocount bounce_return_size_limit dkim_key_length
event_defer_errno host_lookup_deferred host_lookup_failed host_port localhost_number
max_received_linelength message_age message_body_size message_linecount message_size
proxy_external_port proxy_local_port rcpt_count rcpt_defer_count rcpt_fail_count received_count
received_time recipients_count return_size_limit runrc sender_host_port smtp_count_at_connection_start
tls_bits tls_certificate_verified tls_in_bits tls_in_certificate_verified tls_in_ocsp tls_in_resumption
tls_out_bits tls_out_certificate_verified tls_out_ocsp tls_out_resumption tls_out_tlsa_usage
caller_gid exim_gid originator_gid caller_uid exim_uid originator_uid inode pid
load_average log_inodes spool_inodes log_space spool_space
"""

_BOOL = "message_smtputf8 prdr_requested proxy_session sender_helo_dnssec sender_host_dnssec tls_out_dane"

# Exim's values when nothing set them.  A port nobody set is -1; the uid of
# "no local user" is (uid_t)-1 printed unsigned; DKIM items with no signature.
_DEFAULTS: dict[str, str] = {
    "interface_port": "-1",
    "received_port": "-1",
    "sending_port": "-1",
    "local_user_uid": "4294967295",
    "local_user_gid": "4294967295",
    "bounce_return_size_limit": "102400",
    "return_size_limit": "102400",
    "dkim_bodylength": "9999999999999",
    "dkim_created": "0",
    "dkim_expires": "9999999999999",
    "dkim_key_granularity": "*",
    "dkim_key_nosubdomains": "0",
    "dkim_key_srvtype": "*",
    "dkim_key_testing": "0",
}

# mta's own names: $mta_uid/$mta_gid are $exim_uid/$exim_gid under mta's name.
_MTA_ALIASES = {"mta_uid": "exim_uid", "mta_gid": "exim_gid"}

STRING_VARIABLES = frozenset(_STRING.split())
# Exim filter variables: names Exim knows, but with a value only while a filter runs,
# so they are "unknown" elsewhere except in a branch that is not taken.
FILTER_VARIABLES = frozenset([f"n{k}" for k in range(10)] + [f"sn{k}" for k in range(10)])
INT_VARIABLES = frozenset(_INT.split())
BOOL_VARIABLES = frozenset(_BOOL.split())
KNOWN_VARIABLES: frozenset[str] = (
    STRING_VARIABLES | INT_VARIABLES | BOOL_VARIABLES | frozenset(_DEFAULTS) | frozenset(_MTA_ALIASES)
)

_AUTH_VARIABLE = lazy_compile(r"auth[1-4]")


def is_known_variable(name: str) -> bool:
    """Is `name` a variable of the language (ignoring what a context adds)?"""
    if name in KNOWN_VARIABLES or _AUTH_VARIABLE.fullmatch(name):
        return True
    if name.startswith(("acl_c", "acl_m")):
        return not (len(name) > 5 and name[5].isalpha())
    return name.startswith("r_")


def unknown_variable_detail(name: str) -> str:
    """Exim's check_variable_error_message(): the hint added for acl_ names."""
    if not name.startswith("acl_"):
        return ""
    if name[4:5] in ("c", "m"):
        if name[5:6].isalpha():
            return " (6th character of a user-defined ACL variable must be a digit or underscore)"
        return " (strict_acl_vars is set)"
    return " (user-defined ACL variables must start acl_c or acl_m)"


def _default(name: str) -> str:
    if name in _DEFAULTS:
        return _DEFAULTS[name]
    if name in INT_VARIABLES:
        return "0"
    if name in BOOL_VARIABLES:
        return "no"
    return ""


def variable_value(ctx: ExpandContext, name: str, cache: dict[str, str]) -> str | None:
    """The text of variable `name`, or None if no such variable exists."""
    if name in cache:
        return cache[name]
    source = _MTA_ALIASES.get(name, name)
    if source in ctx.variables:
        raw = ctx.variables[source]
        if callable(raw):
            raw = raw()
            value = "" if raw is None else raw if isinstance(raw, str) else str(raw)
            cache[name] = value
            return value
        if raw is None:
            return _default(source)
        return raw if isinstance(raw, str) else str(raw)
    if name == "sender_address_domain" or name == "sender_address_local_part":
        sender = variable_value(ctx, "sender_address", cache) or ""
        at = sender.rfind("@")
        if name.endswith("domain"):
            return _slice(sender, at + 1, len(sender)) if at >= 0 else ""
        return _slice(sender, 0, at) if at >= 0 else sender
    if name in ("message_headers", "message_headers_raw"):
        return _all_headers(ctx, raw=name.endswith("raw"))
    if name == "reply_address":
        return _reply_address(ctx)
    if not is_known_variable(name):
        return None
    return _default(source)


def _slice(text: str, start: int, end: int) -> str:
    part = text[start:end]
    return Tainted(part) if isinstance(text, Tainted) else part


# -- headers ---------------------------------------------------------------------------

# Headers whose instances Exim joins with ",\n" because they hold address lists
# (its header types B, C, F, R, S, T: Bcc, Cc, From, Reply-To, Sender, To).
_ADDRESS_HEADERS = frozenset({"bcc", "cc", "from", "reply-to", "sender", "to"})
_WHITE = " \t\n\r\f\v"
HEADER_INSERT_MAXLEN = 64 * 1024


def header_lines(ctx: ExpandContext) -> list[str] | None:
    """The message's live header lines ("Name: value\\n", folding kept), or None without a message."""
    source = ctx.headers
    if isinstance(source, HeaderLines):
        return [line if line.endswith("\n") else line + "\n" for line in source.lines()]
    return None


def find_header(ctx: ExpandContext, name: str | None, form: str) -> str | None:
    """Exim's find_header(): `name` ends with ":"; None means "all headers".

    form: "h" (white space trimmed, RFC 2047 decoded), "b" (trimmed, not
    charset-converted), "rh" (raw, concatenated), "lh" (raw, as a colon list).
    Header text is message data: the result is always tainted.
    """
    lines = header_lines(ctx)
    if lines is None:
        return _legacy_header(ctx, name, form)
    raw = form in ("rh", "lh")
    pieces: list[str] = []
    found = name is None
    comma = False
    total = 0
    for line in lines:
        if name is not None and line[: len(name)].lower() != name.lower():
            continue
        found = True
        text = line[len(name) :] if name is not None else line
        if form == "lh":
            text = text.rstrip("\n")
        elif not raw:
            text = text.strip(_WHITE)
            if name is not None and name[:-1].lower() in _ADDRESS_HEADERS:
                comma = True
        if total + len(text) > HEADER_INSERT_MAXLEN:
            text = text[: HEADER_INSERT_MAXLEN - total]
        if form == "lh":
            text = text.replace(":", "::")
        elif not raw and not text:
            continue
        pieces.append(text)
        total += len(text)
        if total >= HEADER_INSERT_MAXLEN:
            break
    if not found:
        return None
    separator = ":" if form == "lh" else "" if raw else ",\n" if comma else "\n"
    value = separator.join(pieces)
    if not raw:
        from mta.expand.textcodecs import rfc2047_decode

        value = rfc2047_decode(value, convert=form == "h", lenient=True)
    return Tainted(value)


def _legacy_header(ctx: ExpandContext, name: str | None, form: str) -> str | None:
    # A context built with a plain name -> value hook (tests, older callers):
    # good enough for $h_ and $rh_ of one header.
    if ctx.headers is None or name is None:
        return None
    value = ctx.headers(name[:-1].lower())
    if value is None:
        return None
    return Tainted(value if form in ("rh", "lh") else value.strip(_WHITE))


def _all_headers(ctx: ExpandContext, raw: bool) -> str:
    # Exim decodes RFC 2047 words in $message_headers but, as for $bh_, keeps their charset.
    value = find_header(ctx, None, "rh" if raw else "b")
    return "" if value is None else value


def _reply_address(ctx: ExpandContext) -> str:
    value = find_header(ctx, "reply-to:", "rh")
    if value is None or not value.strip(_WHITE):
        value = find_header(ctx, "from:", "rh")
    if value is None:
        return ""
    return concat([Tainted(value.lstrip(_WHITE).replace("\n", " ").rstrip(_WHITE))])


# -- the message body ------------------------------------------------------------------

MESSAGE_BODY_VISIBLE = 500  # Exim's message_body_visible default


def body_variables(read_body: Callable[[], bytes]) -> dict[str, Callable[[], str]]:
    """$message_body, $message_body_end, $message_body_size, $body_linecount, $body_zerocount.

    `read_body` is called at most once, when the first of them is used.  As
    in Exim, the body variables show at most 500 bytes, with newlines and
    NULs turned into spaces, and are message data (tainted).
    """
    body: list[bytes] = []

    def raw() -> bytes:
        if not body:
            body.append(read_body())
        return body[0]

    def visible(part: bytes) -> str:
        from mta.expand.textcodecs import from_bytes

        return Tainted(from_bytes(part.replace(b"\n", b" ").replace(b"\0", b" ")))

    return {
        "message_body": lambda: visible(raw()[:MESSAGE_BODY_VISIBLE]),
        "message_body_end": lambda: visible(raw()[-MESSAGE_BODY_VISIBLE:]),
        "message_body_size": lambda: str(len(raw())),
        "body_linecount": lambda: str(raw().count(b"\n") + (1 if raw() and not raw().endswith(b"\n") else 0)),
        "body_zerocount": lambda: str(raw().count(b"\0")),
    }
