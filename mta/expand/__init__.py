"""String expansion and lookups; see expander.py for the API and docs/expansion.md."""

from mta.expand.context import KNOWN_VARIABLES, ExpandContext, is_known_variable, time_variables
from mta.expand.expander import check, expand
from mta.expand.lookups import LookupDeferError, build_lmdb_from_lsearch, lookup, lookup_types

__all__ = [
    "KNOWN_VARIABLES",
    "ExpandContext",
    "LookupDeferError",
    "build_lmdb_from_lsearch",
    "check",
    "expand",
    "is_known_variable",
    "lookup",
    "lookup_types",
    "time_variables",
]
