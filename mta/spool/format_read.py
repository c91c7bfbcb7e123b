"""Reading -H files: the strict parser of the format mta.spool.format describes.

    env = read_header_file(data, expected_id)     # an Envelope, or SpoolFormatError

mta.spool.format re-exports `read_header_file`: import it from there.  A
line the reader cannot account for is an error, never a guess, because the
file decides whether a message is delivered and to whom.  Values from the
network come back as `Tainted` strings.
"""

from __future__ import annotations

import ipaddress
import re

from mta.errors import SpoolFormatError
from mta.spool.envelope import (
    ACL_LINE_NAMES,
    EMPTY_TREE,
    FLAG_OLD,
    HEADER_FLAGS,
    HEADER_SUFFIX,
    OPTION_BY_NAME,
    OPTION_LINE,
    Envelope,
    ExtraOption,
    HostAddress,
    OptionKind,
    Recipient,
    SpoolHeader,
    decode_tainted,
    decode_text,
    new_envelope,
    recipient_safe_plain,
)
from mta.spool.ids import check_message_id

_ACL_ARGS = re.compile(rb"([A-Za-z0-9_]+) (\d{1,18})\Z")
_OLD_ACL_ARGS = re.compile(rb"(\d{1,18}) (\d{1,18})\Z")
_DIGITS = re.compile(rb"\d{1,18}\Z")
_USEC = re.compile(rb"\.(\d{6})\Z")
_TIMEVAL = re.compile(rb"(\d{1,18})\.(\d{6})\Z")
_HOSTPORT = re.compile(rb"\[(.+)\]:(\d{1,18})\Z")
_HOSTPORT_OLD = re.compile(rb"([^\[].*)\.(\d{1,18})\Z")
_LOGIN_LINE = re.compile(rb"(.*) (-?\d{1,18}) (-?\d{1,18})\Z", re.DOTALL)
_TIME_LINE = re.compile(rb"(\d{1,18}) (\d{1,18})\Z")
_TREE_NODE = re.compile(rb"([YN])([YN]) (.+)\Z", re.DOTALL)
_EXTENDED_TAIL = re.compile(rb"#(\d{1,18})\Z")
_LEN_PNO = re.compile(rb" (\d{1,18}),(-?\d{1,18})\Z")
_LEN_FLAGS = re.compile(rb" (\d{1,18}),(\d{1,18})\Z")
_HEADER_PREFIX = re.compile(rb"(\d{3,18})(.) ", re.DOTALL)


class _Reader:
    """A cursor over the bytes of one -H file, with line-numbered errors."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.name = name
        self.pos = 0
        self.lineno = 0
        # Most files have neither: then no line needs looking at for them (one scan in C).
        self.has_cr_or_nul = b"\r" in data or b"\0" in data

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
        if self.has_cr_or_nul and (b"\r" in raw or b"\0" in raw):
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
    # The usual line, "-name value" or "--name value" with a name we know, is split without
    # the regular expression (a queue listing reads every -H); anything else goes through it.
    tainted = raw[1:2] == b"-"
    name_raw, space, value = raw[2 if tainted else 1 :].partition(b" ")
    name = name_raw.decode("latin-1")
    quoter: bytes | None = None
    if name in OPTION_BY_NAME or name in ACL_LINE_NAMES:
        taint_mark = b"-" if tainted else None
        if not space:
            value = None
    else:
        match = OPTION_LINE.match(raw)
        if match is None:
            raise reader.fail(f"malformed option line {raw[:60]!r}")
        taint_mark, quoter, name_raw, value = match.groups()
        name = name_raw.decode("ascii")

    if name in ACL_LINE_NAMES or name == "acl":
        variable, length = _read_acl_variable(reader, name, value)
        if variable in env.acl_variables:
            raise reader.fail(f"ACL variable {variable} appears twice")
        data = reader.take(length, variable)
        env.acl_variables[variable] = decode_tainted(data) if taint_mark else decode_text(data)
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
        setattr(env, attr, decode_tainted(value) if taint_mark else decode_text(value))
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
        ip = decode_tainted(hostport[1]) if taint_mark else decode_text(hostport[1])
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
        address = decode_tainted(node[3])
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
    # (The extended form ends in "#<digits>": a line that does not end in a digit is plain.)
    tail = _EXTENDED_TAIL.search(raw) if raw[-1:].isdigit() else None
    if tail is None:
        if not recipient_safe_plain(raw):
            # Exim would read "addr N" or "addr a,N,b" as Exim 3 / early
            # Exim 4 extra data; we do not guess.
            raise reader.fail(f"recipient line in an obsolete or ambiguous form: {raw[:60]!r}")
        return Recipient(decode_tainted(raw))
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
        decode_tainted(rest),
        errors_to=decode_tainted(errors_to),
        pno=pno,
        orcpt=decode_tainted(orcpt),
        dsn_flags=dsn_flags,
    )


def _cut_field(reader: _Reader, rest: bytes, length: int, raw: bytes) -> tuple[bytes, bytes]:
    """Split "<address...> <field of `length` bytes>" off the right of `rest`."""
    if length + 1 > len(rest) or rest[len(rest) - length - 1 : len(rest) - length] != b" ":
        raise reader.fail(f"recipient line field length {length} does not fit: {raw[:60]!r}")
    return rest[: len(rest) - length - 1], rest[len(rest) - length :]


def read_header_file(data: bytes, expected_id: str, headers: bool = True) -> Envelope:
    """Parse a -H file.  Raises SpoolFormatError, naming the line and the
    fault, for anything that is not exactly the format.

    With `headers` False (a queue listing, which shows only the envelope and
    the size, as Exim's -bp reads them) the headers are checked just as
    strictly but not made into SpoolHeaders: `env.headers` stays empty,
    `env.header_size()` is their size, and the envelope cannot be written
    back."""
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

    env = new_envelope(
        message_id=expected_id,
        originator_login=decode_text(login_line[1]),
        originator_uid=int(login_line[2]),
        originator_gid=int(login_line[3]),
        sender_address=decode_tainted(sender[1:-1]),
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

    if headers:
        _read_headers(reader, env.headers)
    else:
        env._listed_header_size = _read_headers(reader, None)
    return env


def _read_headers(reader: _Reader, into: list[SpoolHeader] | None) -> int:
    """Check each header and append it to `into` (if given) as a SpoolHeader; the bytes of the
    transmitted ones (flag not '*')."""
    data = reader.data
    size = 0
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
        if reader.has_cr_or_nul and b"\0" in text:
            raise reader.fail(f"header {number} contains NUL")
        if not text.endswith(b"\n"):
            raise reader.fail(f"header {number} does not end with a newline (count {length} is wrong)")
        reader.lineno += text.count(b"\n")
        reader.pos = start + length
        if into is not None:
            into.append(SpoolHeader(flag, decode_tainted(text)))
        if flag != FLAG_OLD:
            size += length
    return size
