"""Lookups: ``${lookup{key}TYPE{file}}``, ``${lookup TYPE{query}}`` and ``TYPE;file`` list items.

Public API
----------
lookup(search_type, filename, key) -> str | None
    Look `key` up in `filename` (for a query-style type, `key` is the
    query and `filename` is ignored).  None means "not found".  A file that
    is missing or unreadable raises LookupDeferError (an ExpansionError, not
    forced): callers must defer, never treat it as "not found".  An unknown
    search type raises ExpansionError.  A tainted filename is refused unless
    it passes mta.taint.file_name_refusal.  The result is never tainted: it
    came from a trusted local source.
find(search_type, filename, key) -> (result, captures)
    The same, with the $1/$2 a partial or default match sets (Exim's
    search_find): [wild part, fixed part], or [] when none are set.
lookup_types() -> list[str]
    The type names mta ships.
parse_search_type(text) -> SearchType
    Split ``partial2-lsearch*@,ret=key`` into its parts (Exim's
    search_findtype_partial); raises ExpansionError with Exim's words.
quote_for(type, text, option) -> str | None
    ${quote_TYPE:text}: no shipped type needs quoting, so the text itself;
    None if an option is given (Exim: "unrecognized").
build_lmdb_from_lsearch(source, target) -> int
    Compile an lsearch file into an LMDB file atomically (for newaliases).

Types
-----
lsearch       Exim's linear-search text file (see lsearch.py for the format).
wildlsearch   As lsearch, but keys may be ``*suffix`` or a ``^regex``.  Exim
              expands wildlsearch keys; mta never expands file data, so it
              is the same as nwildlsearch.
nwildlsearch  As wildlsearch.
iplsearch     As lsearch, keys are IP addresses or networks (CIDR).
dsearch       The key names an entry in the directory `filename`; the result
              is the key itself (untainted: the way to de-taint a local part).
lmdb          An LMDB file built by build_lmdb_from_lsearch / newaliases.
passwd        Query style: the system password entry, "*:uid:gid:gecos:home:shell".

The registry is one explicit dict; a driver module is imported the first
time its type is used, so configurations that never use LMDB never import it.
"""

from __future__ import annotations

import sys

from mta import debug as _debug
from mta import record
from mta.errors import ExpansionError
from mta.expand.lookups._common import LookupDeferError
from mta.lazy_pattern import lazy_compile
from mta.taint import file_name_refusal, untainted

__all__ = [
    "LookupDeferError",
    "SearchType",
    "build_lmdb_from_lsearch",
    "find",
    "lookup",
    "lookup_types",
    "parse_search_type",
    "quote_for",
]

# type name -> "module:function" inside this package; function(filename, key, options).
_FINDERS: dict[str, str] = {
    "dsearch": "dsearch:find",
    "iplsearch": "lsearch:find_ip",
    "lmdb": "lmdb:find",
    "lsearch": "lsearch:find_lsearch",
    "nwildlsearch": "lsearch:find_wild",
    "passwd": "passwd:find",
    "wildlsearch": "lsearch:find_wild",
}
_QUERY_STYLE = frozenset({"passwd"})
# Types Exim has that mta does not ship (databases it does not link, or services it does not talk to).
_NOT_SHIPPED = frozenset(
    [
        "cdb",
        "dbm",
        "dbmjz",
        "dbmnz",
        "dnsdb",
        "ibase",
        "json",
        "ldap",
        "ldapdn",
        "ldapm",
        "mysql",
        "nis",
        "nis0",
        "nisplus",
        "oracle",
        "pgsql",
        "redis",
        "spf",
        "sqlite",
        "testdb",
        "whoson",
    ]
)

_DIGITS = lazy_compile(r"\d+")

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    Finder = Callable[[str, str, "str | None"], "str | None"]
_loaded: dict[str, Finder] = {}


@record.dataclass(frozen=True, slots=True)
class SearchType:
    base: str
    star: bool = False  # "lsearch*": fall back to the key "*"
    star_at: bool = False  # "lsearch*@": fall back to "*@domain", then "*"
    partial: int | None = None  # partialN-: at least N non-wild components
    affix: str = ""  # "*." unless partial(affix) said otherwise
    options: str | None = None  # ",ret=key" and type options
    query_style: bool = False


def lookup_types() -> list[str]:
    return sorted(_FINDERS)


_PARSED: dict[str, SearchType] = {}


def parse_search_type(text: str) -> SearchType:
    cached = _PARSED.get(text)
    if cached is not None:
        return cached
    kind = _parse_search_type(text)
    if len(_PARSED) < 256:
        _PARSED[text] = kind
    return kind


