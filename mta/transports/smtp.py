"""The smtp transport: Exim's remote SMTP client.

``driver = smtp`` delivers to the hosts a router found, or to the
transport's own `hosts`, over SMTP (RFC 5321), with STARTTLS or smtps, AUTH,
PIPELINING, SIZE, 8BITMIME and SMTPUTF8.  docs/smtp.md is the user guide.

Two clients share one conversation:

* `SmtpTransport.deliver_batch` (asyncio, smtp_async.py) in delivery processes;
* `smtp_sync.deliver_batch_sync` (blocking sockets) for mua_wrapper, whose
  start-up time matters: nothing on that path imports asyncio, aiosmtplib or
  dnspython, and ssl only when TLS is used.

The modules:

  smtp.py          options, the transport class, errors with host detail
  smtp_wire.py     replies, capabilities, DATA framing, the I/O ops
  smtp_plan.py     one delivery: hosts in order, transactions, outcomes
  smtp_session.py  one connection: greeting, EHLO, STARTTLS, AUTH, MAIL/RCPT/DATA
  smtp_sync.py, smtp_async.py   the runners that perform the ops

The conversation is written once as a *plan*: a generator that yields I/O
requests (Connect, Send, Receive, StartTls, SendBody ...), receives their
results and gets I/O failures thrown back in as SmtpIoError; a runner only
performs requests (the pattern of mta.route.dns).

Outcomes, per address: 2xx RCPT and 2xx after the dot -> Delivered; 5xx RCPT
-> FailError, 4xx RCPT -> DeferError (retry_error rcpt_4xx); MAIL or DATA
4xx/5xx -> every address of the transaction; every host failing -> DeferError
with the last host's error.  A connection lost or timed out after the body
was sent leaves the outcome unknown: the addresses are deferred, never
counted as delivered, and not offered to another host (that could deliver
twice).  With mua_wrapper every failure is permanent and one failed
recipient fails the whole message (no DATA is sent).

Errors carry the host and the reply (`SmtpDeferError`, `SmtpFailError`) for
the log line and mua_wrapper's stderr message; `host_errors` lists every
host that failed and why (Exim logs one line per host).  Reply text is
network data: it goes into messages, never into an expansion.

The client authenticators and named lists are linked at start-up
(`check`, called by mta.runtime.build_runtime).  ``DeliveryEnv.extra`` may
override or add: ``authenticators`` (a list), ``runtime`` (its
authenticators and named lists), ``resolver`` (a mta.route.dns.DnsResolver
for hosts without an address, async client only; else getaddrinfo) and
``local_addresses`` (for allow_localhost; default: the interfaces').
"""

from __future__ import annotations

from mta.drivers import DriverOptions, Kind, option, options_table
from mta.errors import ConfigError, DeferError, DeliveryError, FailError
from mta.transports.base import OutgoingMessage, RemoteTransport, TransportOptions

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

if TYPE_CHECKING:
    from mta.route.dns import Host
    from mta.route.item import AddressItem
    from mta.transports.base import DeliveryEnv, Outcome
    from mta.transports.smtp_wire import Reply


