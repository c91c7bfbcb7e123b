"""The ``${operator:string}`` operators, each as Exim 4.96's expand.c does it.

`operate()` is called with the expander at the ":" after the name.  The
argument is expanded first (also while skipping, so errors in it are
found), then the operator is applied.  Strings are handled as Exim's bytes
(UTF-8, with raw bytes kept by surrogateescape; see textcodecs.py), so
``${length_1:é}`` is one byte of "é", as in Exim.

Taint: every operator's result is tainted when its argument is, hashes
and encodings included (Exim lets a hash of tainted data go untainted; mta
does not, see docs/expansion.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from mta.expand import addresses, arith, ipaddr, textcodecs
from mta.expand.exim_lists import ListReader
from mta.expand.textcodecs import from_bytes, to_bytes
from mta.taint import Tainted, file_name_refusal, like
from mta.values import bounded_int

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mta.expand.expander import Expander

# Exim's two tables: names that contain "_", and the others, whose "_" starts arguments.
UNDERSCORE_OPERATORS = frozenset(
    [
        "from_utf8",
        "local_part",
        "quote_local_part",
        "reverse_ip",
        "time_eval",
        "time_interval",
        "utf8_domain_from_alabel",
        "utf8_domain_to_alabel",
        "utf8_localpart_from_alabel",
        "utf8_localpart_to_alabel",
    ]
)
MAIN_OPERATORS = frozenset(
    [
        "address",
        "addresses",
        "base32",
        "base32d",
        "base62",
        "base62d",
        "base64",
        "base64d",
        "domain",
        "escape",
        "escape8bit",
        "eval",
        "eval10",
        "expand",
        "h",
        "hash",
        "hex2b64",
        "hexquote",
        "ipv6denorm",
        "ipv6norm",
        "l",
        "lc",
        "length",
        "listcount",
        "listnamed",
        "mask",
        "md5",
        "nh",
        "nhash",
        "quote",
        "randint",
        "rfc2047",
        "rfc2047d",
        "rxquote",
        "s",
        "sha1",
        "sha2",
        "sha256",
        "sha3",
        "stat",
        "str2b64",
        "strlen",
        "substr",
        "uc",
        "utf8clean",
    ]
)
_CERT_VARIABLES = frozenset({"tls_in_ourcert", "tls_in_peercert", "tls_out_ourcert", "tls_out_peercert"})
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def ascii_lower(text: str) -> str:
    """C tolower() in the C locale: only A-Z change."""
    return text.translate(_ASCII_LOWER)


def split_name(name: str) -> tuple[str | None, str | None]:
    """(operator, argument) for a name like "sha2_512", "l_3" or "quote_lsearch"."""
    if name in UNDERSCORE_OPERATORS:
        return name, None
    op, underscore, arg = name.partition("_")
    return (op if op in MAIN_OPERATORS else None), (arg if underscore else None)


def operate(ex: Expander, name: str, skipping: bool) -> str:
    op, arg = split_name(name)
    sub: str | None = None
    if op in ("md5", "sha1", "sha256", "base64") and ex.at(1) == "$":
        sub = _certificate_argument(ex, name, skipping)
    if sub is None:
        ex.i += 1  # the ":"
        sub = ex.sub(skipping)
        ex.i += 1  # the "}" (sub() stops only there or fails)
    if op is None:
        raise ex.fail(f'unknown expansion operator "{name}"')
    if skipping:
        return ""
    result = OPERATORS[op](ex, sub, arg, name)
    return like(sub, result) if not isinstance(result, Tainted) else result


def _certificate_argument(ex: Expander, name: str, skipping: bool) -> str | None:
    # Exim lets ${md5:$tls_in_peercert} name a certificate variable unexpanded.
    # mta holds no certificates, so (as Exim with an empty one) the name itself is hashed.
    start = ex.i
    ex.i += 2
    text = ex.sub(skipping, honour_dollar=False)
    if ex.at() != "}":
        raise ex.curly(f"missing '}}' closing cert arg of {name}")
    if text in _CERT_VARIABLES:
        ex.i += 1
        return text
    ex.i = start
    return None


# -- the operators -------------------------------------------------------------------------

OpFunc = Callable[["Expander", str, "str | None", str], str]


def _lc(ex: Expander, sub: str, arg: str | None, name: str) -> str:
    return sub.translate(_ASCII_LOWER)


def _uc(ex: Expander, sub: str, arg: str | None, name: str) -> str:
    return sub.translate(_ASCII_UPPER)


def _encode_base(encode: Callable[[int], str], base: int) -> OpFunc:
    """${base32:} / ${base62:}: a decimal number in Exim's base 32 or base 62."""

    def op(ex: Expander, sub: str, arg: str | None, name: str) -> str:
        number, rest = textcodecs.c_strtoul(sub)
        if rest:
            raise ex.fail(f'argument for base{base} operator is "{sub}", which is not a decimal number')
        return encode(number)

    return op


