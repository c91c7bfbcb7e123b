"""Mail addresses: parsing (RFC 5321 envelopes, RFC 5322 headers) and helpers.

Public API::

    parse_envelope_address(text, strip_trailing_dot=False) -> str
    parse_header_addresses(value, errors=None) -> list[HeaderAddress]
    HeaderAddress(address, display_name, group)
    split_address(address) -> (local_part, domain)       # local part unquoted
    unquote_local_part(local_part) -> str
    quote_local_part(local_part) -> str
    qualify(address, domain) -> str
    normalise_domain(domain) -> str
    is_ip_literal(domain) -> str | None
    address_key(address, caseful=False) -> str
    strip_affix(local_part, prefixes, suffixes, prefix_optional=False,
                suffix_optional=False) -> (prefix, core, suffix) | None

The internal form of an address, as the spool, the logs and the routers see
it, is ``local_part@domain`` with the local part quoted only when it has to
be (`quote_local_part`): ``"john"@x`` becomes ``john@x`` and
``"john doe"@x`` stays quoted.  The null sender is the empty string.  An
address without ``@`` is unqualified (``root``); `qualify` adds a domain.
The case of both halves is kept as written: Exim compares domains caselessly
and local parts caselessly unless ``caseful_local_part`` is set, but delivers
to the local part as written.  `address_key` gives the comparison key.

`split_address` gives the local part *unquoted* (Exim's $local_part:
``"a b"@x`` gives ``a b``); rebuild an address with
``quote_local_part(local_part) + "@" + domain``.

Errors are AddressError whose message is the reason, for example
``unterminated quoted string``, ``missing > at the end of the address``,
``empty local part``, ``empty label in domain``, ``space in address outside
quotes``, ``local part longer than 64 characters``.

The lexical level (tokens, the addr-spec parser, the checks of a domain
and of a local part's length) is mta.message.address_syntax's.

Security: both parsers refuse CR, LF and NUL anywhere, so an address that
passed them can be written to the spool and to SMTP without a second check.
"""

from __future__ import annotations

from mta import record
from mta.errors import AddressError
from mta.lazy_pattern import lazy_compile
from mta.message.address_syntax import (
    WSP,
    Parser,
    Token,
    build_address,
    drop_route,
    is_ip_literal,
    quote_local_part,
    tokenize,
    unexpected,
)

__all__ = [
    "HeaderAddress",
    "address_key",
    "is_ip_literal",
    "normalise_domain",
    "parse_envelope_address",
    "parse_envelope_tokens",
    "parse_header_addresses",
    "qualify",
    "quote_local_part",
    "split_address",
    "strip_affix",
    "unquote_local_part",
]

_LETTERS_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_ATOM_CHARACTERS = frozenset(_LETTERS_DIGITS + "!#$%&'*+-/=?^_`{|}~")
_LABEL_CHARACTERS = frozenset(_LETTERS_DIGITS + "_-")


def _plain_fullmatch(s: str) -> tuple[str, str, str, str] | None:
    """``_PLAIN.fullmatch(s)`` in str methods, for a process without `re` (mta.lazy_pattern):
    (s, "<" or "", the address, ">" or "") or None."""
    before = "<" if s[:1] == "<" else ""
    after = ">" if s[-1:] == ">" and len(s) > len(before) else ""
    address = s[len(before) : len(s) - len(after)]
    local, _, domain = address.partition("@")
    if not (local and domain and _ATOM_CHARACTERS.issuperset(local.replace(".", ""))):
        return None
    if "" in local.split(".") or not _LABEL_CHARACTERS.issuperset(domain.replace(".", "")):
        return None
    if any(not 0 < len(label) <= 63 for label in domain.split(".")):
        return None
    return (s, before, address, after)


# The form nearly every MAIL and RCPT has: an ASCII dot-atom local part and a domain name, with or
# without the angle brackets.  Its internal form is the text itself, so parsing it needs no tokens.
_ATOM = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+"
_PLAIN = lazy_compile(
    rf"(<?)({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9_-]{{1,63}}(?:\.[A-Za-z0-9_-]{{1,63}})*)(>?)",
    without_re={"fullmatch": _plain_fullmatch},
)


# -- envelope ------------------------------------------------------------------


