"""The main section's option table.

Each option is declared here once: its type, default and documentation.
The loader, `mta -bP` and docs/config-reference.md are all made from it.
Options whose default is computed at start-up (primary_hostname and the
qualify domains) are declared unset here and resolved by the Config.
"""

from __future__ import annotations

from mta.config.main_smtp import SmtpServerOptions
from mta.drivers import Kind, option, options_table

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

# Options read by the queue runner and daemon, which come in a later version:
# accepted (an Exim configuration has them) and documented as not yet in effect.
_QUEUE_RUNNER = " Takes effect with the queue runner (not in this version yet)."

DEFAULT_RECEIVED_HEADER_TEXT = (
    "Received: "
    "${if def:sender_rcvhost {from $sender_rcvhost\\n\\t}"
    "{${if def:sender_ident {from $sender_ident }}"
    "${if def:sender_helo_name {(helo=$sender_helo_name)\\n\\t}}}}"
    "by $primary_hostname "
    "${if def:received_protocol {with $received_protocol }}"
    "${if def:tls_in_ver { ($tls_in_ver)}}"
    "${if def:tls_in_cipher_std { tls $tls_in_cipher_std\\n\\t}}"
    "(mta $version_number)\\n\\t"
    "${if def:sender_host_authenticated {(authenticated as $authenticated_id)\\n\\t}}"
    "${if def:sender_address {(envelope-from <$sender_address>)\\n\\t}}"
    "id $message_exim_id"
    "${if def:received_for {\\n\\tfor $received_for}}"
)


def _acl_option(when: str, unset: str) -> Any:
    return option(
        None,
        Kind.STRING,
        f"The ACL run {when}: an ACL's name, `accept`, `deny`, inline ACL text or a /file (docs/acl.md). "
        f"Unset: {unset}.",
        expand=True,
    )


