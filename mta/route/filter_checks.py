"""Checks the Exim filter language makes of messages and values (Exim's filter.c and header.c).

personal(...)                 Exim's "personal" condition (the Exim filter's form: no Cc:)
automatic_reply_refusal(...)  why a vacation reply must not be sent (RFC 3834), or None
reply_log_address(to)         the ">a@b,c@d" "address" of a reply, as Exim logs it
mail_value_problem(...)       what is wrong with a mail/vacation value, or None
get_number(), strtol(), int32()  numbers as Exim's C reads them
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mta.expand.addresses import AddressError, GroupState, extract_address_or_error, find_address_end
from mta.expand.conditions import _compile
from mta.expand.textcodecs import to_bytes
from mta.printable import printable
from mta.route.filter_parse import MAIL_KEYWORDS
from mta.taint import Tainted

_HEADER_LIKE = frozenset(MAIL_KEYWORDS[: MAIL_KEYWORDS.index("extra_headers")])
_FILE_LIKE = frozenset(MAIL_KEYWORDS[MAIL_KEYWORDS.index("text") + 1 :])
# RFC 2369 and RFC 2919 headers that mark list mail (Exim's "personal" list).
LIST_HEADERS = (
    "list-id:",
    "list-help:",
    "list-subscribe:",
    "list-unsubscribe:",
    "list-post:",
    "list-owner:",
    "list-archive:",
)
_NOT_PERSONAL_FROM = ("^server@", "^daemon@", "^root@", "^listserv@", "^majordomo@", "^.*?-request@", "^owner-[^@]+@")
_NUMBER = re.compile(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")


def personal(
    headers: Sequence[str],
    aliases: Sequence[str],
    local_part: str,
    domain: str,
    prefix: str = "",
    suffix: str = "",
    sender: str = "",
) -> bool:
    """Exim's filter_personal() without Cc: (the Exim filter's form).

    Not personal: a list header (RFC 2369/2919) or Auto-Submitted other than "no"; To: without
    the user's address (or an alias); From: the user, an alias or a robot (server@, daemon@,
    root@, listserv@, majordomo@, *-request@, owner-*@); Precedence bulk, list or junk; or an
    empty envelope sender."""
    if automatic_header(headers) is not None:
        return False
    me = [f"{local_part}@{domain}"]
    if prefix or suffix:
        me.append(f"{prefix}{local_part}{suffix}@{domain}")
    if not _any_address(headers, "to:", [*aliases, *me]):
        return False
    if _any_address(headers, "from:", [*aliases, *_NOT_PERSONAL_FROM, *me]):
        return False
    if any(
        _header_name(line) == "precedence:" and any(word in line.lower() for word in ("bulk", "list", "junk"))
        for line in headers
    ):
        return False
    return bool(sender)


def automatic_header(headers: Sequence[str]) -> str | None:
    """The header that marks an automatic or list message (List-Id..., Auto-Submitted: not "no")."""
    for line in headers:
        name = _header_name(line)
        if name in LIST_HEADERS:
            return f"it has a {line.split(':', 1)[0]}: header"
        if name == "auto-submitted:":
            value = line.split(":", 1)[1].strip(" \t\n\r\f\v")
            if value.lower() != "no":
                return f"it has Auto-Submitted: {shown(value)}"
    return None


def automatic_reply_refusal(headers: Sequence[str]) -> str | None:
    """Why a vacation reply must not be sent (RFC 3834 section 2): list and automatic mail and
    Precedence bulk/list/junk.  (The empty sender is checked before, as in Exim.)"""
    reason = automatic_header(headers)
    if reason is not None:
        return reason
    for line in headers:
        if _header_name(line) == "precedence:":
            value = line.split(":", 1)[1].strip(" \t\n\r\f\v").lower()
            if any(word in value for word in ("bulk", "list", "junk")):
                return f"it has Precedence: {shown(value)}"
    return None


def reply_log_address(to: str) -> str:
    """The "address" of a reply, as Exim logs it: ">a@b,c@d", or ">**bad-reply**"."""
    text = ""
    pos = 0
    while pos < len(to):
        end = find_address_end(to, pos)
        address = extract_one(to[pos:end], GroupState())
        if address:
            text += ("," if text else ">") + address
        if len(text) > 256:
            text += ", ..."
            break
        pos = end + 1
        while pos < len(to) and to[pos] in " \t\n\r\f\v":
            pos += 1
    return like_taint(to, text) if text else ">**bad-reply**"


def _any_address(headers: Sequence[str], name: str, patterns: Sequence[str]) -> bool:
    """Exim's header_match() over address headers: does any address in a `name` header match a
    pattern (``^regex`` caselessly, else the whole address caselessly)?"""
    addresses: list[str] = []
    for line in headers:
        if _header_name(line) != name:
            continue
        value = line.split(":", 1)[1]
        pos = 0
        while pos < len(value):
            end = find_address_end(value, pos)
            address = extract_one(value[pos:end], GroupState())
            if address is None:
                break
            addresses.append(address)
            pos = end + 1
    for pattern in patterns:
        if pattern.startswith("^"):
            try:
                regex = _compile("(?i)" + str.__str__(pattern))
            except re.error:
                continue
            if any(regex.search(to_bytes(a)) for a in addresses):
                return True
        elif any(a.lower() == pattern.lower() for a in addresses):
            return True
    return False


def shown(text: str) -> str:
    """Exim's string_printing(): control characters escaped, tabs kept."""
    return printable(text, keep="\t")


