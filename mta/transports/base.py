"""Transports: the contract between delivery and the drivers that move mail.

Local transports (appendfile, pipe, autoreply) deliver one address at a
time, or a batch of them with batch_max (appendfile, pipe), in a child
process that has already dropped to the delivery user's uid/gid:

    transport.deliver(message, item, env)           # returns on success
    transport.deliver_items(message, items, env)    # a batch: one copy for all

Remote transports (smtp) take a batch of addresses that share a host list
and sender, and return one outcome per address (`Delivered`, `DeferError`
or `FailError`):

    outcomes = await transport.deliver_batch(message, items, env)

Both raise or return `DeferError` (temporary: keep the address, retry) and
`FailError` (permanent: bounce) — never a bare string, never a swallowed
exception.  A transport never touches the spool's -H/-J files or the log:
the delivery code records outcomes.
"""

from __future__ import annotations

from abc import abstractmethod

from mta import record
from mta.drivers import Driver, DriverOptions, Kind, option, options_table
from mta.errors import DeferError, FailError

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, BinaryIO, ClassVar

if TYPE_CHECKING:
    from mta.message.headers import Header
    from mta.route.dns import Host
    from mta.route.item import AddressItem


@options_table
class TransportOptions(DriverOptions):
    """Options every transport has."""

    _generic: ClassVar[bool] = True

    user: str | None = option(None, Kind.STRING, "User to run the delivery as (local transports).", expand=True)
    group: str | None = option(None, Kind.STRING, "Group to run the delivery as.", expand=True)
    initgroups: bool = option(False, Kind.BOOL, "Also set the supplementary groups of `user`.")
    home_directory: str | None = option(
        None, Kind.STRING, "Home directory for the delivery ($home); default: the director's.", expand=True
    )
    current_directory: str | None = option(None, Kind.STRING, "Working directory of the delivery process.", expand=True)
    headers_add: str | None = option(None, Kind.STRING, "Header lines added to each message sent.", expand=True)
    headers_remove: str | None = option(
        None, Kind.LIST, "Names of headers removed from each message sent.", expand=True
    )
    return_path: str | None = option(
        None, Kind.STRING, "Envelope sender to use instead of the message's (bounces go there).", expand=True
    )
    headers_rewrite: str | None = option(
        None, Kind.STRING, "Rewriting rules (colon-separated) for the addresses in the headers sent; docs/rewrite.md."
    )
    return_path_add: bool = option(False, Kind.BOOL, "Add a Return-path: header (final delivery only).")
    envelope_to_add: bool = option(False, Kind.BOOL, "Add an Envelope-to: header listing the original recipients.")
    delivery_date_add: bool = option(False, Kind.BOOL, "Add a Delivery-date: header.")
    body_only: bool = option(False, Kind.BOOL, "Send only the body.")
    headers_only: bool = option(False, Kind.BOOL, "Send only the headers.")
    message_size_limit: int = option(0, Kind.SIZE, "Larger messages fail for this transport; 0 means no limit.")
    retry_use_local_part: bool | None = option(
        None, Kind.BOOL, "Key retry data by the whole address (default: true for local transports)."
    )


@record.dataclass(slots=True)
class OutgoingMessage:
    """A spooled message as transports see it."""

    message_id: str
    sender_address: str
    headers: list[Header]
    received_time: float
    size: int
    open_body: Callable[[], BinaryIO]  # a binary file positioned at the start of the body
    body_linecount: int = 0
    received_protocol: str = "local"
    variables: dict[str, Any] = record.field(default_factory=dict)

    def header_value(self, name: str) -> str | None:
        """Raw value of the first live header called `name` (case-insensitive), or None."""
        lname = name.lower()
        values = [h.text.split(":", 1)[1] for h in self.headers if h.flag != "*" and h.name.lower() == lname]
        if not values:
            return None
        return "\n".join(v.strip() for v in values)


@record.dataclass(slots=True)
class Submitted:
    """What became of a message a transport generated (an autoreply) and handed to `DeliveryEnv.submit`.

    `status` is sendmail's exit status (0: accepted and on disk), `note` the
    reason when it is not 0, `message_id` the new message's id when it was
    spooled by this process (None when the daemon or its drop directory took it).
    """

    status: int
    note: str = ""
    message_id: str | None = None


@record.dataclass(slots=True)
class DeliveryEnv:
    """What a transport may use besides the message: expansion, identity, time."""

    expand: Callable[..., str]  # expand(text, item=None, extra=None) -> str
    primary_hostname: str
    qualify_domain: str
    now: float
    # Delivery user/group resolved by the delivery code (local transports).
    uid: int | None = None
    gid: int | None = None
    home: str | None = None
    # Extra fields a remote transport needs (authenticators, TLS settings ...).
    extra: dict[str, Any] = record.field(default_factory=dict)
    # For a transport that generates a new message (autoreply): submit(sendmail arguments, the
    # message) spools it as the delivery's user would with `sendmail` (mta.receive.local_submit).
    submit: Callable[[list[str], BinaryIO], Submitted] | None = None
    # Ids of messages this delivery spooled itself (by `submit`), for the delivery code to deliver.
    generated: list[str] = record.field(default_factory=list)


@record.dataclass(slots=True)
class Delivered:
    """A remote delivery that the server accepted, with what the log line shows.

    `host` is the host that took the message (address and port filled in),
    `confirmation` its final reply ("250 2.0.0 Ok: queued", the log's C=),
    `cipher` the TLS cipher ("TLS1.3:TLS_AES_256_GCM_SHA384:256", X=) or None
    in clear, `reused_connection` true when the connection had already
    carried an earlier message (the log adds ``*`` after the host), and
    `tls_verified` whether the server's certificate was verified (CV=), None
    without TLS.
    """

    host: Host | None = None
    confirmation: str | None = None
    cipher: str | None = None
    reused_connection: bool = False
    tls_verified: bool | None = None


Outcome = Delivered | DeferError | FailError


class Transport(Driver):
    kind_name: ClassVar[str] = "transport"
    options: TransportOptions
    options_class: ClassVar[type[DriverOptions]] = TransportOptions
    is_local: ClassVar[bool] = True
    # True for a transport that makes a new message rather than delivering this one (autoreply):
    # the delivery code then gives it DeliveryEnv.submit.
    generates_messages: ClassVar[bool] = False


class LocalTransport(Transport):
    is_local: ClassVar[bool] = True

    @abstractmethod
    def deliver(self, message: OutgoingMessage, item: AddressItem, env: DeliveryEnv) -> None:
        """Deliver one address; return on success, raise DeferError or FailError.

        Runs in a child process already running as the delivery user.  A
        failure must leave the destination as it was (a partly written mbox
        message is truncated away before returning).
        """

    def deliver_items(self, message: OutgoingMessage, items: list[AddressItem], env: DeliveryEnv) -> None:
        """Deliver a batch of addresses (batch_max > 1) in one run, one copy of the message.

        The delivery code only makes batches of more than one address for a
        transport whose options allow it (mta.deliver.grouping); the
        transports that do (appendfile, pipe) override this.
        """
        if len(items) != 1:
            raise DeferError(f"the {self.name} transport cannot deliver {len(items)} addresses at once")
        self.deliver(message, items[0], env)


class RemoteTransport(Transport):
    is_local: ClassVar[bool] = False

    @abstractmethod
    async def deliver_batch(
        self, message: OutgoingMessage, items: list[AddressItem], env: DeliveryEnv
    ) -> dict[AddressItem, Outcome]:
        """Deliver a batch sharing hosts and sender; one outcome per item."""
