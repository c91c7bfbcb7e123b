"""A spooled message made ready for routing and transports.

Turns the -H envelope into what the routing engine (RoutingContext) and the
transports (OutgoingMessage, DeliveryEnv) need: header objects, message
variables for expansion, and a way to open the body.
"""

from __future__ import annotations

import time

from mta.message.headers import Header
from mta.transports.base import OutgoingMessage

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

if TYPE_CHECKING:
    from mta.spool.envelope import Envelope
    from mta.spool.store import Spool


def spool_headers(envelope: Envelope) -> list[Header]:
    """Header objects from the -H header lines (flags kept; `*` = deleted)."""
    headers = []
    for spool_header in envelope.headers:
        name = spool_header.text.split(":", 1)[0].rstrip()
        headers.append(Header(name, spool_header.text, spool_header.flag))
    return headers


def message_variables(envelope: Envelope, size: int, body_path: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Variables describing the message, for every expansion during its delivery."""
    host = envelope.host_address
    interface = envelope.interface_address
    return {
        "message_id": envelope.message_id,
        "message_exim_id": envelope.message_id,
        "message_size": str(size),
        "received_protocol": envelope.received_protocol,
        "sender_host_address": host.ip if host else None,
        "sender_host_port": str(host.port) if host else None,
        "sender_host_name": envelope.host_name,
        "sender_helo_name": envelope.helo_name,
        "sender_ident": envelope.ident,
        "authenticated_id": envelope.auth_id,
        "authenticated_sender": envelope.auth_sender,
        "interface_address": interface.ip if interface else None,
        "interface_port": str(interface.port) if interface else None,
        "received_time": str(envelope.received_time),
        "recipients_count": str(len(envelope.recipients)),
        "tls_cipher": envelope.tls_cipher,
    }


def message_size(spool: Spool, envelope: Envelope) -> int:
    return envelope.header_size() + spool.body_size(envelope.message_id) + 1


def outgoing_message(spool: Spool, envelope: Envelope, headers: list[Header] | None = None) -> OutgoingMessage:
    size = message_size(spool, envelope)
    message_id = envelope.message_id
    return OutgoingMessage(
        message_id=message_id,
        sender_address=envelope.sender_address,
        headers=headers if headers is not None else spool_headers(envelope),
        received_time=envelope.received_time + (envelope.received_time_usec or 0) / 1_000_000,
        size=size,
        open_body=lambda: spool.open_body(message_id),
        body_linecount=envelope.body_linecount or 0,
        received_protocol=envelope.received_protocol or "local",
        variables=message_variables(envelope, size),
    )


def queue_time(envelope: Envelope, now: float | None = None) -> float:
    return (time.time() if now is None else now) - envelope.received_time
