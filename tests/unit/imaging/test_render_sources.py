"""render() on every source kind: right size, right colours, sRGB-tagged output."""

from __future__ import annotations

import io

import numpy as np
import pytest
from imaging_helpers import (
    BLUE,
    CACHE,
    GREEN,
    GREY,
    RED,
    THUMB,
    decoded,
    marked,
    near,
    pixel,
    save,
    ycck_jpeg,
)
from PIL import Image, ImageCms
from thumbcache.imaging import RenderSpec, render
from thumbcache.imaging.colour import SRGB_ICC
from thumbcache.settings import LimitSettings

LIMITS = LimitSettings()


def check_marked(data: bytes, spec: RenderSpec = THUMB, size: tuple[int, int] = (300, 225)) -> None:
    """A rendition of marked(): red top-left, green bottom-right, grey between."""
    r = render(data, spec, LIMITS)
    assert (r.width, r.height) == size
    w, h = size
    assert near(pixel(r, 5, 5)[:3], RED, 12)
    assert near(pixel(r, w - 6, h - 6)[:3], GREEN, 12)
    assert near(pixel(r, w // 2, h // 2)[:3], GREY, 8)


@pytest.mark.parametrize(
    ("fmt", "params"),
    [
        ("JPEG", {"quality": 95}),
        ("JPEG", {"quality": 95, "progressive": True}),
        ("PNG", {}),
        ("WEBP", {"quality": 90}),
        ("WEBP", {"lossless": True}),
        ("GIF", {}),
        ("BMP", {}),
        ("TIFF", {}),
        ("TIFF", {"compression": "tiff_lzw"}),
    ],
)
def test_sources_render_with_right_size_and_colours(fmt: str, params: dict[str, object]) -> None:
    check_marked(save(marked(800, 600), fmt, **params))


def test_output_is_tagged_srgb_jpeg_and_webp() -> None:
    data = save(marked(800, 600), "PNG")
    for spec in (THUMB, RenderSpec(300, 300, format="webp")):
        out = decoded(render(data, spec, LIMITS))
        assert out.format == spec.format.upper()
        assert out.info["icc_profile"] == SRGB_ICC
        profile = ImageCms.ImageCmsProfile(io.BytesIO(out.info["icc_profile"]))
        assert "sRGB" in str(profile.profile.profile_description)


def test_large_jpeg_uses_dct_scaling_for_each_stage() -> None:
    data = save(marked(4000, 3000), "JPEG", quality=90)
    thumb = render(data, THUMB, LIMITS)
    cache = render(data, CACHE, LIMITS)
    assert (thumb.decode_scale, thumb.width, thumb.height) == (8, 300, 225)
    assert (cache.decode_scale, cache.width, cache.height) == (2, 1440, 1080)
    assert near(pixel(cache, 10, 10), RED) and near(pixel(cache, 1430, 1070), GREEN)


def test_progressive_large_jpeg_is_scaled_too() -> None:
    data = save(marked(2400, 1800), "JPEG", quality=90, progressive=True)
    r = render(data, THUMB, LIMITS)
    assert (r.decode_scale, r.width, r.height) == (8, 300, 225)
    assert near(pixel(r, 5, 5), RED)


def test_grayscale_jpeg_and_png() -> None:
    grey = Image.new("L", (640, 480), 90)
    grey.paste(230, (0, 0, 160, 120))
    for data in (save(grey, "JPEG", quality=95), save(grey, "PNG")):
        r = render(data, THUMB, LIMITS)
        assert decoded(r).mode == "RGB"
        assert near(pixel(r, 5, 5), (230, 230, 230), 3)
        assert near(pixel(r, 250, 200), (90, 90, 90), 3)


def test_cmyk_adobe_inverted_jpeg() -> None:
    cmyk = (0, 255, 255, 0), (200, 40, 0, 30)
    im = Image.new("CMYK", (640, 480), cmyk[0])
    im.paste(cmyk[1], (320, 0, 640, 480))
    data = save(im, "JPEG", quality=100)
    assert b"Adobe" in data[:200]  # Pillow writes inverted CMYK with an Adobe marker
    r = render(data, THUMB, LIMITS)
    expected_right = Image.new("CMYK", (1, 1), cmyk[1]).convert("RGB").getpixel((0, 0))
    assert isinstance(expected_right, tuple)
    assert near(pixel(r, 20, 100), RED, 3)
    assert near(pixel(r, 280, 100), expected_right, 3)
    assert r.source_format == "jpeg" and r.decode_scale == 2


def test_ycck_jpeg() -> None:
    cmyk = (30, 200, 120, 40)
    data = ycck_jpeg(256, 256, cmyk)
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "CMYK"
        read_back = im.getpixel((5, 5))
    assert isinstance(read_back, tuple)
    assert near(read_back, cmyk, 3)
    expected = Image.new("CMYK", (1, 1), cmyk).convert("RGB").getpixel((0, 0))
    assert isinstance(expected, tuple)
    r = render(data, THUMB, LIMITS)
    assert (r.width, r.height) == (256, 256)
    assert near(pixel(r, 128, 128), expected, 4)


def test_16_bit_grey_png() -> None:
    ramp = np.tile(np.linspace(0, 65535, 512).astype(np.uint16), (64, 1))
    im = Image.fromarray(ramp)
    assert im.mode.startswith("I;16")
    r = render(save(im, "PNG"), RenderSpec(512, 64, quality=95), LIMITS)
    out = np.asarray(decoded(r).convert("L")).astype(int)
    assert abs(out[32, 0] - 0) <= 2 and abs(out[32, 511] - 255) <= 2
    assert abs(out[32, 256] - 128) <= 3  # mid-grey, not clipped or wrapped


def test_16_bit_rgb_png() -> None:
    rgb16 = np.zeros((48, 64, 3), dtype=">u2")
    rgb16[:, :, 0] = 65535
    rgb16[:, 32:, 2] = 32768
    # Pillow cannot write 48-bit PNG, so write it by hand via OpenCV (BGR order, native uint16).
    import cv2

    ok, buf = cv2.imencode(".png", rgb16.astype(np.uint16)[:, :, ::-1])
    assert ok
    r = render(buf.tobytes(), RenderSpec(64, 48, quality=95), LIMITS)
    assert near(pixel(r, 5, 24), RED, 3)
    assert near(pixel(r, 60, 24), (255, 0, 128), 3)


def test_palette_png_with_transparency_on_background() -> None:
    im = Image.new("P", (100, 100), 0)
    im.putpalette([*RED, *BLUE] + [0] * 762)
    im.paste(1, (50, 0, 100, 100))
    data = save(im, "PNG", transparency=1)  # the blue half is fully transparent
    r = render(data, RenderSpec(100, 100, background=(0, 0, 0)), LIMITS)
    assert near(pixel(r, 10, 50), RED, 4)
    assert near(pixel(r, 90, 50), (0, 0, 0), 4)
    webp = decoded(render(data, RenderSpec(100, 100, format="webp"), LIMITS))
    assert webp.mode == "RGBA"
    px = webp.getpixel((90, 50))
    assert isinstance(px, tuple) and px[3] == 0


def test_animated_gif_renders_the_first_frame() -> None:
    frames = [Image.new("RGB", (120, 90), c) for c in (RED, GREEN, BLUE)]
    data = save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    r = render(data, THUMB, LIMITS)
    assert (r.width, r.height) == (120, 90)
    assert near(pixel(r, 60, 45), RED, 6)


def test_animated_webp_renders_the_first_frame() -> None:
    frames = [Image.new("RGB", (120, 90), c) for c in (GREEN, RED, BLUE)]
    data = save(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=50)
    r = render(data, THUMB, LIMITS)
    assert (r.width, r.height) == (120, 90)
    assert near(pixel(r, 60, 45), GREEN, 10)


def test_rgba_bmp_and_tiff_keep_alpha_for_webp() -> None:
    im = Image.new("RGBA", (80, 60), (*RED, 255))
    im.paste((0, 0, 255, 0), (40, 0, 80, 60))
    for fmt in ("TIFF", "PNG"):
        out = decoded(render(save(im, fmt), RenderSpec(80, 60, format="webp"), LIMITS))
        left, right = out.getpixel((10, 30)), out.getpixel((70, 30))
        assert isinstance(left, tuple) and isinstance(right, tuple)
        assert near(left, (*RED, 255), 8) and right[3] == 0


def test_small_images_are_never_upscaled() -> None:
    r = render(save(marked(120, 80), "JPEG", quality=95), CACHE, LIMITS)
    assert (r.width, r.height, r.decode_scale) == (120, 80, 1)
