"""Render one rendition: check limits, decode at the smallest scale, fit, orient, colour, encode."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2

from thumbcache.errors import EmptyFile, ImageTooLarge
from thumbcache.imaging import colour
from thumbcache.imaging.cost import check_memory, check_scans
from thumbcache.imaging.decode import (
    decode,
    planned_reduction,
    planned_scale,
)
from thumbcache.imaging.encode import encode_jpeg, encode_webp
from thumbcache.imaging.geometry import (
    displayed_size,
    fit_within,
    integer_reduction,
    stored_size,
)
from thumbcache.imaging.header import check_limits
from thumbcache.imaging.orient import apply_orientation
from thumbcache.imaging.quality import choose_quality, choose_subsampling, estimate_quality
from thumbcache.imaging.raw import source_header
from thumbcache.imaging.resize import box_reduce, resize
from thumbcache.imaging.version import ENGINE_VERSION  # noqa: F401 - re-exported
from thumbcache.renditions import RenditionSettings
from thumbcache.settings import LimitSettings

# Part of every rendition's recipe: bump it when the output of the same input changes.


def set_threads(count: int = 1) -> None:
    """OpenCV's own thread pool size; 1 (set on import) leaves parallelism to the workers."""
    cv2.setNumThreads(count)


set_threads(1)


@dataclass(frozen=True)
class RenderSpec:
    """What to produce: the box, the format, the quality ceiling, the JPEG background."""

    width: int
    height: int
    format: str = "jpeg"
    quality: int = 85
    webp_method: int = 2
    background: tuple[int, int, int] = (255, 255, 255)
    chroma_444_at_or_above: int | None = None  # 4:4:4 when quality >= this (None: 4:2:0)
    optimize_coding: bool = False  # optimal Huffman tables: ~5% smaller, ~2x JPEG encode time

    @classmethod
    def from_settings(cls, rendition: RenditionSettings) -> RenderSpec:
        """The spec of a configured rendition."""
        bg = rendition.background.lstrip("#")
        return cls(
            width=rendition.width,
            height=rendition.height,
            format=rendition.format,
            quality=rendition.quality,
            webp_method=rendition.webp_method,
            background=(int(bg[0:2], 16), int(bg[2:4], 16), int(bg[4:6], 16)),
            chroma_444_at_or_above=rendition.chroma_444_from_quality or None,
            optimize_coding=rendition.optimize_coding,
        )


@dataclass(frozen=True)
class Rendered:
    """An encoded rendition and the facts recorded about it."""

    data: bytes
    width: int
    height: int
    format: str
    quality: int
    source_quality: int | None
    subsampling: str | None = None  # JPEG chroma subsampling, "4:4:4" or "4:2:0"
    decode_scale: int = 1  # the source was decoded at 1/decode_scale of its size
    source_format: str | None = None
    icc_converted: bool = False  # an embedded non-sRGB profile was converted to sRGB

    @property
    def bytes(self) -> int:
        """Size of the encoded file."""
        return len(self.data)


@dataclass(frozen=True)
class Prepared:
    """A rendition's final pixels (BGR, or BGRA for WebP with alpha) before encoding."""

    pixels: colour.Pixels
    source_quality: int | None
    decode_scale: int
    source_format: str
    icc_converted: bool


def render(data: bytes, spec: RenderSpec, limits: LimitSettings) -> Rendered:
    """Render ``data`` (a whole source image) to ``spec``; raise a PermanentError if it is bad."""
    return render_many(data, (spec,), limits)[0]


def render_many(
    data: bytes,
    specs: Sequence[RenderSpec],
    limits: LimitSettings,
    decode_for: Sequence[RenderSpec] = (),
) -> list[Rendered]:
    """Every spec from one decode of ``data`` (at the scale the largest of ``specs`` and
    ``decode_for`` needs): a worker that holds several renditions of an image pays for one
    decode, the bulk of the cost. Planning the decode for a fixed ``decode_for`` (every
    configured rendition) makes each spec's bytes the same whichever others it comes with."""
    prepared = prepare_many(data, specs, limits, decode_for)
    return [_encode(p, spec) for p, spec in zip(prepared, specs, strict=True)]


def _encode(prepared: Prepared, spec: RenderSpec) -> Rendered:
    px = prepared.pixels
    quality = choose_quality(spec.quality, prepared.source_quality)
    subsampling: str | None = None
    if spec.format == "webp":
        encoded = encode_webp(px, quality, spec.webp_method)
    else:
        subsampling = choose_subsampling(quality, spec.chroma_444_at_or_above)
        encoded = encode_jpeg(px, quality, subsampling, optimize=spec.optimize_coding)
    return Rendered(
        data=encoded,
        width=px.shape[1],
        height=px.shape[0],
        format=spec.format,
        quality=quality,
        source_quality=prepared.source_quality,
        subsampling=subsampling,
        decode_scale=prepared.decode_scale,
        source_format=prepared.source_format,
        icc_converted=prepared.icc_converted,
    )


def prepare(data: bytes, spec: RenderSpec, limits: LimitSettings) -> Prepared:
    """Everything but encoding: limits, scaled decode, fit, orientation, sRGB, background."""
    return prepare_many(data, (spec,), limits)[0]


def prepare_many(
    data: bytes,
    specs: Sequence[RenderSpec],
    limits: LimitSettings,
    decode_for: Sequence[RenderSpec] = (),
) -> list[Prepared]:
    """:func:`prepare` for each spec, decoding once at the scale the largest target (of
    ``specs`` and ``decode_for``) needs."""
    if not data:
        raise EmptyFile("file is empty")
    if len(data) > limits.max_file_bytes:
        raise ImageTooLarge(f"{len(data)} bytes, over the limit of {limits.max_file_bytes}")
    data, header = source_header(data, limits)
    check_limits(header, limits)
    source_quality = estimate_quality(
        header.format, header.luma_table, data, header.width * header.height
    )
    shown_w, shown_h = displayed_size(header.width, header.height, header.orientation)
    stored = []
    for spec in (*specs, *decode_for):
        target_w, target_h = fit_within(shown_w, shown_h, spec.width, spec.height)
        stored.append(stored_size(target_w, target_h, header.orientation))
    largest_w, largest_h = max(stored, key=lambda size: size[0] * size[1])
    stored = stored[: len(specs)]
    check_scans(data, header, limits)
    scale = planned_scale(header, largest_w, largest_h)
    reduction = planned_reduction(header, largest_w, largest_h)
    check_memory(header, scale, reduction, limits)
    decoded = decode(data, header, largest_w, largest_h)
    del data

    base = colour.drop_opaque_alpha(decoded.pixels)
    has_alpha = base.shape[2] == 4
    if has_alpha:
        base = colour.premultiply(base)
    mode = "RGBA" if has_alpha else "RGB"
    icc_converted = decoded.icc_converted or colour.converts(decoded.pending_icc, mode)
    prepared = []
    for spec, (stored_w, stored_h) in zip(specs, stored, strict=True):
        reduction = integer_reduction(base.shape[1], base.shape[0], stored_w, stored_h)
        px = resize(box_reduce(base, reduction), stored_w, stored_h)
        if px is base and len(specs) > 1:
            px = base.copy()  # the steps below may work in place; the next spec needs base
        if has_alpha:
            px = colour.unpremultiply(px)
        px = apply_orientation(px, header.orientation)
        px = colour.pixels_to_srgb(px, decoded.pending_icc)
        if has_alpha and spec.format != "webp":
            px = colour.composite(px, spec.background)
        prepared.append(
            Prepared(px, source_quality, decoded.scale, header.source_format, icc_converted)
        )
    return prepared
