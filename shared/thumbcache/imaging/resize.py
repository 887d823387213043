"""Resize pixels to an exact size: area filtering for large reductions, cheap and alias-free."""

from __future__ import annotations

import cv2

from thumbcache.imaging.colour import Pixels
from thumbcache.imaging.geometry import MIN_RESIDUAL


def resize(px: Pixels, width: int, height: int) -> Pixels:
    """``px`` resized to ``width`` x ``height`` (downscaling is antialiased; never sharpened).

    Each path is the cheapest that kept SSIM against a Lanczos reference >= 0.97 (measured in
    docs/BENCHMARKS.md). OpenCV's area filter is fast only for exact halving, so:

    - 4x or more: halve (exact 2x2 means) until less than 4x remains;
    - 2.4x-4x: halve once more, leaving 1.2x-2x for the last step;
    - 2x-2.4x: the area filter;
    - 1.2x-2x: a bilinear upsample to twice the target and an exact 2x2 area reduction;
    - under 1.2x: bicubic, which barely reduces so aliases nothing, and keeps what the upsample
      path softened (1600x1200 to 1440x1080: SSIM 0.969 that way, 0.991 bicubic; from 1.2x
      bicubic starts to alias: 0.972 at 1.25x, 0.950 at 1.4x).

    Halving drops an odd last row or column (under half an output pixel in all).
    """
    src_h, src_w = px.shape[:2]
    if (src_w, src_h) == (width, height):
        return px
    if src_w < width or src_h < height:  # never reached from render (it never upscales)
        return cv2.resize(px, (width, height), interpolation=cv2.INTER_LINEAR)
    while min(px.shape[1] / width, px.shape[0] / height) >= 4:
        px = _halve(px)
    factor = min(px.shape[1] / width, px.shape[0] / height)
    if factor >= 2 * MIN_RESIDUAL:
        px = _halve(px)
    elif factor >= 2:
        return cv2.resize(px, (width, height), interpolation=cv2.INTER_AREA)
    if (px.shape[1], px.shape[0]) == (width, height):
        return px
    if min(px.shape[1] / width, px.shape[0] / height) < MIN_RESIDUAL:
        return cv2.resize(px, (width, height), interpolation=cv2.INTER_CUBIC)
    doubled = cv2.resize(px, (2 * width, 2 * height), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(doubled, (width, height), interpolation=cv2.INTER_AREA)


def _halve(px: Pixels) -> Pixels:
    """Exact 2x2 block means (OpenCV's fast area path) of the whole blocks of ``px``."""
    h, w = px.shape[0] & ~1, px.shape[1] & ~1
    return cv2.resize(px[:h, :w], (w // 2, h // 2), interpolation=cv2.INTER_AREA)


def box_reduce(px: Pixels, factor: int) -> Pixels:
    """Means of ``factor`` x ``factor`` blocks (OpenCV's fast integer area path), as Pillow's
    ``reduce`` and a DCT-scaled decode give: a smaller rendition taken from pixels decoded for
    a larger one starts where its own decode would have."""
    if factor <= 1:
        return px
    h, w = px.shape[0] - px.shape[0] % factor, px.shape[1] - px.shape[1] % factor
    return cv2.resize(px[:h, :w], (w // factor, h // factor), interpolation=cv2.INTER_AREA)
