"""The conditions of ``${if ...}`` (and of ${filter}, forall, forany), as Exim 4.96.

`evaluate(ex, skipping)` is Exim's eval_condition(): it reads one condition
at the expander's position and returns its truth (meaningless while
skipping, when nothing is computed, looked at or matched, but every part is
still read so that errors are found).
"""

from __future__ import annotations

import functools
import os
import re
import warnings

from mta.errors import ExpansionError, MtaError
from mta.expand import signing
from mta.expand.arith import string_integer
from mta.expand.exim_lists import ListReader
from mta.expand.failures import CurlyError
from mta.expand.ipaddr import is_ip_address
from mta.expand.textcodecs import from_bytes, to_bytes
from mta.taint import Tainted, file_name_refusal, is_tainted
from mta.values import bounded_int

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mta.expand.expander import Expander

# Conditions with two braced arguments, with one, and the rest (Exim's cond_table).
_NUMERIC = frozenset({"<", "<=", "=", "==", ">", ">="})
_LEXICAL = frozenset({"lt", "lti", "le", "lei", "eq", "eqi", "gt", "gti", "ge", "gei"})
_LIST_KINDS = {
    "match_domain": "domain",
    "match_address": "address",
    "match_local_part": "localpart",
    "match_ip": "host",
}
_TWO_ARGS = _NUMERIC | _LEXICAL | frozenset({"crypteq", "inlist", "inlisti", "match", *_LIST_KINDS})
_ONE_ARG = frozenset({"exists", "isip", "isip4", "isip6", "pam", "radius", "ldapauth", "pwcheck"})
_FOR_MANY = frozenset(f"{kind}{json}" for kind in ("forall", "forany") for json in ("", "_json", "_jsons"))
CONDITION_NAMES = (
    _TWO_ARGS
    | _ONE_ARG
    | _FOR_MANY
    | frozenset({"acl", "and", "or", "bool", "bool_lax", "def", "first_delivery", "queue_running"})
    | frozenset({"inbound_srs", "saslauthd"})
)
_NOT_COMPILED = frozenset({"pam", "radius", "ldapauth", "pwcheck"})
_C_SPACE = " \t\n\r\f\v"


def identify_operator(text: str, pos: int = 0) -> str | None:
    """The condition name at `pos` of `text` (Exim's identify_operator), or None if none."""
    if text[pos : pos + 1] in ("=", ">", "<") and text[pos : pos + 1]:
        return text[pos : pos + 2] if text[pos + 1 : pos + 2] == "=" else text[pos]
    end = pos
    while end < len(text) and ((text[end].isascii() and text[end].isalnum()) or text[end] == "_"):
        end += 1
    return text[pos:end][:255] or None


@functools.lru_cache(maxsize=512)
def _compile(pattern: str) -> re.Pattern[bytes]:
    # Exim compiles with no PCRE2_UTF: patterns and subjects are bytes ("." is one
    # byte of "é", \w and (?i) are ASCII), so mta matches bytes too.  Python's
    # FutureWarnings about PCRE-valid patterns ("[[") would only clutter stderr.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return re.compile(to_bytes(pattern))


def compile_regex(ex: Expander, pattern: str, where: str) -> re.Pattern[bytes]:
    """Compile a configuration regex; a tainted one is refused (ReDoS, and it would let a sender steer)."""
    if is_tainted(pattern):
        raise ex.fail(f'tainted regular expression "{pattern}" refused in {where}')
    try:
        return _compile(str.__str__(pattern))
    except re.error as exc:
        message, offset = pcre_message(exc, pattern)
        raise ex.fail(f'regular expression error in "{pattern}": {message} at offset {offset}') from None


def pcre_message(exc: re.error, pattern: str) -> tuple[str, int]:
    """Exim's words (PCRE2's) for the regex mistakes people make; Python's for the rest."""
    pos = exc.pos if exc.pos is not None else 0
    msg = exc.msg
    if msg.startswith("missing ), unterminated subpattern"):
        return "missing closing parenthesis", len(pattern)
    if msg == "unbalanced parenthesis":
        return "unmatched closing parenthesis", pos
    if msg in ("nothing to repeat", "multiple repeat"):
        return "quantifier does not follow a repeatable item", pos
    if msg == "unterminated character set":
        return "missing terminating ] for character class", len(pattern)
    if msg == "min repeat greater than max repeat":
        end = pattern.find("}", pos)
        return "numbers out of order in {} quantifier", end if end >= 0 else len(pattern)
    if msg == "bad escape (end of pattern)":
        return "\\ at end of pattern", len(pattern)
    return msg, pos


