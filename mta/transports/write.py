"""Writing a spooled message out, as every transport does (Exim's transport_write_message).

The message is produced as a stream of byte chunks, never as one string:
the body is read from -D in 64 KiB pieces and transformed on the way
(line ends to CRLF, a line-start string escaped such as mbox ``From `` to
``>From ``, SMTP dot-stuffing), with care for patterns that straddle two
chunks.

`header_edits()` works out the header lines a transport adds and removes
(Exim's generic ``return_path_add``, ``envelope_to_add``,
``delivery_date_add``, ``headers_add`` and ``headers_remove``, plus the
header edits routers attached to the addresses), and `transport_return_path()`
the envelope sender a transport uses; both are shared by every transport.
"""

from __future__ import annotations

from mta import debug, record
from mta.errors import DeferError, ExpansionError
from mta.message.headers import HeaderSyntaxError, fold_message_data, make_header, parse_header_block, rfc822_date
from mta.message.rewrite import RewriteEnv, Rewriter, parse_headers_rewrite
from mta.values import split_list

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from mta.message.headers import Header
    from mta.route.item import AddressItem
    from mta.transports.base import DeliveryEnv, OutgoingMessage, Transport

CHUNK_SIZE = 65536


@record.dataclass(frozen=True, slots=True)
class WriteSpec:
    """How the bytes of the message are shaped for one transport."""

    crlf: bool = False
    # A string that must not start a line, and what to put instead (mbox "From ").
    check_string: bytes = b""
    escape_string: bytes = b""
    dot_stuff: bool = False
    headers_only: bool = False
    body_only: bool = False
    prefix: bytes = b""  # e.g. the mbox "From sender date" line
    suffix: bytes = b""  # e.g. the blank line between mbox messages
    # SMTP: a CR that is not part of a line end the transport makes becomes a space (Postfix's
    # rule), so no next hop can see a line end other than our CRLF (SMTP smuggling: a bare CR
    # before "." would otherwise end the message at a hop that accepts CR alone).
    bare_cr_to_space: bool = False


def header_removed(name: str, patterns: Iterable[str]) -> bool:
    """True if a header called `name` is removed by `headers_remove` patterns (``X-*`` allowed)."""
    lname = name.lower()
    for pattern in patterns:
        p = pattern.strip().lower().rstrip(":")
        if not p:
            continue
        if p.endswith("*"):
            if lname.startswith(p[:-1]):
                return True
        elif lname == p:
            return True
    return False


def header_block(
    headers: Iterable[Header], top: Iterable[str] = (), bottom: Iterable[str] = (), remove: Iterable[str] = ()
) -> bytes:
    """The header section as it is sent: added top lines, live headers, added bottom lines.

    Headers flagged ``*`` (deleted, e.g. Bcc after -t) are never sent.
    Each added line must already be a complete ``Name: value`` text.
    """
    remove = list(remove)
    parts: list[str] = []
    for text in top:
        parts.append(text if text.endswith("\n") else text + "\n")
    for h in headers:
        if h.flag == "*" or (remove and header_removed(h.name, remove)):
            continue
        parts.append(h.text)
    for text in bottom:
        parts.append(text if text.endswith("\n") else text + "\n")
    return "".join(parts).encode("utf-8", "surrogateescape")


