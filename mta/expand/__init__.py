"""String expansion and lookups; see expander.py for the API and docs/expansion.md.

The names below are found in their modules when first asked for (PEP 562), not when this
package is imported: a command that only needs mta.expand.context (the Received: header's
variables, a default that holds no `$`) does not load the expander, its items and lookups
(about 2.5 ms of a `sendmail -t`)."""

from __future__ import annotations

import sys

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from mta.expand.context import ExpandContext, ExpandPolicy, HeaderLines, time_variables
    from mta.expand.expander import check, expand
    from mta.expand.lookups import LookupDeferError, build_lmdb_from_lsearch, lookup, lookup_types
    from mta.expand.variables import KNOWN_VARIABLES, is_known_variable

# name -> the module that defines it
_WHERE = {
    "ExpandContext": "mta.expand.context",
    "ExpandPolicy": "mta.expand.context",
    "HeaderLines": "mta.expand.context",
    "time_variables": "mta.expand.context",
    "check": "mta.expand.expander",
    "expand": "mta.expand.expander",
    "LookupDeferError": "mta.expand.lookups",
    "build_lmdb_from_lsearch": "mta.expand.lookups",
    "lookup": "mta.expand.lookups",
    "lookup_types": "mta.expand.lookups",
    "KNOWN_VARIABLES": "mta.expand.variables",
    "is_known_variable": "mta.expand.variables",
}

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


def __getattr__(name: str) -> object:
    module_name = _WHERE.get(name)
    if module_name is None:
        raise AttributeError(f"module 'mta.expand' has no attribute {name!r}")
    __import__(module_name)
    value = getattr(sys.modules[module_name], name)
    globals()[name] = value  # found once: later uses are plain attribute lookups
    return value
