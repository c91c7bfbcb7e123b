"""Byte-level codecs of the expansion language, each as Exim 4.96 does it.

Exim's strings are bytes; mta's are text.  Text here is UTF-8 where the
bytes are valid UTF-8, and other bytes are kept as Python's
"surrogateescape" code points (U+DC80..U+DCFF), so that an operator which
makes raw bytes (``${from_utf8:}``, ``${base64d:}``, ``\\351``) and one that
reads them (``${escape:}``, ``${hexquote:}``) see the same bytes Exim would,
and ``mta -be`` prints them unchanged.  `to_bytes` / `from_bytes` convert.
"""

from __future__ import annotations

from mta.errors import ExpansionError
from mta.lazy_pattern import lazy_compile
from mta.values import bounded_int

_HEX = "0123456789abcdef"
BASE32_CHARS = "abcdefghijklmnopqrstuvwxyz234567"
BASE62_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE = {c: i for i, c in enumerate(_B64)}
_SURROGATE = lazy_compile("[\udc80-\udcff]")
_C_NUMBER = lazy_compile(r"[ \t\n\r\f\v]*([-+]?)(\d*)")  # what C's strtoul reads
_CONTROL_NAMES = {10: "n", 13: "r", 8: "b", 11: "v", 12: "f"}
_C_SPACE = b" \t\n\r\f\v"


