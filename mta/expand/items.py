"""The ``${name{arg}...}`` items, each a port of its case in Exim 4.96's expand.c.

A handler is called with the position just after the item's name and
returns the text to insert ("" while skipping); it reads up to and
including the item's closing brace.  The list items live in listops.py,
${run} and ${readsocket} in external.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from mta.errors import ExpansionError
from mta.expand import conditions, external, listops, signing
from mta.expand.lookups import LookupDeferError, find, parse_search_type
from mta.expand.textcodecs import cat_file, from_bytes, string_printing, to_bytes
from mta.taint import Tainted, concat, file_name_refusal, like
from mta.values import bounded_int

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mta.expand.expander import Expander

Handler = Callable[["Expander", str, bool], str]
_C_SPACE = " \t\n\r\f\v"


def _refused(facility: str) -> Handler:
    def handler(ex: Expander, name: str, skipping: bool) -> str:
        raise ex.fail(f'"${{{facility}" encountered, but this facility is not included in this binary')

    return handler


def item_acl(ex: Expander, name: str, skipping: bool) -> str:
    # mta has no ACLs an expansion could call (see docs/expansion.md).
    subs = ex.read_subs(10, 1, skipping, True, name)
    if skipping:
        return ""
    raise ex.fail(f'ERROR from acl "{subs[0]}"')


def item_authresults(ex: Expander, name: str, skipping: bool) -> str:
    """Exim's ${authresults}: iprev and smtp auth results (mta checks no SPF, DKIM or DMARC)."""
    (sysname,) = ex.read_subs(1, 1, skipping, True, name)[:1]
    if skipping:
        return ""

    def var(key: str) -> str:
        return ex.find_variable(key, False) or ""

    out = [f"Authentication-Results: {sysname}"]
    if var("sender_host_name"):
        out.append(f";\n\tiprev=pass ({var('sender_host_name')})")
    elif var("host_lookup_deferred") not in ("", "0"):
        out.append(";\n\tiprev=temperror")
    elif var("host_lookup_failed") not in ("", "0"):
        out.append(";\n\tiprev=fail")
    if len(out) > 1 and var("sender_host_address"):
        out.append(f" smtp.remote-ip={var('sender_host_address')}")
    mechanism = var("sender_host_authenticated")
    if mechanism:
        auth_id = var("authenticated_id")
        if mechanism == "tls":
            out.append(
                f";\n\tauth=pass (tls) x509.auth={auth_id}" if auth_id else ";\n\tauth=pass (tls) reason=x509.auth"
            )
        else:
            out.append(
                f";\n\tauth=pass ({mechanism}) smtp.auth={auth_id}"
                if auth_id
                else f";\n\tauth=pass ({mechanism}, no id saved)"
            )
        if var("authenticated_sender"):
            out.append(f" smtp.mailfrom={var('authenticated_sender')}")
    return concat(out)


def item_certextract(ex: Expander, name: str, skipping: bool) -> str:
    """${certextract{field}{$tls_in_peercert}...}: mta keeps no certificates, so never found."""
    from mta.expand.variables import KNOWN_VARIABLES

    saved_value = ex.lookup_value
    saved_n = ex.nstrings
    if ex.skip_white() != "{":
        raise ex.curly("missing '{' for field arg of certextract")
    ex.i += 1
    ex.sub(skipping)
    if ex.take() != "}":
        raise ex.curly("missing '}' closing field arg of certextract")
    if ex.skip_white() != "{":
        raise ex.curly("missing '{' for cert variable arg of certextract")
    ex.i += 1
    if ex.at() != "$":
        raise ex.fail('second argument of "certextract" must be a certificate variable')
    ex.i += 1
    variable = ex.sub(skipping, honour_dollar=False)
    if ex.take() != "}":
        raise ex.curly("missing '}' closing cert variable arg of certextract")
    ex.lookup_value = None
    if not skipping:
        if variable not in KNOWN_VARIABLES:
            raise ex.fail(f'no variable named "{variable}"')
        if not variable.endswith("cert"):
            raise ex.fail(f'"{variable}" is not a certificate')
    out = ex.yesno(skipping, False, saved_value, "certextract")
    ex.nstrings = saved_n
    return out


