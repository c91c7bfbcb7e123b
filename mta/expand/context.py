"""What an expansion can see: variables, headers and a list matcher.

The caller (a router, a transport, the `-be` command) builds an
`ExpandContext`; the expander only reads it.  The set of variable names the
language knows is fixed here, so that a typo in a configuration
(``$local_prt``) is an error rather than a silently empty string.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping

from mta import record

# A variable's value: text (possibly Tainted), None for "unset" (expands to
# ""), or a zero-argument callable computed only when the variable is used
# (message_body, say).  Integers are accepted for convenience
# (message_size, recipients_count) and printed in decimal.
VariableValue = str | int | None | Callable[[], "str | int | None"]


@record.dataclass
class ExpandContext:
    """Everything `expand()` may read.

    variables   name -> value (see VariableValue).  A name in this mapping is
                always usable, even if it is not in KNOWN_VARIABLES.
    headers     name -> raw value of that header (all instances joined by
                "\\n"), or None when the message has no such header.  The
                name passed is lower-cased.  Header text is message data:
                the expander marks it tainted whatever the callable returns.
    match_list  (kind, subject, list) -> bool for the match_domain,
                match_address, match_local_part and match_ip conditions
                (kind is "domain", "address", "localpart" or "host").  The
                list text is passed as expanded, unsplit.
    """

    variables: Mapping[str, VariableValue] = record.field(default_factory=dict)
    headers: Callable[[str], str | None] | None = None
    match_list: Callable[[str, str, str], bool] | None = None


KNOWN_VARIABLES: frozenset[str] = frozenset(
    [
        "primary_hostname", "qualify_domain", "qualify_recipient",
        "local_part", "domain", "local_part_prefix", "local_part_suffix", "local_part_data", "domain_data",
        "local_part_prefix_v", "local_part_suffix_v",
        "original_local_part", "original_domain", "parent_local_part", "parent_domain",
        "home", "address_data", "self_hostname", "errors_address",
        "sender_address", "sender_address_local_part", "sender_address_domain", "sender_address_data",
        "return_path", "sender_fullname", "sender_ident",
        "message_id", "message_exim_id", "message_size", "message_body", "message_body_end",
        "message_body_size",
        "message_headers", "message_headers_raw", "message_linecount", "body_linecount", "body_zerocount",
        "received_protocol", "received_for", "received_count", "received_time", "received_ip_address",
        "received_port",
        "sender_host_address", "sender_host_name", "sender_host_port", "sender_helo_name", "sender_rcvhost",
        "sender_host_authenticated", "sender_rate", "sender_verify_failure",
        "authenticated_id", "authenticated_sender", "authentication_failed", "authenticated_fail_id",
        "auth1", "auth2", "auth3",
        "tod_log", "tod_full", "tod_bsdinbox", "tod_epoch", "tod_logfile", "tod_zone", "tod_zulu",
        "value", "spool_directory", "version_number", "exim_version", "compile_number", "compile_date",
        "config_file", "config_dir", "exim_path", "pid",
        "caller_uid", "caller_gid", "originator_uid", "originator_gid",
        "recipients", "recipients_count", "rcpt_count", "rcpt_defer_count", "rcpt_fail_count",
        "recipient_data", "recipient_verify_failure",
        "host", "host_address", "host_port", "host_data", "host_lookup_failed",
        "tls_cipher", "tls_in_cipher", "tls_out_cipher", "tls_peerdn", "tls_in_peerdn", "tls_out_peerdn",
        "tls_sni", "tls_in_sni", "tls_bits", "tls_in_bits", "tls_in_ver",
        "pipe_addresses", "address_file", "address_pipe",
        "interface_address", "interface_port",
        "router_name", "transport_name",
        "runrc", "reply_address", "return_size_limit",
        "smtp_command", "smtp_command_argument", "acl_verify_message", "acl_narg",
        "bounce_recipient", "bounce_return_size_limit", "warn_message_delay", "warn_message_recipients",
        "dnslist_domain", "dnslist_matched", "dnslist_text", "dnslist_value",
        "domain_verified", "local_part_verified",
    ]
    + [str(n) for n in range(10)]  # $0..$9, the regex captures
)

# $acl_c0..$acl_c9, $acl_m0..$acl_m9 and Exim 4's named $acl_c_xxx / $acl_m_xxx.
_ACL_VARIABLE = re.compile(r"acl_[cm](?:\d|_\w+)")


def is_known_variable(name: str) -> bool:
    return name in KNOWN_VARIABLES or _ACL_VARIABLE.fullmatch(name) is not None


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _zone(offset_seconds: int) -> str:
    sign = "-" if offset_seconds < 0 else "+"
    minutes = abs(offset_seconds) // 60
    return f"{sign}{minutes // 60:02d}{minutes % 60:02d}"


def time_variables(now: float | None = None) -> dict[str, str]:
    """The $tod_* variables for the time `now` (default: the current time).

    Local time, with English day and month names whatever the locale, in
    the formats of Exim's tod.c:

    tod_log       2026-11-22 12:42:54
    tod_full      Sun, 22 Nov 2026 12:42:54 +0000   (Date: and Received: headers)
    tod_bsdinbox  Sun Nov 22 12:42:54 2026          (mbox "From " lines)
    tod_epoch     seconds since 1970
    tod_logfile   20261122                          (datestamped log names)
    tod_zone      +0000
    tod_zulu      20261122124254Z                   (UTC)
    """
    if now is None:
        now = time.time()
    t = time.localtime(now)
    u = time.gmtime(now)
    day, month = _DAYS[t.tm_wday], _MONTHS[t.tm_mon - 1]
    hms = f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    zone = _zone(t.tm_gmtoff)
    return {
        "tod_log": f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d} {hms}",
        "tod_full": f"{day}, {t.tm_mday:02d} {month} {t.tm_year:04d} {hms} {zone}",
        "tod_bsdinbox": f"{day} {month} {t.tm_mday:02d} {hms} {t.tm_year:04d}",
        "tod_epoch": str(int(now)),
        "tod_logfile": f"{t.tm_year:04d}{t.tm_mon:02d}{t.tm_mday:02d}",
        "tod_zone": zone,
        "tod_zulu": (
            f"{u.tm_year:04d}{u.tm_mon:02d}{u.tm_mday:02d}{u.tm_hour:02d}{u.tm_min:02d}{u.tm_sec:02d}Z"
        ),
    }
