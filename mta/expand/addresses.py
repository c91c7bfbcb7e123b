"""RFC 822 address parsing for ${address:}, ${addresses:}, ${domain:} and friends.

A port of Exim 4.96's parse.c (parse_extract_address and the readers it
uses), because the operators must extract exactly what Exim extracts from
"Name <addr>", comments, quoted local parts and route-addrs, and fail where
Exim fails.  Exim's defaults apply: no domain literals, no UTF-8 domains,
no trailing-dot stripping, no excess angle brackets.
"""

from __future__ import annotations

from mta import record

_SPECIALS = ' ()<>@,;:\\".[]\x7f'
_C_SPACE = " \t\n\r\f\v"
EMAILADDR_MAX = 256


class AddressError(Exception):
    pass


@record.dataclass(slots=True)
class Extracted:
    address: str
    domain: int  # offset of the domain in `address`, 0 if none


def _special(ch: str) -> bool:
    return ch == "" or ord(ch) < 32 or ch in _SPECIALS


@record.dataclass(slots=True)
class GroupState:
    """Exim's parse_allow_group / parse_found_group, carried from one address to the next."""

    allow: bool = False
    found: bool = False


class _Parser:
    def __init__(self, text: str, groups: GroupState) -> None:
        self.s = text
        self.i = 0
        self.last_comment = 0
        self.groups = groups

    def at(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def skip_comment(self) -> None:
        self.last_comment = self.i
        while self.i < len(self.s):
            while self.at() and self.at() in _C_SPACE:
                self.i += 1
            if self.at() != "(":
                break
            level = 1
            while True:
                self.i += 1
                c = self.at()
                if not c:
                    break
                if c == "(":
                    level += 1
                elif c == ")":
                    level -= 1
                    if level <= 0:
                        self.i += 1
                        break
                elif c == "\\" and self.at(1):
                    self.i += 1

    def domain(self, msg_id_literals: bool = False) -> str:
        self.skip_comment()
        if self.at() == "[":
            # allow_domain_literals is off by default; Exim's strict local@domain
            # path still takes a "message-id style" literal of printing characters.
            if not msg_id_literals:
                raise AddressError("domain literals not allowed")
            start = self.i
            self.i += 1
            if self.s[self.i : self.i + 5].lower() in ("ipv6:", "ipv4:"):
                self.i += 5
            while self.at() and (33 <= ord(self.at()) <= 90 or 94 <= ord(self.at()) <= 126):
                self.i += 1
            if self.at() != "]":
                raise AddressError("malformed domain literal")
            self.i += 1
            literal = self.s[start : self.i]
            self.skip_comment()
            return literal
        out: list[str] = []
        while True:
            start = len(out)
            if self.at() != "-":
                while self.at() and ((self.at().isascii() and self.at().isalnum()) or self.at() == "-"):
                    out.append(self.at())
                    self.i += 1
            self.skip_comment()
            if len(out) == start:
                raise AddressError("domain missing or malformed")
            if self.at() != ".":
                return "".join(out)
            out.append(".")
            self.i += 1
            self.skip_comment()

    def local_part(self, allow_null: bool) -> str:
        out: list[str] = []
        while True:
            self.skip_comment()
            start = len(out)
            if self.at() == '"':
                out.append('"')
                while True:
                    self.i += 1
                    c = self.at()
                    if not c or c == '"':
                        break
                    out.append(c)
                    if c == "\\" and self.at(1):
                        self.i += 1
                        out.append(self.at())
                if c != '"':
                    raise AddressError("unmatched doublequote in local part")
                self.i += 1
                out.append('"')
            else:
                while not _special(self.at()) or self.at() == "\\":
                    c = self.at()
                    out.append(c)
                    self.i += 1
                    if c == "\\" and self.at():
                        out.append(self.at())
                        self.i += 1
            self.skip_comment()
            if len(out) == start and self.at() != ".":
                if start == 0 and not allow_null:
                    raise AddressError("missing or malformed local part")
                return "".join(out)
            if self.at() != ".":
                return "".join(out)
            while self.at() == ".":
                out.append(".")
                self.i += 1

    def route(self) -> None:
        commas = False
        while self.at() == "@":
            self.i += 1
            self.domain()
            if self.at() != ",":
                break
            self.i += 1
            commas = True
            self.skip_comment()
        if self.at() == ":":
            self.i += 1
        else:
            raise AddressError("colon expected after route list" if commas else "no local part")
        self.skip_comment()

    def addr_spec(self, term: str) -> tuple[str, int]:
        local = self.local_part(allow_null=False)
        if self.at() == term:
            return local, 0
        if self.at() != "@":
            raise AddressError(f'"@" or "." expected after "{local}"')
        self.i += 1
        return local + "@" + self.domain(), len(local) + 1

    def extract(self) -> Extracted:
        while True:
            self.skip_comment()
            start = self.i
            local = self.local_part(allow_null=True)
            if self.at() not in ("@", "<") or not self.at():
                if not self.at() or self.at() == ";":
                    if not local:
                        raise AddressError("empty address")
                    return self.finish(Extracted(local, 0), start, self.last_comment)
                while self.at() != "<" and (not self.groups.allow or self.at() != ":"):
                    try:
                        self.local_part(allow_null=False)
                    except AddressError as exc:
                        raise AddressError(f'{exc} (expected word or "<")') from None
                if self.at() == ":":
                    self.groups.found = True
                    self.groups.allow = False
                    self.i += 1
                    continue
            break
        if self.at() == "<":
            self.i += 1
            start = self.i
            self.skip_comment()
            routed = False
            if self.at() == "@":
                self.route()
                routed = True
            address, domain = self.addr_spec(">")
            if routed and domain == 0:
                raise AddressError("domain missing in source-routed address")
            end = self.i
            if self.at() != ">":
                if not self.at():
                    raise AddressError("'>' missing at end of address")
                raise AddressError(
                    f"malformed address: {self.s[self.i : self.i + 32]} may not follow {self.s[: self.i]}"
                )
            self.i += 1
            self.skip_comment()
            return self.finish(Extracted(address, domain), start, end)
        if not local:
            self.route()
            address, domain = self.addr_spec("")
            if domain == 0:
                raise AddressError("domain missing in source-routed address")
            return self.finish(Extracted(address, domain), start, self.last_comment)
        self.i += 1
        domain_text = self.domain(msg_id_literals=True)
        return self.finish(Extracted(local + "@" + domain_text, len(local) + 1), start, self.last_comment)

    def finish(self, found: Extracted, start: int, end: int) -> Extracted:
        if self.at():
            if self.groups.found and self.at() == ";":
                self.groups.found = False
                self.groups.allow = True
            else:
                raise AddressError(
                    f"malformed address: {self.s[self.i : self.i + 32]} may not follow {self.s[: self.i]}"
                )
        while end > 0 and self.s[end - 1] in _C_SPACE:
            end -= 1
        if end - start > EMAILADDR_MAX:
            raise AddressError(f"address is ridiculously long: {found.address[:64]}...")
        return found


def extract_address(text: str, groups: GroupState | None = None) -> Extracted | None:
    """parse_extract_address(): the operative address, or None if `text` is not one."""
    try:
        return extract_address_or_error(text, groups)
    except AddressError:
        return None


def extract_address_or_error(text: str, groups: GroupState | None = None) -> Extracted:
    """parse_extract_address(): the operative address; AddressError says why `text` is not one
    (Exim's words, e.g. 'missing or malformed local part (expected word or "<")')."""
    parser = _Parser(text, groups if groups is not None else GroupState())
    try:
        return parser.extract()
    except AddressError:
        if parser.groups.found and parser.at() == ";":
            parser.groups.found = False
            parser.groups.allow = True
        raise


def find_address_end(s: str, start: int, nl_ends: bool = False) -> int:
    """Exim's parse_find_address_end(): the comma (or end, or newline with `nl_ends`)
    that ends the address starting at `start`, outside quotes, comments and <...>."""
    i = start
    n = len(s)
    source_routing = s[i : i + 1] == "@"
    no_term = 1 if source_routing else 0
    while i < n and (s[i] != "," or no_term > 0) and not (nl_ends and s[i] == "\n"):
        c = s[i]
        if c == "\\" and i + 1 < n:
            i += 2
        elif c in "\"(":
            i = _skip_enclosed(s, i, nl_ends)
        else:
            if c == "<":
                source_routing = s[i + 1 : i + 2] == "@"
                no_term = 2 if source_routing else 1
            elif c == ">" or (source_routing and c == ":"):
                no_term -= 1
            i += 1
    return i


def _skip_enclosed(s: str, i: int, nl_ends: bool) -> int:
    """Past the quoted string or (nested) comment that starts at s[i]; a backslash protects."""
    quote = s[i] == '"'
    level = 1
    i += 1
    while i < len(s) and not (nl_ends and s[i] == "\n"):
        ch = s[i]
        if ch == "\\" and i + 1 < len(s):
            i += 2
            continue
        i += 1
        if quote and ch == '"':
            break
        if not quote and ch == "(":
            level += 1
        elif not quote and ch == ")":
            level -= 1
            if level <= 0:
                break
    return i


def quote_local_part(text: str) -> str:
    """${quote_local_part:}: quote as RFC 5322 requires for a local part."""
    needs = not text
    for k, ch in enumerate(text):
        if (
            not (ch.isascii() and ch.isalnum())
            and ch not in "!#$%&'*+-/=?^_`{|}~"
            and (ch != "." or k == 0 or k == len(text) - 1)
        ):
            needs = True
            break
    return quoted(text) if needs else text


def quote(text: str) -> str:
    """${quote:}: quote unless only letters, digits, "_", "-" and "." (and not empty)."""
    needs = not text or any(not (ch.isascii() and ch.isalnum()) and ch not in "_-." for ch in text)
    return quoted(text) if needs else text


def quoted(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        else:
            if ch in '\\"':
                out.append("\\")
            out.append(ch)
    out.append('"')
    return "".join(out)