def parse_envelope_address(text: str, strip_trailing_dot: bool = False) -> str:
    """Parse a MAIL FROM / RCPT TO path or a command-line address.

    Accepts ``<a@b>``, ``a@b``, ``<@r1,@r2:a@b>`` (the source route is
    dropped, as RFC 5321 allows), quoted local parts and unqualified local
    parts; ``<>`` gives ``""``.  ESMTP parameters must be removed first.
    Returns the internal form (see the module docstring).  Raises
    AddressError with the reason.
    """
    s = text.strip(WSP)
    plain = _PLAIN.fullmatch(s)
    if plain is not None and len(plain[1]) == len(plain[3]) and len(plain[2]) - plain[2].index("@") <= 256:
        return plain[2]  # (what the parser below makes of it; tests/message/test_address.py compares)
    return parse_envelope_tokens(s, text, strip_trailing_dot)


def parse_envelope_tokens(s: str, text: str, strip_trailing_dot: bool = False) -> str:
    """parse_envelope_address for any form: `s` is `text` without its surrounding white space."""
    if not s:
        if any(c in "\r\n\0" for c in text):
            raise AddressError("address contains CR, LF or NUL")
        raise AddressError("empty address")
    toks = tokenize(s)
    if any(t.kind == "comment" for t in toks):
        raise AddressError("comment (parentheses) in envelope address")
    if toks[0].kind == "<":
        close = next((i for i, t in enumerate(toks) if t.kind == ">"), None)
        if close is None:
            raise AddressError("missing > at the end of the address")
        if close != len(toks) - 1:
            raise AddressError("unexpected text after >")
        inner = toks[1:close]
        if not inner:
            return ""
        if inner[0].kind == "@":
            inner = drop_route(inner)
    else:
        inner = toks
    for t in inner:
        if t.kind in ("<", ">"):
            raise AddressError("unbalanced angle brackets")
    if any(t.space for t in inner[1:]):
        raise AddressError("space in address outside quotes")
    p = Parser(inner, strip_trailing_dot)
    local_part, domain = p.addr_spec()
    if p.peek() is not None:
        raise AddressError(unexpected(p.peek(), "unexpected text after address"))
    return build_address(local_part, domain)


# -- header address lists ------------------------------------------------------


def unfold(text: str) -> str:
    """`text` with each fold (an LF before a space or tab) made a space, the space or tab kept.
    (str methods: faster than the pattern ``\\n(?=[ \\t])`` was, and no `re` for a short command.)"""
    return text.replace("\n ", "  ").replace("\n\t", " \t") if "\n" in text else text


@record.dataclass(frozen=True, slots=True)
class HeaderAddress:
    """One mailbox from a To:/Cc:/From: ... header.

    `address` is the addr-spec in internal form (maybe unqualified);
    `display_name` the phrase before ``<...>``, or the comment of an
    obsolete ``a@b (Name)`` form, else ""; `group` the name of the group it
    was listed in, if any.
    """

    address: str
    display_name: str = ""
    group: str | None = None


def parse_header_addresses(value: str, errors: list[AddressError] | None = None) -> list[HeaderAddress]:
    """Parse an RFC 5322 address list (mailboxes and groups).

    Strict by default: the first malformed mailbox raises AddressError, whose
    message names the problem and the mailbox.  With an `errors` list, bad
    mailboxes are skipped, their errors appended, and the good ones returned
    (the lenient mode, for headers that are only being looked at).  `value`
    may be a raw header value: folds (LF before space or tab) and a final LF
    are white space; any other CR, LF or NUL is an error.
    """
    # Folding white space: a header value may keep its folds and final newline.
    text = value.replace("\r\n", "\n")
    text = unfold(text[:-1] if text.endswith("\n") else text)
    try:
        toks = tokenize(text)
    except AddressError as exc:
        if errors is None:
            raise
        errors.append(exc)
        return []
    out: list[HeaderAddress] = []
    for element in _split_top(toks, ","):
        if not [t for t in element if t.kind != "comment"]:
            continue  # empty list member, allowed by RFC 5322 obs-addr-list
        try:
            out.extend(_parse_element(element))
        except AddressError as exc:
            reason = AddressError(f"{exc.message} in {_text_of(element)!r}")
            if errors is None:
                raise reason from None
            errors.append(reason)
    return out


