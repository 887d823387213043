"""What a decode will cost, judged before decoding: JPEG scans (CPU) and peak memory.

Pure functions of the header and the bytes. Both refusals are cheap: counting scans is one
``bytes.count`` over the file (0xFF in entropy-coded data is byte-stuffed, so every 0xFFDA is a
marker), and the memory estimate is arithmetic on the header's size and mode.
"""

from __future__ import annotations

import math

from thumbcache.errors import DecodeBomb, ImageTooLarge
from thumbcache.imaging.header import Header
from thumbcache.imaging.jxl import DECODE_BYTES_PER_PIXEL
from thumbcache.settings import LimitSettings

_SOS, _EOI = b"\xff\xda", b"\xff\xd9"
# Markers that stand alone, without a length: TEM and the restart markers RST0-RST7.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})

# Peak bytes per pixel over the worker's baseline, measured in a subprocess (VmHWM) for each
# decode path (docs/DECODE_LIMITS.md has the table and the command):
# JPEG, per pixel decoded (after DCT scaling), to the encoded rendition: OpenCV (YCbCr, grey)
# measured 10.6-13, Pillow (CMYK/YCCK, then converted to sRGB) 12.9.
JPEG_BYTES_PER_DECODED_PIXEL = 14
# Pillow's decoders, per source pixel, when no reduction follows (the worst case).
PILLOW_BYTES_PER_PIXEL = {
    "8-bit": 9,  # 1, L, P, RGB, YCbCr, HSV
    "alpha": 14,  # LA, PA, RGBA (a premultiplied copy for resizing)
    "deep": 11,  # I;16 variants, I (widened to 32 bits while scaled down to 8)
    "float": 18,  # F
    "converted": 11,  # LAB, CMYK: converted to sRGB at full size
    "jpeg2000": 20,  # OpenJPEG decodes into 32-bit planes
    "jxl": DECODE_BYTES_PER_PIXEL,  # pillow-jxl-plugin decodes at open, at full size
}
# Modes reduced as decoded, and what Pillow holds per pixel of them (RGB is stored as RGBX;
# with alpha, add the banded premultiplied copies and the PNG decoder's rows: measured 4.8).
# Every other mode is converted at full size before the reduction: the whole multiplier.
_REDUCED_AS_DECODED = {"L": 1, "RGB": 4, "LA": 5, "RGBA": 5}
WEBP_BYTES_PER_PIXEL = 7  # OpenCV, always at full size
# Progressive JPEG: libjpeg keeps every DCT coefficient (2 bytes per sample of every
# component) for the whole image, whatever the output scale.
COEFFICIENT_BYTES = 2


def count_scans(data: bytes) -> int:
    """The number of scans (SOS markers) from the first SOS to the first EOI after it.

    The first SOS is found by walking the marker segments from SOI, so an EXIF thumbnail
    (a whole JPEG inside APP1, before the first SOS) never counts.
    """
    first = _first_scan(data)
    if first is None:
        return 0
    end = data.find(_EOI, first)
    return data.count(_SOS, first, end if end >= 0 else len(data))


def _first_scan(data: bytes) -> int | None:
    pos, size = 2, len(data)
    while pos + 4 <= size:
        if data[pos] != 0xFF:
            return None  # damaged: the decoder will say so
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0xDA:
            return pos
        elif marker in _STANDALONE:
            pos += 2
        elif marker == 0xD9:
            return None
        else:
            pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


def check_scans(data: bytes, header: Header, limits: LimitSettings) -> None:
    """Refuse a progressive JPEG with more scans than ``limits.max_jpeg_scans`` (DecodeBomb).

    Only progressive files: a sequential decode stops once its frame is complete (measured: a
    12 MP baseline JPEG with its scan repeated 20 times decodes in the same 22 ms), and
    counting costs about 2 ms per MB, which the JPEG fast path would pay on every image.
    """
    if header.format != "jpeg" or not header.progressive:
        return
    scans = count_scans(data)
    if scans > limits.max_jpeg_scans:
        raise DecodeBomb(
            f"JPEG has {scans} scans, over the limit of {limits.max_jpeg_scans} "
            "(real progressive JPEGs have about 10; each scan decodes the whole image again)"
        )


def estimate_decode_bytes(header: Header, scale: int, reduction: int) -> int:
    """Peak bytes one render of ``header``'s image takes.

    ``scale``: the JPEG's DCT scale (1/n); ``reduction``: the box reduction Pillow applies
    after decoding any other format.
    """
    pixels = header.width * header.height
    if header.format == "jpeg":
        decoded = math.ceil(header.width / scale) * math.ceil(header.height / scale)
        coefficients = pixels * COEFFICIENT_BYTES * _samples_per_pixel(header)
        per_pixel = JPEG_BYTES_PER_DECODED_PIXEL
        return int(decoded * per_pixel + (coefficients if header.progressive else 0))
    if header.format == "webp":
        return pixels * WEBP_BYTES_PER_PIXEL
    whole = PILLOW_BYTES_PER_PIXEL[_pillow_class(header)]
    stored = _REDUCED_AS_DECODED.get(header.mode)
    if stored is None or reduction <= 1 or header.format in ("jpeg2000", "jxl"):
        return pixels * whole
    # The decoded image, then everything after the reduction on 1/reduction^2 of the pixels.
    return pixels * stored + pixels * (whole - stored) // (reduction * reduction)


def _samples_per_pixel(header: Header) -> float:
    """Samples per pixel libjpeg stores: 3 for 4:4:4 colour, 1.5 for 4:2:0, 1 for grey."""
    if header.jpeg_sampling:
        h_max = max(h for h, _ in header.jpeg_sampling)
        v_max = max(v for _, v in header.jpeg_sampling)
        return sum(h * v for h, v in header.jpeg_sampling) / (h_max * v_max)
    return {"L": 1.0, "CMYK": 4.0}.get(header.mode, 3.0)


def _pillow_class(header: Header) -> str:
    if header.format in ("jpeg2000", "jxl"):
        return header.format
    mode = header.mode
    if mode == "F":
        return "float"
    if mode.startswith("I"):
        return "deep"
    if mode in ("LAB", "CMYK"):
        return "converted"
    if "A" in mode or "a" in mode:
        return "alpha"
    return "8-bit"


def check_memory(header: Header, scale: int, reduction: int, limits: LimitSettings) -> None:
    """Refuse a render whose estimated peak exceeds ``limits.max_decode_mb`` (ImageTooLarge)."""
    estimate = estimate_decode_bytes(header, scale, reduction)
    budget = limits.max_decode_mb * 1024 * 1024
    if estimate > budget:
        raise ImageTooLarge(
            f"decoding {header.width}x{header.height} {header.format} ({header.mode}"
            f"{', progressive' if header.progressive else ''}) would take about "
            f"{estimate / 1048576:.0f} MB, over the decode memory budget of "
            f"{limits.max_decode_mb} MB (limits.max_decode_mb)"
        )