def to_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def from_bytes(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def normalise(text: str) -> str:
    """Re-read escaped bytes that together form UTF-8 ("\\303\\251" is "é")."""
    if text.isascii() or _SURROGATE.search(text) is None:  # (isascii: no `re` for most texts)
        return text
    return from_bytes(to_bytes(text))


# -- base64, as Exim's base64.c --------------------------------------------------------


def b64encode(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode("ascii")


def b64decode(code: str) -> bytes | None:
    """Exim's b64decode(): white space anywhere is skipped; padding is required."""
    data = [c for c in code if c not in " \t\n\r\f\v"]
    out = bytearray()
    i = 0

    def value(k: int) -> int:
        if k >= len(data):
            return -1
        return _B64_VALUE.get(data[k], -1)

    while i < len(data):
        x, y = value(i), value(i + 1)
        if x < 0 or y < 0:
            return None
        out.append(((x << 2) | (y >> 4)) & 0xFF)
        if i + 2 < len(data) and data[i + 2] == "=":
            if data[i + 3 : i + 4] != ["="] or i + 4 != len(data):
                return None
            break
        x = value(i + 2)
        if x < 0:
            return None
        out.append(((y << 4) | (x >> 2)) & 0xFF)
        if i + 3 < len(data) and data[i + 3] == "=":
            if i + 4 != len(data):
                return None
            break
        y = value(i + 3)
        if y < 0:
            return None
        out.append(((x << 6) | y) & 0xFF)
        i += 4
    return bytes(out)


def until_nul(raw: bytes) -> bytes:
    """Exim adds decoded bytes with string_cat(): a NUL ends them."""
    end = raw.find(b"\0")
    return raw if end < 0 else raw[:end]


def cat_file(raw: bytes, eol: str | None) -> str:
    """Exim's cat_file() (${readfile}, ${run}, ${readsocket} output), byte for byte.

    It reads with fgets() into a 1024-byte buffer and appends each piece as a C
    string: a NUL drops the rest of its piece, newline included; with `eol`,
    the newline that ends a piece is replaced by `eol`.
    """
    out: list[bytes] = []
    replacement = to_bytes(eol) if eol is not None else None
    for line in raw.splitlines(keepends=True):
        for k in range(0, len(line), 1023):
            piece = line[k : k + 1023]
            nul = piece.find(b"\0")
            if nul >= 0:
                out.append(piece[:nul])
            elif replacement is not None and piece.endswith(b"\n"):
                out.append(piece[:-1] + replacement)
            else:
                out.append(piece)
    return from_bytes(b"".join(out))


# -- base32 / base62 -------------------------------------------------------------------


def base32(number: int) -> str:
    out = []
    while number:
        out.append(BASE32_CHARS[number & 0x1F])
        number >>= 5
    return "".join(reversed(out))


def base62(number: int) -> str:
    """Exim's string_base62(): always six characters."""
    out = []
    for _ in range(6):
        out.append(BASE62_CHARS[number % 62])
        number //= 62
    return "".join(reversed(out))


def c_strtoul(text: str) -> tuple[int, str]:
    """C strtoul(text, &end, 10) for the base operators: (value, rest)."""
    m = _C_NUMBER.match(text)
    assert m is not None
    if not m.group(2):
        return 0, text
    value = bounded_int(m.group(2))
    if value > 2**64 - 1:
        value = 2**64 - 1
    elif m.group(1) == "-":
        value = (-value) % 2**64
    return value, text[m.end() :]


# -- printing --------------------------------------------------------------------------


def string_printing(text: str, tabs: bool = False, spaces: bool = False) -> str:
    """Exim's string_printing2(): non-printing bytes as escapes (tab is printing)."""
    raw = to_bytes(text)
    if all(32 <= b <= 126 or b == 9 for b in raw) and not (tabs and 9 in raw) and not (spaces and 32 in raw):
        return text
    out = []
    for b in raw:
        if (32 <= b <= 126 or b == 9) and not (tabs and b == 9) and not (spaces and b == 32):
            out.append(chr(b))
        elif b == 9:
            out.append("\\t")
        elif b in _CONTROL_NAMES:
            out.append("\\" + _CONTROL_NAMES[b])
        else:
            out.append(f"\\{b:03o}")
    return "".join(out)


def escape8bit(text: str) -> str:
    return "".join(chr(b) if b < 127 and b != 92 else f"\\{b:03o}" for b in to_bytes(text))


def hexquote(text: str) -> str:
    return "".join(chr(b) if 0x21 <= b <= 0x7E else f"\\x{b:02x}" for b in to_bytes(text))


def hex2b64(text: str) -> str:
    for ch in text:
        if ch not in "0123456789abcdefABCDEF":
            raise ExpansionError(f'"{text}" is not a hex string')
    if len(text) % 2:
        raise ExpansionError(f'"{text}" contains an odd number of characters')
    return b64encode(bytes.fromhex(text))


def from_utf8(text: str) -> str:
    """UTF-8 to ISO-8859-1; characters above 255 become "_" (Exim's GETUTF8INC loop)."""
    raw = to_bytes(text)
    out = bytearray()
    i = 0
    while i < len(raw):
        c = raw[i]
        i += 1
        if c & 0xC0 == 0xC0:
            extra = _UTF8_EXTRA[c & 0x3F]
            shift = 6 * extra
            c = (c & _UTF8_MASK[extra]) << shift
            while extra > 0 and i < len(raw):
                extra -= 1
                shift -= 6
                c |= (raw[i] & 0x3F) << shift
                i += 1
        out.append(c if c <= 255 else ord("_"))
    return from_bytes(bytes(out))


_UTF8_EXTRA = [1] * 32 + [2] * 16 + [3] * 8 + [4] * 4 + [5] * 4
_UTF8_MASK = [0xFF, 0x1F, 0x0F, 0x07, 0x03, 0x01]


def utf8clean(text: str) -> str:
    """Exim's ${utf8clean:}: each invalid UTF-8 sequence becomes "?"."""
    raw = to_bytes(text)
    out = bytearray()
    seq = bytearray()
    left = 0
    codepoint = 0
    for c in raw:
        complete = 0
        if left:
            if c & 0xC0 != 0x80:
                complete = 1
            else:
                codepoint = (codepoint << 6) | (c & 0x3F)
                seq.append(c)
                left -= 1
                if left == 0:
                    if codepoint > 0x10FFFF:
                        complete = -1
                    else:
                        out += seq
                        seq = bytearray()
        else:
            if not c & 0x80:
                out.append(c)
                continue
            if c & 0xE0 == 0xC0:
                if c in (0xC0, 0xC1):
                    complete = -1
                else:
                    left, codepoint = 1, c & 0x1F
            elif c & 0xF0 == 0xE0:
                left, codepoint = 2, c & 0x0F
            elif c & 0xF8 == 0xF0:
                left, codepoint = 3, c & 0x07
            else:
                complete = -1
            seq = bytearray([c])
        if complete:
            left = 0
            seq = bytearray()
            out.append(ord("?"))
        if complete == 1 and not c & 0x80:
            out.append(c)
    if left:
        out.append(ord("?"))
    return from_bytes(bytes(out))


# -- RFC 2047 --------------------------------------------------------------------------

_ENCODED_WORD_SPECIALS = set(b'?=()<>@,;:\\".[]_')


def rfc2047_encode(text: str, charset: str = "UTF-8") -> str:
    """Exim's parse_quote_2047() without folding: Q-encode if anything needs it."""
    raw = to_bytes(text)
    header = f"=?{charset}?Q?"
    out = [header]
    line = len(header)
    first_byte = False
    coded = False
    length = len(header)
    for ch in raw:
        if length - line > 67 and not first_byte:
            out.append("?= ")
            length += 3
            line = length
            out.append(header)
            length += len(header)
        if ch < 33 or ch > 126 or ch in _ENCODED_WORD_SPECIALS:
            if ch == 32:
                out.append("_")
                length += 1
                first_byte = False
            else:
                out.append(f"={ch:02X}")
                length += 3
                coded = True
                first_byte = not first_byte
        else:
            out.append(chr(ch))
            length += 1
            first_byte = False
    if not coded:
        return text
    return "".join(out) + "?="


def _qp_decode(data: str) -> bytes | None:
    raw = to_bytes(data)
    out = bytearray()
    i = 0
    while i < len(raw):
        ch = raw[i]
        i += 1
        if ch == ord("_"):
            out.append(32)
        elif ch == ord("="):
            pair = raw[i : i + 2]
            if len(pair) < 2 or any(chr(b) not in "0123456789abcdefABCDEF" for b in pair):
                return None
            out.append(int(pair, 16))
            i += 2
        elif ch in (32, 9):
            return None
        else:
            out.append(ch)
    return bytes(out)


def _next_mime_word(text: str, pos: int, lencheck: bool) -> tuple[int, int, str, bytes] | None:
    """Exim's decode_mimeword(): (start, end after "?=", charset, decoded bytes) or None."""
    while True:
        start = text.find("=?", pos)
        if start < 0:
            return None
        q1 = text.find("?", start + 2)
        q2 = text.find("?", q1 + 1) if q1 >= 0 else -1
        end = text.find("?=", q2 + 1) if q2 >= 0 else -1
        if q1 < 0 or q2 < 0 or end < 0:
            return None
        pos = start + 2
        if (lencheck and end - start > 73) or q2 - q1 != 2:
            continue
        encoding = text[q1 + 1].upper()
        data = text[q2 + 1 : end]
        decoded = b64decode(data) if encoding == "B" else _qp_decode(data) if encoding == "Q" else None
        if decoded is not None:
            return start, end + 2, text[start + 2 : q1], decoded


def rfc2047_decode(text: str, convert: bool = True, lenient: bool = False) -> str:
    """Exim's rfc2047_decode2() with check_rfc2047_length on.

    With `convert`, each word's bytes are translated from its charset to
    UTF-8 (headers_charset); a charset Python does not know raises
    ExpansionError unless `lenient` (then the bytes are kept, as Exim keeps
    them after an iconv failure).  Without `convert` ($bh_) the bytes stay as
    they were encoded.  A NUL byte becomes "?".
    """
    found = _next_mime_word(text, 0, True)
    if found is None:
        return text
    out: list[str] = []
    pos = 0
    while found is not None:
        start, end, charset, decoded = found
        out.append(text[pos:start])
        decoded = decoded.replace(b"\0", b"?")
        out.append(_convert(decoded, charset, lenient) if convert else from_bytes(decoded))
        pos = end
        found = _next_mime_word(text, pos, True)
        if found is not None:
            gap = text[pos : found[0]]
            if not gap.strip(" \t\n\r\f\v"):
                pos = found[0]
    out.append(text[pos:])
    return "".join(out)


def _convert(decoded: bytes, charset: str, lenient: bool) -> str:
    import codecs

    try:
        codecs.lookup(charset)
    except LookupError:
        if lenient:
            return from_bytes(decoded)
        raise ExpansionError(
            f'iconv_open("UTF-8", "{charset}") failed: Invalid argument (maybe unsupported conversion)'
        ) from None
    try:
        return decoded.decode(charset)
    except UnicodeDecodeError:
        return from_bytes(decoded)