def item_if(ex: Expander, name: str, skipping: bool) -> str:
    saved_n = ex.nstrings
    saved_value = ex.lookup_value
    ex.skip_white()
    truth = conditions.evaluate(ex, skipping)
    out = ex.yesno(skipping, truth, ex.lookup_value, "if")
    ex.lookup_value = saved_value
    ex.nstrings = saved_n
    return out


def item_imapfolder(ex: Expander, name: str, skipping: bool) -> str:
    folder, sep, specials = ex.read_subs(3, 1, skipping, True, name)
    if sep is None:
        sep, specials = "/", None
    elif len(sep) != 1:
        raise ex.fail(f'IMAP folder separator must be one character, found "{sep}"')
    if skipping:
        return ""
    assert folder is not None
    try:
        return like(folder, imap_utf7_encode(folder, sep, specials or ""))
    except ValueError as exc:
        raise ex.fail(str(exc)) from None


def item_lookup(ex: Expander, name: str, skipping: bool) -> str:
    if "lookup" in ex.ctx.policy.forbid:
        raise ex.fail("lookup expansions are not permitted")
    saved_value = ex.lookup_value
    saved_n = ex.nstrings
    key: str | None = None
    if ex.skip_white() == "{":
        ex.i += 1
        key = ex.sub(skipping)
        if ex.take() != "}":
            raise ex.curly("missing '}' after lookup key")
        ex.skip_white()
    if not (ex.at().isascii() and ex.at().isalpha()):
        raise ex.fail("missing lookup type")
    start = ex.i
    while ex.at() and ex.at() != "{" and ex.at() not in _C_SPACE:
        ex.i += 1
    search_type = ex.s[start : ex.i]
    ex.skip_white()
    try:
        kind = parse_search_type(search_type)
    except ExpansionError as exc:
        raise ex.fail(exc.message) from None
    if kind.query_style and key is not None:
        raise ex.fail(f'a single key was given for lookup type "{search_type}", which is not a single-key lookup type')
    if not kind.query_style and key is None:
        raise ex.fail(f'missing {{key}} for single-key "{search_type}" lookup')
    if ex.at() != "{":
        raise ex.curly("missing '{' for lookup file-or-query arg")
    ex.i += 1
    argument = ex.sub(skipping)
    if ex.take() != "}":
        raise ex.curly("missing '}' closing lookup file-or-query arg")
    ex.skip_white()
    if skipping:
        ex.lookup_value = None
    else:
        try:
            if kind.query_style:
                ex.lookup_value, captures = find(search_type, "", argument.lstrip(_C_SPACE))
            else:
                refusal = file_name_refusal(argument)
                if refusal is not None:
                    raise ex.fail(f'Tainted filename "{argument}" refused for {search_type} lookup ({refusal})')
                assert key is not None
                ex.lookup_value, captures = find(search_type, argument, key)
        except LookupDeferError as exc:
            if exc.opening:
                raise
            raise LookupDeferError(
                f'lookup of "{string_printing(key or argument, tabs=True)}" gave DEFER: {exc.message}',
                exc.path,
                exc.errno,
            ) from None
        except ExpansionError as exc:
            raise ex.fail(exc.message) from None
        if captures:
            # A partial or default match sets $1 (the wild part) and $2 (the fixed part).
            ex.nstrings = [ex.nstrings[0] if ex.nstrings else "", *captures]
    out = ex.yesno(skipping, ex.lookup_value is not None, saved_value, "lookup")
    ex.nstrings = saved_n
    return out


