"""Read what an image's header says (format, size, mode, frames, orientation, ICC) via Pillow."""

from __future__ import annotations

import logging
import re
import struct
from dataclasses import dataclass
from functools import cache
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from thumbcache.errors import CorruptImage, ImageTooLarge, NotAnImage, UnsupportedFormat
from thumbcache.imaging.decoder_warnings import route_warnings
from thumbcache.imaging.formats import (
    PIL_FORMATS,
    PIL_FORMATS_OF,
    never_rendered_reason,
    sniff,
    sniff_text,
)
from thumbcache.imaging.jxl import check_jxl
from thumbcache.imaging.plugins import missing_reader, register_plugins
from thumbcache.settings import LimitSettings

log = logging.getLogger(__name__)

# thumbcache enforces its own configured pixel limit from the header before any decode, so
# Pillow's built-in bomb guard (a warning at 89 MP, an error at 179 MP) is switched off: a
# warnings filter would not be thread-safe, and the configured limit may be higher.
Image.MAX_IMAGE_PIXELS = None

# Bytes read ahead to recognise a format (an SVG document's root element may come late).
HEAD_BYTES = 4096
# XMP's orientation, as Pillow's own getexif() fallback matches it (attribute or element).
_XMP_ORIENTATION = re.compile(rb'tiff:Orientation(?:="|>)([1-8])')
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
    progressive: bool = False  # JPEG: decoders hold every coefficient, whatever the scale
    container: str | None = None  # "raw": the pixels are a camera RAW's embedded preview
    jpeg_sampling: tuple[tuple[int, int], ...] = ()  # JPEG: (h, v) sampling per component

    @property
    def source_format(self) -> str:
        """The format recorded for the source: the container's, else the pixels' own."""
        return self.container or self.format


def open_image(fp: BinaryIO, limits: LimitSettings | None = None) -> Image.Image:
    """Open ``fp`` lazily with Pillow, mapping its failures to permanent errors.

    With ``limits``, a format whose reader decodes at open (JPEG XL) is first checked against
    them from its own size header.

    Raises UnsupportedFormat for an image this install cannot render (a vector format, EPS,
    or a format whose optional reader is missing), CorruptImage for a damaged header of a
    recognised format, NotAnImage for anything else.
    """
    register_plugins()
    route_warnings()
    head = fp.read(HEAD_BYTES)
    fp.seek(0)
    fmt = sniff(head) or sniff_text(head)
    reason = None if fmt is None else never_rendered_reason(fmt) or missing_reader(fmt)
    if reason is not None:
        raise UnsupportedFormat(reason)
    if fmt == "jxl" and limits is not None:
        check_jxl(head, limits)
    try:
        return Image.open(fp, formats=PIL_FORMATS_OF.get(fmt or "") or _allowed_formats())
    except UnidentifiedImageError:
        if fmt is not None:
            raise CorruptImage(f"{fmt} header is damaged or truncated") from None
        raise NotAnImage("not a recognised image format") from None
    except NotImplementedError as exc:  # a variant the reader has no code for (DDS formats)
        raise UnsupportedFormat(f"{fmt or 'image'} variant not supported: {exc}") from None
    except _HEADER_ERRORS as exc:
        raise CorruptImage(f"cannot read image header: {exc}") from None


@cache
def _allowed_formats() -> tuple[str, ...]:
    """The Pillow plugins a source without a known signature may be opened by, in Pillow's
    own order; only raster readers (never EPS, which runs Ghostscript, nor the stubs)."""
    Image.init()
    return tuple(f for f in Image.ID if f in PIL_FORMATS)


def read_header(im: Image.Image) -> Header:
    """The header facts of an opened image; raise NotAnImage for unsupported formats."""
    fmt = PIL_FORMATS.get(im.format or "")
    if fmt is None:  # unreachable through open_image, which opens only these formats
        raise NotAnImage(f"unsupported image format {im.format}")
    width, height = _stored_size(im)
    if width <= 0 or height <= 0:
        raise CorruptImage(f"invalid dimensions {width}x{height}")
    try:
        frames = int(getattr(im, "n_frames", 1) or 1)
    except _HEADER_ERRORS as exc:
        # Counting walks every later frame or layer; the first, the one rendered, may be
        # sound (a PSD with a damaged layer record still holds its merged image).
        log.warning("cannot count the frames (%s); rendering the first", exc)
        frames = 1
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
        progressive=fmt == "jpeg" and bool(im.info.get("progressive")),
        jpeg_sampling=_jpeg_sampling(im) if fmt == "jpeg" else (),
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


def _jpeg_sampling(im: Image.Image) -> tuple[tuple[int, int], ...]:
    """Each component's (horizontal, vertical) sampling factors, from the JPEG's SOF."""
    layers = getattr(im, "layer", None) or ()
    return tuple((int(c[1]), int(c[2])) for c in layers if len(c) >= 3 and c[1] and c[2])


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
        # Pillow's getexif() would decode every pixel to look for an eXIf chunk after IDAT; one
        # before IDAT (where writers put it) is already in info, and so is XMP (iTXt): read
        # its orientation as getexif() would. Header reads must stay cheap.
        return _xmp_orientation(im.info.get("xmp") or im.info.get("XML:com.adobe.xmp"))
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # a damaged EXIF block must not fail the image
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _xmp_orientation(xmp: object) -> int:
    """The tiff:Orientation of an XMP packet (bytes or text), 1 when absent."""
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8", "replace")
    if not isinstance(xmp, bytes):
        return 1
    match = _XMP_ORIENTATION.search(xmp)
    return int(match.group(1)) if match else 1