class _Shaper:
    """Applies line-start escaping, dot-stuffing and CRLF to a stream of LF text."""

    def __init__(self, spec: WriteSpec) -> None:
        self.spec = spec
        self.patterns: list[tuple[bytes, bytes]] = []
        if spec.check_string:
            self.patterns.append((spec.check_string, spec.escape_string))
        if spec.dot_stuff:
            self.patterns.append((b".", b".."))
        self.hold = max((len(p) for p, _ in self.patterns), default=0)
        self.pending = b""
        self.at_line_start = True

    def _shape(self, data: bytes, at_line_start: bool) -> bytes:
        if self.spec.bare_cr_to_space:
            # Before anything else: with CR gone, LF is the only line end left, and the
            # dot-stuffing after LF below covers every line a next hop could see.
            data = data.replace(b"\r", b" ")
        for pattern, replacement in self.patterns:
            data = data.replace(b"\n" + pattern, b"\n" + replacement)
            if at_line_start and data.startswith(pattern):
                data = replacement + data[len(pattern) :]
        if self.spec.crlf:
            data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        return data

    def feed(self, chunk: bytes) -> bytes:
        if not self.patterns and not self.spec.crlf:
            return chunk
        block = self.pending + chunk
        self.pending = b""
        carry = b""
        if self.spec.crlf and block.endswith(b"\r"):
            # Maybe the CR of a CRLF cut by the chunk boundary: shaping it alone
            # would make CR CR LF of it.  Decide when the next chunk comes.
            block, carry = block[:-1], b"\r"
        out = self._feed_block(block)
        self.pending += carry
        return out

    def _feed_block(self, block: bytes) -> bytes:
        cut = block.rfind(b"\n")
        if cut < 0:
            if len(block) < self.hold:
                # Too short to know whether this line starts with a pattern.
                self.pending = block
                return b""
            out = self._shape(block, self.at_line_start)
            self.at_line_start = False
            return out
        complete, rest = block[: cut + 1], block[cut + 1 :]
        out = self._shape(complete, self.at_line_start)
        self.at_line_start = True
        if len(rest) >= self.hold:
            out += self._shape(rest, True)
            self.at_line_start = False
        else:
            self.pending = rest
        return out

    def flush(self) -> bytes:
        block, self.pending = self.pending, b""
        return self._shape(block, self.at_line_start) if block else b""


def message_chunks(
    message: OutgoingMessage,
    spec: WriteSpec,
    top: Iterable[str] = (),
    bottom: Iterable[str] = (),
    remove: Iterable[str] = (),
    headers: list[Header] | None = None,
) -> Iterator[bytes]:
    """Yield the message as the transport should write it (with `headers` for the message's own, if given)."""
    shaper = _Shaper(spec)
    if spec.prefix:
        yield spec.prefix.replace(b"\n", b"\r\n") if spec.crlf else spec.prefix
    if not spec.body_only:
        yield shaper.feed(header_block(message.headers if headers is None else headers, top, bottom, remove))
        yield shaper.flush()
        shaper.at_line_start = True
        if not spec.headers_only:
            yield b"\r\n" if spec.crlf else b"\n"
    if not spec.headers_only:
        with message.open_body() as body:
            while True:
                chunk = body.read(CHUNK_SIZE)
                if not chunk:
                    break
                out = shaper.feed(chunk)
                if out:
                    yield out
        tail = shaper.flush()
        if tail:
            yield tail
    if spec.suffix:
        yield spec.suffix.replace(b"\n", b"\r\n") if spec.crlf else spec.suffix


@record.dataclass(frozen=True, slots=True)
class HeaderEdits:
    """Header lines for `message_chunks`: added before and after the message's own, and removed."""

    top: list[str]
    bottom: list[str]
    remove: list[str]
    # The message's headers after the transport's headers_rewrite; None: the message's own.
    headers: list[Header] | None = None


def transport_return_path(
    transport: Transport, message: OutgoingMessage, item: AddressItem | None, env: DeliveryEnv
) -> str:
    """The envelope sender for this delivery: the transport's `return_path` if set, else the message's.

    A forced failure (``fail``) in the expansion keeps the message's sender,
    as in Exim; any other expansion failure defers.
    """
    text = transport.options.return_path
    if text is None:
        return message.sender_address
    try:
        return env.expand(text, item)
    except ExpansionError as exc:
        if exc.forced:
            return message.sender_address
        raise DeferError(
            f'Failed to expand return_path "{text}" for the {transport.name} transport: {exc.message}'
        ) from None


def added_lines(text: str, where: str) -> list[str]:
    """Header texts from a headers_add value: one header per logical line, blank lines skipped.

    A line break that came from message data does not start a line (fold_message_data)."""
    kept = "\n".join(line for line in fold_message_data(text).split("\n") if line.strip())
    if not kept:
        return []
    try:
        return [h.text for h in parse_header_block(kept + "\n")]
    except HeaderSyntaxError as exc:
        # A configuration mistake: deferring keeps the message while the admin fixes it.
        raise DeferError(f"{where}: {exc}") from None


