"""Decode source bytes to BGR(A) pixels at the smallest scale that still covers the target.

The library is picked per format, as measured (docs/BENCHMARKS.md): OpenCV for YCbCr and grey
JPEG (DCT-scaled decode, 1/2, 1/4, 1/8) and for WebP; Pillow for everything else, including
CMYK/YCCK JPEG (OpenCV ignores the Adobe inversion), with Pillow's ``draft`` for the DCT scale.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from thumbcache.errors import CorruptImage, NotAnImage, UnsupportedFormat
from thumbcache.imaging import colour
from thumbcache.imaging.colour import Pixels, from_image, image_to_srgb
from thumbcache.imaging.geometry import decode_denominator, integer_reduction
from thumbcache.imaging.header import Header, open_image

_CV_REDUCED = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
# What decoders raise on hostile or damaged input (MemoryError is left to the worker).
DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    RuntimeError,
    cv2.error,
    UserWarning,  # Pillow warns of damaged metadata; escalated warnings must not escape
)
_TO_RGB = frozenset({"1", "L", "P", "RGB", "RGBX", "YCbCr", "HSV"})
_TO_RGBA = frozenset({"LA", "La", "PA", "RGBa", "RGBA"})


@dataclass(frozen=True)
class Decoded:
    """Pixels in stored orientation, how much the decoder reduced them, and any profile left."""

    pixels: Pixels
    scale: int  # 1/scale of the stored size was decoded (DCT scale or Pillow box reduction)
    pending_icc: bytes | None  # the source profile still to convert to sRGB, if any
    icc_converted: bool = False  # the decoder already converted a profile (CMYK) to sRGB


def uses_opencv_jpeg(header: Header) -> bool:
    """True when the image is a JPEG that OpenCV decodes (YCbCr or grey), DCT-scaled."""
    return header.format == "jpeg" and header.mode in ("RGB", "L")


def planned_scale(header: Header, target_w: int, target_h: int) -> int:
    """The 1/n scale a JPEG decode will use for this target (1 for every other format)."""
    if header.format != "jpeg":
        return 1
    return decode_denominator(header.width, header.height, target_w, target_h)


def planned_reduction(header: Header, target_w: int, target_h: int) -> int:
    """The box reduction Pillow applies after a full-size decode (1 for DCT-scaled JPEGs)."""
    if header.format == "jpeg":
        return 1
    return integer_reduction(header.width, header.height, target_w, target_h)


def decode(data: bytes, header: Header, target_w: int, target_h: int) -> Decoded:
    """Decode ``data`` to pixels no smaller than ``target_w`` x ``target_h`` (stored size)."""
    try:
        if uses_opencv_jpeg(header):
            return _decode_jpeg_opencv(data, header, target_w, target_h)
        if header.format == "webp":
            return _decode_opencv_full(data, header)
        return _decode_pillow(data, header, target_w, target_h)
    except NotImplementedError as exc:  # a variant the reader has no code for
        raise UnsupportedFormat(f"{header.format} variant not supported: {exc}") from None
    except DECODE_ERRORS as exc:
        raise CorruptImage(f"cannot decode {header.format} image: {exc}") from None


def _decode_jpeg_opencv(data: bytes, header: Header, target_w: int, target_h: int) -> Decoded:
    scale = planned_scale(header, target_w, target_h)
    flags = _CV_REDUCED[scale] | cv2.IMREAD_IGNORE_ORIENTATION
    px = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if px is None:
        raise CorruptImage("jpeg data is damaged or truncated")
    return Decoded(px, scale, header.icc_profile)


def _decode_opencv_full(data: bytes, header: Header) -> Decoded:
    flags = cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION
    px = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if px is None or px.dtype != np.uint8 or px.ndim != 3 or px.shape[2] not in (3, 4):
        # Not what OpenCV's WebP decoder gives for a sound file: let Pillow try, or say why.
        return _decode_pillow(data, header, 1, 1, reduce=False)
    return Decoded(px, 1, header.icc_profile)


def _decode_pillow(
    data: bytes, header: Header, target_w: int, target_h: int, *, reduce: bool = True
) -> Decoded:
    # Each step closes the image it replaces, so at most two full-size copies are alive at
    # once (the with-block would otherwise hold the first until the end): peak memory.
    with open_image(io.BytesIO(data)) as opened:
        im: Image.Image = opened
        scale = 1
        if header.format == "jpeg":
            drafted = im.draft(None, (target_w, target_h))
            if drafted is not None:
                scale = max(1, round(header.width / drafted[1][2]))
        im.load()
        im = _replace(im, _undo_decoder_orientation(im, header))
        converted = im.mode == "CMYK" and colour.converts(header.icc_profile, "CMYK")
        eight_bit, pending_icc = _to_8bit(im, header.icc_profile)
        im = _replace(im, eight_bit)
        factor = integer_reduction(im.width, im.height, target_w, target_h) if reduce else 1
        if factor >= 2:
            im = _replace(im, _reduce(im, factor))
            scale *= factor
        if im.mode not in ("RGB", "RGBA"):
            im = _replace(im, im.convert("RGBA" if "A" in im.mode else "RGB"))
        return Decoded(from_image(im), scale, pending_icc, converted)


def _replace(old: Image.Image, new: Image.Image) -> Image.Image:
    """``new``, after freeing ``old``'s pixels when it is another image."""
    if new is not old:
        old.close()
    return new


