"""Pure geometry: fitting a picture inside a box, orientation swaps, decode scale choice."""

from __future__ import annotations

# EXIF orientations 5-8 swap width and height when displayed.
TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
# The DCT scales (1/n) every JPEG decoder we use offers, largest reduction first.
JPEG_SCALE_DENOMINATORS = (8, 4, 2, 1)
# A scaled decode must exceed the target by this much (or match it exactly): resampling a
# DCT- or box-reduced picture by less than ~1.2x loses sharpness that no filter recovers (SSIM
# against a full-decode Lanczos reference fell to 0.94-0.96 at 1.05-1.1x on photo-like images,
# and stays >= 0.975 from 1.2x; docs/BENCHMARKS.md).
MIN_RESIDUAL = 1.2


def fit_within(width: int, height: int, box_w: int, box_h: int) -> tuple[int, int]:
    """The largest size inside ``box_w`` x ``box_h`` with the aspect of ``width`` x ``height``.

    Never upscales: an image already inside the box keeps its size. Each side is at least 1.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"invalid size {width}x{height}")
    scale = min(box_w / width, box_h / height, 1.0)
    if scale >= 1.0:
        return width, height
    return max(1, min(box_w, round(width * scale))), max(1, min(box_h, round(height * scale)))


def displayed_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    """The size of a stored ``width`` x ``height`` picture once its EXIF orientation is applied."""
    return (height, width) if orientation in TRANSPOSING_ORIENTATIONS else (width, height)


def stored_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    """The stored size that displays as ``width`` x ``height`` (the inverse of displayed_size)."""
    return displayed_size(width, height, orientation)


def scaled_size(width: int, height: int, denominator: int) -> tuple[int, int]:
    """The size a 1/``denominator`` DCT-scaled JPEG decode produces (libjpeg rounds up)."""
    return -(-width // denominator), -(-height // denominator)


def decode_denominator(
    width: int,
    height: int,
    target_w: int,
    target_h: int,
    choices: tuple[int, ...] = JPEG_SCALE_DENOMINATORS,
    min_residual: float = MIN_RESIDUAL,
) -> int:
    """The largest 1/n scale whose decode is the target or exceeds it by ``min_residual``."""
    for n in sorted(choices, reverse=True):
        w, h = scaled_size(width, height, n)
        exact = (w, h) == (target_w, target_h)
        if exact or (w >= target_w * min_residual and h >= target_h * min_residual):
            return n
    return 1


def integer_reduction(width: int, height: int, target_w: int, target_h: int) -> int:
    """The largest integer box-reduction that leaves at least 2x for the area filter to do."""
    return max(1, min(width // max(1, 2 * target_w), height // max(1, 2 * target_h)))