def _split_top(toks: list[Token], sep: str) -> list[list[Token]]:
    """Split at `sep`, except inside <...> and inside a group (name: ... ;)."""
    parts: list[list[Token]] = [[]]
    in_angle = in_group = False
    address_seen = False  # an @ or < in the current part: a colon after it is not a group's
    for t in toks:
        if t.kind == "<":
            in_angle = True
        elif t.kind == ">":
            in_angle = False
        elif t.kind == ":" and not in_angle and not in_group:
            # Kept as a flag, not looked for again in the part at each colon: that made a long
            # header of "a:;a:;..." take quadratic time.
            in_group = not address_seen
        elif t.kind == ";" and not in_angle:
            in_group = False
        if t.kind == sep and not in_angle and not in_group:
            parts.append([])
            address_seen = False
        else:
            parts[-1].append(t)
            address_seen = address_seen or t.kind in ("@", "<")
    return parts


def _parse_element(toks: list[Token], group: str | None = None) -> list[HeaderAddress]:
    real = [t for t in toks if t.kind != "comment"]
    first = next((t.kind for t in real if t.kind in (":", "<", "@")), None)
    if first != ":":
        return [_mailbox(toks, group)]
    if group is not None:
        raise AddressError("nested group")
    colon = next(i for i, t in enumerate(real) if t.kind == ":")
    name = _phrase(real[:colon])
    body = real[colon + 1 :]
    if body and body[-1].kind == ";":
        body = body[:-1]  # a missing final ; is tolerated
    if any(t.kind == ";" for t in body):
        raise AddressError("unexpected text after the ; that ends the group")
    members: list[HeaderAddress] = []
    for member in _split_top(body, ","):
        if member:
            members.extend(_parse_element(member, name))
    return members


def _mailbox(toks: list[Token], group: str | None) -> HeaderAddress:
    p = Parser(toks)
    angle = next((i for i, t in enumerate(p.toks) if t.kind == "<"), None)
    if angle is None:
        if p.at("@"):
            # An obsolete bare source route (@a,@b:user@host), accepted as Exim does: the route is dropped.
            p.toks = drop_route(p.toks)
        local_part, domain = p.addr_spec()
        if p.peek() is not None:
            raise AddressError(_after_address(p.peek()))
        display = p.comments[-1].strip() if p.comments else ""
        return HeaderAddress(build_address(local_part, domain), " ".join(display.split()), group)
    if not any(t.kind == ">" for t in p.toks[angle:]):
        raise AddressError("missing > after address")
    display = _phrase(p.toks[:angle])
    p.pos = angle + 1
    if p.at(">"):
        raise AddressError("empty address <>")
    if p.at("@"):
        p.toks = p.toks[: p.pos] + drop_route(p.toks[p.pos :])
    local_part, domain = p.addr_spec()
    if not p.at(">"):
        tok = p.peek()
        raise AddressError("missing > after address" if tok is None else _after_address(tok))
    p.take()
    if p.peek() is not None:
        raise AddressError(_after_address(p.peek()))
    if not display and p.comments:
        display = " ".join(p.comments[-1].split())
    return HeaderAddress(build_address(local_part, domain), display, group)


def _after_address(tok: Token | None) -> str:
    if tok is None:
        return "unexpected end of address"
    if tok.kind in ("<", ">"):
        return "unbalanced angle brackets"
    text = tok.value if tok.kind != "qstr" else f'"{tok.value}"'
    return f'unexpected "{text}" after address (missing comma or angle brackets?)'


def _phrase(toks: list[Token]) -> str:
    """A display name: words joined as written, quotes removed, spaces collapsed."""
    out: list[str] = []
    for t in toks:
        if t.kind in ("<", ">", ";"):
            raise AddressError("unbalanced angle brackets" if t.kind != ";" else 'unexpected ";"')
        if out and t.space:
            out.append(" ")
        out.append(t.value)
    return " ".join("".join(out).split())


def _text_of(toks: list[Token]) -> str:
    out: list[str] = []
    for t in toks:
        if out and t.space:
            out.append(" ")
        if t.kind == "qstr":
            out.append('"' + t.value.replace("\\", "\\\\").replace('"', '\\"') + '"')
        elif t.kind == "comment":
            out.append(f"({t.value})")
        else:
            out.append(t.value)
    return "".join(out)


# -- helpers -------------------------------------------------------------------


