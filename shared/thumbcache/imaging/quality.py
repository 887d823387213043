"""Estimate a source's JPEG quality and choose the output quality (never above the source)."""

from __future__ import annotations

from PIL import Image

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


def quality_from_luma_table(table: list[int] | tuple[int, ...]) -> int:
    """Invert the IJG quality scaling of a luminance table to an estimated quality 1..100."""
    if len(table) != 64:
        raise ValueError("a quantization table has 64 entries")
    scale = sum(q * 100.0 / s for q, s in zip(table, STANDARD_LUMA, strict=True)) / 64.0
    if scale <= 0:
        return 100
    quality = (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale
    return max(1, min(100, round(quality)))


def quality_from_bits_per_pixel(bpp: float) -> int:
    """A rough quality for lossy non-JPEG sources from their compressed bits per pixel."""
    # Calibrated on photographs: ~0.5 bpp looks like q50, ~1.5 bpp like q85, >= 3 bpp like q95.
    points = ((0.2, 30), (0.5, 50), (1.0, 75), (1.5, 85), (3.0, 95))
    if bpp <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if bpp <= x1:
            return round(y0 + (y1 - y0) * (bpp - x0) / (x1 - x0))
    return points[-1][1]


def estimate_quality(im: Image.Image, encoded_bytes: int) -> int | None:
    """The source's estimated quality, or None for lossless sources (no cap applies)."""
    tables = getattr(im, "quantization", None)
    if im.format in ("JPEG", "MPO") and tables:
        return quality_from_luma_table(list(tables[0]))
    if im.format == "WEBP" and not _webp_lossless(im):
        pixels = max(1, im.width * im.height)
        return quality_from_bits_per_pixel(encoded_bytes * 8.0 / pixels)
    return None


def choose_quality(configured: int, source: int | None) -> int:
    """The output quality: the configured one, capped by the source's estimate."""
    return configured if source is None else max(1, min(configured, source))


def _webp_lossless(im: Image.Image) -> bool:
    fp = getattr(im, "fp", None)
    if fp is None:
        return False
    pos = fp.tell()
    try:
        fp.seek(12)
        return bool(fp.read(4) == b"VP8L")
    finally:
        fp.seek(pos)
