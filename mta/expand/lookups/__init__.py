"""Single-key lookups: ``${lookup{key}TYPE{file}}`` and ``TYPE;file`` list items.

Public API
----------
lookup(search_type, filename, key) -> str | None
    Look `key` up in `filename`.  None means "not found".  A file that is
    missing or unreadable raises LookupDeferError (an ExpansionError, not
    forced): callers must defer, never treat it as "not found".  An unknown
    search type raises ExpansionError.  A tainted filename is refused.
    The result is never tainted: it came from a trusted local file.
lookup_types() -> list[str]
    The base type names.  Each also accepts the suffixes ``*`` (try the key
    ``*`` when nothing matched) and ``*@`` (then ``*@domain``, then ``*``).
parse_search_type(text) -> SearchType
    Split ``lsearch*@`` into its base type and default-key flags; raises
    ExpansionError for an unknown type.
build_lmdb_from_lsearch(source, target) -> int
    Compile an lsearch file into an LMDB file atomically (for newaliases).

Types
-----
lsearch       Exim's linear-search text file (see lsearch.py for the format).
wildlsearch   As lsearch, but keys may be ``*suffix`` or a ``^regex``.  Exim
              expands wildlsearch keys; mta never expands anything, so it is
              the same as nwildlsearch.
nwildlsearch  As wildlsearch.
dsearch       The key names an entry in the directory `filename`; the result
              is the key itself (untainted: the way to de-taint a local part).
lmdb          An LMDB file built by build_lmdb_from_lsearch / newaliases.

The registry is one explicit dict; a driver module is imported the first
time its type is used, so configurations that never use LMDB never import it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from mta import record
from mta.errors import ExpansionError
from mta.expand.lookups._common import LookupDeferError
from mta.taint import is_tainted, untainted

__all__ = [
    "LookupDeferError",
    "SearchType",
    "build_lmdb_from_lsearch",
    "lookup",
    "lookup_types",
    "parse_search_type",
]

# type name -> "module:function" inside this package; function(filename, key).
_FINDERS: dict[str, str] = {
    "lsearch": "lsearch:find_lsearch",
    "wildlsearch": "lsearch:find_wild",
    "nwildlsearch": "lsearch:find_wild",
    "dsearch": "dsearch:find",
    "lmdb": "lmdb:find",
}

Finder = Callable[[str, str], "str | None"]
_loaded: dict[str, Finder] = {}


@record.dataclass(frozen=True, slots=True)
class SearchType:
    base: str
    star: bool = False  # "lsearch*": fall back to the key "*"
    star_at: bool = False  # "lsearch*@": fall back to "*@domain", then "*"


def lookup_types() -> list[str]:
    return sorted(_FINDERS)


def parse_search_type(text: str) -> SearchType:
    base, star, star_at = text, False, False
    if base.endswith("*@"):
        base, star, star_at = base[:-2], True, True
    elif base.endswith("*"):
        base, star = base[:-1], True
    if base not in _FINDERS:
        if base.startswith("partial"):
            raise ExpansionError(f'lookup type "{text}": partial matching is not supported by mta')
        raise ExpansionError(f'unknown lookup type "{text}" (known: {", ".join(lookup_types())})')
    return SearchType(base, star, star_at)


def _finder(base: str) -> Finder:
    finder = _loaded.get(base)
    if finder is None:
        module_name, function = _FINDERS[base].split(":")
        module = importlib.import_module(f"{__name__}.{module_name}")
        finder = getattr(module, function)
        _loaded[base] = finder
    return finder


def lookup(search_type: str, filename: str, key: str) -> str | None:
    """Look `key` up; see the module docstring for the contract."""
    kind = parse_search_type(search_type)
    if is_tainted(filename):
        raise ExpansionError(f'Tainted filename "{filename}" refused for {search_type} lookup')
    if not filename:
        raise ExpansionError(f"empty file name for {search_type} lookup")
    finder = _finder(kind.base)
    key = untainted(key)
    result = finder(filename, key)
    if result is None and kind.star_at and "@" in key:
        result = finder(filename, "*@" + key.rsplit("@", 1)[1])
    if result is None and kind.star:
        result = finder(filename, "*")
    return None if result is None else untainted(result)


def build_lmdb_from_lsearch(source: str, target: str) -> int:
    """Compile lsearch file `source` into LMDB file `target`; return the record count.

    Keys are stored lower-cased (as exim_dbmbuild does) and the first of
    duplicate keys wins, so the database answers as the text file would.
    The database is written to ``target + ".tmp"`` and renamed into place, so
    readers see either the old or the new file, never a half-written one.
    """
    from mta.expand.lookups import lmdb as lmdb_lookup

    return lmdb_lookup.build_from_lsearch(source, target)
