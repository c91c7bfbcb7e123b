"""The message text of an SMTP transaction: DATA's dot-terminated stream, BDAT's chunks, headers.

`DotDecoder` turns what follows DATA into the message as it is stored:
the SMTP lines are the pieces between CRLFs; one that is a lone "." ends the
message, a leading "." is removed from the others (RFC 5321 §4.5.2), and
each CRLF becomes LF.  **Only CRLF.CRLF ends the message**: a bare LF or a
bare CR is data, however it is followed, so ``<LF>.<LF>``, ``<CR>.<CR>``
and ``<LF>.<CR><LF>`` never end it early (SMTP smuggling: a message that
ends early here but not at another hop, or the reverse, is how a second,
forged message gets in).  A bare LF is stored as a line end, a bare CR as
it is; the smtp transport turns a stored CR into a space on the way out.

`MessageText` takes the stored form (LF line ends) and splits it into the
header section, kept as lines (bounded by header_maxsize), and the body,
streamed through `LocalBodyWriter` (line counts, NUL count, size limit)
into the spool.  Both work chunk by chunk, with care for patterns split
between two reads; nothing here ever holds the body in memory.
"""

from __future__ import annotations

from mta.errors import SubmissionError
from mta.message.headers import is_header_line
from mta.receive.body import BodyStats, LocalBodyWriter

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

_END = b"\r\n.\r\n"
_END_PREFIXES = (b"\r\n.\r", b"\r\n.", b"\r\n", b"\r")  # what may start the end marker at a read's end


class DotDecoder:
    """Raw DATA bytes in, stored bytes out, until the end marker."""

    def __init__(self) -> None:
        self._carry = b""
        self._at_line_start = True  # DATA's first line starts right after the 354
        self.ended = False

    def feed(self, chunk: bytes) -> tuple[bytes, bytes]:
        """(stored text from this chunk, bytes after the end marker).  The second is b"" until
        the end is seen; after it, `ended` is true and what followed belongs to the next command."""
        data = self._carry + chunk
        self._carry = b""
        if self._at_line_start and data.startswith(b".\r\n"):
            self.ended = True
            return b"", data[3:]
        if self._at_line_start and len(data) < 3 and b".\r\n".startswith(data):
            self._carry = data  # "." or ".\r" at a line start: wait for the rest
            return b"", b""
        end = data.find(_END)
        if end >= 0:
            self.ended = True
            return self._store(data[: end + 2]), data[end + len(_END) :]
        for prefix in _END_PREFIXES:
            if data.endswith(prefix):
                self._carry = prefix
                data = data[: -len(prefix)]
                break
        return self._store(data), b""

    def _store(self, data: bytes) -> bytes:
        if not data:
            return b""
        if self._at_line_start and data.startswith(b"."):
            data = data[1:]
        self._at_line_start = data.endswith(b"\r\n") or (not data and self._at_line_start)
        return data.replace(b"\r\n.", b"\r\n").replace(b"\r\n", b"\n")


class MessageText:
    """Stored text (LF line ends) in: header lines kept, the body streamed to `body_out`.

    The header section ends at an empty line, or at the first line that is
    neither a header nor a continuation (that line starts the body, as Exim
    does).  Raises SubmissionError when the header section passes
    `header_maxsize` or the message passes `size_limit`.
    """

    def __init__(self, body_out: BinaryIO, header_maxsize: int, size_limit: int) -> None:
        self.header_lines: list[bytes] = []
        self._header_size = 0
        self._header_maxsize = header_maxsize
        self._partial = b""  # an unfinished header line
        self.in_headers = True
        self.body = LocalBodyWriter(body_out, size_limit, dot_ends=False)

    def feed(self, data: bytes) -> None:
        if not self.in_headers:
            self.body.feed(data)
            return
        data = self._partial + data
        self._partial = b""
        start = 0
        while self.in_headers:
            end = data.find(b"\n", start)
            if end < 0:
                self._partial = data[start:]
                self._check_header_size(len(self._partial))
                return
            line = data[start : end + 1]
            start = end + 1
            if line in (b"\n", b"\r\n"):
                self.in_headers = False
                break
            if not (is_header_line(line) or (self.header_lines and line[:1] in (b" ", b"\t"))):
                self.in_headers = False
                start -= len(line)  # not a header: the body starts with this line
                break
            self._check_header_size(len(line))
            self._header_size += len(line)
            self.header_lines.append(line)
        self.body.header_size = self._header_size
        if start < len(data):
            self.body.feed(data[start:])

    def _check_header_size(self, pending: int) -> None:
        if self._header_size + pending > self._header_maxsize:
            raise SubmissionError(
                f"header section is larger than header_maxsize ({self._header_maxsize} bytes)"
            )

    def finish(self) -> tuple[str, BodyStats]:
        """(the header section as text, the body's statistics) at the end of the message."""
        if self._partial:
            if self.in_headers and is_header_line(self._partial):
                self.header_lines.append(self._partial + b"\n")  # the text ended inside the headers
            else:
                self.in_headers = False
                self.body.feed(self._partial)
            self._partial = b""
        self.in_headers = False
        text = b"".join(self.header_lines).replace(b"\r\n", b"\n").decode("utf-8", "surrogateescape")
        return text, self.body.finish()