def _parse_search_type(text: str) -> SearchType:
    rest = text
    partial: int | None = None
    affix = ""
    if rest.startswith("partial"):
        rest = rest[7:]
        m = _DIGITS.match(rest)
        partial = int(m.group(0)) if m else 2
        rest = rest[m.end() :] if m else rest
        if rest.startswith("("):
            end = 1
            while end < len(rest) and rest[end] != ")" and not rest[end].isalnum() and not rest[end].isspace():
                end += 1
            if end >= len(rest) or rest[end] != ")":
                raise ExpansionError(f'format error in lookup type "{text}"')
            affix, rest = rest[1:end], rest[end + 1 :]
        elif rest.startswith("-"):
            affix, rest = "*.", rest[1:]
        else:
            raise ExpansionError(f'format error in lookup type "{text}"')
    name_end = len(rest)
    star = star_at = False
    star_pos = rest.find("*")
    if star_pos >= 0:
        name_end = star_pos
        star_at = rest[star_pos + 1 : star_pos + 2] == "@"
        star = not star_at
    comma = rest.find(",", star_pos if star_pos >= 0 else 0)
    options = None
    if comma >= 0:
        name_end = min(name_end, comma)
        options = rest[comma + 1 :]
    base = rest[:name_end]
    if base not in _FINDERS:
        if base in _NOT_SHIPPED or base == "readsock":
            raise ExpansionError(f'lookup type "{base}" is not available (mta does not ship it)')
        raise ExpansionError(f'unknown lookup type "{base}"')
    query_style = base in _QUERY_STYLE
    if query_style and partial is not None:
        raise ExpansionError(f'"partial" is not permitted for lookup type "{rest}"')
    if query_style and (star or star_at):
        raise ExpansionError(f'defaults using "*" or "*@" are not permitted for lookup type "{rest}"')
    return SearchType(base, star or star_at, star_at, partial, affix, options, query_style)


def quote_for(search_type: str, text: str, option: str | None) -> str | None:
    if search_type not in _FINDERS and search_type not in _NOT_SHIPPED:
        raise ExpansionError(f'unknown lookup type "{search_type}"')
    return text if option is None else None


def _finder(base: str) -> Finder:
    finder = _loaded.get(base)
    if finder is None:
        module_name, function = _FINDERS[base].split(":")
        # Not importlib.import_module: importing importlib (and warnings) costs start-up time.
        __import__(f"{__name__}.{module_name}")
        module = sys.modules[f"{__name__}.{module_name}"]
        finder = getattr(module, function)
        _loaded[base] = finder
    return finder


def lookup(search_type: str, filename: str, key: str) -> str | None:
    """Look `key` up; see the module docstring for the contract."""
    return find(search_type, filename, key)[0]


def find(search_type: str, filename: str, key: str) -> tuple[str | None, list[str]]:
    if "lookup" in _debug.active:
        return _find_debugged(search_type, filename, key)
    return _find(search_type, filename, key)


def _find_debugged(search_type: str, filename: str, key: str) -> tuple[str | None, list[str]]:
    """find() under -d+lookup: what was looked for where, and what came back (Exim's words)."""
    from mta.printable import printable

    _debug.write(f'search_find: file="{printable(filename)}"\n  type={search_type} key="{printable(key)}"')
    try:
        found = _find(search_type, filename, key)
    except (ExpansionError, LookupDeferError) as exc:
        _debug.write(f"lookup deferred: {printable(str(exc))}")
        raise
    _debug.write("lookup failed" if found[0] is None else f"lookup yielded: {printable(found[0])}")
    return found


def _find(search_type: str, filename: str, key: str) -> tuple[str | None, list[str]]:
    kind = parse_search_type(search_type)
    if not kind.query_style:
        refusal = file_name_refusal(filename)
        if refusal is not None:
            raise ExpansionError(f'Tainted filename "{filename}" refused for {search_type} lookup ({refusal})')
        if not filename:
            raise ExpansionError(f"empty file name for {search_type} lookup")
    finder = _finder(kind.base)
    key = untainted(key)
    options = kind.options
    ret_key = False
    if options:
        kept = [o for o in options.split(",") if o != "ret=key"]
        ret_key = len(kept) != len(options.split(","))
        options = ",".join(kept) or None

    def attempt(k: str) -> str | None:
        return finder(filename, k, options)

    result = attempt(key)
    captures: list[str] = []
    if result is not None:
        if kind.partial is not None:
            captures = ["", key]
    elif kind.partial is not None:
        result, captures = _partial(attempt, key, kind)
    at = key.rfind("@")
    if result is None and kind.star_at and at > 0:
        result = attempt("*" + key[at:])
        if result is not None:
            captures = [key[:at], ""]
    if result is None and kind.star:
        result = attempt("*")
        if result is not None:
            captures = [key, ""]
    if result is not None and ret_key:
        result = key
    return (None if result is None else untainted(result)), captures


def _partial(attempt: Callable[[str], str | None], key: str, kind: SearchType) -> tuple[str | None, list[str]]:
    """Exim's partial matching: affix+key, then affix+key without its leading components."""
    affix = kind.affix
    assert kind.partial is not None
    if affix:
        result = attempt(affix + key)
        if result is not None:
            return result, ["", key]
    dots = key.count(".")
    rest = key
    while dots >= kind.partial:
        dots -= 1
        cut = rest.find(".")
        if cut < 0:
            if not affix:
                break
            candidate = affix[:-1] if len(affix) > 1 and affix.endswith(".") else affix
            fixed = ""
        else:
            rest = rest[cut + 1 :]
            candidate = affix + rest
            fixed = rest
        result = attempt(candidate)
        if result is not None:
            wild = key[: max(len(key) - len(fixed) - 1, 0)]
            return result, [wild, fixed]
        if cut < 0:
            break
    return None, []


def build_lmdb_from_lsearch(source: str, target: str) -> int:
    """Compile lsearch file `source` into LMDB file `target`; return the record count.

    Keys are stored lower-cased (as exim_dbmbuild does) and the first of
    duplicate keys wins, so the database answers as the text file would.
    The database is written to ``target + ".tmp"`` and renamed into place, so
    readers see either the old or the new file, never a half-written one.
    """
    from mta.expand.lookups import lmdb as lmdb_lookup

    return lmdb_lookup.build_from_lsearch(source, target)