@options_table
class MainOptions(SmtpServerOptions):
    """Options of the main section (before the first ``begin``)."""

    _generic: ClassVar[bool] = True

    # -- identity -------------------------------------------------------
    primary_hostname: str | None = option(
        None, Kind.STRING, "This host's fully qualified name. Default: the system's node name."
    )
    qualify_domain: str | None = option(
        None, Kind.STRING, "Domain added to unqualified sender addresses. Default: primary_hostname."
    )
    qualify_recipient: str | None = option(
        None, Kind.STRING, "Domain added to unqualified recipient addresses. Default: qualify_domain."
    )
    local_domains: str = option(
        "@",
        Kind.LIST,
        "Domains delivered by the directors; `@` is the primary host name. "
        "The named list `domainlist local_domains = ...` means the same.",
    )
    mta_user: str = option("mail", Kind.STRING, "Unprivileged user for remote deliveries and the daemon's work.")
    mta_group: str = option("mail", Kind.STRING, "Group of mta_user.")
    trusted_users: str = option(
        "", Kind.LIST, "Users (besides root and mta_user) who may set the sender with -f and fake host data."
    )
    trusted_groups: str = option("", Kind.LIST, "Groups whose members are trusted, as trusted_users.")
    admin_groups: str = option(
        "",
        Kind.LIST,
        "Groups whose members are administrators (queue listing, -M...). Root, mta_user, members of "
        "mta_group, trusted users and the owner of the spool directory are administrators too.",
    )
    never_users: str = option("root", Kind.LIST, "Local deliveries are never run as these users.")
    untrusted_set_sender: str = option(
        "",
        Kind.LIST,
        "Address list of envelope senders that untrusted users may set with -f. "
        "`*` lets them set any sender; `:` (an empty item) only the empty sender `<>`.",
    )
    local_from_check: bool = option(
        True,
        Kind.BOOL,
        "For untrusted local submissions whose From: is not the caller, add a Sender: header naming the caller.",
    )
    queue_list_requires_admin: bool = option(True, Kind.BOOL, "Only administrators may list the queue.")
    prod_requires_admin: bool = option(True, Kind.BOOL, "Only administrators may start deliveries (-M, -q).")

    # -- the system filter (docs/filters.md) -----------------------------
    system_filter: str | None = option(
        None, Kind.STRING,
        "An Exim filter file obeyed once at the start of every delivery attempt, before routing: it may add "
        "and remove headers, add recipients, and fail, freeze or defer the message.",
    )
    system_filter_user: str | None = option(
        None, Kind.STRING, "User the system filter runs as (default: the delivering process, root)."
    )
    system_filter_group: str | None = option(
        None, Kind.STRING, "Group the system filter runs as (default: system_filter_user's)."
    )
    system_filter_pipe_transport: str | None = option(
        None, Kind.STRING, "Transport for the system filter's `pipe` commands.", expand=True
    )
    system_filter_file_transport: str | None = option(
        None, Kind.STRING, "Transport for the system filter's `save` to a file.", expand=True
    )
    system_filter_directory_transport: str | None = option(
        None, Kind.STRING, "Transport for the system filter's `save` to a directory (a name ending in /).",
        expand=True,
    )
    system_filter_reply_transport: str | None = option(
        None, Kind.STRING, "Transport for the system filter's `mail` and `vacation` commands.", expand=True
    )

    # -- spool and logs -------------------------------------------------
    spool_directory: str = option("/var/spool/mta", Kind.STRING, "Where messages, hints and (by default) logs live.")
    spool_sync_method: str = option(
        "syncfs",
        Kind.STRING,
        "How the daemon's receivers make a batch of received messages durable before they answer "
        "250: `syncfs` syncs the spool's file system twice per batch (Linux; elsewhere `fsync` is "
        "used), `fsync` syncs each message's two files and the directory. `fsync` suits a spool that "
        "shares its file system with a heavy writer (docs/reliability.md).",
        choices=("syncfs", "fsync"),
    )
    split_spool_directory: bool = option(
        False, Kind.BOOL, "Spread input/ and msglog/ over 62 sub-directories named by the 6th id character."
    )
    spool_spare_files: int = option(
        0,
        Kind.INT,
        "Finished messages' files kept in spare/ (at most this many) for the daemon's receivers to "
        "reuse, instead of unlinking them and creating new ones: on ext4 without a journal each new file "
        "costs a scan of recently freed inodes (docs/spool.md).  0: never.",
        minimum=0,
    )
    spool_tidy_age: int = option(
        86400,
        Kind.TIME,
        "Leftovers of a crash on the spool (a -D without its -H, an hdr.ID, a -J whose message is gone) older"
        " than this are removed at the start of each queue run; a locked message's files never are.  0 means"
        " never.",
    )
    log_file_path: str = option(
        "",
        Kind.LIST,
        "Log file names, `%s` standing for main, reject and panic, `%D` for the date; "
        "or `syslog`. Unset: `<spool_directory>/log/%slog`.",
    )
    log_selector: str = option(
        "", Kind.STRING, "Optional log items switched on (+name) or off (-name), e.g. `+received_recipients`."
    )
    log_timezone: bool = option(False, Kind.BOOL, "Append the time zone offset to log time stamps.")
    timezone: str | None = option(
        None, Kind.STRING, "Time zone for logs and headers (TZ value). Default: the system's."
    )
    syslog_facility: str = option(
        "mail",
        Kind.STRING,
        "Syslog facility for `log_file_path = syslog`.",
        choices=("mail", "daemon", "user", "news", "uucp", "auth", "authpriv", "cron", "lpr", "syslog",
                 *(f"local{n}" for n in range(8))),
    )
    syslog_processname: str = option(
        "mta", Kind.STRING, "The name syslog lines carry, with the pid (Exim's default: `exim`)."
    )
    syslog_duplication: bool = option(
        True,
        Kind.BOOL,
        "False: a line for both the main and the reject (or panic) log goes to syslog once, at the reject "
        "(or main) log's priority.",
    )
    syslog_timestamp: bool = option(True, Kind.BOOL, "Keep the time stamp at the start of lines sent to syslog.")
    message_logs: bool = option(True, Kind.BOOL, "Keep a per-message log in msglog/.")
    preserve_message_logs: bool = option(False, Kind.BOOL, "Move message logs to msglog.OLD/ instead of removing them.")
    write_rejectlog: bool = option(True, Kind.BOOL, "Write rejections to the reject log as well as the main log.")

    # -- reception ------------------------------------------------------
    message_size_limit: int = option(50 * 1024 * 1024, Kind.SIZE, "Largest message accepted; 0 means no limit.")
    header_maxsize: int = option(1024 * 1024, Kind.SIZE, "Largest header block accepted.")
    header_line_maxsize: int = option(0, Kind.SIZE, "Longest single header line accepted; 0 means no limit.")
    message_reject_nul: bool = option(
        False, Kind.BOOL, "Refuse messages with NUL bytes in the body instead of storing them as they are."
    )
    received_header_text: str = option(
        DEFAULT_RECEIVED_HEADER_TEXT, Kind.STRING, "The Received: header added to every message.", expand=True
    )
    received_headers_max: int = option(
        30, Kind.INT, "A message with more Received: headers than this is refused as a mail loop.", minimum=1
    )
    message_id_header_domain: str | None = option(
        None, Kind.STRING, "Domain of the Message-ID: header added to messages that lack one.", expand=True
    )
    message_id_header_text: str | None = option(
        None, Kind.STRING, "Text put before the message id in an added Message-ID: header.", expand=True
    )
    extract_addresses_remove_arguments: bool = option(
        True, Kind.BOOL, "With -t, addresses on the command line are removed from those found in the headers."
    )
    receive_timeout: int = option(0, Kind.TIME, "Time allowed to read a locally submitted message; 0 means none.")
    check_spool_space: int = option(
        10 * 1024 * 1024, Kind.SIZE,
        "MAIL is answered 452 (space shortage) while the spool's file system has less free space than "
        "this plus the message's SIZE; 0 means no check.",
    )
    check_spool_inodes: int = option(
        100, Kind.INT, "MAIL is answered 452 while the spool's file system has fewer free inodes; 0 means no check."
    )
    recipients_max: int = option(50000, Kind.INT, "Most recipients a message may have; 0 means no limit.")

    # -- queueing and delivery -----------------------------------------
    queue_only: bool = option(False, Kind.BOOL, "Queue every arriving message; deliver only in queue runs.")
    queue_smtp_domains: str = option(
        "",
        Kind.LIST,
        "Domains whose SMTP deliveries wait for a queue run even when local ones go at once." + _QUEUE_RUNNER,
    )
    queue_run_max: int = option(
        5, Kind.INT, "Most queue runs a daemon has going at once; a run due while this many go is skipped.",
        minimum=1,
    )
    remote_max_parallel: int = option(2, Kind.INT, "Most remote hosts one delivery talks to at once.", minimum=1)
    deliver_drop_privilege: bool = option(
        False, Kind.BOOL,
        "Every delivery, local or remote, runs as mta_user; a local delivery that needs another user (a mailbox "
        "owned by its recipient) is deferred.  For hosts whose local mail goes to mta_user-owned mailboxes or to "
        "LMTP/pipes run as mta_user.",
    )
    delay_warning: tuple[int, ...] = option(
        (24 * 3600,),
        Kind.TIMELIST,
        "When to warn the sender that a message is still undelivered (RFC 3464 \"delayed\" report): times on the"
        " queue, separated by colons, e.g. `4h:8h:24h`; the gap between the last two (or the only time) then"
        " repeats.  0 means never (docs/retry.md).",
    )
    delay_warning_condition: str = option(
        "${if or {{!eq{$h_list-id:$h_list-post:$h_list-subscribe:}{}}"
        " {match{$h_precedence:}{(?i)bulk|list|junk}}"
        " {match{$h_auto-submitted:}{(?i)auto-generated|auto-replied}}} {no}{yes}}",
        Kind.STRING,
        "Expanded when a delay warning is due; empty, `0`, `no` or `false` (or a forced failure) means no"
        " warning.  The default leaves out mailing-list, bulk and automatic messages, as Exim's does.",
        expand=True,
    )
    ignore_bounce_errors_after: int = option(
        10 * 7 * 86400,
        Kind.TIME,
        "A bounce (sender <>) older than this whose delivery fails is discarded instead of frozen; a frozen one"
        " that old is thawed (`Unfrozen by errmsg timer`), tried once more, and discarded if it fails again.",
    )
    timeout_frozen_after: int = option(
        0,
        Kind.TIME,
        "A frozen message older than this (counted from its arrival) is cancelled when a delivery attempt"
        " next looks at it (`cancelled by timeout_frozen_after`): its recipients are bounced, or for a bounce"
        " simply dropped.  0 means never.",
    )
    auto_thaw: int = option(
        0,
        Kind.TIME,
        "Thaw a frozen message (not a bounce) this long after it was frozen, when a delivery attempt next"
        " looks at it (`Unfrozen by auto-thaw`).  0 means never.",
    )
    freeze_tell: str = option("", Kind.LIST, "Addresses told when a bounce is frozen." + _QUEUE_RUNNER)
    bounce_return_message: bool = option(True, Kind.BOOL, "Include the original message (or its headers) in bounces.")
    bounce_return_body: bool = option(True, Kind.BOOL, "Include the body of the original message in bounces.")
    bounce_return_size_limit: int = option(
        100 * 1024, Kind.SIZE, "Most of the original message returned in a bounce; longer ones are cut."
    )
    errors_reply_to: str | None = option(None, Kind.STRING, "Reply-To: of bounce messages.", expand=True)
    mua_wrapper: bool = option(
        False,
        Kind.BOOL,
        "Run as a non-queueing client: one synchronous SMTP delivery to a smart host, exit 1 on any failure.",
    )

    # -- retry ----------------------------------------------------------
    retry_data_expire: int = option(
        7 * 86400,
        Kind.TIME,
        "A retry record not updated for this long is ignored (the destination counts as never having failed).",
        minimum=1,
    )
    retry_interval_max: int = option(
        24 * 3600,
        Kind.TIME,
        "No retry interval computed from the retry rules is longer than this (at most 24h).",
        maximum=24 * 3600,
        minimum=1,
    )

    # -- access control lists -------------------------------------------
    acl_smtp_connect: str | None = _acl_option("at the start of an SMTP connection", "accept")
    acl_smtp_helo: str | None = _acl_option("for HELO and EHLO", "accept")
    acl_smtp_starttls: str | None = _acl_option("for STARTTLS", "accept")
    acl_smtp_auth: str | None = _acl_option("for AUTH", "accept")
    acl_smtp_mail: str | None = _acl_option("for MAIL", "accept")
    acl_smtp_rcpt: str | None = _acl_option(
        "for each RCPT: the relay control (the default configuration's is acl_check_rcpt)", "deny"
    )
    acl_smtp_predata: str | None = _acl_option("for DATA, before the message is read", "accept")
    acl_smtp_data: str | None = _acl_option("after the message has been read (DATA or the last BDAT)", "accept")
    acl_smtp_mime: str | None = _acl_option(
        "for each MIME part of a message received over SMTP (not run by this version: no MIME scanning)",
        "accept",
    )
    acl_not_smtp: str | None = _acl_option(
        "for a message submitted on the command line (not SMTP; not run by local submission yet); "
        "a defer is a deny",
        "accept",
    )
    acl_smtp_vrfy: str | None = _acl_option("for VRFY", "deny")
    acl_smtp_expn: str | None = _acl_option("for EXPN", "deny")
    acl_smtp_etrn: str | None = _acl_option("for ETRN", "deny")
    acl_smtp_quit: str | None = _acl_option("for QUIT (side effects only: QUIT always gets 221)", "accept")

    # -- DNS ------------------------------------------------------------
    dns_servers: str = option(
        "", Kind.LIST, "Name servers to query (`ip` or `ip.port`); unset: those in /etc/resolv.conf."
    )
    dns_retrans: int = option(0, Kind.TIME, "Time to wait for one DNS answer; 0 means the resolver's default.")
    dns_retry: int = option(0, Kind.INT, "Times to retry a DNS query; 0 means the resolver's default.")

    # -- the SMTP daemon: TLS and AUTH ---------------------------------
    tls_advertise_hosts: str = option(
        "*",
        Kind.LIST,
        "Hosts to which the daemon offers STARTTLS (a host list); empty: to nobody.",
        expand=True,
    )
    tls_certificate: str | None = option(
        None,
        Kind.STRING,
        "The daemon's certificate chain (PEM file: the certificate first, then any intermediates); read at"
        " start-up and on SIGHUP.  Unset: a self-signed certificate for primary_hostname, made once and kept"
        " under `<spool_directory>/tls/`.",
        expand=True,
    )
    tls_privatekey: str | None = option(
        None,
        Kind.STRING,
        "The private key of `tls_certificate` (PEM, unencrypted); unset: in the certificate's file.",
        expand=True,
    )
    tls_on_connect_ports: str = option(
        "",
        Kind.LIST,
        "Ports (of `daemon_smtp_ports`) on which TLS starts as soon as a client connects, without STARTTLS"
        " (SMTPS, RFC 8314), e.g. 465.",
    )
    tls_require_ciphers: str | None = option(
        None,
        Kind.STRING,
        "The daemon's TLS 1.2 cipher list, in OpenSSL's syntax; unset: OpenSSL's defaults.  TLS 1.3 always uses"
        " OpenSSL's TLS 1.3 suites.  TLS 1.0 and 1.1 are never accepted.",
        expand=True,
    )
    auth_advertise_hosts: str = option(
        "",
        Kind.LIST,
        "Hosts to which the daemon offers AUTH before STARTTLS (a host list); every client is offered it once"
        " TLS is on.  Default: nobody, so that no password crosses the network in clear.",
        expand=True,
    )

    # -- commands -------------------------------------------------------
    bi_command: str = option(
        "", Kind.STRING,
        "Command run by `mta -bi` (newaliases), after the alias files of lmdb aliasfile directors are compiled; "
        "not run when one has an error.",
    )

    # -- string expansion -------------------------------------------------
    expansion_run_commands: bool = option(
        True,
        Kind.BOOL,
        "Allow the `${run}` expansion item (a command from the configuration, run without a shell; "
        "a tainted argument is always refused). `no_expansion_run_commands` makes it an error.",
    )
    expansion_read_sockets: bool = option(
        True,
        Kind.BOOL,
        "Allow the `${readsocket}` expansion item (a Unix or TCP socket named in the configuration). "
        "`no_expansion_read_sockets` makes it an error.",
    )
    expansion_run_timeout: int = option(
        60, Kind.TIME, "A `${run}` command still running after this long is killed and the expansion fails.", minimum=1
    )
    keep_environment: str = option(
        "",
        Kind.LIST,
        "Names of environment variables kept for `${env}` and `${run}` commands; every other one is removed "
        "(Exim's rule). Empty: none.",
    )
    add_environment: str = option(
        "", Kind.LIST, "`NAME=value` settings added to the environment `${env}` reads and `${run}` commands get."
    )
