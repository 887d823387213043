"""Recognise images and read their headers without decoding pixels (the scan-time check)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from thumbcache.errors import EmptyFile
from thumbcache.imaging.geometry import displayed_size
from thumbcache.imaging.header import check_limits, open_image, read_header, sniff
from thumbcache.settings import LimitSettings

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
)
SNIFF_BYTES = 16

__all__ = ["IMAGE_EXTENSIONS", "SNIFF_BYTES", "ImageInfo", "probe", "sniff"]


@dataclass(frozen=True)
class ImageInfo:
    """What the header says: format and the dimensions as displayed (orientation applied)."""

    format: str
    width: int
    height: int
    frames: int = 1
    orientation: int = 1


def probe(fp: BinaryIO, limits: LimitSettings) -> ImageInfo:
    """Read format and displayed size from the header; enforce the pixel and frame limits.

    Raises EmptyFile, NotAnImage, CorruptImage or ImageTooLarge (all permanent).
    """
    if not fp.read(1):
        raise EmptyFile("file is empty")
    fp.seek(0)
    with open_image(fp) as im:
        header = read_header(im)
    check_limits(header, limits)
    width, height = displayed_size(header.width, header.height, header.orientation)
    return ImageInfo(header.format, width, height, header.frames, header.orientation)