def _decode_base(digits: str) -> OpFunc:
    """${base32d:} / ${base62d:}: back to decimal (unsigned arithmetic printed signed, as Exim)."""
    base = len(digits)

    def op(ex: Expander, sub: str, arg: str | None, name: str) -> str:
        number = 0
        for ch in sub:
            index = digits.find(ch)
            if index < 0:
                raise ex.fail(f'argument for base{base}d operator is "{sub}", which is not a base {base} number')
            number = (number * base + index) % 2**64
        return str(arith.wrap(number))

    return op


def _expand(ex: Expander, sub: str, arg: str | None, name: str) -> str:
    from mta.errors import ExpansionError

    try:
        return ex.expand_other(sub, skipping=False)
    except ExpansionError as exc:
        raise ExpansionError(f'internal expansion of "{sub}" failed: {exc.message}', forced=exc.forced) from None


def _hash_hex(algorithm: str, upper: bool) -> OpFunc:
    def op(ex: Expander, sub: str, arg: str | None, name: str) -> str:
        import hashlib  # where used: milliseconds of every start-up otherwise

        digest = hashlib.new(algorithm, to_bytes(sub)).hexdigest()
        return digest.upper() if upper else digest

    return op


def _sha2(ex: Expander, sub: str, arg: str | None, name: str) -> str:
    variant = {None: "sha256", "256": "sha256", "384": "sha384", "512": "sha512"}.get(arg)
    if variant is None:
        raise ex.fail("unrecognised sha2 variant")
    import hashlib

    return hashlib.new(variant, to_bytes(sub)).hexdigest().upper()


def _sha3(ex: Expander, sub: str, arg: str | None, name: str) -> str:
    variant = {None: "sha3_256", "224": "sha3_224", "256": "sha3_256", "384": "sha3_384", "512": "sha3_512"}.get(arg)
    if variant is None:
        raise ex.fail("unrecognised sha3 variant")
    import hashlib

    return hashlib.new(variant, to_bytes(sub)).hexdigest().upper()


def _listcount(ex: Expander, sub: str, arg: str | None, name: str) -> str:
    return str(sum(1 for _ in ListReader(sub)))


_LIST_TYPES = {"a": "address", "d": "domain", "h": "host", "l": "localpart"}


def _listnamed(ex: Expander, sub: str, arg: str | None, name: str) -> str:
    return _expand_named_list(ex, sub, arg)


def _expand_named_list(ex: Expander, list_name: str, arg: str | None) -> str:
    """Exim's expand_listnamed(): the list's items as a colon list, nested lists expanded."""
    list_name = list_name[1:] if list_name.startswith("+") else list_name
    if arg is not None and arg[:1] not in _LIST_TYPES:
        raise ex.fail('bad suffix on "list" operator')
    kinds = [_LIST_TYPES[arg[0]]] if arg else ["address", "domain", "host", "localpart"]
    text = None
    if ex.ctx.named_list is not None:
        for kind in kinds:
            text = ex.ctx.named_list(kind, list_name)
            if text is not None:
                break
    if text is None:
        kind_word = f"{_LIST_TYPES[arg[0]]} " if arg else ""
        raise ex.fail(f'"{list_name}" is not a {kind_word}named list')
    reader = ListReader(text)
    out: list[str] = []
    for item in reader:
        if out:
            out.append(" : ")
        sep = chr(reader.sep)
        if item.startswith("+"):
            out.append(_expand_named_list(ex, item, arg))
        elif sep != ":":
            out.append(_requote(item, sep))
        else:
            out.append(item)
    return "".join(out)


