"""eximstats' arithmetic for display: rounded volumes, averages, durations, top-N order.

eximstats runs under Perl's ``use integer``: every division truncates, and a
volume is kept as (bytes below 1 GB, whole gigabytes).  Averages in the
league tables are computed from the *rounded* volume, split back into
bytes and gigabytes, each part divided on its own, as eximstats does it ("as
the user would calculate it").  The functions below reproduce that so that
every figure is the one eximstats prints.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

GIG = 1024 * 1024 * 1024


def split_volume(total: int) -> tuple[int, int]:
    """(bytes, gigabytes) as eximstats' add_volume leaves them: bytes in [0, 1 GB]."""
    gigs = 0
    if total > GIG:
        gigs = (total - 1) // GIG
        total -= gigs * GIG
    return total, gigs


def volume_rounded(x: int, g: int = 0, rounding: bool = True) -> str:
    """eximstats' volume_rounded(bytes, gigabytes): "  9874", "  12KB", "  14MB", "  12GB"."""
    while x > GIG:
        g += 1
        x -= GIG
    if not rounding:
        return f"{g * GIG + x:.0f}"
    if g <= 0:
        if x < 10000:
            return f"{x:6d}"
        if x < 10000000:
            return f"{(x + 512) // 1024:4d}KB"
        return f"{(x + 512 * 1024) // (1024 * 1024):4d}MB"
    if g < 10:
        return f"{g * 1024 + (x + 512 * 1024) // (1024 * 1024):4d}MB"
    return f"{g + (x + GIG // 2) // GIG:4d}GB"


def volume_text(total: int, rounding: bool = True) -> str:
    return volume_rounded(*split_volume(total), rounding=rounding)


def un_round(rounded: str) -> tuple[int, int]:
    """eximstats' un_round: a rounded volume back to (bytes, gigabytes)."""
    data, gigs = 0, 0
    if m := re.search(r"(\d+)GB", rounded):
        gigs += int(m.group(1))
    elif m := re.search(r"(\d+)MB", rounded):
        n = int(m.group(1))
        gigs += n // 1024
        data += (n % 1024) * 1024 * 1024
    elif m := re.search(r"(\d+)KB", rounded):
        n = int(m.group(1))
        gigs += n // (1024 * 1024)
        data += n % (1024 * 1024) * 1024
    elif m := re.search(r"(\d+)", rounded):
        n = int(m.group(1))
        gigs += n // GIG
        data += n % GIG
    while data > GIG:
        gigs += 1
        data -= GIG
    return data, gigs


def rounded_average(total: int, messages: int, rounding: bool = True) -> tuple[str, str]:
    """(rounded volume, rounded average per message), as a league table row shows them."""
    volume = volume_text(total, rounding)
    data, gigs = un_round(volume)
    return volume, volume_rounded(data // messages, gigs // messages, rounding)


def format_time(seconds: int) -> str:
    """eximstats' format_time: 12005 -> "3h20m5s"."""
    t = seconds
    s = t % 60
    t //= 60
    m = t % 60
    t //= 60
    h = t % 24
    t //= 24
    d = t % 7
    w = t // 7
    text = ""
    text += f"{w}w" if w > 0 else ""
    text += f"{d}d" if d > 0 else ""
    text += f"{h}h" if h > 0 else ""
    text += f"{m}m" if m > 0 else ""
    if s > 0 or text == "":
        text += f"{s}s"
    return text


def top_n(n: int, first: Mapping[str, int], second: Mapping[str, int] | None = None,
          third: Mapping[str, int] | None = None) -> list[str]:
    """eximstats' top_n_sort: the n keys with the highest values of `first`, ties broken by
    `second`, then `third`, then the key in ascending order."""
    second = second or {}
    third = third or {}
    ordered = sorted(first, key=lambda k: (-first[k], -second.get(k, 0), -third.get(k, 0), k))
    return ordered[:n] if n > 0 else []
