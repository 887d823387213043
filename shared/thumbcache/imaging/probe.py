"""Recognise images and read their headers without decoding pixels (the scan-time check)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO

from thumbcache.errors import EmptyFile, NotAnImage, UnsupportedFormat
from thumbcache.imaging.formats import IMAGE_EXTENSIONS, NEVER_RENDERED, sniff
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


def probe(fp: BinaryIO, limits: LimitSettings, name: str = "") -> ImageInfo:
    """Read format and displayed size from the header; enforce the pixel and frame limits.

    ``name`` (the source's name) lets a file of a format never rendered here fail as such
    even when its content does not say so (an EPS without its header line).
    Raises EmptyFile, NotAnImage, UnsupportedFormat, CorruptImage or ImageTooLarge.
    """
    head = fp.read(RAW_HEAD_BYTES)
    if not head:
        raise EmptyFile("file is empty")
    fp.seek(0)
    if raw_kind(head) is not None:  # a RAW is probed as its preview: the whole file is read
        _payload, header = source_header(fp.read(), limits)
    else:
        try:
            with open_image(fp, limits) as im:
                header = read_header(im)
        except NotAnImage:
            reason = NEVER_RENDERED.get(os.path.splitext(name)[1].lower())
            if reason is None:
                raise
            raise UnsupportedFormat(reason) from None
    check_limits(header, limits)
    width, height = displayed_size(header.width, header.height, header.orientation)
    return ImageInfo(header.source_format, width, height, header.frames, header.orientation)
