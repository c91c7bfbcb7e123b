"""Expansion failures that the expander's own items tell apart."""

from __future__ import annotations

from mta.errors import ExpansionError


class CurlyError(ExpansionError):
    """A bracketing error (Exim's EXPAND_FAILED_CURLY / read_subs() returning 1).

    Some conditions replace its message with their own ("too few arguments or
    bracketing error for bool"), as Exim does; everyone else sees an
    ordinary ExpansionError.
    """