def _header_name(line: str) -> str:
    return line.split(":", 1)[0].lower() + ":" if ":" in line else ""


def extract_one(text: str, groups: GroupState) -> str | None:
    try:
        return like_taint(text, extract_address_or_error(text, groups).address)
    except AddressError:
        return None


def mail_value_problem(keyword: str, value: str, command: str) -> str | None:
    """Exim's checks of mail/vacation values: file names printable; header values' newlines
    followed by white space (extra_headers: or by a new header's name)."""
    if keyword == "text":
        return None
    if keyword in _FILE_LIKE:
        if not value.replace("\t", " ").isprintable():
            return f'non-printing character in "{shown(value)}" in {command} command'
        return None
    i = 0
    while i < len(value):
        if value[i] == "\n" and not value[i + 1 : i + 2].isspace():
            if keyword in _HEADER_LIKE:
                return f'\\n not followed by space in "{shown(value)[:1024]}" in {command} command'
            m = re.match(r"[^:\s]+:", value[i + 1 :])
            if m is None:
                text = shown(value)[:1024]
                return f'\\n not followed by space or valid header name in "{text}" in {command} command'
            i += m.end()
        i += 1
    return None


def get_number(text: str) -> int | None:
    """Exim's get_number(): C's %i (decimal, 0x hex, 0 octal), then an optional K and/or M."""
    found = _c_integer(text)
    if found is None:
        return None
    value, rest = found
    if rest[:1].lower() == "k":
        value, rest = value * 1024, rest[1:]
    if rest[:1].lower() == "m":
        value, rest = value * 1024 * 1024, rest[1:]
    if rest.strip(" \t\n\r\f\v"):
        return None
    return int32(value)


def strtol(text: str) -> int | None:
    """C's strtol(s, &end, 0) that must use the whole string (the "add" command)."""
    found = _c_integer(text)
    return found[0] if found is not None and not found[1] else None


def _c_integer(text: str) -> tuple[int, str] | None:
    """A C integer (leading white space, sign, 0x hex, 0 octal) at the start of `text`, and the rest."""
    m = _NUMBER.match(text)
    if m is None:
        return None
    digits = m.group(2)
    value = int(digits, 16) if digits[:2].lower() == "0x" else int(digits, 8) if digits.startswith("0") else int(digits)
    return (-value if m.group(1) == "-" else value), text[m.end() :]


def int32(value: int) -> int:
    """An int as Exim's C int holds it (wrapping)."""
    return (value + 2**31) % 2**32 - 2**31


def like_taint(source: str, result: str) -> str:
    """`result` tainted if `source` was (extracting an address keeps its taint)."""
    return Tainted(result) if isinstance(source, Tainted) and not isinstance(result, Tainted) else result