def captures_of(match: re.Match[bytes], subject: str) -> list[str]:
    """$0..$n of a match (on the subject's bytes); captures of tainted text are tainted too."""
    groups = [from_bytes(g or b"") for g in (match.group(0), *match.groups())]
    if is_tainted(subject):
        return [Tainted(g) for g in groups]
    return groups


def compare_strings(op: str, a: str, b: str) -> bool:
    """Exim's lt/le/eq/gt/ge (strcmp) and their "i" forms (its strcmpic)."""
    a_bytes, b_bytes = to_bytes(a), to_bytes(b)
    order = strcmpic(a_bytes, b_bytes) if op.endswith("i") else (a_bytes > b_bytes) - (a_bytes < b_bytes)
    return {"lt": order < 0, "le": order <= 0, "eq": order == 0, "gt": order > 0, "ge": order >= 0}[op[:2]]


def strcmpic(a: bytes, b: bytes) -> int:
    """Exim's strcmpic(), faithfully: when `a` runs out first it answers b's next byte,
    so a prefix of `b` counts as greater ("" gti "abc" is true in Exim)."""
    for k, ch in enumerate(a):
        other = b[k] if k < len(b) else 0
        diff = _c_lower(ch) - _c_lower(other)
        if diff:
            return diff
    return b[len(a)] if len(b) > len(a) else 0


def _c_lower(byte: int) -> int:
    return byte + 32 if 65 <= byte <= 90 else byte


def evaluate(ex: Expander, skipping: bool) -> bool:
    testfor = True
    while ex.skip_white() == "!":
        testfor = not testfor
        ex.i += 1
    name = identify_operator(ex.s, ex.i)
    if name is None:
        raise ex.fail(f'condition name expected, but found "{from_bytes(to_bytes(ex.s[ex.i : ex.i + 16])[:16])}"')
    ex.i += len(name)
    if name not in CONDITION_NAMES:
        raise ex.fail(ex.msg or f'unknown condition "{name}"')
    result = _evaluate(ex, name, skipping)
    return result == testfor


def _curly_start(ex: Expander, name: str) -> ExpansionError:
    return ex.fail(f'missing {{ after "{name}"')


def _curly_end(ex: Expander, name: str) -> ExpansionError:
    return ex.fail(f'missing }} at end of "{name}" condition')


def _evaluate(ex: Expander, name: str, skipping: bool) -> bool:
    if name == "def":
        return _defined(ex, skipping)
    if name == "first_delivery":
        return ex.ctx.first_delivery
    if name == "queue_running":
        return ex.ctx.queue_running
    if name in _ONE_ARG:
        if ex.skip_white() != "{":
            raise _curly_start(ex, name)
        ex.i += 1
        arg = ex.sub(skipping)
        if ex.take() != "}":
            raise _curly_end(ex, name)
        if skipping:
            return False
        if name in _NOT_COMPILED:
            raise ex.fail(f'support for "{name}" not compiled')
        if name == "exists":
            if "exists" in ex.ctx.policy.forbid:
                raise ex.fail("File existence tests are not permitted")
            refusal = file_name_refusal(arg)
            if refusal is not None:
                raise ex.fail(f'Tainted filename "{arg}" refused in "exists" condition ({refusal})')
            return os.path.exists(arg)
        family, _ = is_ip_address(arg)
        return family != 0 if name == "isip" else family == int(name[-1])
    if name in ("acl", "saslauthd"):
        return _braced_set(ex, name, skipping)
    if name in _TWO_ARGS:
        return _two_args(ex, name, skipping)
    if name in ("and", "or"):
        return _combine(ex, name, skipping)
    if name.startswith(("forall", "forany")):
        return _for_many(ex, name, skipping)
    if name in ("bool", "bool_lax"):
        return _bool(ex, name, skipping)
    return _inbound_srs(ex, name, skipping)


def _defined(ex: Expander, skipping: bool) -> bool:
    from mta.expand.expander import is_header_name

    if ex.at() != ":":
        raise ex.fail('":" expected after "def"')
    ex.i += 1
    name = ex.read_name("_")
    if is_header_name(name):
        name = ex.read_header_name(name)
        if "}" in name:
            ex.malformed_header = True
        return not skipping and ex.header(name) is not None
    value = ex.find_variable(name, skipping)
    if value is None:
        from mta.expand.variables import unknown_variable_detail

        if not name:
            raise ex.fail('variable name omitted after "def:"')
        raise ex.fail(f'unknown variable "{name}" after "def:"' + unknown_variable_detail(name))
    return value != ""