def _requote(item: str, sep: str) -> str:
    # An item of a non-colon list, for a colon list: colons doubled, the old separator once.
    out: list[str] = []
    i = 0
    while i < len(item):
        ch = item[i]
        i += 1
        if ch == ":":
            out.append("::")
        elif ch == sep:
            out.append(sep)
            if i < len(item) and item[i] == sep:
                i += 1
        else:
            out.append(ch)
    return "".join(out)


def _mask(ex: Expander, sub: str, arg: str | None, name: str) -> str:
    family, maskoffset = ipaddr.is_ip_address(sub, want_mask=True)
    if family == 0:
        raise ex.fail(f'"{sub}" is not an IP address')
    if maskoffset == 0:
        raise ex.fail(f'missing mask value in "{sub}"')
    mask_text = re.fullmatch(r"[ \t\n\r\f\v]*[-+]?\d+", sub[maskoffset + 1 :])
    mask = bounded_int(mask_text.group(0)) if mask_text else -1
    if mask < 0 or mask > (32 if family == 4 else 128):
        raise ex.fail(f'mask value too big in "{sub}"')
    words = ipaddr.host_mask(ipaddr.host_aton(sub[:maskoffset]), mask)
    if family == 4 or not (arg and arg.startswith("n")):
        return ipaddr.host_nmtoa(words, mask, ".")
    return f"{ipaddr.ipv6_nmtoa(words)}/{mask}"


def _ipv6(ex: Expander, sub: str, arg: str | None, name: str) -> str:
    family, _ = ipaddr.is_ip_address(sub)
    if family == 0:
        raise ex.fail(f'"{sub}" is not an IP address')
    words = ipaddr.host_aton(sub) if family == 6 else [0, 0, 0x0000FFFF, *ipaddr.host_aton(sub)]
    return ipaddr.ipv6_nmtoa(words) if name == "ipv6norm" else ipaddr.host_nmtoa(words, -1, ":")


def _address_part(ex: Expander, sub: str, arg: str | None, name: str) -> str:
    found = addresses.extract_address(sub)
    if found is None:
        return ""
    if name == "domain":
        return found.address[found.domain :] if found.domain > 0 else ""
    if name == "local_part" and found.domain > 0:
        return found.address[: found.domain - 1]
    return found.address


def _addresses(ex: Expander, sub: str, arg: str | None, name: str) -> str:
    sep = ":"
    text = sub.lstrip(" \t\n\r\f\v")
    if text.startswith(">"):
        if len(text) < 2:
            raise ex.fail(f"output separator missing in expanding ${{addresses:{text}}}")
        sep, text = text[1], text[2:]
    out: list[str] = []
    pos = 0
    groups = addresses.GroupState(allow=True)
    while True:
        end = addresses.find_address_end(text, pos)
        found = addresses.extract_address(text[pos:end], groups)
        if found is not None:
            if out and found.address.startswith(sep):
                out.append(" ")
            out.append(found.address.replace(sep, sep + sep))
            out.append(sep)
        if end >= len(text):
            break
        pos = end + 1
    if out:
        out.pop()
    return "".join(out)


def _quote(ex: Expander, sub: str, arg: str | None, name: str) -> str:
    if arg is None:
        return addresses.quote(sub)
    from mta.errors import ExpansionError
    from mta.expand.lookups import quote_for

    lookup_type, _, option = arg.partition("_")
    try:
        quoted = quote_for(lookup_type, sub, option if _ else None)
    except ExpansionError as exc:
        raise ex.fail(exc.message) from None
    if quoted is None:
        raise ex.fail(f'"{option}" unrecognized after "${{quote_{lookup_type}"')
    return quoted


