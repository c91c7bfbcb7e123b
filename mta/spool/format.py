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

This module writes both files and reads -J; the -H reader is
mta.spool.format_read's, re-exported here with the suffix constants.

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

import operator
import re
from collections.abc import Iterable

from mta.errors import SpoolFormatError
from mta.spool.envelope import (
    ACL_VARIABLE,
    DATA_SUFFIX,
    EMPTY_TREE,
    HEADER_FLAGS,
    HEADER_SUFFIX,
    JOURNAL_SUFFIX,
    OPTION_BY_NAME,
    OPTION_LINE,
    OPTIONS,
    Envelope,
    ExtraOption,
    HostAddress,
    OptionKind,
    Recipient,
    SpoolHeader,
    decode_tainted,
    encode_text,
    recipient_safe_plain,
)
from mta.spool.format_read import read_header_file
from mta.spool.ids import check_message_id
from mta.taint import Tainted

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "DATA_SUFFIX",
    "EMPTY_TREE",
    "HEADER_SUFFIX",
    "JOURNAL_SUFFIX",
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
    _write_value(out, env, name, kind, getattr(env, attr))


def _write_value(out: list[bytes], env: Envelope, name: str, kind: OptionKind, value: Any) -> None:
    if kind is OptionKind.FLAG:
        if value:
            out.append(b"-%s\n" % name.encode())
        return
    if kind is OptionKind.ACL:
        _write_acl_variables(out, env)
        return
    if value is None:
        return  # (most options, most of the time: nothing else is made for them)
    what = f"option -{name}"
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
        kind_and_name = ACL_VARIABLE.match(item[0])
        if kind_and_name is None:
            raise SpoolFormatError(f"not an ACL variable name: {item[0]!r}")
        return (0 if kind_and_name.group(1) == "c" else 1, kind_and_name.group(2).encode())

    for variable, value in sorted(env.acl_variables.items(), key=order):
        kind_and_name = ACL_VARIABLE.match(variable)
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
        if not OPTION_LINE.match(line):
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


def encode_recipient(recipient: Recipient) -> bytes:
    address = _single_line("recipient address", recipient.address)
    if not address:
        raise SpoolFormatError("recipient address is empty")
    if recipient.is_plain() and recipient_safe_plain(address):
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


_option_values = operator.attrgetter(*(attr for _name, attr, _kind in OPTIONS))
_FLAG_LINES = {name: b"-%s\n" % name.encode() for name, _attr, kind in OPTIONS if kind is OptionKind.FLAG}


def write_header_file(env: Envelope) -> bytes:
    """The -H file for `env`.  Raises SpoolFormatError if any value cannot
    be written safely; nothing is written to disk here."""
    check_message_id(env.message_id)
    if env._listed_header_size is not None:
        # Read for a listing, without its headers: written back, it would lose them.
        raise ValueError(f"the envelope of {env.message_id} was read without its headers and cannot be written")
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
    if extras:
        _write_extra(out, extras, "")
        for name, attr, kind in OPTIONS:
            _write_option(out, env, name, attr, kind)
            _write_extra(out, extras, name)
    else:  # (a new message has no unknown option lines to keep in place)
        # Most of the ~50 options are unset (None, or a false flag) and write nothing: their
        # values are fetched in one call and only the set ones are written.
        flag, acl = OptionKind.FLAG, OptionKind.ACL
        for (name, _attr, kind), value in zip(OPTIONS, _option_values(env), strict=True):
            if value is None or value is False:
                if kind is not acl:
                    continue
            elif kind is flag:
                if value:
                    out.append(_FLAG_LINES[name])
                continue
            _write_value(out, env, name, kind, value)

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
        addresses.append(decode_tainted(raw))
    return addresses
