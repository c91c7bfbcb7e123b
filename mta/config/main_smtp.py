"""The main options of the SMTP daemon and of SMTP reception (a part of the main section's table).

Declared here, apart from mta/config/main.py, only to keep files short:
`MainOptions` inherits this table, so the parser, `-bP` and the reference
see one main section.
"""

from __future__ import annotations

from mta.drivers import Kind, option, options_table

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar


@options_table
class SmtpServerOptions:
    """Daemon, listeners, limits and what EHLO advertises."""

    _generic: ClassVar[bool] = True

    # -- the daemon -------------------------------------------------------
    daemon_smtp_ports: str = option(
        "smtp", Kind.LIST, "Ports the daemon listens on (numbers or service names); -oX overrides."
    )
    local_interfaces: str = option(
        "<; 0.0.0.0 ; ::",
        Kind.LIST,
        "Addresses the daemon listens on; `ip.port` (or `[ip]:port`) sets a port for one address.",
    )
    pid_file_path: str = option(
        "", Kind.STRING, "Where the daemon writes its pid; unset: `<spool_directory>/mta-daemon.pid`. -oP overrides."
    )
    smtp_receivers: int = option(
        0, Kind.INT, "Receiving processes the daemon runs (they share the listeners); 0: one per CPU.", minimum=0
    )
    delivery_workers: int = option(
        0, Kind.INT, "Long-lived delivery processes the daemon runs; 0: one per CPU.", minimum=0
    )
    delivery_workers_max: int = option(
        0,
        Kind.INT,
        "Most delivery workers while some are stalled (delivery_worker_stall); 0: four times delivery_workers; "
        "a value no greater than delivery_workers: never more.",
        minimum=0,
    )
    delivery_worker_stall: int = option(
        5,
        Kind.TIME,
        "A worker busy this long on one message no longer counts: while messages wait, another is started.",
        minimum=1,
    )
    delivery_worker_max_idle: int = option(
        60, Kind.TIME, "A worker beyond delivery_workers that is idle this long ends.", minimum=1
    )
    in_flow_delay: int = option(
        1,
        Kind.TIME,
        "How long a receiver waits, before a message's 354, for the delivery workers to catch up when "
        "in_flow_backlog messages wait for them; then it goes on regardless (Postfix's in_flow_delay). "
        "0: never wait.",
        minimum=0,
    )
    in_flow_backlog: int = option(
        50,
        Kind.INT,
        "Messages the receivers may get ahead of the delivery workers (received, not yet taken by a "
        "worker) before in_flow_delay applies.",
        minimum=1,
        maximum=65536,
    )
    submission_socket: str = option(
        "",
        Kind.STRING,
        "The Unix socket on which the daemon takes messages from ordinary users' `sendmail`; "
        "unset: `<spool_directory>/submit.sock`.",
    )
    queue_only_load: int = option(
        0,
        Kind.INT,
        "When the 1-minute load average (times 1000, as Exim counts it) is at least this, received messages "
        "wait for a queue run; 0 means never.",
        minimum=0,
    )

    # -- limits -----------------------------------------------------------
    smtp_accept_max: int = option(20, Kind.INT, "Most simultaneous SMTP connections; 0 means no limit.", minimum=0)
    smtp_accept_max_per_host: int = option(
        0, Kind.INT, "Most simultaneous connections from one IP address; 0 means no limit.", minimum=0
    )
    smtp_accept_reserve: int = option(
        0,
        Kind.INT,
        "Of smtp_accept_max, this many connections are kept for hosts in smtp_reserve_hosts.",
        minimum=0,
    )
    smtp_reserve_hosts: str = option("", Kind.LIST, "Hosts that may use the connections smtp_accept_reserve keeps.")
    smtp_load_reserve: int = option(
        0,
        Kind.INT,
        "When the 1-minute load average (times 1000) is at least this, only smtp_reserve_hosts may connect; "
        "0 means never.",
        minimum=0,
    )
    smtp_accept_max_per_connection: int = option(
        1000, Kind.INT, "Most messages one connection may send; then 421.", minimum=0
    )
    smtp_receive_timeout: int = option(
        300, Kind.TIME, "Longest time a command line or a line of message text may take; then 421 and the end."
    )
    smtp_max_unknown_commands: int = option(
        3, Kind.INT, "Unrecognized commands allowed before the connection is dropped.", minimum=0
    )
    smtp_max_synprot_errors: int = option(
        3, Kind.INT, "Syntax and protocol errors allowed before the connection is dropped.", minimum=0
    )
    smtp_enforce_sync: bool = option(
        True,
        Kind.BOOL,
        "Drop a client that talks before the banner, or sends a command ahead of its turn when PIPELINING "
        "does not allow it.",
    )

    # -- what the daemon says and offers ----------------------------------
    smtp_banner: str = option(
        "$smtp_active_hostname ESMTP mta $version_number $tod_full",
        Kind.STRING,
        "The greeting after 220.",
        expand=True,
    )
    pipelining_advertise_hosts: str = option("*", Kind.LIST, "Hosts offered PIPELINING.")
    chunking_advertise_hosts: str = option("*", Kind.LIST, "Hosts offered CHUNKING (BDAT).")
    dsn_advertise_hosts: str = option(
        "*", Kind.LIST, "Hosts offered DSN (RET, ENVID, NOTIFY, ORCPT). Exim's default is none."
    )
    smtputf8_advertise_hosts: str = option("*", Kind.LIST, "Hosts offered SMTPUTF8.")
    sender_unqualified_hosts: str = option("", Kind.LIST, "Hosts that may send unqualified sender addresses.")
    recipient_unqualified_hosts: str = option("", Kind.LIST, "Hosts that may send unqualified recipient addresses.")
    host_lookup: str = option(
        "", Kind.LIST, "Hosts whose name is looked up (reverse DNS, checked forward) when they connect."
    )
    smtp_etrn_serialize: bool = option(
        True, Kind.BOOL,
        "One queue run per ETRN argument at a time: a repeat while it runs gets 458 (the misc hints database).",
    )
    smtp_etrn_command: str = option(
        "",
        Kind.STRING,
        "Run for an accepted ETRN (argv, no shell; $domain is the argument); unset: a queue run for the domain.",
        expand=True,
    )
