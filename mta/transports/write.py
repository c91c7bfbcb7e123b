"""Writing a spooled message out, as every transport does (Exim's transport_write_message).

The message is produced as a stream of byte chunks, never as one string:
the body is read from -D in 64 KiB pieces and transformed on the way
(line ends to CRLF, a line-start string escaped such as mbox ``From `` to
``>From ``, SMTP dot-stuffing), with care for patterns that straddle two
chunks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mta.message.headers import Header
    from mta.transports.base import OutgoingMessage

CHUNK_SIZE = 65536


@dataclasses.dataclass(frozen=True, slots=True)
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
) -> Iterator[bytes]:
    """Yield the message as the transport should write it."""
    shaper = _Shaper(spec)
    if spec.prefix:
        yield spec.prefix.replace(b"\n", b"\r\n") if spec.crlf else spec.prefix
    if not spec.body_only:
        yield shaper.feed(header_block(message.headers, top, bottom, remove))
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
