"""Showing a queued message's files: Exim's -Mvh, -Mvb, -Mvl and -Mvc.

As Exim (queue.c), the files are shown as they are, without taking the
message's lock (reading is safe while a delivery runs: -H is only ever
replaced by a rename, and -D and the msglog only appended to):

  -Mvh   the -H file, first line ("ID-H") included
  -Mvb   the -D file, first line ("ID-D") included
  -Mvl   the message log
  -Mvc   the message as RFC 5322 text: the headers a transport would send
         (not those flagged "*" as deleted), a blank line, the body

Files are read in chunks, so a 100 MB body never needs 100 MB of memory.

Errors: ActionError (spool_tools.message_actions) when the
message or the file is not there or cannot be read.
"""

from __future__ import annotations

from collections.abc import Iterator

from mta.errors import SpoolError
from mta.spool.envelope import FLAG_OLD, encode_text
from mta.spool.files import NoSuchMessage, open_for_reading
from mta.spool.format import DATA_SUFFIX, HEADER_SUFFIX
from spool_tools.message_actions import ActionError

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import BinaryIO

    from mta.spool.store import Spool

CHUNK = 64 * 1024
VIEWS = ("vh", "vb", "vl", "vc")


def view(spool: Spool, message_id: str, which: str, message_logs: bool = True) -> Iterator[bytes]:
    """The bytes of view `which` ("vh", "vb", "vl" or "vc"), in chunks.  The first chunk is
    read before this returns, so that a missing file is an ActionError here and not half-way
    through the output."""
    chunks = _chunks(spool, message_id, which, message_logs)
    try:
        first = next(chunks, b"")
    except NoSuchMessage:
        raise ActionError(f"message {message_id} is not on the spool") from None
    except SpoolError as exc:
        raise ActionError(f"message {message_id}: {exc}") from None
    return _then(first, chunks, message_id)


def _then(first: bytes, rest: Iterator[bytes], message_id: str) -> Iterator[bytes]:
    yield first
    try:
        yield from rest
    except SpoolError as exc:
        raise ActionError(f"message {message_id}: {exc}") from None


def _chunks(spool: Spool, message_id: str, which: str, message_logs: bool) -> Iterator[bytes]:
    if which == "vh":
        yield from _file(spool.file_path(message_id, HEADER_SUFFIX), f"message {message_id} is not on the spool")
    elif which == "vb":
        yield from _file(spool.file_path(message_id, DATA_SUFFIX), f"message {message_id} has no data file")
    elif which == "vl":
        if not spool.exists(message_id):
            raise NoSuchMessage(message_id)
        missing = f"message {message_id} has no message log"
        if not message_logs:
            missing += " (message_logs is false: none are written)"
        yield from _file(spool.msglog_path(message_id), missing)
    elif which == "vc":
        yield from _copy(spool, message_id)
    else:
        raise ValueError(f"unknown view {which!r}")


def _file(path: Path, missing: str) -> Iterator[bytes]:
    try:
        handle = open(open_for_reading(path), "rb")  # noqa: SIM115 - closed below, after the last chunk
    except FileNotFoundError:
        raise ActionError(missing) from None
    except OSError as exc:
        raise SpoolError(f"spool file {path}: open failed: {exc.strerror or exc}") from None
    with handle:
        yield from _read(handle, path)


def _read(handle: BinaryIO, path: Path | str) -> Iterator[bytes]:
    while True:
        try:
            chunk = handle.read(CHUNK)
        except OSError as exc:
            raise SpoolError(f"spool file {path}: read failed: {exc.strerror or exc}") from None
        if not chunk:
            return
        yield chunk


def _copy(spool: Spool, message_id: str) -> Iterator[bytes]:
    envelope = spool.read_envelope(message_id)
    yield b"".join(encode_text(h.text) for h in envelope.headers if h.flag != FLAG_OLD) + b"\n"
    with spool.open_body(message_id) as body:
        if not envelope.spool_file_wireformat:
            yield from _read(body, f"{message_id}{DATA_SUFFIX}")
            return
        # A -D in wire format (CRLF line ends, written by Exim with spool_wireformat):
        # shown with Unix line ends like the rest.  A CR at a chunk's end waits for the next.
        carry = b""
        for chunk in _read(body, f"{message_id}{DATA_SUFFIX}"):
            text = (carry + chunk).replace(b"\r\n", b"\n")
            carry, text = (b"\r", text[:-1]) if text.endswith(b"\r") else (b"", text)
            yield text
        yield carry
