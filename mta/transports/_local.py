"""Helpers the local transports (appendfile, pipe) share (Exim's tf_* functions).

    check_expansions(texts, error)          # start-up: every expandable option parses
    check_size(options, message)            # message_size_limit: FailError
    delivery_home(item, env)                # $home of the delivery
    write_spec(options, check=..., escape=..., prefix=..., suffix=...)
    spool_chunks(message, spec, edits)      # the bytes to write; a spool read error defers as such

Batches (Exim's "address batching in local transports"): appendfile and pipe
take `BatchOptions` (batch_max, batch_id, use_bsmtp); the delivery code groups
the addresses (mta.deliver.grouping) and hands a transport all of a batch at
once.  `batch_env(env, items)` is the env their options are expanded in (a
variable the addresses disagree on is unset), `bsmtp_spec(...)` the write
spec of batched SMTP output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from mta import record
from mta.drivers import Kind, option, options_table
from mta.errors import AddressError, DeferError, ExpansionError, FailError
from mta.message.address import split_address
from mta.message.address_syntax import quote_local_part
from mta.transports.base import TransportOptions
from mta.transports.write import WriteSpec, message_chunks

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from mta.errors import ConfigError
    from mta.route.item import AddressItem
    from mta.transports.base import DeliveryEnv, OutgoingMessage
    from mta.transports.write import HeaderEdits

# Bytes from the spool survive the round trip through str.
_UTF8, _ESC = "utf-8", "surrogateescape"


@options_table
class BatchOptions(TransportOptions):
    """Options of the local transports that can deliver several addresses at once (appendfile, pipe)."""

    batch_max: int = option(
        1,
        Kind.INT,
        "Most addresses of one message delivered together in one run of the transport (one copy of the "
        "message). Only addresses with the same transport, user, group, errors address, header edits, first "
        "host and `batch_id` share a run, and the same local part (domain) if an option uses `$local_part` "
        "(`$domain`).",
        minimum=1,
    )
    batch_id: str | None = option(
        None,
        Kind.STRING,
        "Expanded for each address: only addresses with the same result are batched. A failed expansion "
        "delivers the address on its own.",
        expand=True,
    )
    use_bsmtp: bool = option(
        False,
        Kind.BOOL,
        "Write the message in batched SMTP: `MAIL FROM:<sender>`, a `RCPT TO:<address>` for each address "
        "of the batch, `DATA`, the message with lines starting `.` doubled, and a line `.`. `check_string` and "
        "`escape_string` are ignored; `message_prefix`/`message_suffix` default to nothing (a prefix can add HELO).",
    )


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


# -- batches ------------------------------------------------------------------------------------------


def batch_env(env: DeliveryEnv, items: Sequence[AddressItem]) -> DeliveryEnv:
    """The env in which a batch's options are expanded.

    One address: `env` itself.  Several: the per-address variables
    ($local_part, $domain, $local_part_data, $address_data, $home ...) keep
    the first address's value only where every address agrees; the others
    are unset.  (Exim always unsets $local_part for a batch; the grouping
    only puts different local parts together when no option uses it.)"""
    if len(items) < 2:
        return env
    first = items[0].variables()
    overrides: dict[str, Any] = {}
    for other in items[1:]:
        for name, value in other.variables().items():
            if first.get(name) != value:
                overrides[name] = None
    if not overrides:
        return env
    expand = env.expand

    def batch_expand(text: str, item: AddressItem | None = None, extra: dict[str, Any] | None = None) -> str:
        return expand(text, item, {**overrides, **(extra or {})})

    return record.replace(env, expand=batch_expand)


def rcpt_address(item: AddressItem) -> str:
    """The address a BSMTP ``RCPT TO:`` names: the address without any prefix or suffix a director
    took off; for a file or pipe from an alias or forward file, the address it came from (Exim)."""
    if (item.is_pipe or item.is_file) and item.parent is not None:
        item = item.parent
    if not (item.prefix or item.suffix):
        return item.address
    # The affixes belong to the local part as it is, not to its quoted form: `"owner-a b"@x` less
    # `owner-` is `"a b"@x`, quoted again.
    local, domain = split_address(item.address)
    try:
        core = quote_local_part(local[len(item.prefix) : len(local) - len(item.suffix)])
    except AddressError as exc:
        raise DeferError(f"batched SMTP: {exc}") from None
    return f"{core}@{domain}"


def bsmtp_spec(
    options: _ShapingOptions, return_path: str, items: Sequence[AddressItem], prefix: str, suffix: str
) -> WriteSpec:
    """The write spec of batched SMTP: the prefix, MAIL FROM, one RCPT TO per address, DATA; the message
    with a "." starting any line (header lines too) doubled; the suffix and a line "." (Exim's order)."""
    envelope = [f"MAIL FROM:<{return_path}>"] + [f"RCPT TO:<{rcpt_address(i)}>" for i in items] + ["DATA"]
    for line in envelope:
        if "\n" in line or "\r" in line:
            # An address cannot hold a line end (routing refuses them); a configured return_path might.
            raise DeferError(f"line end in batched SMTP envelope line {line!r}")
    if suffix and not suffix.endswith("\n"):
        suffix += "\n"  # the terminating dot must start a line of its own
    return write_spec(
        options,
        check=".",
        escape="..",
        prefix=encode(prefix + "".join(line + "\n" for line in envelope)),
        suffix=encode(suffix + ".\n"),
    )
