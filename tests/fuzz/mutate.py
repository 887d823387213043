"""A seeded mutator for image files: bit flips, truncation, repeated scans, lying dimensions.

Pure functions of (bytes, random.Random): the same seed always makes the same files. Format-aware
mutations patch the header fields a decoder sizes its buffers from (JPEG SOF, PNG IHDR with
its CRC fixed, GIF screen and frame, TIFF ImageWidth/ImageLength, WebP VP8/VP8L), or repeat
the parts a decoder loops over (JPEG scans, PNG IDAT, GIF frames).
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable

Mutation = Callable[[bytes, random.Random], bytes]

# Dimensions a hostile header claims: at the pixel limit (100 MP), over it, degenerate, and
# the largest each field can hold.
LYING_SIZES = (
    (10_000, 10_000),
    (16_383, 6_000),
    (50_000, 50_000),
    (65_535, 65_535),
    (1, 65_535),
    (0, 480),
    (640, 0),
)


def bit_flips(data: bytes, rng: random.Random) -> bytes:
    """Flip 1-24 random bits past the first 8 bytes (the magic stays, so it is still sniffed)."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 24)):
        i = rng.randrange(min(8, len(out) - 1), len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def truncate(data: bytes, rng: random.Random) -> bytes:
    """Cut the file anywhere after its first 4 bytes."""
    return data[: rng.randrange(4, len(data))]


def splice(data: bytes, rng: random.Random) -> bytes:
    """Replace a random span (up to 64 bytes) with random bytes."""
    start = rng.randrange(8, len(data))
    length = rng.randint(1, 64)
    return data[:start] + rng.randbytes(length) + data[start + length :]


def duplicate_span(data: bytes, rng: random.Random) -> bytes:
    """Repeat a random span of the file 2-50 times in place."""
    start = rng.randrange(8, len(data) - 1)
    span = data[start : start + rng.randint(1, 512)]
    return data[:start] + span * rng.randint(2, 50) + data[start:]


def segments(data: bytes, marker: bytes) -> list[tuple[int, int]]:
    """(start, end) of each JPEG segment with ``marker``, entropy-coded data included."""
    spans = []
    i = data.find(marker)
    while i != -1:
        j = i + 2
        while True:  # the next marker that is not a stuffed 0xFF00 or a restart marker
            j = data.find(b"\xff", j)
            if j == -1 or j + 1 >= len(data):
                j = len(data)
                break
            if data[j + 1] != 0 and not 0xD0 <= data[j + 1] <= 0xD7:
                break
            j += 2
        spans.append((i, j))
        i = data.find(marker, j)
    return spans


def jpeg_repeat_scans(data: bytes, rng: random.Random) -> bytes:
    """Repeat the JPEG's smallest scan hundreds of times: each repeat is a "bogus progression"
    that libjpeg only warns about, then decodes again over the whole image."""
    scans = segments(data, b"\xff\xda")
    if not scans:
        return duplicate_span(data, rng)
    start, end = min(scans, key=lambda span: span[1] - span[0])
    return data[:end] + data[start:end] * rng.randint(100, 3000) + data[end:]


def jpeg_lying_size(data: bytes, rng: random.Random) -> bytes:
    """Patch the SOF frame header to claim another width and height."""
    out = bytearray(data)
    for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
        i = out.find(marker)
        if i != -1:
            width, height = rng.choice(LYING_SIZES)
            struct.pack_into(">HH", out, i + 5, height, width)
            return bytes(out)
    return bit_flips(data, rng)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """A PNG chunk with its length and CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_lying_size(data: bytes, rng: random.Random) -> bytes:
    """Rewrite IHDR (CRC fixed, so the decoder believes it) with another width and height."""
    width, height = rng.choice((*LYING_SIZES, (2**31 - 1, 1), (30_000, 3_000)))
    body = struct.pack(">II", width, height) + data[24:29]
    return data[:8] + png_chunk(b"IHDR", body) + data[33:]


def png_repeat_idat(data: bytes, rng: random.Random) -> bytes:
    """Repeat the IDAT chunks: more compressed data than the image can hold."""
    i = data.find(b"IDAT") - 4
    end = data.find(b"IEND") - 4
    if i < 0 or end < i:
        return duplicate_span(data, rng)
    return data[:i] + data[i:end] * rng.randint(2, 200) + data[end:]


def gif_lying_size(data: bytes, rng: random.Random) -> bytes:
    """Patch the logical screen and the first image descriptor to claim another size."""
    out = bytearray(data)
    width, height = rng.choice(LYING_SIZES)
    struct.pack_into("<HH", out, 6, width, height)
    i = out.find(b"\x2c", 13)
    if i != -1 and i + 9 <= len(out):
        struct.pack_into("<HH", out, i + 5, width, height)
    return bytes(out)


def gif_repeat_frames(data: bytes, rng: random.Random) -> bytes:
    """Repeat everything between the first image descriptor and the trailer."""
    i = data.find(b"\x21\xf9")
    if i == -1:
        i = data.find(b"\x2c", 13)
    if i == -1:
        return duplicate_span(data, rng)
    return data[:i] + data[i:-1] * rng.randint(2, 400) + data[-1:]


def tiff_lying_size(data: bytes, rng: random.Random) -> bytes:
    """Patch ImageWidth (256) and ImageLength (257) in the first IFD."""
    order = "<" if data[:2] == b"II" else ">"
    out = bytearray(data)
    (ifd,) = struct.unpack_from(order + "I", out, 4)
    if ifd + 2 > len(out):
        return bit_flips(data, rng)
    (count,) = struct.unpack_from(order + "H", out, ifd)
    width, height = rng.choice(LYING_SIZES)
    for n in range(count):
        entry = ifd + 2 + 12 * n
        if entry + 12 > len(out):
            break
        tag, kind = struct.unpack_from(order + "HH", out, entry)
        value = {256: width, 257: height}.get(tag)
        if value is None:
            continue
        if kind == 3:  # SHORT
            struct.pack_into(order + "H", out, entry + 8, min(value, 0xFFFF))
        else:
            struct.pack_into(order + "I", out, entry + 8, value)
    return bytes(out)


def webp_lying_size(data: bytes, rng: random.Random) -> bytes:
    """Patch the VP8 (lossy) or VP8L (lossless) bitstream header's width and height."""
    out = bytearray(data)
    width, height = rng.choice(LYING_SIZES)
    width, height = max(1, min(width, 16_383)), max(1, min(height, 16_383))
    if out[12:16] == b"VP8 " and len(out) >= 30:
        struct.pack_into("<HH", out, 26, width, height)
    elif out[12:16] == b"VP8L" and len(out) >= 25:
        (bits,) = struct.unpack_from("<I", out, 21)
        bits = (bits & ~0x0FFFFFFF) | (width - 1) | ((height - 1) << 14)
        struct.pack_into("<I", out, 21, bits)
    else:
        return bit_flips(data, rng)
    return bytes(out)


GENERIC: tuple[Mutation, ...] = (bit_flips, truncate, splice, duplicate_span)
BY_FORMAT: dict[str, tuple[Mutation, ...]] = {
    "jpeg": (jpeg_repeat_scans, jpeg_lying_size),
    "png": (png_lying_size, png_repeat_idat),
    "gif": (gif_lying_size, gif_repeat_frames),
    "tiff": (tiff_lying_size,),
    "webp": (webp_lying_size,),
}


def mutate(data: bytes, fmt: str, rng: random.Random) -> tuple[bytes, str]:
    """One or two mutations (format-aware or generic); returns the bytes and their names."""
    choices = GENERIC + BY_FORMAT.get(fmt, ())
    names = []
    for _ in range(rng.choice((1, 1, 2))):
        mutation = rng.choice(choices)
        data = mutation(data, rng)
        names.append(mutation.__name__)
    return data, "+".join(names)