def header_edits(
    transport: Transport,
    message: OutgoingMessage,
    items: Sequence[AddressItem],
    env: DeliveryEnv,
    return_path: str,
) -> HeaderEdits:
    """The header lines `transport` adds and removes for a delivery of `items`.

    At the top, in Exim's order: ``Return-path: <sender>``,
    ``Envelope-to:`` (the original recipients: each item's top-level address,
    or the list the delivery code left in ``item.extra["envelope_to"]`` when
    duplicates were folded into one delivery; several are separated by
    ",\\n "), ``Delivery-date:``.  At the bottom: headers added by routers
    (``item.headers_add``), then the transport's ``headers_add``.  Removed:
    the routers' and the transport's ``headers_remove`` names.

    Raises DeferError when an expansion fails (a forced failure adds or
    removes nothing) or a headers_add line is not a header.
    """
    options = transport.options
    first = items[0] if items else None
    top: list[str] = []
    if options.return_path_add:
        top.append(make_header("Return-path", f"<{return_path}>").text)
    if options.envelope_to_add:
        originals: list[str] = []
        for item in items:
            for address in item.extra.get("envelope_to") or [item.top.address]:
                if address not in originals:
                    originals.append(address)
        top.append(make_header("Envelope-to", ",\n ".join(originals)).text)
    if options.delivery_date_add:
        top.append(make_header("Delivery-date", rfc822_date(env.now)).text)

    bottom: list[str] = []
    remove: list[str] = []
    for item in items:
        for text in item.headers_add:
            bottom.extend(added_lines(text, f"headers_add from router for {item.address}"))
        remove.extend(name for text in item.headers_remove for name in split_list(text))
    if options.headers_add:
        expanded = _expand_edit(transport, "headers_add", options.headers_add, first, env)
        bottom.extend(added_lines(expanded, f"headers_add for the {transport.name} transport"))
    if options.headers_remove:
        expanded = _expand_edit(transport, "headers_remove", options.headers_remove, first, env)
        remove.extend(split_list(expanded))
    rewritten = _headers_rewrite(transport, message, first, env) if options.headers_rewrite else None
    return HeaderEdits(top, bottom, remove, rewritten)


def _headers_rewrite(
    transport: Transport, message: OutgoingMessage, item: AddressItem | None, env: DeliveryEnv
) -> list[Header]:
    """The message's headers with the transport's headers_rewrite rules applied (this copy only).

    The headers the message has (as received, and added by ACLs or a system
    filter) are rewritten; those routers and the transport add are not.  A
    changed header replaces the old one in what is sent; -H is not touched.
    Rewriting here is not logged (a local delivery runs as the recipient,
    who cannot write the log): ``-d+rewrite`` shows it.
    """
    try:
        rules = parse_headers_rewrite(transport.options.headers_rewrite or "")
    except ValueError as exc:  # checked at start-up; a configuration changed under a daemon defers
        raise DeferError(f"headers_rewrite for the {transport.name} transport: {exc}") from None
    config = getattr(env.extra.get("runtime"), "config", None)

    def expand(template: str, extra: dict[str, str]) -> str:
        return env.expand(template, item, extra)

    def panic(text: str) -> None:
        debug.debug("rewrite", "%s", text)

    rewriter = Rewriter(
        rules,
        RewriteEnv(
            expand=expand,
            primary_hostname=env.primary_hostname,
            qualify_domain=env.qualify_domain,
            qualify_recipient=getattr(config, "qualify_recipient", env.qualify_domain),
            panic=panic,
            named_list=getattr(config, "named_list", None),
        ),
    )
    headers: list[Header] = []
    for header in message.headers:
        new = rewriter.rewrite_header(header, qualify_unqualified=False) if header.flag != "*" else None
        headers.append(header if new is None else new)
    return headers


def _expand_edit(transport: Transport, name: str, text: str, item: AddressItem | None, env: DeliveryEnv) -> str:
    try:
        return env.expand(text, item)
    except ExpansionError as exc:
        if exc.forced:
            return ""
        raise DeferError(f"Failed to expand {name} for the {transport.name} transport: {exc.message}") from None
