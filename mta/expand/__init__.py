"""String expansion and lookups; see expander.py for the API and docs/expansion.md."""

from mta.expand.context import ExpandContext, ExpandPolicy, HeaderLines, time_variables
from mta.expand.expander import check, expand
from mta.expand.lookups import LookupDeferError, build_lmdb_from_lsearch, lookup, lookup_types
from mta.expand.variables import KNOWN_VARIABLES, is_known_variable

__all__ = [
    "KNOWN_VARIABLES",
    "ExpandContext",
    "ExpandPolicy",
    "HeaderLines",
    "LookupDeferError",
    "build_lmdb_from_lsearch",
    "check",
    "expand",
    "is_known_variable",
    "lookup",
    "lookup_types",
    "time_variables",
]
