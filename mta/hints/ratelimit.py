"""Records of the ``ratelimit`` hints database and Exim's rate arithmetic.

A record holds, for one key (``<period>/<per_what>/[unique/]<key>``, e.g.
``1h/per_rcpt/192.0.2.7``), the time of the last counted event and the
smoothed rate; the ``unique=`` and ``per_addr`` variants add a Bloom filter
of the events already counted in the current period.  The computations are
pure functions of the time passed in (never the clock), as Exim's acl.c does
them, so they are tested with fixed times.

Record format (little-endian): ``b"RL1"``, a flags byte (1 = has a filter),
the time (double, seconds since the epoch) and the rate (double); with a
filter, the filter's epoch (int64 seconds) and its bytes.  `decode` refuses
anything else with ValueError: a record read back is never trusted.
"""

from __future__ import annotations

import hashlib
import math
import struct

from mta import record

_MAGIC = b"RL1"
_HEAD = struct.Struct("<3sBdd")
_BLOOM_EPOCH = struct.Struct("<q")
# Exim's dbdata_ratelimit_unique has a 14-byte minimum filter; two bytes per
# event of the limit beyond that.
MIN_BLOOM_SIZE = 14
MAX_BLOOM_SIZE = 1024 * 1024


@record.dataclass(frozen=True, slots=True)
class RatelimitRecord:
    time: float  # of the last update, seconds since the epoch
    rate: float  # smoothed events per period
    bloom_epoch: int | None = None  # when the filter was started (unique= / per_addr)
    bloom: bytes = b""


def encode(rec: RatelimitRecord) -> bytes:
    head = _HEAD.pack(_MAGIC, 1 if rec.bloom_epoch is not None else 0, rec.time, rec.rate)
    if rec.bloom_epoch is None:
        return head
    return head + _BLOOM_EPOCH.pack(rec.bloom_epoch) + rec.bloom


def decode(data: bytes) -> RatelimitRecord:
    if len(data) < _HEAD.size:
        raise ValueError(f"ratelimit record of {len(data)} bytes is too short")
    magic, flags, when, rate = _HEAD.unpack_from(data)
    if magic != _MAGIC or flags not in (0, 1):
        raise ValueError("not a ratelimit record")
    if not (math.isfinite(when) and math.isfinite(rate)) or rate < 0 or when < 0:
        raise ValueError(f"ratelimit record with time {when!r} and rate {rate!r}")
    if flags == 0:
        if len(data) != _HEAD.size:
            raise ValueError("ratelimit record with trailing bytes")
        return RatelimitRecord(when, rate)
    rest = data[_HEAD.size :]
    if len(rest) < _BLOOM_EPOCH.size + MIN_BLOOM_SIZE or len(rest) > _BLOOM_EPOCH.size + MAX_BLOOM_SIZE:
        raise ValueError(f"ratelimit filter of {len(rest)} bytes")
    (epoch,) = _BLOOM_EPOCH.unpack_from(rest)
    return RatelimitRecord(when, rate, epoch, bytes(rest[_BLOOM_EPOCH.size :]))


def next_rate(previous: RatelimitRecord | None, now: float, period: float, count: float) -> float:
    """The smoothed rate after an event of size `count` at `now` (Exim's acl_ratelimit).

    An exponentially weighted moving average of period/interval, adjusted for
    the varying interval since the last event; an isolated event counts as
    `count` per period.  A client sending `limit` messages in a fast burst
    reaches the limit on the limit-th message.
    """
    if previous is None:
        return count
    # The clock going backwards must not divide by zero or go negative.
    interval = now - previous.time
    if interval <= 0.0:
        interval = 1e-9
    i_over_p = interval / period
    a = math.exp(-i_over_p)
    rate = (1 - a) * count / i_over_p + a * previous.rate
    return max(rate, count)


def new_bloom(limit: float, now: float) -> tuple[int, bytes]:
    """A fresh filter for a limit: 16 bits per event of the limit, Exim's sizing."""
    size = max(MIN_BLOOM_SIZE, min(MAX_BLOOM_SIZE, int(limit) * 2))
    return int(now), bytes(size)


def bloom_add(bloom: bytes, event: str) -> tuple[bytes, bool]:
    """Add `event` to the filter; returns (new filter, whether it was already there).

    Eight bits from two MD5-derived hashes (h1 + n * h2), as Exim sets them.
    """
    digest = hashlib.md5(event.encode("utf-8", "surrogateescape"), usedforsecurity=False).digest()
    h = int.from_bytes(digest[0:4], "little")
    step = int.from_bytes(digest[4:8], "little")
    bits = bytearray(bloom)
    seen = True
    for _ in range(8):
        bit = 1 << (h % 8)
        index = (h // 8) % len(bits)
        if not bits[index] & bit:
            bits[index] |= bit
            seen = False
        h = (h + step) & 0xFFFFFFFF
    return bytes(bits), seen
