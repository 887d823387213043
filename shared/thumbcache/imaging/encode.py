"""Encode BGR(A) pixels as an sRGB-tagged JPEG (OpenCV) or WebP (Pillow)."""

from __future__ import annotations

import io

import cv2

from thumbcache.imaging.colour import SRGB_ICC, Pixels, to_image
from thumbcache.imaging.quality import SUBSAMPLING_444

_ICC_MARKER = b"ICC_PROFILE\x00"
_MAX_SEGMENT = 65533 - 2 - len(_ICC_MARKER) - 2  # payload bytes one APP2 segment can carry


def encode_jpeg(px: Pixels, quality: int, subsampling: str, *, optimize: bool = False) -> bytes:
    """A baseline JPEG of BGR ``px`` tagged sRGB; ``optimize`` builds optimal Huffman tables."""
    factor = (
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444
        if subsampling == SUBSAMPLING_444
        else cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420
    )
    params = [
        cv2.IMWRITE_JPEG_QUALITY,
        quality,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        factor,
        cv2.IMWRITE_JPEG_OPTIMIZE,
        int(optimize),
    ]
    ok, buf = cv2.imencode(".jpg", px, params)
    if not ok:
        raise RuntimeError("OpenCV failed to encode a JPEG")
    return insert_jpeg_icc(buf.tobytes(), SRGB_ICC)


def insert_jpeg_icc(jpeg: bytes, icc: bytes) -> bytes:
    """``jpeg`` with ``icc`` embedded as APP2 ICC_PROFILE segments after SOI and any APP0."""
    if not jpeg.startswith(b"\xff\xd8"):
        raise ValueError("not a JPEG stream")
    at = 2
    if jpeg[2:4] == b"\xff\xe0":  # JFIF APP0 must stay first
        at = 4 + int.from_bytes(jpeg[4:6], "big")
    chunks = [icc[i : i + _MAX_SEGMENT] for i in range(0, len(icc), _MAX_SEGMENT)]
    segments = b"".join(
        b"\xff\xe2"
        + (2 + len(_ICC_MARKER) + 2 + len(chunk)).to_bytes(2, "big")
        + _ICC_MARKER
        + bytes((n, len(chunks)))
        + chunk
        for n, chunk in enumerate(chunks, start=1)
    )
    return jpeg[:at] + segments + jpeg[at:]


def encode_webp(px: Pixels, quality: int, method: int) -> bytes:
    """A lossy WebP of BGR(A) ``px`` (alpha kept) tagged sRGB, at encoder effort ``method``."""
    out = io.BytesIO()
    to_image(px).save(out, "WEBP", quality=quality, method=method, icc_profile=SRGB_ICC)
    return out.getvalue()