def unquote_local_part(local_part: str) -> str:
    """Remove the quoting of a local part as written: ``"a b".c`` -> ``a b.c``."""
    if '"' not in local_part and "\\" not in local_part:
        return local_part
    out: list[str] = []
    i, in_quotes = 0, False
    while i < len(local_part):
        c = local_part[i]
        if c == '"':
            in_quotes = not in_quotes
        elif c == "\\" and in_quotes and i + 1 < len(local_part):
            i += 1
            out.append(local_part[i])
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _last_at(address: str) -> int:
    """Index of the last @ outside quotes, or -1."""
    if '"' not in address:
        return address.rfind("@")  # (nearly every address: no quotes, no character-by-character walk)
    pos, in_quotes, i = -1, False, 0
    while i < len(address):
        c = address[i]
        if c == '"':
            in_quotes = not in_quotes
        elif c == "\\" and in_quotes:
            i += 1
        elif c == "@" and not in_quotes:
            pos = i
        i += 1
    return pos


def split_address(address: str) -> tuple[str, str]:
    """(local part unquoted, domain); the domain is "" for an unqualified address."""
    if address in ("", "<>"):
        return "", ""
    at = _last_at(address)
    if at < 0:
        return unquote_local_part(address), ""
    return unquote_local_part(address[:at]), address[at + 1 :]


def qualify(address: str, domain: str) -> str:
    """Append @domain to an unqualified address; the null sender stays empty."""
    if address in ("", "<>"):
        return ""
    return address if _last_at(address) >= 0 else f"{address}@{domain}"


def normalise_domain(domain: str) -> str:
    """Lower case, without a trailing dot."""
    d = domain.lower()
    return d[:-1] if d.endswith(".") and len(d) > 1 else d


def address_key(address: str, caseful: bool = False) -> str:
    """The key for comparing and de-duplicating addresses.

    The domain is lower-cased (and loses a trailing dot); the local part too
    unless `caseful` (Exim's caseful_local_part).  Quoting is canonical, so
    ``"john"@X`` and ``John@x`` have the same key.
    """
    local_part, domain = split_address(address)
    if not local_part and not domain:
        return ""
    lp = quote_local_part(local_part if caseful else local_part.lower()) if local_part else '""'
    return f"{lp}@{normalise_domain(domain)}" if domain else lp


def strip_affix(
    local_part: str,
    prefixes: list[str],
    suffixes: list[str],
    prefix_optional: bool = False,
    suffix_optional: bool = False,
) -> tuple[str, str, str] | None:
    """Remove a local_part_prefix and a local_part_suffix, as an Exim router does.

    Each list is tried in order and the first pattern that matches wins;
    comparison is caseless.  A prefix may start with ``*`` (``*-``: any text
    up to and including the *last* ``-``) and a suffix may end with ``*``
    (``-*``, ``+*``: the *first* ``-`` or ``+`` and all after it).  The suffix
    is looked for in what the prefix left.  Returns (prefix, core, suffix),
    with "" for an affix that is not configured or optional and absent; None
    when a required prefix or suffix is missing (the router is skipped).
    """
    prefix = ""
    if prefixes:
        prefix = _find_prefix(local_part, prefixes)
        if not prefix and not prefix_optional:
            return None
    rest = local_part[len(prefix) :]
    suffix = ""
    if suffixes:
        suffix = _find_suffix(rest, suffixes)
        if not suffix and not suffix_optional:
            return None
    return prefix, rest[: len(rest) - len(suffix)], suffix


def _find_prefix(local_part: str, prefixes: list[str]) -> str:
    lower = local_part.lower()
    for pattern in prefixes:
        if not pattern:
            continue
        if pattern.startswith("*"):
            fixed = pattern[1:].lower()
            pos = lower.rfind(fixed)  # route_check_prefix scans from the right
            if pos >= 0:
                return local_part[: pos + len(fixed)]
        elif lower.startswith(pattern.lower()):
            return local_part[: len(pattern)]
    return ""


def _find_suffix(local_part: str, suffixes: list[str]) -> str:
    lower = local_part.lower()
    for pattern in suffixes:
        if not pattern:
            continue
        if pattern.endswith("*"):
            fixed = pattern[:-1].lower()
            pos = lower.find(fixed)  # route_check_suffix scans from the left
            if pos >= 0:
                return local_part[pos:]
        elif len(local_part) > len(pattern) and lower.endswith(pattern.lower()):
            return local_part[len(local_part) - len(pattern) :]
    return ""
