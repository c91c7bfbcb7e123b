"""AddressItem: one address on its way through routing and delivery.

Exim's address_item.  A top-level recipient from the -H file is an item
with no parent; aliasing and forwarding create children whose `parent`
points back, which is how loop detection, `$parent_local_part` and the log
line's ``<original>`` part are found.
"""

from __future__ import annotations

from mta import record
from mta.taint import Tainted

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

if TYPE_CHECKING:
    from mta.route.dns import Host


@record.dataclass
class ReplyItem:
    """A message to be generated rather than a copy delivered (Exim's reply_item).

    A filter's `mail`/`vacation` command, or a router that sends an automatic reply, makes an
    AddressItem whose `reply` is one of these; the autoreply transport then builds the reply from
    these values instead of expanding its own options.  Values are already expanded; any that
    came from the message are Tainted.  `to`, `cc` and `bcc` are address lists as header text.
    """

    to: str | None = None
    cc: str | None = None
    bcc: str | None = None
    from_: str | None = None
    reply_to: str | None = None
    subject: str | None = None
    headers: str | None = None
    text: str | None = None
    file: str | None = None
    file_expand: bool = False
    return_message: bool = False
    # `once`: the file or database recording who was already answered; `once_repeat` in seconds
    # (0: never repeat).  `log`: a file to which each reply is logged.
    once: str | None = None
    once_repeat: int = 0
    log: str | None = None


@record.dataclass(eq=False)
class AddressItem:
    """An address being routed or delivered.

    `address` is the full address as it will be delivered, case preserved.
    `local_part` and `domain` are set by the engine before each driver is
    tried (the local part without any prefix or suffix the driver removed).
    """

    address: str
    parent: AddressItem | None = None
    # Index of the top-level recipient in the -H recipients list (Exim's pno).
    original_index: int = -1
    local_part: str = ""
    domain: str = ""
    prefix: str = ""
    suffix: str = ""
    # Data set by directors and routers.
    errors_to: str | None = None
    home: str | None = None
    address_data: str | None = None
    local_part_data: str | None = None
    domain_data: str | None = None
    uid: int | None = None
    gid: int | None = None
    initgroups: bool = False
    # "|command" and "/file" items from alias or forward files.
    pipe_command: str | None = None
    file_path: str | None = None
    # Outcome of routing.
    router_name: str | None = None
    transport_name: str | None = None
    hosts: list[Host] = record.field(default_factory=list)
    fallback_hosts: list[Host] = record.field(default_factory=list)
    headers_add: list[str] = record.field(default_factory=list)
    headers_remove: list[str] = record.field(default_factory=list)
    # The drivers that handled an address of this same text on the way down (loop safety).
    handled_by: set[str] = record.field(default_factory=set)
    message: str | None = None  # failure or deferral text
    # Set by the engine when a driver accepts the address: the key it checked against the
    # addresses already delivered (caseful when the driver is), so the journal records the
    # very text the next attempt will look for.
    unique: str | None = None
    # True when an `unseen` driver accepted it and a copy went on: then delivering this
    # item does not by itself deliver the top-level recipient.
    split: bool = False
    # Set when this item is a reply to generate (filter `mail`/`vacation`), not a copy to deliver.
    reply: ReplyItem | None = None
    # Extra per-driver data (e.g. a queryprogram's DATA=).
    extra: dict[str, Any] = record.field(default_factory=dict)

    @property
    def is_pipe(self) -> bool:
        return self.pipe_command is not None

    @property
    def is_file(self) -> bool:
        return self.file_path is not None

    @property
    def top(self) -> AddressItem:
        item = self
        while item.parent is not None:
            item = item.parent
        return item

    def ancestors(self) -> list[AddressItem]:
        chain = []
        item = self.parent
        while item is not None:
            chain.append(item)
            item = item.parent
        return chain

    @property
    def depth(self) -> int:
        return len(self.ancestors())

    def unique_key(self, caseful: bool = False) -> str:
        """The text that identifies this address for de-duplication and -J records.

        Pipes, files and replies are unique per (item, parent), as in Exim, so
        that the same pipe reached from two aliases runs once per alias.
        """
        if self.pipe_command is not None or self.file_path is not None or self.reply is not None:
            parent = self.parent.address if self.parent else ""
            return f"{self.address}:{parent}"
        local, _, domain = self.address.rpartition("@")
        return f"{local if caseful else local.lower()}@{domain.lower()}"

    def variables(self) -> dict[str, str | None]:
        """The expansion variables this address defines."""
        parent = self.parent
        top = self.top
        top_local, _, top_domain = top.address.rpartition("@")
        # The address came from outside: its parts are tainted (never a file name
        # or command); the *_data values come from trusted lookups and are not.
        # For a pipe or file from an alias/forward file, $local_part is the parent's (Exim).
        named = parent if (parent is not None and (self.is_pipe or self.is_file)) else self
        return {
            "local_part": Tainted(named.local_part),
            "domain": Tainted(named.domain),
            "local_part_prefix": Tainted(self.prefix),
            "local_part_suffix": Tainted(self.suffix),
            "local_part_data": self.local_part_data,
            "domain_data": self.domain_data,
            "home": self.home,
            "address_data": self.address_data,
            "original_local_part": Tainted(top_local) if top is not self else self.local_part,
            "original_domain": Tainted(top_domain) if top is not self else self.domain,
            "parent_local_part": Tainted(parent.local_part) if parent else None,
            "parent_domain": Tainted(parent.domain) if parent else None,
            "address_pipe": self.pipe_command,
            "address_file": self.file_path,
        }

    def log_name(self, as_local: bool = False) -> str:
        """The address as a delivery log line shows it.

        Local deliveries (Exim's log_as_local) show the final local part and
        always the original address in angle brackets: ``alice <sales@x>``.
        Remote ones show the full address, and the original only if it differs.
        """
        if self.pipe_command is not None:
            shown = self.pipe_command
        elif self.file_path is not None:
            shown = self.file_path
        elif self.reply is not None:
            shown = self.address  # ">to@example.com": a filter's mail or vacation
        elif as_local:
            shown = self.address.rpartition("@")[0] or self.address
        else:
            shown = self.address
        top = self.top
        if as_local or self.pipe_command is not None or self.file_path is not None:
            return f"{shown} <{top.address}>"
        if top.address.lower() == self.address.lower():
            return shown
        return f"{shown} <{top.address}>"
