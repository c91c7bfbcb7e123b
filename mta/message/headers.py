"""Header blocks: splitting, flags, editing, and the Date: format.

Public API::

    Header(name, text, flag)            .value() .unfolded_value() .deleted
    HeaderSyntaxError(message, line)
    parse_header_block(data) -> list[Header]
    is_header_line(line) -> bool
    flag_for(name) -> str
    find(headers, name) -> list[Header]
    mark_deleted(header)
    make_header(name, value) -> Header
    fold_message_data(text) -> str     an expansion made into header lines: data cannot start one
    reply_references(message_id, references) -> str | None   References: for a reply or report
    rfc822_date(ts) -> str

A `Header` keeps the whole header as it will be written: name, colon, value
and folded continuation lines, every line ending in ``\\n`` (Exim keeps
headers raw, so writing them out reproduces the input).  `flag` is the
character the -H spool file stores before the header (exim-contracts.md,
section a): ``B`` Bcc, ``C`` Cc, ``F`` From, ``I`` Message-ID, ``P``
Received, ``R`` Reply-To, ``S`` Sender, ``T`` To, ``*`` deleted, space for
any other.  ``Resent-To:`` and the other Resent- forms get the flag of the
plain name, as Exim's header_checkname does.

Where the header section ends (Exim receive.c): at the first empty line, or
at the first line that is neither a continuation (starting with space or
tab) nor a header line.  A header line is a name of printable ASCII
characters other than colon (33..126), optionally followed by spaces or
tabs, then a colon.  Such a non-header line is the first line of the body
(no blank line is needed before it); `is_header_line` is the test the reader
uses.  `parse_header_block` is the strict form used on a block already known
to be headers (the -H file, ``headers_add`` text): there a line that is
neither a header nor a continuation is a HeaderSyntaxError naming the line.

Line endings are LF; the caller normalises CRLF first.  Bytes are decoded
as UTF-8 with surrogateescape, so 8-bit headers survive a round trip.
"""

from __future__ import annotations

import time

from mta import record
from mta.errors import MtaError
from mta.expand.context import HeaderLines
from mta.lazy_pattern import lazy_compile
from mta.taint import Tainted

FLAG_DELETED = "*"
FLAG_OTHER = " "
_FLAGS = {
    "bcc": "B",
    "cc": "C",
    "from": "F",
    "message-id": "I",
    "received": "P",
    "reply-to": "R",
    "sender": "S",
    "to": "T",
}
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class HeaderSyntaxError(MtaError):
    """A header block (or a header to be added) is malformed.

    `line` is the 1-based line number in the block, when there is one.
    """

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message if line is None else f"line {line}: {message}")
        self.message = message
        self.line = line


@record.dataclass(slots=True)
class Header:
    """One header, kept raw: `text` is "Name: value\\n" plus any folded lines."""

    name: str
    text: str
    flag: str = FLAG_OTHER

    def value(self) -> str:
        """The raw text after the colon, without the final newline (folds kept)."""
        colon = self.text.find(":")
        raw = self.text[colon + 1 :]
        return raw[:-1] if raw.endswith("\n") else raw

    def unfolded_value(self) -> str:
        """The value unfolded (RFC 5322 2.2.3) with outer white space removed."""
        return self.value().replace("\r\n", "\n").replace("\n", "").strip(" \t")

    @property
    def deleted(self) -> bool:
        return self.flag == FLAG_DELETED


def flag_for(name: str) -> str:
    """The -H spool flag for a header called `name` (case-insensitive)."""
    key = name.strip().lower()
    if key.startswith("resent-"):
        key = key[7:]
    return _FLAGS.get(key, FLAG_OTHER)


class _NameColon(tuple[str, str]):
    """What `_name_length` reads of a match of _NAME_COLON, from the stand-in below: the match and the
    name as items 0 and 1, and end(1), the name's length (the match is at the start of the line)."""

    def end(self, group: int) -> int:
        return len(self[group])


def _name_colon_match(line: str) -> _NameColon | None:
    """``_NAME_COLON.match(line)`` in str methods, for a process without `re` (mta.lazy_pattern)."""
    colon = line.find(":")
    name = line[:colon].rstrip(" \t") if colon > 0 else ""
    # Printable ASCII but the colon (there is none before the first) and the space.
    if name and name.isascii() and name.isprintable() and " " not in name:
        return _NameColon((line[: colon + 1], name))
    return None


# A header name (printable ASCII but the colon), white space, the colon.
_NAME_COLON = lazy_compile(r"([!-9;-~]+)[ \t]*:", without_re={"match": _name_colon_match})


def _name_length(line: str) -> int:
    """Length of the header name at the start of `line`, or -1 if not a header line."""
    m = _NAME_COLON.match(line)
    return -1 if m is None else m.end(1)


_NAME_COLON_BYTES = lazy_compile(rb"[!-9;-~]+[ \t]*:")


def is_header_line(line: str | bytes) -> bool:
    """True if `line` starts a header: ``name:`` (white space allowed before the colon)."""
    if isinstance(line, bytes):
        return _NAME_COLON_BYTES.match(line) is not None  # (no decoding: the name is ASCII)
    return _name_length(line) > 0


