"""Output quality is min(configured, source estimate); chroma 4:4:4 only for good thumbnails."""

from __future__ import annotations

import io

import pytest
from imaging_helpers import marked, save
from PIL import Image, JpegImagePlugin
from thumbcache.bench.corpus import photo_like
from thumbcache.imaging import ENGINE_VERSION, Rendered, RenderSpec, render
from thumbcache.renditions import CACHE, THUMBNAIL, RenditionSettings
from thumbcache.settings import LimitSettings

LIMITS = LimitSettings()
CACHE_SPEC = RenderSpec.from_settings(CACHE)
THUMB_SPEC = RenderSpec.from_settings(THUMBNAIL)


def sampling(r: Rendered) -> int:
    """Pillow's code of a JPEG rendition's chroma subsampling: 0 = 4:4:4, 2 = 4:2:0."""
    with Image.open(io.BytesIO(r.data)) as im:
        assert isinstance(im, JpegImagePlugin.JpegImageFile)
        return JpegImagePlugin.get_sampling(im)


@pytest.mark.parametrize(("source_q", "expected"), [(60, 60), (84, 84), (85, 85), (97, 85)])
def test_jpeg_quality_is_capped_by_the_source(source_q: int, expected: int) -> None:
    data = save(marked(640, 480), "JPEG", quality=source_q)
    r = render(data, THUMB_SPEC, LIMITS)
    assert (r.source_quality, r.quality) == (source_q, expected)
    with Image.open(io.BytesIO(r.data)) as out:
        from thumbcache.imaging.quality import quality_from_luma_table

        assert quality_from_luma_table(out.quantization[0]) == expected  # type: ignore[attr-defined]


def test_lossless_sources_use_the_configured_quality() -> None:
    for fmt, params in (("PNG", {}), ("WEBP", {"lossless": True}), ("GIF", {})):
        r = render(save(marked(200, 100), fmt, **params), THUMB_SPEC, LIMITS)
        assert (r.source_quality, r.quality) == (None, 85)


def test_lossy_webp_quality_from_bits_per_pixel() -> None:
    rgb = photo_like(800, 600, seed=3)
    low = render(save(Image.fromarray(rgb), "WEBP", quality=20), THUMB_SPEC, LIMITS)
    high = render(save(Image.fromarray(rgb), "WEBP", quality=95), THUMB_SPEC, LIMITS)
    assert low.source_quality is not None and high.source_quality is not None
    assert low.source_quality < high.source_quality
    assert low.quality == low.source_quality < 85


def test_thumbnail_chroma_follows_quality_and_cache_is_always_420() -> None:
    good = save(marked(640, 480), "JPEG", quality=90)
    poor = save(marked(640, 480), "JPEG", quality=70)
    assert render(good, THUMB_SPEC, LIMITS).subsampling == "4:4:4"
    assert sampling(render(good, THUMB_SPEC, LIMITS)) == 0
    assert render(poor, THUMB_SPEC, LIMITS).subsampling == "4:2:0"
    assert sampling(render(poor, THUMB_SPEC, LIMITS)) == 2
    assert render(good, CACHE_SPEC, LIMITS).subsampling == "4:2:0"
    assert sampling(render(good, CACHE_SPEC, LIMITS)) == 2


def test_record_bytes_and_webp_output() -> None:
    data = save(marked(640, 480), "PNG")
    r = render(data, RenderSpec(300, 300, format="webp", quality=70, webp_method=0), LIMITS)
    assert r.bytes == len(r.data) > 0
    assert (r.format, r.quality, r.subsampling) == ("webp", 70, None)
    assert r.data[:4] == b"RIFF" and r.data[8:12] == b"WEBP"


def test_from_settings_and_engine_version() -> None:
    spec = RenderSpec.from_settings(
        RenditionSettings(
            320,
            200,
            format="webp",
            quality=70,
            webp_method=1,
            background="#102030",
            chroma_444_from_quality=80,
            optimize_coding=True,
        )
    )
    assert (spec.width, spec.height, spec.format, spec.quality, spec.webp_method) == (
        320,
        200,
        "webp",
        70,
        1,
    )
    assert spec.background == (16, 32, 48) and spec.chroma_444_at_or_above == 80
    assert spec.optimize_coding and not CACHE_SPEC.optimize_coding
    assert CACHE_SPEC.chroma_444_at_or_above is None
    assert THUMB_SPEC.chroma_444_at_or_above == 80  # the built-in thumbnail's rule
    assert ENGINE_VERSION == "5"
