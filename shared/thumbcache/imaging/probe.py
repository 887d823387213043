"""Recognise images and read their headers without decoding pixels."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from thumbcache.errors import CorruptImage, EmptyFile, ImageTooLarge, NotAnImage
from thumbcache.settings import LimitSettings

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
)
_PIL_FORMATS = {
    "JPEG": "jpeg",
    "MPO": "jpeg",
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
    "TIFF": "tiff",
}
# EXIF orientations 5-8 swap width and height when displayed.
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
SNIFF_BYTES = 16


@dataclass(frozen=True)
class ImageInfo:
    """What the header says: format and the dimensions as displayed (orientation applied)."""

    format: str
    width: int
    height: int
    frames: int = 1
    orientation: int = 1


def sniff(head: bytes) -> str | None:
    """The image format that ``head`` (the first bytes of a file) announces, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"BM"):
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


def probe(fp: BinaryIO, limits: LimitSettings) -> ImageInfo:
    """Read format and displayed size from the header; enforce the pixel and frame limits.

    Raises EmptyFile, NotAnImage, CorruptImage or ImageTooLarge (all permanent).
    """
    head = fp.read(SNIFF_BYTES)
    if not head:
        raise EmptyFile("file is empty")
    fp.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fp)
            fmt = _PIL_FORMATS.get(im.format or "")
            if fmt is None:
                raise NotAnImage(f"unsupported image format {im.format}")
            width, height = im.size
            frames = int(getattr(im, "n_frames", 1) or 1)
            orientation = _orientation(im)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from None
    except UnidentifiedImageError:
        if sniff(head) is not None:
            raise CorruptImage(f"{sniff(head)} header is damaged or truncated") from None
        raise NotAnImage("not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImage(f"cannot read image header: {exc}") from None
    if width <= 0 or height <= 0:
        raise CorruptImage(f"invalid dimensions {width}x{height}")
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"{width}x{height} is {width * height} pixels, over the limit of {limits.max_pixels}"
        )
    if frames > limits.max_frames:
        raise ImageTooLarge(f"{frames} frames, over the limit of {limits.max_frames}")
    if orientation in _TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    return ImageInfo(fmt, width, height, frames, orientation)


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # a damaged EXIF block must not fail the image
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1
