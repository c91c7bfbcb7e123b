"""The syntax of mail addresses (RFC 5321 paths, RFC 5322 addr-specs), for mta.message.address.

    toks = tokenize(text)                  # atoms, quoted strings, literals, comments, specials
    p = Parser(toks)                       # a cursor with the comments set aside
    local_part, domain = p.addr_spec()     # local part unquoted; domain checked
    build_address(local_part, domain)      # the internal form, quoted only where needed

Every check raises AddressError whose message is the reason.  CR, LF and
NUL are refused by `tokenize`, so nothing built from its tokens can carry
them.  mta.message.address is the public face: import from there.
"""

from __future__ import annotations

from mta import record
from mta.errors import AddressError

MAX_DOMAIN = 255  # octets, RFC 5321 4.5.3.1.2
MAX_LABEL = 63

# Not string.ascii_letters: importing `string` compiles a regular expression (start-up cost).
_LETTERS_DIGITS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_ATEXT = frozenset(_LETTERS_DIGITS + "!#$%&'*+-/=?^_`{|}~")
_SPECIALS = frozenset('()<>[]:;@\\,."')
_DOMAIN_CHARS = frozenset(_LETTERS_DIGITS + "-_")
WSP = " \t"


def is_atext(c: str) -> bool:
    return c in _ATEXT or ord(c) >= 0x80


def is_control(c: str) -> bool:
    return (ord(c) < 32 and c != "\t") or ord(c) == 127


# -- tokens (RFC 5322 lexical level) -----------------------------------------


@record.dataclass(frozen=True, slots=True)
class Token:
    kind: str  # atom, qstr, literal, comment, or the special character itself
    value: str  # atom text, unquoted string content, "[...]" as written, comment text
    space: bool  # white space (or a comment) came before it


def tokenize(text: str) -> list[Token]:
    if any(c in "\r\n\0" for c in text):
        raise AddressError("address contains CR, LF or NUL")
    if not text.isascii() and any("\ud800" <= c <= "\udfff" for c in text):
        # A byte that is not UTF-8 (the network's text is decoded with surrogateescape): such an
        # address could not be measured, compared or written out as UTF-8 later (RFC 6531).
        raise AddressError("address is not valid UTF-8")
    toks: list[Token] = []
    i, n, space = 0, len(text), False
    while i < n:
        c = text[i]
        if c in WSP:
            space, i = True, i + 1
        elif c == '"':
            value, i = _quoted(text, i)
            toks.append(Token("qstr", value, space))
            space = False
        elif c == "(":
            value, i = _comment(text, i)
            toks.append(Token("comment", value, space))
            space = True
        elif c == "[":
            end = i + 1
            while end < n and text[end] not in "[]":
                if text[end] == "\\":
                    end += 1
                end += 1
            if end >= n or text[end] != "]":
                raise AddressError("unterminated domain literal (missing ])")
            toks.append(Token("literal", text[i : end + 1], space))
            space, i = False, end + 1
        elif c == ")":
            raise AddressError("unbalanced parentheses: ) without (")
        elif c == "]":
            raise AddressError("unexpected ] outside a domain literal")
        elif c == "\\":
            raise AddressError("backslash outside quotes")
        elif c in _SPECIALS:
            toks.append(Token(c, c, space))
            space, i = False, i + 1
        elif is_control(c):
            raise AddressError(f"control character 0x{ord(c):02x} in address")
        else:  # every other character is atext (ASCII atext or non-ASCII)
            end = i
            while end < n and is_atext(text[end]):
                end += 1
            toks.append(Token("atom", text[i:end], space))
            space, i = False, end
    return toks


