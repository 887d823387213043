"""Colour: embedded ICC profiles to sRGB, alpha premultiplication and compositing.

Pixel arrays are OpenCV-ordered uint8 (H, W, 3) BGR or (H, W, 4) BGRA throughout the engine.
"""

from __future__ import annotations

import io
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageCms

# uint8 at run time; typed loosely because OpenCV's stubs return untyped-dtype arrays.
Pixels = npt.NDArray[Any]

_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
# The profile every rendition is tagged with (588 bytes, lcms's built-in sRGB).
SRGB_ICC: bytes = _SRGB.tobytes()
_PROFILE_SPACE = {"RGB": "RGB", "RGBA": "RGB", "CMYK": "CMYK"}


@lru_cache(maxsize=64)
def _transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """A cached profile-to-sRGB transform, or None when the profile is sRGB or unusable."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        space = str(profile.profile.xcolor_space).strip()
        if _PROFILE_SPACE.get(mode) != space:
            return None  # e.g. a GRAY profile: grey gammas are close enough to sRGB's
        if mode != "CMYK" and "srgb" in str(profile.profile.profile_description).lower():
            return None
        return ImageCms.buildTransform(
            profile, _SRGB, mode, "RGBA" if mode == "RGBA" else "RGB", flags=ImageCms.Flags.NOCACHE
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None  # a broken profile must not lose the picture: treat it as sRGB


def converts(icc: bytes | None, mode: str) -> bool:
    """True when ``icc`` would change pixels of ``mode`` on the way to sRGB."""
    return icc is not None and _transform(icc, mode) is not None


def image_to_srgb(im: Image.Image, icc: bytes | None) -> Image.Image:
    """``im`` (RGB, RGBA or CMYK) in sRGB: through its profile, else a plain conversion."""
    transform = _transform(icc, im.mode) if icc is not None else None
    if transform is not None:
        return ImageCms.applyTransform(im, transform) or im
    return im if im.mode in ("RGB", "RGBA") else im.convert("RGB")


@lru_cache(maxsize=1)
def _lab_transform() -> ImageCms.ImageCmsTransform:
    """CIE L*a*b* (D50, as ICC and TIFF's CIELAB define it) to sRGB."""
    return ImageCms.buildTransform(ImageCms.createProfile("LAB"), _SRGB, "LAB", "RGB")


def lab_to_srgb(im: Image.Image) -> Image.Image:
    """An RGB image in sRGB of a Pillow ``LAB`` image (a device-independent space)."""
    return ImageCms.applyTransform(im, _lab_transform()) or im


def pixels_to_srgb(px: Pixels, icc: bytes | None) -> Pixels:
    """BGR(A) pixels converted from profile ``icc`` to sRGB (unchanged when sRGB already)."""
    mode = "RGBA" if px.shape[2] == 4 else "RGB"
    if icc is None or _transform(icc, mode) is None:
        return px
    return from_image(image_to_srgb(to_image(px), icc))


def to_image(px: Pixels) -> Image.Image:
    """A Pillow RGB(A) image of BGR(A) pixels."""
    code = cv2.COLOR_BGRA2RGBA if px.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return Image.fromarray(cv2.cvtColor(px, code))


# Pixels copied out of a Pillow image at a time (see from_image).
_BAND_PIXELS = 1 << 20


def from_image(im: Image.Image) -> Pixels:
    """BGR(A) pixels of a Pillow RGB or RGBA image.

    Copied out in bands of rows straight into the result: ``np.asarray(im)`` would build the
    whole image as bytes twice over (Pillow's tobytes joins its chunks), 10 bytes a pixel at
    peak for RGB where this takes 7 (Pillow's own 4, stored RGBX, and the result's 3).
    """
    code = cv2.COLOR_RGBA2BGRA if im.mode == "RGBA" else cv2.COLOR_RGB2BGR
    width, height = im.size
    out = np.empty((height, width, 4 if im.mode == "RGBA" else 3), np.uint8)
    rows = max(1, _BAND_PIXELS // max(1, width))
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        with im.crop((0, top, width, bottom)) as band:
            cv2.cvtColor(np.asarray(band), code, dst=out[top:bottom])
    return out


def drop_opaque_alpha(px: Pixels) -> Pixels:
    """BGR pixels when every alpha value is 255, else ``px`` unchanged."""
    if px.shape[2] == 4 and int(px[:, :, 3].min()) == 255:
        return np.ascontiguousarray(px[:, :, :3])
    return px


def premultiply(px: Pixels) -> Pixels:
    """BGRA with colour multiplied by alpha (so resizing does not bleed hidden colours).

    ``round(c * a / 255)``, as ``(c * a + 127) // 255`` (never a tie: 255 is odd), in one
    OpenCV pass: 2 uint8 copies, where uint16 numpy temporaries took 6 (22 bytes a pixel).
    """
    alpha = px[:, :, 3]
    factors = cv2.merge((alpha, alpha, alpha, np.full_like(alpha, 255)))
    return cv2.multiply(px, factors, scale=1 / 255)


def unpremultiply(px: Pixels) -> Pixels:
    """The straight-alpha BGRA of premultiplied ``px``."""
    alpha = px[:, :, 3:4].astype(np.uint32)
    safe = np.maximum(alpha, 1)
    colour = (px[:, :, :3].astype(np.uint32) * 255 + safe // 2) // safe
    out = px.copy()
    out[:, :, :3] = np.where(alpha > 0, np.minimum(colour, 255), 0).astype(np.uint8)
    return out


def composite(px: Pixels, background_rgb: tuple[int, int, int]) -> Pixels:
    """BGR of straight-alpha BGRA ``px`` laid over an opaque background colour."""
    r, g, b = background_rgb
    bg = np.array([b, g, r], dtype=np.uint32)
    alpha = px[:, :, 3:4].astype(np.uint32)
    out = (px[:, :, :3].astype(np.uint32) * alpha + bg * (255 - alpha) + 127) // 255
    return out.astype(np.uint8)