@options_table
class SmtpOptions(TransportOptions):
    """The smtp transport's options (Exim names and defaults)."""

    hosts: str | None = option(
        None,
        Kind.LIST,
        "Hosts to deliver to when the router supplied none (always, with `hosts_override`): names or IP"
        " addresses, each optionally with a port (`mail.example.com::587` in a colon list, `[2001:db8::1]:587`).",
        expand=True,
    )
    hosts_override: bool = option(False, Kind.BOOL, "Use `hosts` even when the router supplied a host list.")
    hosts_randomize: bool = option(False, Kind.BOOL, "Try the hosts of `hosts` and `fallback_hosts` in random order.")
    port: str | None = option(
        None,
        Kind.STRING,
        "Port to connect to (number or service name) unless the router set one; default 25, or 465 with"
        " `protocol = smtps`.",
        expand=True,
    )
    protocol: str = option(
        "smtp",
        Kind.STRING,
        "`smtp`: plain connection, STARTTLS when offered; `smtps`: TLS from the first byte (RFC 8314).",
        choices=("smtp", "smtps"),
    )
    fallback_hosts: str | None = option(
        None,
        Kind.LIST,
        "Hosts tried, in order, after every normal host failed temporarily (ignored with mua_wrapper).",
        expand=True,
    )
    interface: str | None = option(
        None,
        Kind.LIST,
        "Local IP address(es) to send from; the first of the destination's family (IPv4 or IPv6) is used.",
        expand=True,
    )
    helo_data: str = option("$primary_hostname", Kind.STRING, "The name sent with EHLO or HELO.", expand=True)
    connect_timeout: int = option(
        300, Kind.TIME, "How long to wait for a TCP connection (and for the TLS handshake with smtps).", minimum=1
    )
    command_timeout: int = option(
        300, Kind.TIME, "How long to wait for the greeting and for the reply to each command.", minimum=1
    )
    data_timeout: int = option(300, Kind.TIME, "How long writing one block of the message may take.", minimum=1)
    final_timeout: int = option(600, Kind.TIME, "How long to wait for the reply to the final dot.", minimum=1)
    hosts_avoid_esmtp: str | None = option(
        None, Kind.LIST, "Hosts sent HELO instead of EHLO (so no extensions are used).", expand=True
    )
    hosts_avoid_pipelining: str | None = option(
        None, Kind.LIST, "Hosts whose PIPELINING offer is ignored: one command, one reply.", expand=True
    )
    hosts_require_tls: str | None = option(
        None,
        Kind.LIST,
        "Hosts that must be reached over TLS; without it (not offered, or failed) the host is skipped and the"
        " delivery deferred with \"TLS session required\".",
        expand=True,
    )
    hosts_avoid_tls: str | None = option(
        None, Kind.LIST, "Hosts with which STARTTLS is never tried.", expand=True
    )
    tls_verify_hosts: str | None = option(
        None,
        Kind.LIST,
        "Hosts whose certificate must verify (chain and name); a failure is a TLS failure.  To insist on a"
        " verified session also list the host in `hosts_require_tls`, or the delivery may go on in clear"
        " (`tls_tempfail_tryclear`).",
        expand=True,
    )
    tls_try_verify_hosts: str | None = option(
        "*",
        Kind.LIST,
        "Hosts whose certificate is verified if possible; an unverifiable one is still used (the log shows"
        " CV=no).  Verification failure costs a second connection, made without verification.",
        expand=True,
    )
    tls_verify_certificates: str | None = option(
        None,
        Kind.STRING,
        "CA certificates to verify servers with: a PEM file or a hashed directory; default: the system's.",
        expand=True,
    )
    tls_certificate: str | None = option(
        None, Kind.STRING, "Client certificate (PEM) to present, if a server asks for one.", expand=True
    )
    tls_privatekey: str | None = option(
        None, Kind.STRING, "Private key of `tls_certificate` (default: in the same file).", expand=True
    )
    tls_sni: str | None = option(
        None,
        Kind.STRING,
        "Server name to send (SNI) and to verify the certificate against; default: the host's name when"
        " verifying, no SNI otherwise.",
        expand=True,
    )
    tls_tempfail_tryclear: bool = option(
        True,
        Kind.BOOL,
        "After a TLS failure with a host not in `hosts_require_tls`, deliver to it in clear (reconnecting if"
        " the handshake failed); if false, the host is skipped.",
    )
    hosts_require_auth: str | None = option(
        None,
        Kind.LIST,
        "Hosts we must authenticate to; if no authenticator succeeds the host is skipped and the delivery"
        " deferred.  AUTH is then used even in clear if the server offers it there.",
        expand=True,
    )
    hosts_try_auth: str | None = option(
        None,
        Kind.LIST,
        "Hosts we authenticate to if we can (only over TLS); on failure the message is sent unauthenticated.",
        expand=True,
    )
    authenticated_sender: str | None = option(
        None,
        Kind.STRING,
        "After authenticating, the AUTH= value of MAIL FROM (RFC 4954 §5); default: the address the message"
        " arrived authenticated with, else `<>`.  A forced failure or an empty result keeps the default.",
        expand=True,
    )
    max_rcpt: int = option(
        100, Kind.INT, "Most recipients per transaction; more are sent in further transactions (0: no limit).",
        minimum=0,
    )
    connection_max_messages: int = option(
        500,
        Kind.INT,
        "Most messages sent over one connection; the connection is kept open for later messages of this"
        " process until then (0: no limit).",
        minimum=0,
    )
    size_addition: int = option(
        1024,
        Kind.INT,
        "Added to the message size in MAIL FROM's SIZE= (for headers added on the way); negative: never send"
        " SIZE=.",
    )
    allow_localhost: bool = option(
        False,
        Kind.BOOL,
        "Deliver even when a host's address is one of this machine's (otherwise: \"remote host address is the"
        " local host\", deferred).",
    )
    hosts_max_try: int = option(
        5, Kind.INT, "Most host addresses tried per delivery (counted separately for fallback_hosts).", minimum=1
    )
    multi_domain: bool = option(
        True, Kind.BOOL, "Send recipients of different domains in one transaction (false: one domain each)."
    )
    delay_after_cutoff: bool = option(
        True,
        Kind.BOOL,
        "When every host of a domain is past its final retry cutoff: true, bounce new messages without"
        " trying until a host's next retry time comes; false, try the hosts not tried since the message"
        " arrived, then bounce (docs/retry.md).",
    )
    retry_include_ip_address: bool = option(
        True,
        Kind.BOOL,
        "Key host retry data by host name and IP address (`T:name:ip`); false: by name only, so all the"
        " addresses of a host share one retry time.",
    )
    address_retry_include_sender: bool = option(
        True,
        Kind.BOOL,
        "After a 4xx reply to RCPT, key the address's retry data by address and sender (`R:addr:<sender>`),"
        " so that a refusal for one sender does not hold back mail from others.",
    )


