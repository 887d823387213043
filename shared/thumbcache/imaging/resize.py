"""Resize pixels to an exact size: antialiased reductions as sharp as Lanczos, on OpenCV."""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from thumbcache.imaging.colour import Pixels
from thumbcache.imaging.geometry import MIN_RESIDUAL

# Lanczos-3 is pyvips' and sharp's kernel. Over a megapixel of source (cache images) Lanczos-2
# costs 2/3 as much (12 MP's last step: 10.5 -> 6.9 ms) and encodes to the same SSIM at q85
# (within 0.0003); on thumbnails it scores 0.001-0.002 lower, for under 0.3 ms saved.
LANCZOS_LOBES = 3
LARGE_SOURCE_LOBES = 2
LARGE_SOURCE_PIXELS = 1 << 20


def resize(px: Pixels, width: int, height: int) -> Pixels:
    """``px`` resized to ``width`` x ``height`` (downscaling is antialiased).

    Measured against a full-decode Lanczos reference (docs/BENCHMARKS.md, "Resampling as sharp as
    Lanczos"):

    - 4x or more: halve (exact 2x2 means, cheap) until less than 4x remains;
    - 2.4x-4x: halve once more, leaving 1.2x-2.4x for the last step;
    - 1.2x-2.4x: :func:`lanczos_reduce`: SSIM 0.993-0.998 against Pillow's Lanczos of the
      same pixels, where the area filter it replaced (after a 2x bilinear upsample under 2x)
      scored 0.980-0.995 and was slow off exact halving;
    - under 1.2x: bicubic, which barely reduces so aliases nothing (1600x1200 to 1440x1080
      at q85: SSIM 0.8895; a low pass first blurs more than it removes aliasing: 0.8840).

    Halving drops an odd last row or column (under half an output pixel in all).
    """
    src_h, src_w = px.shape[:2]
    if (src_w, src_h) == (width, height):
        return px
    if src_w < width or src_h < height:  # never reached from render (it never upscales)
        return cv2.resize(px, (width, height), interpolation=cv2.INTER_LINEAR)
    while min(px.shape[1] / width, px.shape[0] / height) >= 4:
        px = _halve(px)
    if min(px.shape[1] / width, px.shape[0] / height) >= 2 * MIN_RESIDUAL:
        px = _halve(px)
    if (px.shape[1], px.shape[0]) == (width, height):
        return px
    if min(px.shape[1] / width, px.shape[0] / height) < MIN_RESIDUAL:
        return cv2.resize(px, (width, height), interpolation=cv2.INTER_CUBIC)
    return lanczos_reduce(px, width, height)


def lanczos_reduce(px: Pixels, width: int, height: int, lobes: int = 0) -> Pixels:
    """A reduction of ``px`` to ``width`` x ``height``: each axis low-passed by a Lanczos
    kernel stretched to that axis' own factor (what Pillow and libvips do while resampling),
    then sampled bicubically. OpenCV has no antialiased resampler but the area filter, so the
    low pass is a separable filter (vectorised) ahead of the sampling. ``lobes``: the kernel's
    (0: by the source's size, as measured)."""
    px = _shorten_long_axis(px, width, height)
    if not lobes:
        large = px.shape[0] * px.shape[1] > LARGE_SOURCE_PIXELS
        lobes = LARGE_SOURCE_LOBES if large else LANCZOS_LOBES
    kx = _lanczos_kernel(round(px.shape[1] / width, 3), lobes)
    ky = _lanczos_kernel(round(px.shape[0] / height, 3), lobes)
    low = cv2.sepFilter2D(px, -1, kx, ky, borderType=cv2.BORDER_REFLECT)
    sampled: Pixels = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    return sampled


@functools.lru_cache(maxsize=256)
def _lanczos_kernel(factor: float, lobes: int) -> np.ndarray:
    """Normalised Lanczos-``lobes`` taps for a reduction by ``factor`` (widened by it)."""
    reach = math.ceil(lobes * factor)
    x = np.arange(-reach, reach + 1, dtype=np.float64) / factor
    taps = np.sinc(x) * np.sinc(x / lobes)
    kernel: np.ndarray = (taps / taps.sum()).astype(np.float32)
    kernel.flags.writeable = False  # shared by every call with this factor
    return kernel


def _shorten_long_axis(px: Pixels, width: int, height: int) -> Pixels:
    """``px`` with an axis reduced 4x or more (a sliver: the halvings follow the other axis)
    first box-reduced by an integer factor to 2x-4x, so that the filter stays a few taps long:
    its taps grow with the factor: 10,000,000 x 4 pixels to 300 x 1 took over 15 minutes."""
    ix = px.shape[1] // width // 2 if px.shape[1] >= 4 * width else 1
    iy = px.shape[0] // height // 2 if px.shape[0] >= 4 * height else 1
    if ix == iy == 1:
        return px
    h, w = px.shape[0] - px.shape[0] % iy, px.shape[1] - px.shape[1] % ix
    shortened: Pixels = cv2.resize(px[:h, :w], (w // ix, h // iy), interpolation=cv2.INTER_AREA)
    return shortened


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
