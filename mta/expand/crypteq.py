"""The crypteq condition: a plain text against a stored password hash, as Exim 4.96.

``{md5}`` and ``{sha1}`` hashes may be base64 (24 / 28 characters, as LDAP
writes them) or hex (32 / 40, any case); ``{crypt}`` (and no prefix) uses
the system's crypt(3), so any scheme libcrypt knows ($1$, $5$, $6$, $y$,
DES) works; ``{crypt16}`` is Exim's two-block DES variant.  crypt(3) is
called through ctypes: Python's crypt module is deprecated and gone in 3.13.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import functools
import hashlib

from mta.errors import ExpansionError
from mta.expand.textcodecs import from_bytes, to_bytes


@functools.lru_cache(maxsize=1)
def _libcrypt() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("crypt") or "libcrypt.so.1"
    try:
        library = ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None
    library.crypt.restype = ctypes.c_char_p
    library.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    return library


def system_crypt(key: bytes, salt: bytes) -> bytes | None:
    library = _libcrypt()
    if library is None:
        raise ExpansionError("crypt error: the system's crypt library is not available\n")
    result = library.crypt(key, salt)
    if result is None or result.startswith(b"*"):
        return None  # libxcrypt's "*0"/"*1" failure tokens: a wrong or unknown salt
    return bytes(result)


def _crypt16(key: bytes, salt: bytes) -> bytes | None:
    first = system_crypt(key, salt)  # DES reads only the first 8 bytes
    if first is None:
        return None
    result = first[:13]
    if len(key) > 8:
        second = system_crypt(key[8:], result[2:4])
        if second is None:
            return None
        result += second[2:13]
    return result


def crypteq(plain: str, stored: str) -> bool:
    lowered = stored.lower()
    text = to_bytes(plain)
    if lowered.startswith("{md5}"):
        return _digest_matches(hashlib.md5(text).digest(), stored[5:], 24, 32)
    if lowered.startswith("{sha1}"):
        return _digest_matches(hashlib.sha1(text).digest(), stored[6:], 28, 40)
    crypt = system_crypt
    if lowered.startswith("{crypt}"):
        stored = stored[7:]
    elif lowered.startswith("{crypt16}"):
        stored = stored[9:]
        crypt = _crypt16
    elif stored.startswith("{"):
        raise ExpansionError(f'unknown encryption mechanism in "{stored}"')
    salt = to_bytes(stored)
    coded = crypt(text, salt)
    if coded is None:
        return False
    # A hash shorter than its salt would make crypt() of anything "match".
    return len(salt) >= 2 and from_bytes(coded) == stored


def _digest_matches(digest: bytes, stored: str, b64_length: int, hex_length: int) -> bool:
    if len(stored) == b64_length:
        return base64.b64encode(digest).decode("ascii") == stored
    if len(stored) == hex_length:
        return digest.hex().upper() == stored.upper()
    return False
