"""Read what an image's header says (format, size, mode, frames, orientation, ICC) via Pillow."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from thumbcache.errors import CorruptImage, ImageTooLarge, NotAnImage
from thumbcache.settings import LimitSettings

# thumbcache enforces its own configured pixel limit from the header before any decode, so
# Pillow's built-in bomb guard (a warning at 89 MP, an error at 179 MP) is switched off: a
# warnings filter would not be thread-safe, and the configured limit may be higher.
Image.MAX_IMAGE_PIXELS = None

PIL_FORMATS = {
    "JPEG": "jpeg",
    "MPO": "jpeg",
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
    "TIFF": "tiff",
}
_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)
# What Pillow raises on damaged headers; UserWarning too, for workers that escalate warnings.
_HEADER_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    TypeError,
    KeyError,
    IndexError,
    struct.error,
    UserWarning,
)


@dataclass(frozen=True)
class Header:
    """The facts a render needs before touching pixels (sizes as stored, not as displayed)."""

    format: str
    width: int
    height: int
    mode: str
    frames: int = 1
    orientation: int = 1
    icc_profile: bytes | None = None
    luma_table: tuple[int, ...] | None = None  # JPEG: the luminance quantization table


def sniff(head: bytes) -> str | None:
    """The image format that ``head`` (the first bytes of a file) announces, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    return None


def open_image(fp: BinaryIO) -> Image.Image:
    """Open ``fp`` lazily with Pillow, mapping its failures to permanent errors."""
    head = fp.read(16)
    fp.seek(0)
    try:
        return Image.open(fp)
    except UnidentifiedImageError:
        fmt = sniff(head)
        if fmt is not None:
            raise CorruptImage(f"{fmt} header is damaged or truncated") from None
        raise NotAnImage("not a recognised image format") from None
    except _HEADER_ERRORS as exc:
        raise CorruptImage(f"cannot read image header: {exc}") from None


def read_header(im: Image.Image) -> Header:
    """The header facts of an opened image; raise NotAnImage for unsupported formats."""
    fmt = PIL_FORMATS.get(im.format or "")
    if fmt is None:
        raise NotAnImage(f"unsupported image format {im.format}")
    width, height = _stored_size(im)
    if width <= 0 or height <= 0:
        raise CorruptImage(f"invalid dimensions {width}x{height}")
    try:
        frames = int(getattr(im, "n_frames", 1) or 1)
    except _HEADER_ERRORS as exc:
        raise CorruptImage(f"cannot count frames: {exc}") from None
    icc = im.info.get("icc_profile")
    tables = getattr(im, "quantization", None) if fmt == "jpeg" else None
    luma = tuple(int(v) for v in tables[0]) if tables and 0 in tables else None
    return Header(
        format=fmt,
        width=width,
        height=height,
        mode=im.mode,
        frames=frames,
        orientation=_orientation(im),
        icc_profile=icc if isinstance(icc, bytes) and icc else None,
        luma_table=luma if luma is not None and len(luma) == 64 else None,
    )


def check_limits(header: Header, limits: LimitSettings) -> None:
    """Refuse, before decoding, an image over the pixel or frame limit (ImageTooLarge)."""
    pixels = header.width * header.height
    if pixels > limits.max_pixels:
        raise ImageTooLarge(
            f"{header.width}x{header.height} is {pixels} pixels, "
            f"over the limit of {limits.max_pixels}"
        )
    if header.frames > limits.max_frames:
        raise ImageTooLarge(f"{header.frames} frames, over the limit of {limits.max_frames}")


def _stored_size(im: Image.Image) -> tuple[int, int]:
    """The size as stored: Pillow >= 12 reports TIFFs already turned by their orientation."""
    tags = getattr(im, "tag_v2", None)
    if im.format == "TIFF" and tags is not None:
        width, height = tags.get(256), tags.get(257)
        if isinstance(width, int) and isinstance(height, int):
            return width, height
    return im.size


def _orientation(im: Image.Image) -> int:
    if im.format == "PNG" and "exif" not in im.info:
        # Pillow would decode every pixel to look for an eXIf chunk after IDAT; one before
        # IDAT (where writers put it) is already in info. Header reads must stay cheap.
        return 1
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # a damaged EXIF block must not fail the image
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1
