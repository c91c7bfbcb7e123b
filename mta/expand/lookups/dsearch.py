"""dsearch: does the directory `filename` hold an entry named `key`?

The result is the key itself.  Because lookup results are untainted, this
is the standard way to turn a tainted local part into a safe file name
(``${lookup{$local_part}dsearch{/var/mail}}``): only names that already
exist in a directory the administrator chose can come out of it.
"""

from __future__ import annotations

import os
import stat

from mta.expand.lookups._common import LookupDeferError


def find(path: str, key: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise LookupDeferError(
            f"failed to open directory {path} for directory search: {exc.strerror}", path, exc.errno or 0
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise LookupDeferError(f"{path} is not a directory (dsearch lookup)", path)
    # A key that could reach outside the directory cannot name an entry in
    # it, so it is simply not found.  (Exim defers instead; a local part
    # like "a/b" from the network would then keep its message on the queue.)
    if not key or key in (".", "..") or "/" in key or "\0" in key:
        return None
    try:
        os.lstat(os.path.join(path, key))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise LookupDeferError(
            f"dsearch lookup of {key!r} in {path} failed: {exc.strerror}", path, exc.errno or 0
        ) from None
    return key