def item_readfile(ex: Expander, name: str, skipping: bool) -> str:
    if "readfile" in ex.ctx.policy.forbid:
        raise ex.fail("file insertions are not permitted")
    path, eol = ex.read_subs(2, 1, skipping, True, name)
    if skipping:
        return ""
    assert path is not None
    refusal = file_name_refusal(path)
    if refusal is not None:
        raise ex.fail(f'Tainted filename "{path}" refused in "readfile" item ({refusal})')
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ex.fail(f"failed to open {path}: {exc.strerror}") from None
    content = cat_file(raw, eol)
    return Tainted(content) if isinstance(path, Tainted) else content


def item_tr(ex: Expander, name: str, skipping: bool) -> str:
    subject, source, target = ex.read_subs(3, 3, skipping, True, name)
    if skipping:
        return ""
    assert subject is not None and source is not None and target is not None
    if not target:
        return subject
    # Bytes, as Exim: each byte of the subject found in `source` (its last place there)
    # becomes the byte of `target` at that place, or target's last byte.
    wanted = to_bytes(target)
    table = {byte: wanted[min(k, len(wanted) - 1)] for k, byte in enumerate(to_bytes(source))}
    return like(subject, from_bytes(bytes(table.get(byte, byte) for byte in to_bytes(subject))))


def item_substr_family(ex: Expander, name: str, skipping: bool) -> str:
    """${hash{}{}{}}, ${length{}{}}, ${nhash{}{}{}}, ${substr{}{}{}} with braced numbers."""
    subs = ex.read_subs(2 if name == "length" else 3, 2, skipping, True, name)
    if len(subs) == 2 or subs[2] is None:
        # Two arguments: the string goes last; ${length{n}{s}} is ${substr{0}{n}{s}}.
        subs = [None, subs[0], subs[1]] if name == "length" else [subs[0], None, subs[1]]
    values = [0, -1]
    for k in (0, 1):
        text = subs[k]
        if text is None:
            continue
        if text == "":
            values[k] = 0  # strtol() of nothing: 0, and nothing left over (also what skipping gives)
            continue
        m = re.fullmatch(r"[ \t\n\r\f\v]*[-+]?\d+", text)
        if m is None or (k != 0 and bounded_int(text) < 0):
            raise ex.fail(f'"{text}" is not a{" positive" if k else ""} number (in "{name}" expansion)')
        values[k] = bounded_int(text)
    subject = subs[2]
    assert subject is not None
    try:
        # Computed also in a branch not taken, as Exim does (so "hash count too big" shows there).
        result = compute(name, subject, values[0], values[1])
    except ExpansionError as exc:
        raise ex.fail(exc.message) from None
    return "" if skipping else like(subject, result)


def compute(name: str, subject: str, value1: int, value2: int) -> str:
    """The shared work of the ${hash}, ${nhash}, ${length}, ${substr} items and operators.

    Lengths and offsets count bytes of the UTF-8 text, as Exim's do.
    """
    if name in ("hash", "h"):
        return signing.compute_hash(subject, value1, value2)
    if name in ("nhash", "nh"):
        return signing.compute_nhash(subject, value1, value2)
    raw = to_bytes(subject).decode("latin-1")
    return from_bytes(extract_substr(raw, value1, value2).encode("latin-1"))


def extract_substr(subject: str, start: int, length: int) -> str:
    """Exim's extract_substr(); a negative `length` means "unset"."""
    size = len(subject)
    if start < 0:
        start += size
        if start < 0:
            length = max(0, length + start)
            start = 0
        elif length < 0:
            length, start = start, 0
    else:
        if start > size:
            start, length = size, 0
        elif length < 0:
            length = size
    if start + length > size:
        length = size - start
    return subject[start : start + length]


def item_hmac(ex: Expander, name: str, skipping: bool) -> str:
    algorithm, key, text = ex.read_subs(3, 3, skipping, True, name)
    if skipping:
        return ""
    assert algorithm is not None and key is not None and text is not None
    try:
        digest = signing.hmac_hex(algorithm, key, text)
    except ExpansionError as exc:
        raise ex.fail(exc.message) from None
    return Tainted(digest) if isinstance(key, Tainted) or isinstance(text, Tainted) else digest


