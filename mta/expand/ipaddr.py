"""IP address helpers of the expansion language, as Exim 4.96's string.c and host.c.

string_is_ip_address() decides what isip{}, mask, reverse_ip and
ipv6norm accept (it is looser and stricter than Python's ipaddress in
places, so it is ported, not replaced); host_aton() / host_nmtoa() /
ipv6_nmtoa() / invert_address() make the exact text Exim prints.
"""

from __future__ import annotations

import re

from mta.values import bounded_int


def is_ip_address(s: str, want_mask: bool = False) -> tuple[int, int]:
    """(4 or 6 or 0, offset of the "/" of a mask or 0): Exim's string_is_ip_address().

    As the Exim that Debian ships (the 4.97 rewrite): an optional numeric
    mask after "/" only when `want_mask`, an optional "%interface" after an
    IPv6 address, and the address itself as inet_pton() reads it (so no
    leading zeros in IPv4).
    """
    import socket

    maskoffset = 0
    end = len(s)
    slash = s.find("/")
    if slash >= 0:
        if not want_mask:
            return 0, 0
        mask = re.fullmatch(r"[ \t\n\r\f\v]*[-+]?\d+", s[slash + 1 :])
        if mask is None or bounded_int(mask.group(0)) < 0:
            return 0, 0
        maskoffset = end = slash
    percent = s.find("%")
    if percent >= 0:
        if slash >= 0:
            return 0, 0
        if any(not (33 <= ord(ch) <= 126) for ch in s[percent + 1 :]):
            return 0, 0
        end = percent
    address = s[:end]
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        socket.inet_pton(family, address)
    except (OSError, ValueError):
        return 0, maskoffset
    if family == socket.AF_INET:
        return (0 if percent >= 0 else 4), maskoffset
    return 6, maskoffset


def host_aton(address: str) -> list[int]:
    """Exim's host_aton(): one 32-bit word for IPv4, four for IPv6 (checked syntax)."""
    v4: str | None = None
    if ":" in address:
        body = address[1:] if address.startswith(":") else address
        body = body.split("%", 1)[0]
        components = body.split(":") if body else []
        if components and "." in components[-1]:
            v4 = components.pop()
            width = 6
        else:
            width = 8
        if "" in components and len(components) < width + 1:
            null = components.index("")
            components[null : null + 1] = [""] * (width - len(components) + 1)
        words16 = [int(c, 16) if c else 0 for c in components][:width]
        words16 += [0] * (width - len(words16))
        result = [(words16[k] << 16) | words16[k + 1] for k in range(0, width, 2)]
        if v4 is not None:
            result.append(_v4_word(v4))
        return result
    return [_v4_word(address)]


def _v4_word(text: str) -> int:
    value = 0
    for part in text.split(".")[:4]:
        m = re.match(r"\s*[-+]?\d+", part)
        value = (value << 8) | (bounded_int(m.group(0)) & 255 if m else 0)
    return value


def host_mask(words: list[int], mask: int) -> list[int]:
    out = []
    for word in words:
        if mask <= 0:
            wordmask = 0
        elif mask < 32:
            wordmask = (0xFFFFFFFF << (32 - mask)) & 0xFFFFFFFF
            mask = 0
        else:
            wordmask = 0xFFFFFFFF
            mask -= 32
        out.append(word & wordmask)
    return out


def host_nmtoa(words: list[int], mask: int, sep: str) -> str:
    if len(words) == 1:
        j = words[0]
        text = ".".join(str((j >> shift) & 255) for shift in (24, 16, 8, 0))
    else:
        text = sep.join(f"{(j >> 16) & 0xFFFF:04x}{sep}{j & 0xFFFF:04x}" for j in words)
    return text if mask < 0 else f"{text}/{mask}"


def ipv6_nmtoa(words: list[int]) -> str:
    """Exim's ipv6_nmtoa(): the longest run of zero groups (even one) becomes "::"."""
    groups = []
    for j in words:
        groups += [(j >> 16) & 0xFFFF, j & 0xFFFF]
    best_start, best_len = -1, 0
    i = 0
    while i < 8:
        if groups[i] == 0:
            start = i
            while i + 1 < 8 and groups[i + 1] == 0:
                i += 1
            if i - start + 1 > best_len:
                best_start, best_len = start, i - start + 1
        i += 1
    text = [f"{g:x}" for g in groups]
    if best_start < 0:
        return ":".join(text)
    if best_start == 0 and best_len == 8:
        return ":"  # what Exim's collapsing loop leaves of "::"
    head = ":".join(text[:best_start])
    tail = ":".join(text[best_start + best_len :])
    return f"{head}::{tail}"


def reverse_ip(address: str) -> str:
    """Exim's invert_address(): dotted reversed octets, or reversed nibbles for IPv6."""
    if address.startswith("::ffff:"):
        address = address[7:]
    words = host_aton(address)
    if len(words) == 1:
        x = words[0]
        return ".".join(str((x >> (8 * k)) & 255) for k in range(4))
    nibbles = []
    for j in range(3, -1, -1):
        x = words[j]
        nibbles += [f"{(x >> (4 * k)) & 15:x}" for k in range(8)]
    return ".".join(nibbles)