def parse_header_block(data: bytes | str) -> list[Header]:
    """Split a header block into headers.

    Lines end in LF.  A line starting with space or tab continues the header
    before it.  A final empty line (the separator from the body) is allowed;
    anything after it, a continuation with nothing to continue, a line that
    is not ``name:``, or a NUL raises HeaderSyntaxError naming the line.  A
    bare CR inside a line is data, kept as it is (Exim and Postfix accept
    such messages; the smtp transport makes it safe on the way out).
    """
    text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the text ended with a newline
    headers: list[Header] = []
    current: list[str] | None = None
    current_name = ""
    for number, line in enumerate(lines, 1):
        if "\0" in line:
            raise HeaderSyntaxError("NUL character in header", number)
        if line == "":
            if number != len(lines):
                raise HeaderSyntaxError("empty line inside the header block", number)
            break
        if line[0] in " \t":
            if current is None:
                raise HeaderSyntaxError("continuation line with no header before it", number)
            current.append(line + "\n")
            continue
        length = _name_length(line)
        if length < 0:
            shown = line if len(line) <= 40 else line[:40] + "..."
            raise HeaderSyntaxError(f'not a header line (no "name:"): {shown!r}', number)
        if current is not None:
            headers.append(Header(current_name, "".join(current), flag_for(current_name)))
        current_name, current = line[:length], [line + "\n"]
    if current is not None:
        headers.append(Header(current_name, "".join(current), flag_for(current_name)))
    return headers


def find(headers: list[Header], name: str) -> list[Header]:
    """The headers called `name` (any case), in order, leaving out deleted ones."""
    key = name.strip().rstrip(":").lower()
    return [h for h in headers if h.flag != FLAG_DELETED and h.name.lower() == key]


def header_lookup(headers: list[Header]) -> HeaderLines:
    """The expander's view of the headers ($h_, $rh_, $message_headers ...): the live ones, in order."""
    return HeaderLines(lambda: [Tainted(h.text) for h in headers if h.flag != FLAG_DELETED])


def mark_deleted(header: Header) -> None:
    """Flag a header as deleted: kept in -H for debugging, never transmitted."""
    header.flag = FLAG_DELETED


def make_header(name: str, value: str) -> Header:
    """Build ``Name: value\\n`` without folding.

    The name must be printable ASCII without colon or white space.  The value
    may contain folds (LF followed by space or tab) but no other LF, no CR
    and no NUL, so it cannot smuggle in a second header.  One trailing LF is
    dropped.
    """
    if not name or any(not 33 <= ord(c) <= 126 or c == ":" for c in name):
        raise HeaderSyntaxError(f"bad header name {name!r} (printable characters other than colon)")
    if value.endswith("\n"):
        value = value[:-1]
    if "\0" in value or "\r" in value:
        raise HeaderSyntaxError(f"{name}: header value contains CR or NUL")
    pos = value.find("\n")
    while pos >= 0:
        if pos + 1 >= len(value) or value[pos + 1] not in " \t":
            raise HeaderSyntaxError(f"{name}: header value contains a newline that is not a fold")
        pos = value.find("\n", pos + 1)
    return Header(name, f"{name}: {value}\n", flag_for(name))


def fold_message_data(text: str) -> str:
    """An expansion result that is about to become header lines, with its message data kept in its place.

    ACL ``add_header``, the ``headers_add`` of routers and transports, and
    ``received_header_text`` are configuration text into which variables put
    message data ($h_subject:, $authenticated_id, ${base64d:...}).  A line
    break in the configuration's own text may start a new header line; one in
    the data (a tainted span, mta.taint) must not, or a client could add any
    header it likes: two ``X-A:`` headers joined by $h_x-a:, or an encoded
    word that decodes to CR LF.  So in the tainted spans an LF not already
    followed by a space or tab becomes a fold (LF TAB), or a space where it
    ends the text or a line (a fold with nothing in it), a CR becomes a space
    and a NUL a "?".  Untainted text, and tainted text without those
    characters, is returned as it is.
    """
    if not isinstance(text, Tainted):
        return text
    spans = text.spans
    if not any(c in text[a:b] for a, b in spans for c in "\n\r\0"):
        return text
    tainted = set()
    for a, b in spans:
        tainted.update(range(a, b))
    out: list[str] = []
    for i, c in enumerate(text):
        if i in tainted:
            if c == "\r":
                c = " "
            elif c == "\0":
                c = "?"
            elif c == "\n":
                after = text[i + 1 : i + 2]
                c = "\n" if after in (" ", "\t") else " " if after in ("", "\n") else "\n\t"
        out.append(c)
    return Tainted("".join(out))


# References: keeps the thread root and the last few ids, 12 at most (Exim).
_REFERENCES_MAX = 12
# A message id: printable ASCII other than the angle brackets, between them.
_MSGID = lazy_compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+>")


def reply_references(message_id: str | None, earlier: str | None) -> str | None:
    """The References: value for a reply to, or a report about, a message.

    `message_id` is that message's Message-ID: value, `earlier` its
    References: (or else In-Reply-To:) value.  The earlier ids come first,
    then the message's own, so mail programs thread the new message under
    it; at most 12 ids, keeping the thread root and the most recent (Exim's
    moan_write_references).  None when there is nothing to refer to.
    """
    own_ids = _MSGID.findall(message_id) if message_id else []
    ids = _MSGID.findall(earlier or "")
    keep = _REFERENCES_MAX - len(own_ids[:1])
    if len(ids) > keep:
        ids = ids[:1] + ids[len(ids) - (keep - 1) :]
    ids += own_ids[:1]
    if not ids:
        return None
    # Folded one id a line: a long thread stays far below the line limit.
    return "\n ".join(ids)


def rfc822_date(ts: float) -> str:
    """RFC 5322 date in local time with a numeric zone: ``Sun, 22 Nov 2026 12:43:03 +0000``.

    English names regardless of locale, as Exim writes Date: and Received:.
    """
    tm = time.localtime(ts)
    offset = (tm.tm_gmtoff or 0) // 60
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset), 60)
    return (
        f"{_DAYS[tm.tm_wday]}, {tm.tm_mday:02d} {_MONTHS[tm.tm_mon - 1]} {tm.tm_year} "
        f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} {sign}{hours:02d}{minutes:02d}"
    )