def item_sg(ex: Expander, name: str, skipping: bool) -> str:
    saved_n = ex.nstrings
    subject, pattern, replacement = ex.read_subs(3, 3, skipping, True, name)
    assert subject is not None and pattern is not None and replacement is not None
    # Exim compiles the pattern even in a branch not taken (so its errors are errors there too).
    regex = conditions.compile_regex(ex, pattern, '"sg" item')
    if skipping:
        return ""
    raw = to_bytes(subject)
    out: list[bytes] = []
    pos = 0
    tainted = isinstance(subject, Tainted)
    try:
        for m in regex.finditer(raw):
            out.append(raw[pos : m.start()])
            ex.nstrings = conditions.captures_of(m, subject)
            inserted = ex.expand_other(replacement, skipping=False)
            tainted = tainted or isinstance(inserted, Tainted)
            out.append(to_bytes(inserted))
            pos = m.end()
        out.append(raw[pos:])
    finally:
        ex.nstrings = saved_n
    result = from_bytes(b"".join(out))
    return Tainted(result) if tainted else result


def item_extract(ex: Expander, name: str, skipping: bool) -> str:
    from mta.expand import extract

    return extract.item_extract(ex, name, skipping)


def item_listextract(ex: Expander, name: str, skipping: bool) -> str:
    from mta.expand import extract

    return extract.item_listextract(ex, name, skipping)


def item_listquote(ex: Expander, name: str, skipping: bool) -> str:
    sep, text = ex.read_subs(2, 2, skipping, True, name)
    if skipping:
        return ""
    assert sep is not None and text is not None
    if not text:
        return " "
    if not sep:
        return text
    return like(text, text.replace(sep[0], sep[0] * 2))


def item_env(ex: Expander, name: str, skipping: bool) -> str:
    saved_value = ex.lookup_value
    if ex.skip_white() != "{":
        raise ex.fail()
    ex.i += 1
    key = ex.sub(skipping)
    if ex.take() != "}":
        raise ex.curly("missing '}' for name arg of env")
    ex.lookup_value = ex.ctx.environment.get(key) if not skipping else None
    return ex.yesno(skipping, ex.lookup_value is not None, saved_value, "env")


def item_prvs(ex: Expander, name: str, skipping: bool) -> str:
    address, key, key_num = ex.read_subs(3, 2, skipping, True, name)
    if skipping:
        return ""
    assert address is not None and key is not None
    at = address.rfind("@")
    if at <= 0 or at == len(address) - 1:
        raise ex.fail("prvs first argument must be a qualified email address")
    if key_num is not None and not re.fullmatch(r"\d", key_num):
        raise ex.fail("prvs third argument must be a single digit")
    day = signing.prvs_daystamp(7)
    digest = signing.prvs_hmac(address, key, key_num, day)
    if digest is None:
        raise ex.fail("prvs hmac-sha1 conversion failed")
    return like(address, f"prvs={key_num or '0'}{day}{digest}={address[:at]}@{address[at + 1 :]}")


def item_prvscheck(ex: Expander, name: str, skipping: bool) -> str:
    for variable in ("prvscheck_result", "prvscheck_address", "prvscheck_keynum"):
        ex.extra[variable] = None
    (address,) = ex.read_subs(1, 1, skipping, False, name)[:1]
    assert address is not None
    m = signing.PRVS_PATTERN.match(address)
    if m is None:
        ex.read_subs(2, 1, skipping, True, name)
        return ""
    ex.nstrings = [m.group(0), *m.groups()]
    key_num, daystamp, digest, local_part, domain = m.groups()
    checked = like(address, f"{local_part}@{domain}")
    ex.extra["prvscheck_address"] = checked
    ex.extra["prvscheck_keynum"] = key_num
    (key,) = ex.read_subs(1, 1, skipping, False, name)[:1]
    assert key is not None
    own = signing.prvs_hmac(checked, key, key_num, daystamp)
    if own is None:
        raise ex.fail("hmac-sha1 conversion failed")
    if own == digest and not signing.prvs_expired(daystamp):
        ex.extra["prvscheck_result"] = "1"
    (result,) = ex.read_subs(1, 0, skipping, True, name)[:1]
    ex.extra["prvscheck_address"] = None
    ex.extra["prvscheck_keynum"] = None
    if skipping:
        return ""
    return result if result else checked


