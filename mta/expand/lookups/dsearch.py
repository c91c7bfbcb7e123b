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


def find(path: str, key: str, options: str | None = None) -> str | None:
    """Exim's dsearch, with its options ret=full and filter=file|dir|subdir."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise LookupDeferError(
            f"failed to open {path} for directory search: {exc.strerror}", path, exc.errno or 0, opening=True
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise LookupDeferError(f"failed to open {path} for directory search: Not a directory", path, opening=True)
    # A key that could reach outside the directory cannot name an entry in
    # it, so it is simply not found.  (Exim defers instead; a local part
    # like "a/b" from the network would then keep its message on the queue.)
    if not key or key in (".", "..") or "/" in key or "\0" in key:
        return None
    full = os.path.join(path, key)
    try:
        entry = os.lstat(full)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise LookupDeferError(f"{full}: lstat: {exc.strerror}", path, exc.errno or 0) from None
    words = (options or "").split(",")
    if "filter=file" in words and not stat.S_ISREG(entry.st_mode):
        return None
    if ("filter=dir" in words or "filter=subdir" in words) and not stat.S_ISDIR(entry.st_mode):
        return None
    return full if "ret=full" in words else key
