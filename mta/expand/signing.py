"""Hashes and signatures of the expansion language, as Exim 4.96 computes them.

${hash} / ${nhash} (Exim's own text and numeric hashes), ${hmac}, the BATV
items ${prvs} / ${prvscheck}, and SRS (${srs_encode}, the inbound_srs
condition).  Each is byte-exact with Exim so that a signature made by one
checks with the other.
"""

from __future__ import annotations

# hmac (and hashlib under it) is imported where used: milliseconds of every start-up otherwise.
import re
import time

from mta.errors import ExpansionError
from mta.expand.textcodecs import BASE32_CHARS, base32, to_bytes

_HASHCODES = "abcdefghijklmnopqrtsuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"  # sic: "rts", as Exim
_PRIMES = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71,
           73, 79, 83, 89, 97, 101, 103, 107, 109, 113]  # fmt: skip


def compute_hash(subject: str, length: int, chars: int) -> str:
    """Exim's compute_hash(): `length` characters from the first `chars` of its alphabet."""
    if chars < 0:
        chars = 26
    elif chars > len(_HASHCODES):
        raise ExpansionError(f'hash count "{chars}" too big')
    raw = bytearray(to_bytes(subject))
    if length >= len(raw):
        return subject
    i = 0
    for j in range(length, len(raw)):
        c = raw[j]
        shift = (c + j) & 7
        raw[i] ^= ((c << shift) | (c >> (8 - shift))) & 0xFF
        i = 0 if i + 1 >= length else i + 1
    return "".join(_HASHCODES[raw[k] % chars] for k in range(length))


def compute_nhash(subject: str, first: int, second: int) -> str:
    """Exim's compute_nhash(): "n" or "n/m"."""
    total = 0
    i = 0
    for byte in to_bytes(subject):
        if i == 0:
            i = len(_PRIMES) - 1
        total += _PRIMES[i] * byte
        i -= 1
    total &= 2**64 - 1
    if first == 0 or (second >= 0 and first * second == 0):
        raise ExpansionError("division by zero in nhash")
    if second < 0:
        return str(total % first)
    total %= first * second
    return f"{total // second}/{total % second}"


def hmac_hex(algorithm: str, key: str, text: str) -> str:
    if algorithm not in ("md5", "sha1"):
        raise ExpansionError(f'hmac algorithm "{algorithm}" is not recognised')
    import hmac

    return hmac.new(to_bytes(key), to_bytes(text), algorithm).hexdigest()


# -- BATV (prvs) ---------------------------------------------------------------------------


def prvs_daystamp(day_offset: int, now: float | None = None) -> str:
    days = str(int(((now if now is not None else time.time()) + day_offset * 86400) // 86400))
    return days[-3:] if len(days) >= 3 else "100"


def prvs_hmac(address: str, key: str, key_num: str | None, daystamp: str) -> str | None:
    """Exim's prvs_hmac_sha1(): six hex digits, or None for a key over 64 bytes."""
    raw_key = to_bytes(key)
    if len(raw_key) > 64:
        return None
    source = to_bytes((key_num or "0")[:1] + daystamp[:3] + address)
    import hmac

    return hmac.new(raw_key, source, "sha1").hexdigest()[:6]


PRVS_PATTERN = re.compile(r"^prvs\=([0-9])([0-9]{3})([A-F0-9]{6})\=(.+)\@(.+)$", re.IGNORECASE)


def prvs_expired(daystamp: str, now: float | None = None) -> bool:
    today = int(prvs_daystamp(0, now))
    expire = int(daystamp)
    if expire < 7 and today >= 993:
        today = 0  # the three-digit day counter wrapped
    return expire < today


# -- SRS -------------------------------------------------------------------------------------


def srs_checksum(secret: str, address: str) -> str:
    """Exim's hmac_md5(secret, address) cut to four hex digits."""
    import hmac

    return hmac.new(to_bytes(secret), to_bytes(address), "md5").hexdigest()[:4]


def srs_timestamp(now: float | None = None) -> str:
    days = int((now if now is not None else time.time()) // 86400) & 0x3FF
    return base32(days)


SRS0_PATTERN = re.compile(r"^SRS0=([^=]+)=([A-Z2-7]+)=([^=]*)=(.*)$", re.IGNORECASE | re.DOTALL)


def srs_days_old(stamp: str, now: float | None = None) -> int:
    value = 0
    for ch in stamp:
        index = BASE32_CHARS.find(ch)
        value = value * 32 + index  # Exim does not lower-case: upper case gives -1, as it does
    today = int((now if now is not None else time.time()) // 86400)
    return (today - value) & 0x3FF
