"""Generated test images and small readers for the imaging tests (no binaries in the repo)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image
from thumbcache.imaging import Rendered, RenderSpec
from thumbcache.imaging.colour import SRGB_ICC

RED, GREEN, BLUE, GREY = (255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128)
THUMB = RenderSpec(300, 300, chroma_444_at_or_above=80, optimize_coding=True)
CACHE = RenderSpec(1920, 1080)
# Pillow transposes taking a displayed picture back to how orientation N stores it.
_STORE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def save(im: Image.Image, fmt: str, **params: Any) -> bytes:
    """``im`` encoded by Pillow."""
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def marked(width: int, height: int) -> Image.Image:
    """Grey picture, red block top-left, green block bottom-right (each a quarter per side)."""
    im = Image.new("RGB", (width, height), GREY)
    qw, qh = width // 4, height // 4
    im.paste(RED, (0, 0, qw, qh))
    im.paste(GREEN, (width - qw, height - qh, width, height))
    return im


def stored_as(displayed: Image.Image, orientation: int) -> Image.Image:
    """How a camera stores ``displayed`` when it tags it with EXIF ``orientation``."""
    op = _STORE.get(orientation)
    return displayed if op is None else displayed.transpose(op)


def exif_with_orientation(orientation: int) -> Image.Exif:
    """An EXIF block holding only the orientation tag."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def decoded(r: Rendered) -> Image.Image:
    """The rendition decoded by Pillow, checked to match its record's dimensions."""
    im = Image.open(io.BytesIO(r.data))
    im.load()
    assert im.size == (r.width, r.height)
    return im


def pixel(r: Rendered, x: int, y: int) -> tuple[int, ...]:
    """One RGB(A) pixel of a rendition."""
    value = decoded(r).getpixel((x, y))
    assert isinstance(value, tuple)
    return value


def near(actual: tuple[int, ...], expected: tuple[int, ...], tol: int = 6) -> bool:
    """Every channel within ``tol``."""
    return len(actual) == len(expected) and all(
        abs(a - e) <= tol for a, e in zip(actual, expected, strict=True)
    )


def swapped_primaries_icc() -> bytes:
    """An RGB profile like sRGB but with red and green primaries swapped (not named sRGB)."""
    p = bytearray(SRGB_ICC)
    count = int.from_bytes(p[128:132], "big")
    entries = {bytes(p[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    r, g = entries[b"rXYZ"], entries[b"gXYZ"]
    p[r + 4 : r + 12], p[g + 4 : g + 12] = p[g + 4 : g + 12], p[r + 4 : r + 12]
    name = "sRGB".encode("utf-16-be")
    at = p.find(name)
    p[at : at + len(name)] = "Swap".encode("utf-16-be")
    return bytes(p)


def ycck_jpeg(width: int, height: int, cmyk: tuple[int, int, int, int]) -> bytes:
    """A flat Adobe YCCK JPEG whose colour Pillow reads back as ``cmyk``.

    Adobe YCCK stores YCbCr of the inverted-CMY samples plus inverted K; Pillow writes CMYK
    inverted with an Adobe marker (transform 0), so we write the YCCK samples as CMYK and
    then set the marker's transform byte to 2 (YCCK).
    """
    c, m, y, k = cmyk
    ycc = Image.new("RGB", (1, 1), (c, m, y)).convert("YCbCr").getpixel((0, 0))
    assert isinstance(ycc, tuple)
    stored = (*ycc, 255 - k)
    written = tuple(255 - v for v in stored)
    data = bytearray(save(Image.new("CMYK", (width, height), written), "JPEG", quality=100))
    at = data.find(b"Adobe")
    assert at > 0 and data[at + 11] == 0
    data[at + 11] = 2
    return bytes(data)


def rgb_array(im: Image.Image) -> npt.NDArray[np.uint8]:
    """RGB pixels of a Pillow image."""
    return np.asarray(im.convert("RGB"))
