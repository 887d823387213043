"""Camera RAW: recognised by signature, rendered from the camera's embedded preview.

A RAW file is never demosaiced (seconds of CPU and hundreds of MB per image): LibRaw, through
``rawpy`` (the ``raw`` extra), only extracts the JPEG the camera embedded, and the rest of the
engine renders that JPEG as it would any other, DCT scaling included.
"""

from __future__ import annotations

import importlib
import io
import struct
from dataclasses import dataclass, replace

from thumbcache.errors import CorruptImage, PermanentError, UnsupportedFormat
from thumbcache.imaging.formats import sniff
from thumbcache.imaging.header import Header, open_image, read_header
from thumbcache.imaging.plugins import missing_reader
from thumbcache.settings import LimitSettings

# Bytes a RAW check reads: the TIFF header and IFD0 of every TIFF-based RAW seen fit in it.
RAW_HEAD_BYTES = 64 * 1024
_DNG_VERSION, _SUB_IFDS, _MAKE = 50706, 330, 271
# LibRaw's ``flip`` (0, 3, 5, 6) as the EXIF orientation that displays the picture upright.
_FLIP_TO_ORIENTATION = {0: 1, 3: 3, 5: 8, 6: 6}


@dataclass(frozen=True)
class Preview:
    """The embedded preview of a RAW file, and the orientation the camera recorded for it."""

    data: bytes
    orientation: int


def source_header(data: bytes, limits: LimitSettings) -> tuple[bytes, Header]:
    """What is rendered of ``data``, and its header: a camera RAW's embedded preview (the
    camera's orientation applies unless the preview carries its own), else ``data`` itself."""
    payload, orientation = unwrap(data)
    with open_image(io.BytesIO(payload), limits) as im:
        header = read_header(im)
    if orientation is None:
        return payload, header
    shown = header.orientation if header.orientation != 1 else orientation
    return payload, replace(header, container="raw", orientation=shown)


def raw_kind(head: bytes) -> str | None:
    """``raw``, ``maybe`` or None for ``head`` (the first :data:`RAW_HEAD_BYTES` bytes).

    ``raw`` by signature (CR2, CR3, RAF, ORF, RW2) or a DNGVersion tag in IFD0; ``maybe`` for
    a TIFF whose IFD0 has a camera make and sub-IFDs (where NEF, ARW, PEF... keep the raw data
    and the preview), which may also be a camera's plain TIFF.
    """
    kind = sniff(head)
    if kind == "raw":
        return "raw"
    if kind != "tiff":
        return None
    tags = ifd0_tags(head)
    if _DNG_VERSION in tags:
        return "raw"
    return "maybe" if {_MAKE, _SUB_IFDS} <= tags else None


def unwrap(data: bytes) -> tuple[bytes, int | None]:
    """What to render of ``data``: a RAW's embedded preview and its orientation, else ``data``.

    A ``maybe`` RAW that LibRaw cannot use (or that no reader is installed for) is rendered
    as the TIFF it also is.
    """
    kind = raw_kind(data[:RAW_HEAD_BYTES])
    if kind is None or (kind == "maybe" and missing_reader("raw") is not None):
        return data, None
    try:
        preview = embedded_preview(data)
    except PermanentError:
        if kind == "maybe":
            return data, None
        raise
    return preview.data, preview.orientation


def ifd0_tags(head: bytes) -> set[int]:
    """The tag numbers of a classic TIFF's first IFD (empty when it lies outside ``head``)."""
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None or len(head) < 8:
        return set()
    (offset,) = struct.unpack(order + "I", head[4:8])
    if offset + 2 > len(head):
        return set()
    (count,) = struct.unpack(order + "H", head[offset : offset + 2])
    end = min(len(head), offset + 2 + 12 * count)
    return {
        struct.unpack(order + "H", head[at : at + 2])[0] for at in range(offset + 2, end - 11, 12)
    }


def embedded_preview(data: bytes) -> Preview:
    """The largest preview LibRaw finds in RAW ``data`` (JPEG, or a bitmap re-wrapped as PPM)."""
    reason = missing_reader("raw")
    if reason is not None:
        raise UnsupportedFormat(reason)
    rawpy = importlib.import_module("rawpy")
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            flip = int(raw.sizes.flip)
            thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        raise UnsupportedFormat(
            "camera RAW without a usable embedded preview (thumbcache never demosaics RAW data)"
        ) from None
    except rawpy.LibRawFileUnsupportedError:
        raise UnsupportedFormat("camera RAW of a kind LibRaw does not read") from None
    except (rawpy.LibRawError, OSError, ValueError) as exc:
        raise CorruptImage(f"cannot read camera RAW: {exc}") from None
    orientation = _FLIP_TO_ORIENTATION.get(flip, 1)
    if thumb.format == rawpy.ThumbFormat.JPEG:
        return Preview(bytes(thumb.data), orientation)
    return Preview(_ppm(thumb.data), orientation)


def _ppm(rgb: object) -> bytes:
    """A binary PPM of an (H, W, 3) uint8 array (LibRaw's bitmap previews)."""
    shape: tuple[int, ...] = tuple(getattr(rgb, "shape", ()))
    if len(shape) != 3 or shape[2] != 3:
        raise CorruptImage("camera RAW preview is not an RGB bitmap")
    height, width = shape[0], shape[1]
    return b"P6\n%d %d\n255\n" % (width, height) + bytes(memoryview(rgb))  # type: ignore[arg-type]
