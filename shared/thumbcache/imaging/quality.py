"""Estimate a source's quality and choose the output quality and chroma subsampling."""

from __future__ import annotations

import itertools
from functools import cache

import numpy as np
import numpy.typing as npt

# The IJG (libjpeg) standard luminance quantization table, in natural (row-major) order.
STANDARD_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
SUBSAMPLING_444 = "4:4:4"
SUBSAMPLING_420 = "4:2:0"


def ijg_table(quality: int, base: tuple[int, ...] = STANDARD_LUMA) -> tuple[int, ...]:
    """The quantization table libjpeg's ``jpeg_set_quality(quality)`` derives from ``base``."""
    quality = max(1, min(100, quality))
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return tuple(max(1, min(255, (q * scale + 50) // 100)) for q in base)


@cache
def _ijg_tables() -> npt.NDArray[np.float64]:
    """Row q-1 holds the IJG luminance table of quality q."""
    return np.array([ijg_table(q) for q in range(1, 101)], dtype=np.float64)


def quality_from_luma_table(table: list[int] | tuple[int, ...]) -> int:
    """The IJG quality whose luminance table is nearest ``table`` (exact for IJG encoders)."""
    if len(table) != 64:
        raise ValueError("a quantization table has 64 entries")
    tables = _ijg_tables()
    errors = (np.abs(np.asarray(table, dtype=np.float64) - tables) / tables).sum(axis=1)
    # Ties (the flat all-1 tables of q >= 98) resolve to the highest quality.
    return int(100 - np.argmin(errors[::-1]))


def quality_from_bits_per_pixel(bpp: float) -> int:
    """A rough quality for lossy non-JPEG sources from their compressed bits per pixel."""
    # Calibrated on photographs: ~0.5 bpp looks like q50, ~1.5 bpp like q85, >= 3 bpp like q95.
    points = ((0.2, 30), (0.5, 50), (1.0, 75), (1.5, 85), (3.0, 95))
    if bpp <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if bpp <= x1:
            return round(y0 + (y1 - y0) * (bpp - x0) / (x1 - x0))
    return points[-1][1]


def webp_is_lossy(data: bytes) -> bool:
    """True when the first image in a WebP file is VP8 (lossy) rather than VP8L (lossless)."""
    pos, end = 12, min(len(data), 1 << 20)
    while pos + 8 <= end:
        fourcc, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if fourcc == b"VP8 ":
            return True
        if fourcc == b"VP8L":
            return False
        if fourcc == b"ANMF":  # an animation frame: 16 bytes of frame header, then its chunks
            pos += 8 + 16
            continue
        pos += 8 + size + (size & 1)
    return False


def estimate_quality(
    fmt: str, luma_table: tuple[int, ...] | None, data: bytes, pixels: int
) -> int | None:
    """The source's estimated quality, or None for lossless sources (no cap applies)."""
    if fmt == "jpeg" and luma_table is not None:
        return quality_from_luma_table(luma_table)
    if fmt == "webp" and webp_is_lossy(data):
        return quality_from_bits_per_pixel(len(data) * 8.0 / max(1, pixels))
    return None


def choose_quality(configured: int, source: int | None) -> int:
    """The output quality: the configured one, capped by the source's estimate."""
    return configured if source is None else max(1, min(configured, source))


def choose_subsampling(quality: int, full_chroma_at_or_above: int | None) -> str:
    """4:4:4 when the spec asks for full chroma at this quality (thumbnails), else 4:2:0."""
    if full_chroma_at_or_above is not None and quality >= full_chroma_at_or_above:
        return SUBSAMPLING_444
    return SUBSAMPLING_420
