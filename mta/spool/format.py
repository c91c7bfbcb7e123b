"""The -H (envelope, status and headers) and -J (journal) file formats.

Both are Exim 4's, byte for byte, so Exim's admin habits and tools carry
over.  -H, in order (research/exim-contracts.md section a):

    ID-H
    login uid gid
    <sender>                        ("<>" for a bounce)
    received_seconds warning_count
    -option lines                   (any order; "--name" = tainted value)
    non-recipients tree             ("XX", or a pre-order dump "YN addr" ...)
    recipient count
    recipient lines                 ("addr", or "addr ... len,pno#3")
    (blank line)
    NNNf header text                (NNN = byte count, f = flag character)

Text is UTF-8 with ``surrogateescape``: any byte that is not UTF-8 (an 8-bit
header, say) becomes a lone surrogate in the str and is written back as the
same byte, so reading then writing never changes a file.

Security.  The reader is strict: the file decides whether a message is
delivered and to whom, so a line it cannot account for is an error
(SpoolFormatError; the caller freezes the message), never a guess.  The
writer refuses CR, LF and NUL in every single-line value, so no value
(a sender or HELO name from the network, say) can inject a line.
Data from the network is restored as `Tainted` strings: the sender,
recipients, non-recipients, header texts, and every option Exim wrote as
``--name``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from mta.errors import SpoolFormatError
from mta.spool.envelope import (
    ACL_LINE_NAMES,
    HEADER_FLAGS,
    OPTION_BY_NAME,
    OPTIONS,
    Envelope,
    ExtraOption,
    HostAddress,
    OptionKind,
    Recipient,
    SpoolHeader,
    decode_text,
    encode_text,
)
from mta.spool.ids import check_message_id
from mta.taint import Tainted

__all__ = [
    "Envelope",
    "ExtraOption",
    "HostAddress",
    "Recipient",
    "SpoolHeader",
    "encode_header",
    "encode_non_recipients",
    "encode_recipient",
    "format_journal_line",
    "read_header_file",
    "read_journal",
    "write_header_file",
]

HEADER_SUFFIX = "-H"
DATA_SUFFIX = "-D"
JOURNAL_SUFFIX = "-J"

EMPTY_TREE = b"XX"


_OPTION_LINE = re.compile(rb"-(-(?:\(([A-Za-z0-9_]*)\))?)?([A-Za-z0-9_]+)(?: (.*))?\Z", re.DOTALL)
_ACL_VARIABLE = re.compile(r"acl_([cm])([A-Za-z0-9_]+)\Z")
_ACL_ARGS = re.compile(rb"([A-Za-z0-9_]+) (\d+)\Z")
_OLD_ACL_ARGS = re.compile(rb"(\d+) (\d+)\Z")
_DIGITS = re.compile(rb"\d+\Z")
_USEC = re.compile(rb"\.(\d{6})\Z")
_TIMEVAL = re.compile(rb"(\d+)\.(\d{6})\Z")
_HOSTPORT = re.compile(rb"\[(.+)\]:(\d+)\Z")
_HOSTPORT_OLD = re.compile(rb"([^\[].*)\.(\d+)\Z")
_LOGIN_LINE = re.compile(rb"(.*) (-?\d+) (-?\d+)\Z", re.DOTALL)
_TIME_LINE = re.compile(rb"(\d+) (\d+)\Z")
_TREE_NODE = re.compile(rb"([YN])([YN]) (.+)\Z", re.DOTALL)
_EXTENDED_TAIL = re.compile(rb"#(\d+)\Z")
_LEN_PNO = re.compile(rb" (\d+),(-?\d+)\Z")
_LEN_FLAGS = re.compile(rb" (\d+),(\d+)\Z")
_HEADER_PREFIX = re.compile(rb"(\d{3,})(.) ", re.DOTALL)


def _tainted(raw: bytes) -> Tainted:
    return Tainted(decode_text(raw))


# ---------------------------------------------------------------------------
# Writing


def _single_line(what: str, value: str) -> bytes:
    """Encode a value that must stay on one line, refusing CR, LF and NUL."""
    if "\r" in value or "\n" in value or "\0" in value:
        raise SpoolFormatError(f"{what} contains CR, LF or NUL: {value!r}")
    try:
        return encode_text(value)
    except UnicodeEncodeError as exc:
        raise SpoolFormatError(f"{what} cannot be encoded: {value!r}") from exc


def _count(what: str, value: int, minimum: int = 0) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpoolFormatError(f"{what} must be an integer >= {minimum}, not {value!r}")
    return b"%d" % value


def _taint_prefix(name: str, value: str, quoters: dict[str, str]) -> bytes:
    """'-' for a trusted value; '--' or '--(quoter)' for a tainted one."""
    if not isinstance(value, Tainted):
        return b"-"
    quoter = quoters.get(name)
    if quoter is None:
        return b"--"
    if not re.fullmatch(r"[A-Za-z0-9_]*", quoter):
        raise SpoolFormatError(f"quoter name for -{name} is malformed: {quoter!r}")
    return b"--(" + quoter.encode("ascii") + b")"


def _write_option(out: list[bytes], env: Envelope, name: str, attr: str, kind: OptionKind) -> None:
    value = getattr(env, attr)
    what = f"option -{name}"
    if kind is OptionKind.FLAG:
        if value:
            out.append(b"-%s\n" % name.encode())
        return
    if kind is OptionKind.ACL:
        _write_acl_variables(out, env)
        return
    if value is None:
        return
    line_name = name.encode()
    if kind is OptionKind.TEXT:
        prefix = _taint_prefix(name, value, env.quoters)
        out.append(prefix + line_name + b" " + _single_line(what, value) + b"\n")
    elif kind is OptionKind.INT:
        out.append(b"-%s %s\n" % (line_name, _count(what, value)))
    elif kind is OptionKind.USEC:
        if not isinstance(value, int) or not 0 <= value < 1_000_000:
            raise SpoolFormatError(f"{what} must be 0..999999, not {value!r}")
        out.append(b"-%s .%06d\n" % (line_name, value))
    elif kind is OptionKind.TIMEVAL:
        seconds, usec = value
        if not isinstance(usec, int) or not 0 <= usec < 1_000_000:
            raise SpoolFormatError(f"{what} microseconds must be 0..999999, not {usec!r}")
        out.append(b"-%s %s.%06d\n" % (line_name, _count(what, seconds), usec))
    elif kind is OptionKind.HOSTPORT:
        ip = _single_line(what, value.ip)
        if not ip or not isinstance(value.port, int) or not 0 <= value.port <= 65535:
            raise SpoolFormatError(f"{what} must be an address and a port 0..65535, not {value!r}")
        prefix = _taint_prefix(name, value.ip, {})
        out.append(prefix + line_name + b" [" + ip + b"]:%d\n" % value.port)


def _write_acl_variables(out: list[bytes], env: Envelope) -> None:
    # Exim walks each tree in name order, connection variables first.
    def order(item: tuple[str, str]) -> tuple[int, bytes]:
        kind_and_name = _ACL_VARIABLE.match(item[0])
        if kind_and_name is None:
            raise SpoolFormatError(f"not an ACL variable name: {item[0]!r}")
        return (0 if kind_and_name.group(1) == "c" else 1, kind_and_name.group(2).encode())

    for variable, value in sorted(env.acl_variables.items(), key=order):
        kind_and_name = _ACL_VARIABLE.match(variable)
        assert kind_and_name is not None
        if "\0" in value:
            raise SpoolFormatError(f"ACL variable {variable} contains NUL")
        raw = encode_text(value)
        prefix = _taint_prefix(variable, value, env.quoters)
        kind, name = kind_and_name.group(1).encode(), kind_and_name.group(2).encode()
        out.append(prefix + b"acl%s %s %d\n" % (kind, name, len(raw)))
        out.append(raw + b"\n")


def _write_extra(out: list[bytes], extras: dict[str, list[ExtraOption]], slot: str) -> None:
    for extra in extras.get(slot, ()):
        line = _single_line("unknown option line", extra.line)
        if not _OPTION_LINE.match(line):
            raise SpoolFormatError(f"unknown option line is not an option: {extra.line!r}")
        out.append(line + b"\n")


def encode_non_recipients(addresses: Iterable[str]) -> bytes:
    """The non-recipients tree: "XX\\n" when empty, else a pre-order dump of
    a balanced binary search tree (byte order, as Exim's strcmp) of the
    addresses, one node per line, "<L><R> address" with L/R = Y or N saying
    whether a left/right subtree follows."""
    encoded = sorted({_single_line("non-recipient", a) for a in addresses})
    if not encoded:
        return EMPTY_TREE + b"\n"
    if b"" in encoded:
        raise SpoolFormatError("non-recipient address is empty")
    out: list[bytes] = []

    def subtree(lo: int, hi: int) -> None:  # the sorted slice [lo, hi)
        if lo >= hi:
            return
        # Lower middle: the root of two nodes is the first, as Exim's AVL
        # tree has it after inserting them in order.
        mid = (lo + hi - 1) // 2
        left = b"Y" if mid > lo else b"N"
        right = b"Y" if mid + 1 < hi else b"N"
        out.append(left + right + b" " + encoded[mid] + b"\n")
        subtree(lo, mid)
        subtree(mid + 1, hi)

    subtree(0, len(encoded))  # depth is log2(n): no recursion limit worry
    return b"".join(out)


def _recipient_safe_plain(raw: bytes) -> bool:
    """True if a plain recipient line cannot be mistaken for an extended or
    obsolete form by Exim's right-to-left parse: after any trailing digits,
    the last character must not be '#', ',' or ' '."""
    stripped = raw.rstrip(b"0123456789")
    return bool(stripped) and stripped[-1:] not in (b"#", b",", b" ")


def encode_recipient(recipient: Recipient) -> bytes:
    address = _single_line("recipient address", recipient.address)
    if not address:
        raise SpoolFormatError("recipient address is empty")
    if recipient.is_plain() and _recipient_safe_plain(address):
        return address + b"\n"
    # Exim's current form: fields are length-prefixed and read right to left,
    # so any address, errors_to or ORCPT text is unambiguous.
    orcpt = _single_line("recipient ORCPT", recipient.orcpt)
    errors_to = _single_line("recipient errors_to", recipient.errors_to)
    dsn_flags = _count("recipient DSN flags", recipient.dsn_flags)
    pno = _count("recipient parent number", recipient.pno, minimum=-1)
    return b"%s %s %d,%s %s %d,%s#3\n" % (
        address,
        orcpt,
        len(orcpt),
        dsn_flags,
        errors_to,
        len(errors_to),
        pno,
    )


def encode_header(header: SpoolHeader) -> bytes:
    flag, text = header
    if len(flag) != 1 or flag not in HEADER_FLAGS:
        raise SpoolFormatError(f"header flag {flag!r} is not one of {HEADER_FLAGS!r}")
    if "\0" in text:
        raise SpoolFormatError(f"header contains NUL: {text[:40]!r}")
    if not text.endswith("\n"):
        raise SpoolFormatError(f"header does not end with a newline: {text[:40]!r}")
    try:
        raw = encode_text(text)
    except UnicodeEncodeError as exc:
        raise SpoolFormatError(f"header cannot be encoded: {text[:40]!r}") from exc
    return b"%03d%s " % (len(raw), flag.encode()) + raw


def write_header_file(env: Envelope) -> bytes:
    """The -H file for `env`.  Raises SpoolFormatError if any value cannot
    be written safely; nothing is written to disk here."""
    check_message_id(env.message_id)
    out: list[bytes] = [env.message_id.encode() + b"-H\n"]
    login = _single_line("originator login", env.originator_login)
    out.append(
        b"%s %s %s\n"
        % (login, _count("uid", env.originator_uid, -(2**31)), _count("gid", env.originator_gid, -(2**31)))
    )
    out.append(b"<" + _single_line("sender address", env.sender_address) + b">\n")
    received_time = _count("received time", env.received_time)
    out.append(b"%s %s\n" % (received_time, _count("warning count", env.warning_count)))

    extras: dict[str, list[ExtraOption]] = {}
    for extra in env.extra:
        extras.setdefault(extra.after if extra.after in OPTION_BY_NAME else "", []).append(extra)
    _write_extra(out, extras, "")
    for name, attr, kind in OPTIONS:
        _write_option(out, env, name, attr, kind)
        _write_extra(out, extras, name)

    if env._tree_as_read is not None and env._tree_as_read[0] == frozenset(env.non_recipients):
        out.append(env._tree_as_read[1])
    else:
        out.append(encode_non_recipients(env.non_recipients))
    out.append(b"%d\n" % len(env.recipients))
    out.extend(encode_recipient(r) for r in env.recipients)
    out.append(b"\n")
    out.extend(encode_header(h) for h in env.headers)
    return b"".join(out)


# ---------------------------------------------------------------------------
# Reading


class _Reader:
    """A cursor over the bytes of one -H file, with line-numbered errors."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.name = name
        self.pos = 0
        self.lineno = 0

    def fail(self, reason: str) -> SpoolFormatError:
        return SpoolFormatError(f"spool file {self.name}: line {self.lineno}: {reason}")

    def line(self, what: str) -> bytes:
        """The next line without its newline; CR and NUL are refused."""
        self.lineno += 1
        end = self.data.find(b"\n", self.pos)
        if end < 0:
            if self.pos >= len(self.data):
                raise self.fail(f"file ends where {what} was expected")
            raise self.fail(f"{what} has no newline (file truncated)")
        raw = self.data[self.pos : end]
        self.pos = end + 1
        if b"\r" in raw or b"\0" in raw:
            raise self.fail(f"{what} contains CR or NUL")
        return raw

    def take(self, count: int, what: str) -> bytes:
        """`count` raw bytes followed by a newline (ACL variable values)."""
        end = self.pos + count
        if end >= len(self.data) or self.data[end : end + 1] != b"\n":
            raise self.fail(f"{what} of {count} bytes runs past its newline or the end of the file")
        raw = self.data[self.pos : end]
        self.pos = end + 1
        self.lineno += raw.count(b"\n") + 1
        if b"\0" in raw:
            raise self.fail(f"{what} contains NUL")
        return raw


def _read_option(reader: _Reader, env: Envelope, raw: bytes, seen: set[str], last_slot: str) -> str:
    """Parse one option line into `env`; return the slot it fills (for the
    placement of unknown lines that follow it)."""
    match = _OPTION_LINE.match(raw)
    if match is None:
        raise reader.fail(f"malformed option line {raw[:60]!r}")
    taint_mark, quoter, name_raw, value = match.groups()
    name = name_raw.decode("ascii")

    if name in ACL_LINE_NAMES or name == "acl":
        variable, length = _read_acl_variable(reader, name, value)
        if variable in env.acl_variables:
            raise reader.fail(f"ACL variable {variable} appears twice")
        data = reader.take(length, variable)
        env.acl_variables[variable] = _tainted(data) if taint_mark else decode_text(data)
        if quoter is not None and taint_mark:
            env.quoters[variable] = quoter.decode("ascii")
        return "acl"

    spec = OPTION_BY_NAME.get(name)
    if spec is None:
        # Exim ignores options it does not know, so that a spool written by
        # a newer version can still be delivered; we keep them to write back.
        env.extra.append(ExtraOption(decode_text(raw), last_slot))
        return last_slot
    attr, kind = spec
    if name in seen:
        raise reader.fail(f"option -{name} appears twice")
    seen.add(name)
    if taint_mark and kind not in (OptionKind.TEXT, OptionKind.HOSTPORT):
        raise reader.fail(f"option -{name} cannot carry a tainted value")

    if kind is OptionKind.FLAG:
        if value is not None:
            raise reader.fail(f"option -{name} takes no value")
        setattr(env, attr, True)
        return name
    if value is None:
        raise reader.fail(f"option -{name} needs a value")
    if kind is OptionKind.TEXT:
        setattr(env, attr, _tainted(value) if taint_mark else decode_text(value))
        if quoter is not None:
            env.quoters[name] = quoter.decode("ascii")
    elif kind is OptionKind.INT:
        if not _DIGITS.match(value):
            raise reader.fail(f"option -{name} needs a number, not {value[:40]!r}")
        setattr(env, attr, int(value))
    elif kind is OptionKind.USEC:
        usec = _USEC.match(value)
        if usec is None:
            raise reader.fail(f"option -{name} needs .NNNNNN, not {value[:40]!r}")
        setattr(env, attr, int(usec[1]))
    elif kind is OptionKind.TIMEVAL:
        timeval = _TIMEVAL.match(value)
        if timeval is None:
            raise reader.fail(f"option -{name} needs SECONDS.NNNNNN, not {value[:40]!r}")
        setattr(env, attr, (int(timeval[1]), int(timeval[2])))
    elif kind is OptionKind.HOSTPORT:
        # Current form "[ip]:port"; before 4.92 "ip.port" (read, written
        # anew), which is only unambiguous if what precedes the dot is an IP.
        hostport = _HOSTPORT.match(value)
        if hostport is None:
            hostport = _HOSTPORT_OLD.match(value)
            if hostport is not None and not _is_ip_address(hostport[1]):
                hostport = None
        if hostport is None or int(hostport[2]) > 65535:
            raise reader.fail(f"option -{name} needs [address]:port, not {value[:60]!r}")
        ip = _tainted(hostport[1]) if taint_mark else decode_text(hostport[1])
        setattr(env, attr, HostAddress(ip, int(hostport[2])))
    return name


def _is_ip_address(raw: bytes) -> bool:
    try:
        ipaddress.ip_address(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return False
    return True


def _read_acl_variable(reader: _Reader, name: str, value: bytes | None) -> tuple[str, int]:
    """The variable named by an -aclc/-aclm (or pre-4.61 -acl) line, and
    the length of its value, which follows on the next line(s)."""
    if name == "acl":
        # Exim before 4.61: "-acl N len", N 0-9 = acl_cN, 10-19 = acl_m(N-10).
        old = _OLD_ACL_ARGS.match(value or b"")
        if old is None or int(old[1]) > 19:
            raise reader.fail(f"malformed -acl line {value!r}")
        index = int(old[1])
        return (f"acl_c{index}" if index < 10 else f"acl_m{index - 10}"), int(old[2])
    args = _ACL_ARGS.match(value or b"")
    if args is None:
        raise reader.fail(f"malformed -{name} line {value!r}")
    return ACL_LINE_NAMES[name] + args[1].decode("ascii"), int(args[2])


def _read_tree(reader: _Reader, first: bytes) -> tuple[set[str], bytes]:
    """Read the pre-order tree dump whose first line is `first`.

    Only the set of addresses matters to us; the structure is checked just
    enough to know where it ends (each node announces 0, 1 or 2 subtrees).
    Iterative, so a crafted degenerate tree cannot exhaust the stack.
    """
    start = reader.pos - len(first) - 1
    addresses: set[str] = set()
    pending = 1
    line = first
    while True:
        node = _TREE_NODE.match(line)
        if node is None:
            raise reader.fail(f"malformed non-recipients tree line {line[:60]!r}")
        address = _tainted(node[3])
        if address in addresses:
            raise reader.fail(f"non-recipient {address!r} appears twice in the tree")
        addresses.add(address)
        pending += (node[1] == b"Y") + (node[2] == b"Y") - 1
        if pending == 0:
            return addresses, reader.data[start : reader.pos]
        line = reader.line("non-recipients tree line")


def _read_recipient(reader: _Reader, raw: bytes) -> Recipient:
    """Parse a recipient line right to left, as Exim does."""
    if not raw:
        raise reader.fail("empty recipient line")
    tail = _EXTENDED_TAIL.search(raw)
    if tail is None:
        if not _recipient_safe_plain(raw):
            # Exim would read "addr N" or "addr a,N,b" as Exim 3 / early
            # Exim 4 extra data; we do not guess.
            raise reader.fail(f"recipient line in an obsolete or ambiguous form: {raw[:60]!r}")
        return Recipient(_tainted(raw))
    flags = int(tail[1])
    if flags not in (1, 2, 3):
        raise reader.fail(f"recipient line has unknown type bits #{flags}")
    rest = raw[: tail.start()]
    errors_to = orcpt = b""
    pno = -1
    dsn_flags = 0
    if flags & 1:
        # "<errors_to> <len>,<pno>"
        fields = _LEN_PNO.search(rest)
        if fields is None:
            raise reader.fail(f"recipient line lacks errors_to length and parent: {raw[:60]!r}")
        length, pno = int(fields[1]), int(fields[2])
        rest, errors_to = _cut_field(reader, rest[: fields.start()], length, raw)
    if flags & 2:
        # "<orcpt> <len>,<dsn_flags>"
        fields = _LEN_FLAGS.search(rest)
        if fields is None:
            raise reader.fail(f"recipient line lacks ORCPT length and DSN flags: {raw[:60]!r}")
        length, dsn_flags = int(fields[1]), int(fields[2])
        rest, orcpt = _cut_field(reader, rest[: fields.start()], length, raw)
    if not rest:
        raise reader.fail(f"recipient line has an empty address: {raw[:60]!r}")
    return Recipient(
        _tainted(rest), errors_to=_tainted(errors_to), pno=pno, orcpt=_tainted(orcpt), dsn_flags=dsn_flags
    )


def _cut_field(reader: _Reader, rest: bytes, length: int, raw: bytes) -> tuple[bytes, bytes]:
    """Split "<address...> <field of `length` bytes>" off the right of `rest`."""
    if length + 1 > len(rest) or rest[len(rest) - length - 1 : len(rest) - length] != b" ":
        raise reader.fail(f"recipient line field length {length} does not fit: {raw[:60]!r}")
    return rest[: len(rest) - length - 1], rest[len(rest) - length :]


def read_header_file(data: bytes, expected_id: str) -> Envelope:
    """Parse a -H file.  Raises SpoolFormatError, naming the line and the
    fault, for anything that is not exactly the format."""
    check_message_id(expected_id)
    reader = _Reader(data, expected_id + HEADER_SUFFIX)

    first = reader.line("first line")
    if first != expected_id.encode() + b"-H":
        raise reader.fail(f"first line is {first[:40]!r}, not {expected_id}-H")

    login_line = _LOGIN_LINE.match(reader.line("login line"))
    if login_line is None:
        raise reader.fail("login line is not 'login uid gid'")

    sender = reader.line("sender line")
    if len(sender) < 2 or sender[:1] != b"<" or sender[-1:] != b">":
        raise reader.fail(f"sender line is not <address>: {sender[:60]!r}")

    time_line = _TIME_LINE.match(reader.line("time line"))
    if time_line is None:
        raise reader.fail("time line is not 'seconds warning_count'")

    env = Envelope(
        message_id=expected_id,
        originator_login=decode_text(login_line[1]),
        originator_uid=int(login_line[2]),
        originator_gid=int(login_line[3]),
        sender_address=_tainted(sender[1:-1]),
        received_time=int(time_line[1]),
        warning_count=int(time_line[2]),
    )

    seen: set[str] = set()
    slot = ""
    line = reader.line("option or non-recipients line")
    while line.startswith(b"-"):
        slot = _read_option(reader, env, line, seen, slot)
        line = reader.line("option or non-recipients line")

    if line != EMPTY_TREE:
        env.non_recipients, tree = _read_tree(reader, line)
        env._tree_as_read = (frozenset(env.non_recipients), tree)

    count = reader.line("recipient count")
    if not _DIGITS.match(count):
        raise reader.fail(f"recipient count is not a number: {count[:40]!r}")
    env.recipients = [_read_recipient(reader, reader.line("recipient line")) for _ in range(int(count))]

    if reader.line("blank line before the headers") != b"":
        raise reader.fail(f"expected a blank line after {int(count)} recipients")

    env.headers = list(_read_headers(reader))
    return env


def _read_headers(reader: _Reader) -> Iterable[SpoolHeader]:
    data = reader.data
    number = 0
    while reader.pos < len(data):
        number += 1
        prefix = _HEADER_PREFIX.match(data, reader.pos)
        if prefix is None:
            found = data[reader.pos : reader.pos + 20]
            raise reader.fail(f"header {number} does not start with 'NNNf ': {found!r}")
        length = int(prefix[1])
        flag = prefix[2].decode("latin-1")
        if flag not in HEADER_FLAGS:
            raise reader.fail(f"header {number} has unknown flag {flag!r}")
        start = prefix.end()
        text = data[start : start + length]
        if len(text) < length:
            raise reader.fail(f"header {number} of {length} bytes runs past the end of the file")
        if b"\0" in text:
            raise reader.fail(f"header {number} contains NUL")
        if not text.endswith(b"\n"):
            raise reader.fail(f"header {number} does not end with a newline (count {length} is wrong)")
        reader.lineno += text.count(b"\n")
        reader.pos = start + length
        yield SpoolHeader(flag, _tainted(text))


# ---------------------------------------------------------------------------
# The -J journal: one delivered address per line, appended (and fsynced) as
# each delivery succeeds.


def format_journal_line(address: str) -> bytes:
    line = _single_line("journal address", address)
    if not line:
        raise SpoolFormatError("journal address is empty")
    return line + b"\n"


def read_journal(data: bytes) -> list[str]:
    """The addresses recorded in a -J file, in order.

    A last line without its newline is a torn write: the process died inside
    write() (or the system lost power before the fsync).  The delivery it
    records did happen, but the partial text cannot safely stand for an
    address -- it may be a prefix of a different recipient ("bob@ex" of
    "bob@example.com" or of "bob@ex.org") -- so it is ignored and that
    recipient will be tried again.  A possible duplicate is the lesser
    harm; losing mail is not an option (RFC 5321 section 6.1).  Exim's own
    reader comes to the same result: it chops the last character of every
    line, so a torn line never matches a recipient.  Any other fault
    (CR, NUL, an empty line) is not a crash artefact and raises
    SpoolFormatError.
    """
    lines = data.split(b"\n")
    lines.pop()  # "" after the final newline, or the torn last line
    addresses: list[str] = []
    for number, raw in enumerate(lines, 1):
        if not raw:
            raise SpoolFormatError(f"journal line {number} is empty")
        if b"\r" in raw or b"\0" in raw:
            raise SpoolFormatError(f"journal line {number} contains CR or NUL")
        addresses.append(_tainted(raw))
    return addresses