def _quote_local_part(ex: Expander, sub: str, arg: str | None, name: str) -> str:
    return addresses.quote_local_part(sub)


def _rxquote(ex: Expander, sub: str, arg: str | None, name: str) -> str:
    raw = to_bytes(sub)
    return from_bytes(b"".join(bytes([b]) if chr(b).isalnum() and b < 128 else b"\\" + bytes([b]) for b in raw))


def _rfc2047(ex: Expander, sub: str, arg: str | None, name: str) -> str:
    return textcodecs.rfc2047_encode(sub)


def _idna(ex: Expander, sub: str, arg: str | None, name: str) -> str:
    from mta.expand.idna import convert

    try:
        return convert(name, sub)
    except ValueError as exc:
        raise ex.fail(str(exc)) from None


def _eval(ex: Expander, sub: str, arg: str | None, name: str) -> str:
    value, error, consumed = arith.evaluate(sub, decimal=name == "eval10")
    if error is not None:
        raise ex.fail(f'error in expression evaluation: {error} (after processing "{sub[:consumed]}")')
    return str(value)


def _time_eval(ex: Expander, sub: str, arg: str | None, name: str) -> str:
    seconds = arith.readtime(sub)
    if seconds < 0:
        raise ex.fail(f'string "{sub}" is not an Exim time interval in "{name}" operator')
    return str(seconds)


def _time_interval(ex: Expander, sub: str, arg: str | None, name: str) -> str:
    m = re.match(r"[0-9]*", sub)
    assert m is not None
    if m.end() != len(sub):
        raise ex.fail(f'string "{sub}" is not a positive number in "{name}" operator')
    number = (int(sub or "0") + 2**31) % 2**32 - 2**31  # Exim reads it into a C int
    return arith.printtime(number)


def _base64(ex: Expander, sub: str, arg: str | None, name: str) -> str:
    return textcodecs.b64encode(to_bytes(sub))


def _base64d(ex: Expander, sub: str, arg: str | None, name: str) -> str:
    decoded = textcodecs.b64decode(sub)
    if decoded is None:
        raise ex.fail(f'string "{sub}" is not well-formed for "{name}" operator')
    return from_bytes(textcodecs.until_nul(decoded))


def _strlen(ex: Expander, sub: str, arg: str | None, name: str) -> str:
    return str(len(to_bytes(sub)))


def _substr_family(ex: Expander, sub: str, arg: str | None, name: str) -> str:
    from mta.errors import ExpansionError
    from mta.expand.items import compute

    op = name.partition("_")[0]
    if arg is None:
        raise ex.fail(f"missing values after {name}")
    values = [0, -1]
    slot = 0
    if op in ("length", "l"):
        slot, values[1] = 1, 0
    sign = 1
    text = arg
    if op in ("substr", "s") and text.startswith("-"):
        sign, text = -1, text[1:]
    k = 0
    while k < len(text):
        ch = text[k]
        if k and ch == "_" and slot == 0:
            slot, values[1] = 1, 0
            if k + 1 < len(text):
                k += 1
        elif not (ch.isascii() and ch.isdigit()):
            raise ex.fail(f'non-digit after underscore in "{name}"')
        else:
            values[slot] = values[slot] * 10 + int(ch)
            k += 1
    values[0] *= sign
    try:
        return compute(op, sub, values[0], values[1])
    except ExpansionError as exc:
        raise ex.fail(exc.message) from None