def _quoted(text: str, i: int) -> tuple[str, int]:
    """The content of the quoted string starting at text[i] == '"', and the index after it."""
    out: list[str] = []
    i += 1
    while i < len(text):
        c = text[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\":
            i += 1
            if i >= len(text):
                break
            c = text[i]
        if is_control(c):
            raise AddressError(f"control character 0x{ord(c):02x} in quoted string")
        out.append(c)
        i += 1
    raise AddressError("unterminated quoted string")


def _comment(text: str, i: int) -> tuple[str, int]:
    depth, start = 0, i
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
        i += 1
    raise AddressError("unterminated comment (unbalanced parentheses)")


# -- addr-spec over tokens -------------------------------------------------------


class Parser:
    """A cursor over tokens with comments set aside."""

    def __init__(self, toks: list[Token], strip_trailing_dot: bool = False) -> None:
        self.strip_trailing_dot = strip_trailing_dot
        self.comments = [t.value for t in toks if t.kind == "comment"]
        self.toks = [t for t in toks if t.kind != "comment"]
        self.pos = 0

    def peek(self) -> Token | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self) -> Token:
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def at(self, kind: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == kind

    def addr_spec(self) -> tuple[str, str | None]:
        """local-part ["@" domain]; returns the unquoted local part and the domain."""
        words: list[str] = []
        while True:
            tok = self.peek()
            if tok is None or tok.kind not in ("atom", "qstr"):
                raise AddressError(_bad_word(tok, first=not words))
            words.append(self.take().value)
            if not self.at("."):
                break
            self.take()
        local_part = ".".join(words)
        if not local_part:
            raise AddressError("empty local part")
        if not self.at("@"):
            return local_part, None
        self.take()
        return local_part, self.domain()

    def domain(self) -> str:
        tok = self.peek()
        if tok is None or tok.kind in (">", ",", ";", "@"):
            raise AddressError("missing domain after @")
        if tok.kind == "literal":
            self.take()
            return check_domain(tok.value)
        parts: list[str] = []
        while True:
            tok = self.peek()
            if tok is not None and tok.kind == "qstr":
                raise AddressError("quoted string in domain")
            if tok is None or tok.kind not in ("atom", "."):
                break
            if tok.kind == "atom" and parts and parts[-1] != ".":
                break  # a second word in a row is not part of the domain
            parts.append(self.take().value)
        return check_domain("".join(parts), self.strip_trailing_dot)


def _bad_word(tok: Token | None, first: bool) -> str:
    """Why a word of a local part is missing at `tok`."""
    if first:
        if tok is None or tok.kind == "@":
            return "empty local part"
        if tok.kind == ".":
            return "local part starts with a dot"
        return unexpected(tok, "empty local part")
    if tok is not None and tok.kind == ".":
        return "consecutive dots in local part"
    if tok is None or tok.kind == "@":
        return "local part ends with a dot"
    return unexpected(tok, "local part ends with a dot")


def unexpected(tok: Token | None, default: str) -> str:
    if tok is None:
        return default
    if tok.kind in ("<", ">"):
        return "unbalanced angle brackets"
    if tok.kind == ".":
        return "local part starts with a dot"
    text = tok.value if tok.kind != "qstr" else f'"{tok.value}"'
    return f'unexpected "{text}" in address'


def check_domain(domain: str, strip_trailing_dot: bool = False) -> str:
    """Validate a domain (name or IP literal) and return it as written."""
    if domain.startswith("["):
        if is_ip_literal(domain) is None:
            raise AddressError(f"bad IP literal {domain}")
        return domain
    if strip_trailing_dot and domain.endswith(".") and len(domain) > 1:
        domain = domain[:-1]
    if not domain:
        raise AddressError("missing domain after @")
    labels = domain.split(".")
    if labels[-1] == "" and all(labels[:-1]):
        raise AddressError("domain ends with a dot")
    for label in labels:
        if not label:
            raise AddressError("empty label in domain")
        bad = next((c for c in label if c not in _DOMAIN_CHARS and ord(c) < 0x80), None)
        if bad is not None:
            raise AddressError(f'bad character "{bad}" in domain')
        if len(label.encode()) > MAX_LABEL:
            raise AddressError(f"domain label longer than {MAX_LABEL} characters")
    if len(domain.encode()) > MAX_DOMAIN:
        raise AddressError(f"domain longer than {MAX_DOMAIN} characters")
    return domain


def build_address(local_part: str, domain: str | None) -> str:
    """The internal form of an address (the local part quoted only where needed); AddressError if too long."""
    # RFC 5321's 64 octets is not enforced: Exim and Postfix accept longer local parts, and
    # refusing a whole message for one address helps nobody.  Command lines bound the length.
    quoted = quote_local_part(local_part)
    return quoted if domain is None else f"{quoted}@{domain}"


def drop_route(toks: list[Token]) -> list[Token]:
    """Remove an RFC 5321 source route ``@a,@b:`` from the front of toks."""
    p = Parser(toks)
    while p.at("@"):
        p.take()
        p.domain()
        if not p.at(","):
            break
        p.take()
    if not p.at(":"):
        raise AddressError("source route not ended by a colon")
    p.take()
    return p.toks[p.pos :]


# -- quoting and domain literals -----------------------------------------------


def _is_dot_atom(text: str) -> bool:
    return bool(text) and all(word and all(is_atext(c) for c in word) for word in text.split("."))


def quote_local_part(local_part: str) -> str:
    """The local part as it must be written: as is if a dot-atom, else quoted."""
    if _is_dot_atom(local_part):
        return local_part
    for c in local_part:
        if is_control(c):
            raise AddressError(f"control character 0x{ord(c):02x} in local part")
    return '"' + local_part.replace("\\", "\\\\").replace('"', '\\"') + '"'


def is_ip_literal(domain: str) -> str | None:
    """The IP address of a domain literal (``[192.0.2.1]``, ``[IPv6:2001:db8::1]``), else None."""
    if len(domain) < 3 or domain[0] != "[" or domain[-1] != "]":
        return None
    inner = domain[1:-1]
    import ipaddress  # here, not at the top: only IP literals need it (start-up time)

    try:
        if inner[:5].lower() == "ipv6:":
            return str(ipaddress.IPv6Address(inner[5:]))
        return str(ipaddress.IPv4Address(inner))
    except ValueError:
        return None
