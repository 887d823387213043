"""Several renditions from one decode: each as sharp as its own render, the source decoded
once, and each spec's own format, box and background kept."""

from __future__ import annotations

import io

import cv2
import pytest
from imaging_helpers import CACHE, THUMB, exif_with_orientation, rgb_array, save
from PIL import Image
from test_render_ssim import MIN_SSIM, reference
from thumbcache.bench.corpus import photo_like
from thumbcache.bench.metrics import ssim
from thumbcache.imaging import RenderSpec, render, render_many
from thumbcache.imaging import engine as engine_module
from thumbcache.imaging.engine import prepare_many
from thumbcache.settings import LimitSettings

LIMITS = LimitSettings()


def _sources() -> dict[str, bytes]:
    photo = Image.fromarray(photo_like(4000, 3000, seed=5, grain=8.0))
    return {
        "jpeg-12mp": save(photo, "JPEG", quality=92),
        "jpeg-rotated": save(photo.resize((2400, 1800)), "JPEG", quality=90,
                             exif=exif_with_orientation(6)),
        "png": save(photo.resize((3000, 2000)), "PNG", compress_level=1),
        "webp": save(photo.resize((2600, 1700)), "WEBP", quality=90, method=0),
    }  # fmt: skip


@pytest.fixture(scope="module")
def sources() -> dict[str, bytes]:
    return _sources()


@pytest.mark.parametrize("name", ["jpeg-12mp", "jpeg-rotated", "png", "webp"])
def test_each_rendition_of_one_decode_is_as_sharp_as_its_own_render(sources, name):
    data = sources[name]
    specs = (THUMB, CACHE)
    for prepared, spec in zip(prepare_many(data, specs, LIMITS), specs, strict=True):
        ours = cv2.cvtColor(prepared.pixels, cv2.COLOR_BGR2RGB)
        alone = render(data, spec, LIMITS)
        assert (ours.shape[1], ours.shape[0]) == (alone.width, alone.height)
        value = ssim(ours, reference(data, (alone.width, alone.height)))
        assert value >= MIN_SSIM, (name, spec.width, value)


def test_the_source_is_decoded_once_for_every_spec(sources, monkeypatch):
    calls = []
    real = engine_module.decode

    def counting(*args, **kwargs):
        calls.append(args[2:4])
        return real(*args, **kwargs)

    monkeypatch.setattr(engine_module, "decode", counting)
    thumb, cache = render_many(sources["jpeg-12mp"], [THUMB, CACHE], LIMITS)
    assert len(calls) == 1  # at the size the largest target needs
    assert calls[0] == (cache.width, cache.height)
    assert (thumb.width, thumb.height) == (300, 225) and cache.decode_scale == 2


def test_each_spec_keeps_its_own_format_and_background():
    rgba = Image.new("RGBA", (1200, 800), (10, 200, 30, 0))
    data = save(rgba, "PNG")
    jpeg = RenderSpec(300, 300, background=(255, 0, 0))
    webp = RenderSpec(600, 600, format="webp")
    as_jpeg, as_webp = render_many(data, [jpeg, webp], LIMITS)
    assert (as_jpeg.format, as_webp.format) == ("jpeg", "webp")
    corner = Image.open(io.BytesIO(as_jpeg.data)).convert("RGB").getpixel((0, 0))
    assert corner[0] > 240 and corner[1] < 20  # composited on its own red background
    assert Image.open(io.BytesIO(as_webp.data)).mode == "RGBA"  # alpha kept for WebP
    assert rgb_array(Image.open(io.BytesIO(as_webp.data)).convert("RGB")).shape[:2] == (400, 600)


@pytest.mark.parametrize("name", ["jpeg-12mp", "jpeg-rotated", "png"])
def test_a_specs_bytes_do_not_depend_on_the_others_it_is_rendered_with(sources, name):
    # A duplicate delivery may render a rendition alone while another render makes it with its
    # companions: planned for the same decode, both write the same bytes to the same path.
    data, plan = sources[name], [THUMB, CACHE]
    (alone,) = render_many(data, [THUMB], LIMITS, decode_for=plan)
    together = render_many(data, [CACHE, THUMB], LIMITS, decode_for=plan)[1]
    assert alone.data == together.data
    assert render(data, THUMB, LIMITS).data != alone.data or name == "png"  # the plan matters
