"""Render one rendition: decode at the smallest sufficient scale, orient, fit, encode."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from thumbcache.errors import CorruptImage, ImageTooLarge, NotAnImage
from thumbcache.imaging.geometry import fit_within
from thumbcache.imaging.quality import choose_quality, estimate_quality
from thumbcache.settings import LimitSettings, RenditionSettings

# Part of every rendition's recipe: bump it when the output of the same input changes.
ENGINE_VERSION = "1"


@dataclass(frozen=True)
class RenderSpec:
    """What to produce: the box, the format, the quality ceiling, the JPEG background."""

    width: int
    height: int
    format: str = "jpeg"
    quality: int = 85
    webp_method: int = 2
    background: tuple[int, int, int] = (255, 255, 255)
    chroma_444_at_or_above: int | None = None  # thumbnails: 4:4:4 when quality >= this

    @classmethod
    def from_settings(cls, rendition: RenditionSettings, *, thumbnail: bool) -> RenderSpec:
        """The spec of a configured rendition."""
        bg = rendition.background.lstrip("#")
        return cls(
            width=rendition.width,
            height=rendition.height,
            format=rendition.format,
            quality=rendition.quality,
            webp_method=rendition.webp_method,
            background=(int(bg[0:2], 16), int(bg[2:4], 16), int(bg[4:6], 16)),
            chroma_444_at_or_above=80 if thumbnail else None,
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

    @property
    def bytes(self) -> int:
        """Size of the encoded file."""
        return len(self.data)


def render(data: bytes, spec: RenderSpec, limits: LimitSettings) -> Rendered:
    """Render ``data`` (a whole source image) to ``spec``; raise a PermanentError if it is bad."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            if im.width * im.height > limits.max_pixels:
                raise ImageTooLarge(f"{im.width}x{im.height} over {limits.max_pixels} pixels")
            source_quality = estimate_quality(im, len(data))
            orientation = im.getexif().get(0x0112, 1)
            swap = orientation in (5, 6, 7, 8)
            shown_w, shown_h = (im.height, im.width) if swap else (im.width, im.height)
            target_w, target_h = fit_within(shown_w, shown_h, spec.width, spec.height)
            if im.format == "JPEG":
                draft_size = (target_h, target_w) if swap else (target_w, target_h)
                im.draft("RGB", draft_size)
            im.load()
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from None
    except UnidentifiedImageError:
        raise NotAnImage("not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImage(f"cannot decode image: {exc}") from None
    im = ImageOps.exif_transpose(im)
    im = _to_rgb(im, spec)
    if (im.width, im.height) != (target_w, target_h):
        im = im.resize((target_w, target_h), Image.Resampling.LANCZOS, reducing_gap=3.0)
    quality = choose_quality(spec.quality, source_quality)
    out = io.BytesIO()
    if spec.format == "webp":
        im.save(out, "WEBP", quality=quality, method=spec.webp_method)
    else:
        subsampling = (
            0
            if spec.chroma_444_at_or_above is not None and quality >= spec.chroma_444_at_or_above
            else 2
        )
        im.save(out, "JPEG", quality=quality, subsampling=subsampling, optimize=False)
    return Rendered(out.getvalue(), im.width, im.height, spec.format, quality, source_quality)


def _to_rgb(im: Image.Image, spec: RenderSpec) -> Image.Image:
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        if spec.format == "webp":
            return rgba
        flat = Image.new("RGB", rgba.size, spec.background)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        return im.point(lambda v: v / 256).convert("RGB")
    return im.convert("RGB") if im.mode != "RGB" else im
