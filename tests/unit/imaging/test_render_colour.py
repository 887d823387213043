"""ICC profiles are converted to sRGB; alpha is composited for JPEG and kept for WebP."""

from __future__ import annotations

import numpy as np
import pytest
from imaging_helpers import (
    BLUE,
    GREEN,
    RED,
    THUMB,
    decoded,
    near,
    pixel,
    save,
    swapped_primaries_icc,
)
from PIL import Image
from thumbcache.imaging import RenderSpec, render
from thumbcache.imaging.colour import SRGB_ICC
from thumbcache.settings import LimitSettings

LIMITS = LimitSettings()


def two_colour(width: int = 600, height: int = 400) -> Image.Image:
    """Left half red, right half blue."""
    im = Image.new("RGB", (width, height), RED)
    im.paste(BLUE, (width // 2, 0, width, height))
    return im


@pytest.mark.parametrize(("fmt", "params"), [("JPEG", {"quality": 95}), ("PNG", {}), ("WEBP", {})])
def test_embedded_profile_is_converted_to_srgb(fmt: str, params: dict[str, object]) -> None:
    data = save(two_colour(), fmt, icc_profile=swapped_primaries_icc(), **params)
    r = render(data, THUMB, LIMITS)
    assert r.icc_converted
    # Under the swapped profile, the encoded "red" is really sRGB green.
    assert near(pixel(r, 20, 100), GREEN, 6)
    assert near(pixel(r, 280, 100), BLUE, 6)
    assert decoded(r).info["icc_profile"] == SRGB_ICC


def test_mid_tones_are_converted_too() -> None:
    data = save(
        Image.new("RGB", (64, 64), (200, 60, 30)), "PNG", icc_profile=swapped_primaries_icc()
    )
    assert near(pixel(render(data, THUMB, LIMITS), 32, 32), (60, 200, 30), 3)


def test_srgb_and_broken_profiles_leave_pixels_alone() -> None:
    for icc in (SRGB_ICC, b"not a profile at all"):
        r = render(save(two_colour(), "PNG", icc_profile=icc), THUMB, LIMITS)
        assert not r.icc_converted
        assert near(pixel(r, 20, 100), RED, 4)


def test_profile_with_alpha_converts_colour_and_keeps_alpha() -> None:
    im = Image.new("RGBA", (64, 64), (*RED, 255))
    im.paste((*RED, 0), (32, 0, 64, 64))
    data = save(im, "PNG", icc_profile=swapped_primaries_icc())
    out = decoded(render(data, RenderSpec(64, 64, format="webp"), LIMITS))
    left, right = out.getpixel((8, 32)), out.getpixel((56, 32))
    assert isinstance(left, tuple) and isinstance(right, tuple)
    assert near(left, (*GREEN, 255), 8) and right[3] == 0


@pytest.mark.parametrize(
    ("background", "expected"),
    [((255, 255, 255), (255, 128, 128)), ((0, 0, 0), (128, 0, 0)), ((0, 0, 255), (128, 0, 127))],
)
def test_half_transparent_red_on_the_configured_background(
    background: tuple[int, int, int], expected: tuple[int, int, int]
) -> None:
    data = save(Image.new("RGBA", (64, 64), (*RED, 128)), "PNG")
    r = render(data, RenderSpec(300, 300, background=background, quality=95), LIMITS)
    assert near(pixel(r, 32, 32), expected, 3)


def test_webp_output_keeps_alpha_values() -> None:
    ramp = np.zeros((32, 256, 4), dtype=np.uint8)
    ramp[:, :, 0] = 255
    ramp[:, :, 3] = np.arange(256, dtype=np.uint8)
    r = render(save(Image.fromarray(ramp), "PNG"), RenderSpec(256, 32, format="webp"), LIMITS)
    out = np.asarray(decoded(r))
    assert out.shape == (32, 256, 4)
    assert np.abs(out[16, :, 3].astype(int) - np.arange(256)).max() <= 2


def test_hidden_colour_under_transparency_does_not_bleed_when_downscaling() -> None:
    # Opaque red stripes over fully transparent *green*: a straight-alpha resize would pull
    # green into the visible edge; a premultiplied one cannot.
    im = np.zeros((400, 400, 4), dtype=np.uint8)
    im[:, :, 1] = 255  # hidden green
    im[:, ::4, :] = (255, 0, 0, 255)
    data = save(Image.fromarray(im), "PNG")
    webp = np.asarray(decoded(render(data, RenderSpec(100, 100, format="webp"), LIMITS)))
    visible = webp[webp[:, :, 3] > 32]
    assert visible.size and visible[:, 1].max() <= 12  # no green in any visible pixel
    jpeg = np.asarray(decoded(render(data, RenderSpec(100, 100, background=(0, 0, 0)), LIMITS)))
    assert jpeg[:, :, 1].max() <= 12
    assert 50 <= int(jpeg[:, :, 0].mean()) <= 75  # a quarter red coverage on black


def test_opaque_alpha_is_dropped_for_webp() -> None:
    data = save(Image.new("RGBA", (64, 64), (*BLUE, 255)), "PNG")
    assert decoded(render(data, RenderSpec(64, 64, format="webp"), LIMITS)).mode == "RGB"
