"""lsearch, wildlsearch and nwildlsearch: Exim's linear-search text files.

Format (Exim's lookups/lsearch.c):

- Blank lines and lines starting with ``#`` are ignored, also between
  continuation lines.
- A line starting with white space continues the previous entry: its
  leading white space becomes one space and it is appended to the data.
- Otherwise the line starts with a key, ended by a colon or white space.
  A key may be written in double quotes, with backslash escapes, to hold
  colons or spaces.  After the key come optional white space, an optional
  colon and more white space; the rest of the line (trailing white space
  removed) is the data.
- Keys compare case-insensitively; the first matching line wins.

A parsed file is cached per path and (inode, size, mtime, ctime), so a
process doing many lookups reads each file once and still sees an edit.
"""

from __future__ import annotations

import collections
import functools
import os
import re
import threading
import warnings

from mta import record
from mta.errors import ExpansionError
from mta.expand.escapes import dequote
from mta.expand.lookups._common import LookupDeferError, decode
from mta.expand.textcodecs import normalise, to_bytes

_WHITE = " \t\n\r\f\v"
_CACHE_FILES = 64


@record.dataclass(frozen=True, slots=True)
class LsearchFile:
    entries: tuple[tuple[str, str], ...]  # (key as written, dequoted; data) in file order
    index: dict[str, str]  # lower-cased key -> data of its first line


_cache: collections.OrderedDict[str, tuple[tuple[int, ...], LsearchFile]] = collections.OrderedDict()
_cache_lock = threading.Lock()


def _read_key(line: str) -> tuple[str, int]:
    """Return the key at the start of `line` and the index just after it."""
    if line.startswith('"'):
        key, end = dequote(line, 0)
        return normalise(key), end
    i = 0
    while i < len(line) and line[i] != ":" and line[i] not in _WHITE:
        i += 1
    return line[:i], i


def parse_lsearch(text: str) -> list[tuple[str, str]]:
    """Parse lsearch file content into (key, data) pairs in file order."""
    entries: list[tuple[str, str]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].rstrip(_WHITE)
        i += 1
        if not line or line[0] == "#" or line[0] in _WHITE:
            continue
        key, pos = _read_key(line)
        rest = line[pos:].lstrip(_WHITE)
        if rest.startswith(":"):
            rest = rest[1:].lstrip(_WHITE)
        data = [rest]
        while i < len(lines):
            cont = lines[i].rstrip(_WHITE)
            if not cont or cont[0] == "#":
                i += 1
                continue
            if cont[0] not in _WHITE:
                break
            data.append(" " + cont.lstrip(_WHITE))
            i += 1
        entries.append((key, "".join(data)))
    return entries


def load(path: str) -> LsearchFile:
    """Return the parsed file, from the cache when it has not changed."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            # Compare against the file we actually opened, so a rename between
            # a stat() and the read can never pair old data with a new stamp.
            stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            with _cache_lock:
                cached = _cache.get(path)
                if cached is not None and cached[0] == stamp:
                    _cache.move_to_end(path)
                    return cached[1]
            raw = f.read()
    except OSError as exc:
        raise LookupDeferError(
            f"failed to open {path} for linear search: {exc.strerror}", path, exc.errno or 0, opening=True
        ) from None
    entries = parse_lsearch(decode(raw))
    index: dict[str, str] = {}
    for key, data in entries:
        index.setdefault(key.lower(), data)
    parsed = LsearchFile(tuple(entries), index)
    with _cache_lock:
        _cache[path] = (stamp, parsed)
        _cache.move_to_end(path)
        while len(_cache) > _CACHE_FILES:
            _cache.popitem(last=False)
    return parsed


def find_lsearch(path: str, key: str, options: str | None = None) -> str | None:
    return load(path).index.get(key.lower())


@functools.lru_cache(maxsize=512)
def _wild_regex(pattern: str) -> re.Pattern[bytes]:
    # Bytes, as PCRE without UTF mode in Exim; no FutureWarning noise for PCRE-valid patterns.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return re.compile(to_bytes(pattern), re.IGNORECASE)


def wild_match(pattern: str, subject: str) -> bool:
    """One wildlsearch key against a subject, caselessly.

    ``^...`` is a regular expression, ``*suffix`` matches any subject ending
    in suffix (``*`` alone matches anything), anything else is literal.
    """
    if pattern.startswith("^"):
        return _wild_regex(pattern).search(to_bytes(subject)) is not None
    if pattern.startswith("*"):
        return subject.lower().endswith(pattern[1:].lower())
    return pattern.lower() == subject.lower()


def find_wild(path: str, key: str, options: str | None = None) -> str | None:
    for pattern, data in load(path).entries:
        try:
            if wild_match(pattern, key):
                return data
        except re.error as exc:
            raise ExpansionError(f'bad regular expression "{pattern}" in {path}: {exc}') from None
    return None


def find_ip(path: str, key: str, options: str | None = None) -> str | None:
    """iplsearch: keys are IP addresses or CIDR networks; "*" matches only the key "*"."""
    import ipaddress

    from mta.expand.ipaddr import is_ip_address

    entries = load(path).entries  # opened first, as Exim: a missing file is reported before a bad key
    if key != "*" and is_ip_address(key)[0] == 0:
        raise LookupDeferError(
            f'"{key}" is not a valid iplsearch key (an IP address, with optional CIDR mask, is wanted): '
            "in a host list, use net-iplsearch as the search type",
            path,
        )
    for pattern, data in entries:
        if pattern == "*" or key == "*":
            if pattern == key:
                return data
            continue
        try:
            network = ipaddress.ip_network(pattern, strict=False)
            address = ipaddress.ip_network(key, strict=False)
        except ValueError:
            continue
        if address.version == network.version and address.subnet_of(network):  # type: ignore[arg-type]
            return data
    return None