def _braced_set(ex: Expander, name: str, skipping: bool) -> bool:
    if ex.skip_white() != "{":
        raise _curly_start(ex, name)
    ex.i += 1
    try:
        subs = ex.read_subs(10 if name == "acl" else 4, 1 if name == "acl" else 2, skipping, True, name)
    except CurlyError:
        raise ex.fail(f"too few arguments or bracketing error for {name}") from None
    if skipping:
        return False
    if name == "acl":
        raise ex.fail(f'ERROR from acl "{subs[0]}"')
    # mta has no saslauthd client (docs/expansion.md); Exim says the same of a missing build option.
    raise ex.fail(f'support for "{name}" not compiled')


def _two_args(ex: Expander, name: str, skipping: bool) -> bool:
    subs: list[str] = []
    numbers: list[int] = []
    honour_second = name not in _LIST_KINDS  # list RHS is never expanded (Exim's security default)
    for k in range(2):
        if ex.skip_white() != "{":
            if k == 0:
                raise _curly_start(ex, name)
            raise ex.fail(f'missing 2nd string in {{}} after "{name}"')
        ex.i += 1
        subs.append(ex.sub(skipping, honour_dollar=honour_second or k == 0))
        if ex.take() != "}":
            raise _curly_end(ex, name)
        if not name[0].isalpha() and not skipping:
            if subs[k] == "":
                numbers.append(0)
            else:
                value, error = string_integer(subs[k], False)
                if error is not None:
                    raise ex.fail(error)
                numbers.append(value)
    if skipping:
        return False
    a, b = subs
    if not name[0].isalpha():
        x, y = numbers
        return {"=": x == y, "==": x == y, ">": x > y, ">=": x >= y, "<": x < y, "<=": x <= y}[name]
    if name in _LEXICAL:
        return compare_strings(name, a, b)
    if name == "match":
        m = compile_regex(ex, b, '"match" condition').search(to_bytes(a))
        if m is None:
            return False
        ex.nstrings = captures_of(m, a)
        return True
    if name in _LIST_KINDS:
        return _match_list(ex, name, a, b)
    if name == "crypteq":
        from mta.expand.crypteq import crypteq

        try:
            return crypteq(a, b)
        except ExpansionError as exc:
            raise ex.fail(exc.message) from None
    return _inlist(ex, name, a, b)


def _inlist(ex: Expander, name: str, subject: str, the_list: str) -> bool:
    for item in ListReader(the_list):
        if compare_strings("eqi" if name == "inlisti" else "eq", subject, item):
            ex.lookup_value = item
            return True
    return False


def _match_list(ex: Expander, name: str, subject: str, the_list: str) -> bool:
    if name == "match_ip" and subject and is_ip_address(subject)[0] == 0:
        raise ex.fail(f'"{subject}" is not an IP address')
    if name == "match_ip":
        # Exim's match_check_list() expands a host list itself (the other kinds are
        # passed MCL_NOEXPAND); the text is the configuration's, not data.
        try:
            the_list = ex.expand_other(the_list, skipping=False)
        except ExpansionError:
            raise ex.fail(f'unable to complete match against "{the_list}": NULL') from None
    if ex.ctx.match_list is None:
        raise ex.fail(f'condition "{name}" cannot be used here (no lists are available)')
    if ex.ctx.named_list is not None:
        for item in ListReader(the_list):
            named = item.lstrip("!")
            if named.startswith("+") and ex.ctx.named_list(_LIST_KINDS[name], named[1:]) is None:
                # Exim logs "unknown named ... list" and has no message to give here.
                raise ex.fail(f'unable to complete match against "{the_list}": NULL')
    try:
        return bool(ex.ctx.match_list(_LIST_KINDS[name], subject, the_list))
    except ExpansionError as exc:
        raise ex.fail(f'unable to complete match against "{the_list}": {exc.message}') from None
    except MtaError as exc:  # a malformed list item (ConfigError): an error, never a traceback
        if name == "match_ip":
            # Exim takes an item that is no IP address for a host name, which an
            # address with no name never matches.
            return False
        raise ex.fail(f'unable to complete match against "{the_list}": {exc}') from None