# ---------------------------------------------------------------------------
# Errors with host detail
# ---------------------------------------------------------------------------


class _RemoteDetail:
    """What a remote failure adds to DeliveryError: the host and its reply."""

    host: Host | None = None
    reply: Reply | None = None
    # Every host that failed in this delivery, with why, for the log's per-host lines.
    host_errors: tuple[tuple[Host, str], ...] = ()

    @property
    def host_text(self) -> str | None:
        """``host NAME [IP]`` as mua_wrapper's message and Exim's bounces show it."""
        if self.host is None:
            return None
        return f"host {self.host.name} [{self.host.address}]" if self.host.address else f"host {self.host.name}"


class SmtpDeferError(_RemoteDetail, DeferError):
    """A temporary failure of a remote delivery, with the host and reply that caused it."""


class SmtpFailError(_RemoteDetail, FailError):
    """A permanent failure of a remote delivery, with the host and reply that caused it."""


def remote_error(
    cls: type[SmtpDeferError] | type[SmtpFailError],
    message: str,
    host: Host | None,
    reply: Reply | None = None,
    *,
    retry_error: str | None = None,
    errno: int = 0,
    code: int | None = None,
    esc: str | None = None,
) -> SmtpDeferError | SmtpFailError:
    error = cls(
        message,
        code=code if code is not None else (reply.code if reply else None),
        esc=esc if esc is not None else (reply.esc if reply else None),
        errno=errno,
        retry_error=retry_error,
    )
    error.host, error.reply = host, reply
    return error


def failure_message(address: str, error: DeliveryError) -> str:
    """mua_wrapper's stderr line: ``delivery to bob@x failed: <reason> (host NAME [IP])``."""
    text = f"delivery to {address} failed: {error.message}"
    host_text = error.host_text if isinstance(error, _RemoteDetail) else None
    return f"{text} ({host_text})" if host_text else text


# ---------------------------------------------------------------------------
# The transport
# ---------------------------------------------------------------------------


class SmtpTransport(RemoteTransport):
    """``driver = smtp``: deliver to remote hosts over SMTP (async; see smtp_sync for mua_wrapper)."""

    options: SmtpOptions
    options_class: ClassVar[type[DriverOptions]] = SmtpOptions

    def __init__(self, name: str, options: DriverOptions, source: tuple[str, int]) -> None:
        super().__init__(name, options, source)
        # Idle connections kept for later messages (connection_max_messages);
        # owned by smtp_async / smtp_sync, which know what a connection is.
        self.async_pool: Any = None
        self.sync_pool: Any = None
        self._ports: dict[str, int] = {}
        # Linked at start-up by check(): the client authenticators and the named
        # lists, so that a caller whose DeliveryEnv carries no runtime still has them.
        self.authenticators: list[Any] = []
        self.named_list: Any = None

    def check(self, config: Any) -> None:
        """Link the configuration's authenticators and named lists; check a literal port."""
        self.authenticators = [a for a in getattr(config, "authenticators", ()) if getattr(a, "is_client", False)]
        named_config = getattr(config, "config", None)
        self.named_list = getattr(named_config, "named_list", None)
        port = self.options.port
        if port is not None and "$" not in port:
            try:
                self.port_number(port)
            except ValueError as exc:
                raise ConfigError(f"{self.name} transport: {exc}", *self.source) from None

    def port_number(self, text: str) -> int:
        """A port from a number or a service name (/etc/services); ValueError if neither."""
        text = text.strip()
        if text.isdigit() and 0 < int(text) < 65536:
            return int(text)
        if text not in self._ports:
            import socket

            try:
                self._ports[text] = socket.getservbyname(text, "tcp")
            except OSError:
                raise ValueError(f'"{text}" is not a port number or a known service name') from None
        return self._ports[text]

    async def deliver_batch(
        self, message: OutgoingMessage, items: list[AddressItem], env: DeliveryEnv
    ) -> dict[AddressItem, Outcome]:
        from mta.transports.smtp_async import deliver_batch_async

        return await deliver_batch_async(self, message, items, env)

    async def close_connections(self) -> None:
        """QUIT and close every idle connection this transport keeps (end of a delivery process's work)."""
        from mta.transports.smtp_async import close_connections_async

        await close_connections_async(self)
