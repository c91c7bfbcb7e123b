"""Helpers shared by the lookup drivers."""

from __future__ import annotations

from mta.errors import ExpansionError


class LookupDeferError(ExpansionError):
    """A lookup could not be done because its file or database is unusable.

    Missing, unreadable or corrupt files raise this rather than returning
    "not found": a missing /etc/aliases must delay mail, never bounce it or
    route it somewhere else.  It is an ExpansionError (not forced), so a
    driver that already turns expansion errors into DeferError needs nothing
    more; code that calls lookup() directly should catch it and defer.
    `path` names the file, `errno` the OS error number (0 if none).
    `opening` is true when the file itself could not be opened (Exim reports
    those without its 'lookup of "key" gave DEFER' prefix).
    """

    def __init__(self, message: str, path: str, errno: int = 0, opening: bool = False) -> None:
        super().__init__(message)
        self.path = path
        self.errno = errno
        self.opening = opening


def decode(raw: bytes) -> str:
    # Lookup files are text.  A stray non-UTF-8 byte becomes U+FFFD instead
    # of making every lookup in the file fail (and every message defer).
    return raw.decode("utf-8", errors="replace")