def _stat(ex: Expander, sub: str, arg: str | None, name: str) -> str:
    import os
    import stat as stat_module

    refusal = file_name_refusal(sub)
    if refusal is not None:
        raise ex.fail(f'Tainted filename "{sub}" refused in "stat" operator ({refusal})')
    try:
        st = os.stat(sub)
    except OSError as exc:
        raise ex.fail(f"stat({sub}) failed: {exc.strerror}") from None
    mode = st.st_mode
    kind = {
        stat_module.S_IFIFO: "p", stat_module.S_IFCHR: "c", stat_module.S_IFDIR: "d",
        stat_module.S_IFBLK: "b", stat_module.S_IFREG: "-",
    }.get(stat_module.S_IFMT(mode), "?")  # fmt: skip
    perms = stat_module.filemode(mode)[1:]
    return (
        f"mode={mode & 0o77777:04o} smode={kind}{perms} inode={st.st_ino} device={st.st_dev} "
        f"links={st.st_nlink} uid={st.st_uid} gid={st.st_gid} size={st.st_size} "
        f"atime={int(st.st_atime)} mtime={int(st.st_mtime)} ctime={int(st.st_ctime)}"
    )


def _randint(ex: Expander, sub: str, arg: str | None, name: str) -> str:
    import secrets

    value, error = arith.string_integer(sub, True)
    if error is not None:
        raise ex.fail(error)
    if value <= 1:
        return "0"  # Exim's TLS-library random source answers 0 below 2
    return str(secrets.randbelow(min(value, 2**31 - 1)))


def _reverse_ip(ex: Expander, sub: str, arg: str | None, name: str) -> str:
    family, _ = ipaddr.is_ip_address(sub, want_mask=True)
    if family == 0:
        raise ex.fail(f"reverse_ip() not given an IP address [{sub}]")
    return ipaddr.reverse_ip(sub)


def _simple(func: Callable[[str], str]) -> OpFunc:
    def op(ex: Expander, sub: str, arg: str | None, name: str) -> str:
        return func(sub)

    return op


OPERATORS: dict[str, OpFunc] = {
    "address": _address_part,
    "addresses": _addresses,
    "base32": _encode_base(textcodecs.base32, 32),
    "base32d": _decode_base(textcodecs.BASE32_CHARS),
    "base62": _encode_base(textcodecs.base62, 62),
    "base62d": _decode_base(textcodecs.BASE62_CHARS),
    "base64": _base64,
    "base64d": _base64d,
    "domain": _address_part,
    "escape": _simple(textcodecs.string_printing),
    "escape8bit": _simple(textcodecs.escape8bit),
    "eval": _eval,
    "eval10": _eval,
    "expand": _expand,
    "from_utf8": _simple(textcodecs.from_utf8),
    "h": _substr_family,
    "hash": _substr_family,
    "hex2b64": _simple(textcodecs.hex2b64),
    "hexquote": _simple(textcodecs.hexquote),
    "ipv6denorm": _ipv6,
    "ipv6norm": _ipv6,
    "l": _substr_family,
    "lc": _lc,
    "length": _substr_family,
    "listcount": _listcount,
    "listnamed": _listnamed,
    "local_part": _address_part,
    "mask": _mask,
    "md5": _hash_hex("md5", upper=False),
    "nh": _substr_family,
    "nhash": _substr_family,
    "quote": _quote,
    "quote_local_part": _quote_local_part,
    "randint": _randint,
    "reverse_ip": _reverse_ip,
    "rfc2047": _rfc2047,
    "rfc2047d": _simple(textcodecs.rfc2047_decode),
    "rxquote": _rxquote,
    "s": _substr_family,
    "sha1": _hash_hex("sha1", upper=True),
    "sha2": _sha2,
    "sha256": _sha2,
    "sha3": _sha3,
    "stat": _stat,
    "str2b64": _base64,
    "strlen": _strlen,
    "substr": _substr_family,
    "time_eval": _time_eval,
    "time_interval": _time_interval,
    "uc": _uc,
    "utf8_domain_from_alabel": _idna,
    "utf8_domain_to_alabel": _idna,
    "utf8_localpart_from_alabel": _idna,
    "utf8_localpart_to_alabel": _idna,
    "utf8clean": _simple(textcodecs.utf8clean),
}