def _combine(ex: Expander, name: str, skipping: bool) -> bool:
    want = name == "or"
    decided = skipping
    result = not want
    if ex.skip_white() != "{":
        raise _curly_start(ex, name)
    ex.i += 1
    while True:
        if ex.skip_white() == "}":
            break
        if ex.at() != "{":
            raise ex.fail(f'each subcondition inside an "{name}{{...}}" condition must be in its own {{}}')
        ex.i += 1
        try:
            value = evaluate(ex, decided)
        except ExpansionError as exc:
            raise ExpansionError(f'{exc.message} inside "{name}{{...}}" condition', forced=exc.forced) from None
        ex.skip_white()
        if ex.take() != "}":
            raise ex.fail(f'missing }} at end of condition inside "{name}" group')
        if not decided and value == want:
            decided = True
            result = want
    ex.i += 1
    return result


def _for_many(ex: Expander, name: str, skipping: bool) -> bool:
    from mta.expand.extract import WrapError, dewrap, json_items

    is_any = name.startswith("forany")
    is_json = "json" in name
    if ex.skip_white() != "{":
        raise _curly_start(ex, name)
    ex.i += 1
    the_list = ex.sub(skipping)
    if ex.take() != "}":
        raise _curly_end(ex, name)
    if ex.skip_white() != "{":
        raise _curly_start(ex, name)
    ex.i += 1
    cond_start = ex.i
    try:
        evaluate(ex, True)
    except ExpansionError as exc:
        raise ExpansionError(f'{exc.message} inside "{name}" condition', forced=exc.forced) from None
    ex.skip_white()
    if ex.take() != "}":
        raise ex.fail(f'missing }} at end of condition inside "{name}"')
    # Exim goes through the items even when the whole condition is being skipped
    # (only its answer is not kept), so errors in the condition show there too.
    end = ex.i
    saved_item = ex.iterate_item
    result = False  # Exim: an empty list makes forall and forany alike false
    try:
        if is_json:
            try:
                elements = json_items(dewrap(the_list, "[]"))
            except WrapError:
                elements = []
        else:
            elements = list(ListReader(the_list))
        for element in elements:
            if name.endswith("jsons"):
                try:
                    element = dewrap(element, '""')
                except WrapError as exc:
                    raise ex.fail(f"{exc} wrapping string result for extract jsons") from None
            ex.iterate_item = element
            ex.i = cond_start
            try:
                truth = evaluate(ex, False)
            except ExpansionError as exc:
                raise ExpansionError(f'{exc.message} inside "{name}" condition', forced=exc.forced) from None
            result = truth
            if truth == is_any:
                break
    finally:
        ex.i = end
        ex.iterate_item = saved_item
    return result and not skipping


def _bool(ex: Expander, name: str, skipping: bool) -> bool:
    if ex.skip_white() != "{":
        raise _curly_start(ex, name)
    try:
        (text,) = ex.read_subs(1, 1, skipping, False, name)[:1]
    except CurlyError:
        raise ex.fail(f"too few arguments or bracketing error for {name}") from None
    assert text is not None
    word = text.strip(_C_SPACE)
    if not word:
        return False
    if re.fullmatch(r"-?[0-9]*", word):
        if name == "bool_lax" and len(word) > 1:
            return True
        return bounded_int(word) != 0 if word.lstrip("-") else False
    lowered = word.lower()
    if lowered in ("true", "yes"):
        return True
    if lowered in ("false", "no"):
        return False
    if name == "bool_lax":
        return True
    raise ex.fail(f'unrecognised boolean value "{word}"')


def _inbound_srs(ex: Expander, name: str, skipping: bool) -> bool:
    try:
        local_part, secret = ex.read_subs(2, 2, skipping, False, name)
    except CurlyError:
        raise ex.fail("too few arguments or bracketing error for inbound_srs") from None
    if skipping:
        return False
    assert local_part is not None and secret is not None
    m = signing.SRS0_PATTERN.match(local_part)
    if m is None:
        return False
    checksum, stamp, domain, local = m.groups()
    quoting = local_part.startswith('"') or any(
        not (ch.isascii() and ch.isalnum()) and ch not in ".!#$%&'*+-/=?^_`{|}~" for ch in local_part
    )
    recipient = f'"{local.lower()}"@{domain.lower()}' if quoting else f"{local.lower()}@{domain.lower()}"
    ex.extra["srs_recipient"] = Tainted(recipient) if is_tainted(local_part) else recipient
    if not secret:
        return True
    if signing.srs_days_old(stamp) > 10 or len(checksum) != 4:
        return False
    return signing.srs_checksum(secret, recipient) == checksum