def item_srs_encode(ex: Expander, name: str, skipping: bool) -> str:
    from mta.expand.addresses import extract_address

    secret, return_path, domain = ex.read_subs(3, 3, skipping, True, name)
    if skipping or not return_path:
        return ""
    assert secret is not None and domain is not None
    found = extract_address(return_path)
    if found is None:
        raise ex.fail(ex.msg or "failed to parse return path")
    address = found.address
    local = address[: found.domain - 1] if found.domain > 0 else address
    quoted = '"' in local
    if quoted:
        local = local.replace('"', "")
    encoded = (
        f"SRS0={signing.srs_checksum(secret, return_path.lower())}={signing.srs_timestamp()}="
        f"{address[found.domain :] if found.domain > 0 else ''}={local}"
    )
    if quoted:
        encoded = f'"{encoded}"'
    return like(return_path, f"{encoded}@{domain}")


_ICONV_EILSEQ = "Invalid or incomplete multibyte or wide character"  # glibc's strerror(EILSEQ)


def imap_utf7_encode(folder: str, sep: str, specials: str) -> str:
    """Exim's imap_utf7_encode() (RFC 3501 modified UTF-7, sep -> ".")."""
    body = folder[1:] if folder[:1] == sep else folder
    if not any(ord(c) >= 0x7F or ord(c) < 0x20 or c in "./&" or c == sep or c in specials for c in body):
        return body
    out: list[str] = []
    pending = bytearray()
    last_sep = False

    def flush() -> None:
        if pending:
            import base64

            out.append("&" + base64.b64encode(bytes(pending)).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in body:
        if ord(ch) >= 0x7F or ord(ch) < 0x20 or (ch in specials and ch != sep):
            last_sep = False
            if 0xDC80 <= ord(ch) <= 0xDCFF:  # a byte that is not UTF-8 (see textcodecs)
                raise ValueError(f"imapfolder: iconv() failed to convert from UTF-8: {_ICONV_EILSEQ}")
            pending += ch.encode("utf-16-be")
        elif ch not in "./" or ch == sep:
            flush()
            if ch == sep:
                if not last_sep:
                    out.append(".")
                    last_sep = True
            else:
                out.append(ch + ("-" if ch == "&" else ""))
                last_sep = False
        else:
            raise ValueError(f"imapfolder: illegal character '{ch}'")
    flush()
    text = "".join(out)
    return text[:-1] if text.endswith(".") else text


ITEMS: dict[str, Handler] = {
    "acl": item_acl,
    "authresults": item_authresults,
    "certextract": item_certextract,
    "dlfunc": _refused("dlfunc"),
    "env": item_env,
    "extract": item_extract,
    "filter": listops.item_filter_map_reduce,
    "hash": item_substr_family,
    "hmac": item_hmac,
    "if": item_if,
    "imapfolder": item_imapfolder,
    "length": item_substr_family,
    "listextract": item_listextract,
    "listquote": item_listquote,
    "lookup": item_lookup,
    "map": listops.item_filter_map_reduce,
    "nhash": item_substr_family,
    "perl": _refused("perl"),
    "prvs": item_prvs,
    "prvscheck": item_prvscheck,
    "readfile": item_readfile,
    "readsocket": external.item_readsocket,
    "reduce": listops.item_filter_map_reduce,
    "run": external.item_run,
    "sg": item_sg,
    "sort": listops.item_sort,
    "srs_encode": item_srs_encode,
    "substr": item_substr_family,
    "tr": item_tr,
}

__all__ = ["ITEMS", "compute", "extract_substr"]
