"""Recognise images and read their headers without decoding pixels (the scan-time check)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from thumbcache.errors import EmptyFile
from thumbcache.imaging.formats import IMAGE_EXTENSIONS, sniff
from thumbcache.imaging.geometry import displayed_size
from thumbcache.imaging.header import check_limits, open_image, read_header
from thumbcache.imaging.raw import RAW_HEAD_BYTES, raw_kind, source_header
from thumbcache.settings import LimitSettings

SNIFF_BYTES = 16  # what the walk reads of a file without an image extension

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
    head = fp.read(RAW_HEAD_BYTES)
    if not head:
        raise EmptyFile("file is empty")
    fp.seek(0)
    if raw_kind(head) is not None:  # a RAW is probed as its preview: the whole file is read
        _payload, header = source_header(fp.read(), limits)
    else:
        with open_image(fp, limits) as im:
            header = read_header(im)
    check_limits(header, limits)
    width, height = displayed_size(header.width, header.height, header.orientation)
    return ImageInfo(header.source_format, width, height, header.frames, header.orientation)
