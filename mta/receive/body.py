"""Streaming a message body to the -D file.

The body is never held in memory: it is filtered chunk by chunk (line ends
normalised to LF, the terminating dot line found, lines, line lengths and
NUL bytes counted) and written straight to the spool's data file.
"""

from __future__ import annotations

from mta import record
from mta.errors import SubmissionError

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

CHUNK_SIZE = 65536


@record.dataclass(slots=True)
class BodyStats:
    size: int = 0  # bytes written to -D after its first line
    linecount: int = 0
    max_line_length: int = 0
    zero_count: int = 0


class LocalBodyWriter:
    """Filters a locally submitted body (-bm/-t) into the -D file.

    CRLF becomes LF (a CR that is not before LF is kept).  Unless `dot_ends`
    is false (-i/-oi), a line consisting of a single dot ends the message.
    `size_limit` (0 = none) is checked as the body grows, so an oversized
    message is refused before it fills the disk.
    """

    def __init__(self, out: BinaryIO, size_limit: int = 0, dot_ends: bool = True, header_size: int = 0) -> None:
        self.out = out
        self.size_limit = size_limit
        self.dot_ends = dot_ends
        self.header_size = header_size
        self.stats = BodyStats()
        self.ended = False  # the terminating dot line was seen
        self._carry = b""  # bytes held back until the next chunk shows what they are
        self._line_len = 0  # length of the unfinished last line so far
        self._at_line_start = True

    def feed(self, chunk: bytes) -> None:
        if self.ended or not chunk:
            return
        chunk = self._carry + chunk
        self._carry = b""
        if chunk.endswith(b"\r"):
            # Might be half of a CRLF split across reads: decide with the next chunk.
            self._carry = b"\r"
            chunk = chunk[:-1]
        chunk = chunk.replace(b"\r\n", b"\n")
        if self.dot_ends:
            if self._at_line_start and chunk.startswith(b".\n"):
                self.ended = True
                return
            pos = chunk.find(b"\n.\n")
            if pos >= 0:
                self.ended = True
                self._write(chunk[: pos + 1])
                return
            if chunk.endswith(b"\n.") or (self._at_line_start and chunk == b"."):
                # A dot at the start of the last line: whether it ends the
                # message depends on what follows; hold it back.
                self._carry = b"." + self._carry
                chunk = chunk[:-1]
        self._write(chunk)

    def _write(self, data: bytes) -> None:
        if not data:
            return
        stats = self.stats
        stats.size += len(data)
        if self.size_limit and stats.size + self.header_size > self.size_limit:
            raise SubmissionError(f"message too big (size limit is {self.size_limit} bytes)")
        stats.zero_count += data.count(b"\0")
        newlines = data.count(b"\n")
        if newlines:
            first = data.index(b"\n")
            last = data.rindex(b"\n")
            longest = max(self._line_len + first, self._longest_inner(data, first, last))
            stats.max_line_length = max(stats.max_line_length, longest)
            stats.linecount += newlines
            self._line_len = len(data) - last - 1
        else:
            self._line_len += len(data)
        self._at_line_start = data.endswith(b"\n")
        self.out.write(data)

    @staticmethod
    def _longest_inner(data: bytes, first: int, last: int) -> int:
        if first == last:
            return 0
        return max(map(len, data[first + 1 : last].split(b"\n")))

    def finish(self) -> BodyStats:
        """End of input: settle held-back bytes and terminate an unfinished last line."""
        carry, self._carry = self._carry, b""
        if carry and not self.ended:
            if self.dot_ends and self._at_line_start and carry.startswith(b"."):
                # A lone dot as the very last line, newline or not, ends the message.
                self.ended = True
            else:
                self._write(carry)
        if self._line_len:
            # Exim stores the body with a final newline.
            self._write(b"\n")
        return self.stats