# Pixels reduced at a time for images with alpha: Pillow's reduce premultiplies a full-size
# copy first (measured: 8 bytes per RGBA pixel instead of 4), so bands bound that copy.
_BAND_PIXELS = 1 << 20


def _reduce(im: Image.Image, factor: int) -> Image.Image:
    """``im.reduce(factor)``; in bands of whole boxes for alpha modes (same pixels, less memory)."""
    band = max(1, _BAND_PIXELS // (im.width * factor)) * factor
    if "A" not in im.mode or im.height <= band:
        return im.reduce(factor)
    out = Image.new(im.mode, (-(-im.width // factor), -(-im.height // factor)))
    for top in range(0, im.height, band):
        with im.crop((0, top, im.width, min(im.height, top + band))) as strip:
            out.paste(strip.reduce(factor), (0, top // factor))
    return out


# Pillow transposes taking a displayed picture back to how EXIF orientation N stores it.
_TO_STORED = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _undo_decoder_orientation(im: Image.Image, header: Header) -> Image.Image:
    """Stored-orientation pixels, for decoders that apply the orientation (Pillow >= 12 TIFF)."""
    tags = getattr(im, "tag_v2", None)
    op = _TO_STORED.get(header.orientation)
    if header.format != "tiff" or tags is None or op is None or 0x0112 in tags:
        return im
    return im.transpose(op)


def _to_8bit(im: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """``im`` in one of L, LA, RGB, RGBA; CMYK is converted to sRGB here (profile consumed)."""
    mode = im.mode
    if mode in ("L", "RGB") and "transparency" in im.info:  # a tRNS colour key: transparent
        return im.convert("RGBA"), icc
    if mode in ("L", "LA", "RGB", "RGBA"):
        return im, icc
    if mode == "CMYK":
        return image_to_srgb(im, icc), None
    if mode == "LAB":
        return colour.lab_to_srgb(im), None  # L*a*b* is absolute: no profile to apply after
    if mode in _TO_RGBA or (mode == "P" and "transparency" in im.info):
        return im.convert("RGBA"), icc
    if mode in _TO_RGB:
        return im.convert("RGB"), icc
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_deep_to_8bit(np.asarray(im), mode, _sample_range(im))), icc
    raise NotAnImage(f"unsupported pixel mode {mode}")


def _sample_range(im: Image.Image) -> tuple[int, int]:
    """The declared range of integer grey samples: what a reference decoder maps to 0..255.

    TIFF declares it (BitsPerSample, SampleFormat): a 12-bit TIFF spans 0..4095, a signed
    16-bit one -32768..32767 (ImageMagick shows both so; measured). Everything else that
    Pillow gives as 16 or 32-bit integers (PNG, PGM, which Pillow already scales to 16 bits)
    spans 0..65535.
    """
    tags = getattr(im, "tag_v2", None)
    if tags is None:
        return 0, 65535
    bits = tags.get(258, (16,))
    bits = bits[0] if isinstance(bits, tuple) and bits else bits
    signed = tags.get(339, (1,))
    signed = (signed[0] if isinstance(signed, tuple) and signed else signed) == 2
    if not isinstance(bits, int) or not 1 <= bits <= 16:
        return 0, 65535
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _deep_to_8bit(values: np.ndarray, mode: str, sample_range: tuple[int, int]) -> Pixels:
    """16-bit, 32-bit integer or float grey samples scaled to 8 bits."""
    # In place on one 4-byte copy: a 100 MP image must not grow 8-byte temporaries.
    if mode == "F":
        top = 1.0 if float(np.nanmax(values, initial=0.0)) <= 1.0 else 255.0
        scaled = values.astype(np.float32)
        np.nan_to_num(scaled, copy=False)
        scaled *= 255.0 / top
        np.rint(scaled, out=scaled)
        np.clip(scaled, 0, 255, out=scaled)
        return scaled.astype(np.uint8)
    low, high = sample_range
    span = high - low
    wide = values.astype(np.int32)
    np.clip(wide, low, high, out=wide)
    wide -= low
    wide *= 255
    wide += span // 2
    wide //= span
    return wide.astype(np.uint8)
