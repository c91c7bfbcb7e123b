"""Helpers the local transports (appendfile, pipe) share (Exim's tf_* functions).

    check_expansions(texts, error)          # start-up: every expandable option parses
    check_size(options, message)            # message_size_limit: FailError
    delivery_home(item, env)                # $home of the delivery
    write_spec(options, check=..., escape=..., prefix=..., suffix=...)
    spool_chunks(message, spec, edits)      # the bytes to write; a spool read error defers as such
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from mta.errors import DeferError, ExpansionError, FailError
from mta.transports.write import WriteSpec, message_chunks

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from mta.errors import ConfigError
    from mta.route.item import AddressItem
    from mta.transports.base import DeliveryEnv, OutgoingMessage, TransportOptions
    from mta.transports.write import HeaderEdits

# Bytes from the spool survive the round trip through str.
_UTF8, _ESC = "utf-8", "surrogateescape"


class _ShapingOptions(Protocol):
    use_crlf: bool
    headers_only: bool
    body_only: bool


def check_expansions(texts: Iterable[tuple[str, str | None]], error: Callable[[str], ConfigError]) -> None:
    """Raise error("name: why") for the first (name, text) whose text is not a valid expansion."""
    from mta.expand import check as check_expansion

    for name, text in texts:
        if text:
            try:
                check_expansion(text)
            except ExpansionError as exc:
                raise error(f"{name}: {exc.message}") from None


def check_size(options: TransportOptions, message: OutgoingMessage) -> None:
    """FailError for a message over the transport's message_size_limit."""
    if options.message_size_limit and message.size > options.message_size_limit:
        raise FailError(f"message is too big (transport limit = {options.message_size_limit})")


def delivery_home(item: AddressItem, env: DeliveryEnv) -> str | None:
    """The home directory of the delivery: the delivery code's, else the address's."""
    return env.home if env.home is not None else item.home


def encode(text: str) -> bytes:
    return text.encode(_UTF8, _ESC)


def write_spec(options: _ShapingOptions, *, check: str, escape: str, prefix: bytes, suffix: bytes) -> WriteSpec:
    """How the message is written: line ends and headers/body from the options, the rest as given."""
    return WriteSpec(
        crlf=options.use_crlf,
        check_string=encode(check),
        escape_string=encode(escape),
        headers_only=options.headers_only,
        body_only=options.body_only,
        prefix=prefix,
        suffix=suffix,
    )


def spool_chunks(message: OutgoingMessage, spec: WriteSpec, edits: HeaderEdits) -> Iterator[bytes]:
    """The message's bytes; a failure to read the spool defers and is named as such, not as the destination's."""
    chunks = message_chunks(
        message, spec, top=edits.top, bottom=edits.bottom, remove=edits.remove, headers=edits.headers
    )
    while True:
        try:
            chunk = next(chunks, None)
        except OSError as exc:
            raise DeferError(
                f"error reading message {message.message_id} from the spool: {exc.strerror}", errno=exc.errno or 0
            ) from None
        if chunk is None:
            return
        if chunk:
            yield chunk
