"""Just enough of PNG to count a screenshot's pixels (8-bit RGB/RGBA, not interlaced), with zlib only."""

from __future__ import annotations

import struct
import zlib


def decode(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB bytes) of a PNG image."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _c, _f, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        elif kind == b"IEND":
            break
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytes(stride)
    low, high = int.from_bytes(b"\x7f" * stride, "big"), int.from_bytes(b"\x80" * stride, "big")
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]
        if kind == 2:
            # "Up": each byte plus the one above, modulo 256, for the whole row at once (SWAR
            # on big integers: add the low 7 bits, then put the top bits back with xor).
            a, b = int.from_bytes(line, "big"), int.from_bytes(previous, "big")
            line = (((a & low) + (b & low)) ^ ((a ^ b) & high)).to_bytes(stride, "big")
        elif kind != 0:
            line = _unfilter(kind, bytearray(line), previous, channels)
        previous = line
        rows.append(line if channels == 3 else bytes(b for j, b in enumerate(line) if j % 4 != 3))
    return width, height, rows


def _unfilter(kind: int, line: bytearray, previous: bytes, channels: int) -> bytes:
    for i in range(len(line)):
        left = line[i - channels] if i >= channels else 0
        up = previous[i]
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 0xFF
        else:
            upper_left = previous[i - channels] if i >= channels else 0
            p = left + up - upper_left
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - upper_left)
            predictor = left if pa <= pb and pa <= pc else up if pb <= pc else upper_left
            line[i] = (line[i] + predictor) & 0xFF
    return bytes(line)


def count_colour(rows: list[bytes], colour: tuple[int, int, int], top: int = 0, bottom: int | None = None) -> int:
    """How many pixels of `colour` rows top..bottom hold (a byte search: the page is mostly white,
    so a match straddling two pixels does not happen with the chart colours)."""
    return sum(row.count(bytes(colour)) for row in rows[top:bottom])


def columns_with(row: bytes, colour: tuple[int, int, int]) -> list[int]:
    """The x of each pixel of `colour` in one row."""
    pattern, xs, start = bytes(colour), [], 0
    while (i := row.find(pattern, start)) >= 0:
        if i % 3 == 0:
            xs.append(i // 3)
        start = i + 1
    return xs


def hex_colour(text: str) -> tuple[int, int, int]:
    return int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16)
