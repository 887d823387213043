"""Orientation is applied before fitting: marked corners land where the viewer expects them."""

from __future__ import annotations

import pytest
from imaging_helpers import (
    CACHE,
    GREEN,
    RED,
    THUMB,
    exif_with_orientation,
    marked,
    near,
    pixel,
    save,
    stored_as,
)
from thumbcache.imaging import render
from thumbcache.settings import LimitSettings

LIMITS = LimitSettings()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_each_orientation_displays_upright(fmt: str, orientation: int) -> None:
    displayed = marked(400, 200)  # landscape, red top-left, green bottom-right
    stored = stored_as(displayed, orientation)
    params: dict[str, object] = {"exif": exif_with_orientation(orientation)}
    if fmt == "JPEG":
        params["quality"] = 95
    r = render(save(stored, fmt, **params), THUMB, LIMITS)
    assert (r.width, r.height) == (300, 150)
    assert near(pixel(r, 8, 8), RED, 12), "red must be top-left"
    assert near(pixel(r, 291, 141), GREEN, 12), "green must be bottom-right"


def test_portrait_stored_landscape_with_orientation_6_comes_out_portrait() -> None:
    displayed = marked(3000, 4000)  # a portrait photo...
    stored = stored_as(displayed, 6)  # ...that the camera stored as 4000x3000
    assert stored.size == (4000, 3000)
    data = save(stored, "JPEG", quality=90, exif=exif_with_orientation(6))
    thumb, cache = render(data, THUMB, LIMITS), render(data, CACHE, LIMITS)
    assert (thumb.width, thumb.height, thumb.decode_scale) == (225, 300, 8)
    assert (cache.width, cache.height, cache.decode_scale) == (810, 1080, 2)
    for r in (thumb, cache):
        assert near(pixel(r, 4, 4), RED, 12)
        assert near(pixel(r, r.width - 5, r.height - 5), GREEN, 12)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_thumbnail_derived_from_the_cache_image_is_upright_too(orientation: int) -> None:
    # The cache image is written upright and carries no orientation of its own, so a thumbnail
    # rendered from it (ADR 0007) is not turned a second time
    displayed = marked(3000, 2000)
    data = save(stored_as(displayed, orientation), "JPEG", quality=90,
                exif=exif_with_orientation(orientation))  # fmt: skip
    derived = render(render(data, CACHE, LIMITS).data, THUMB, LIMITS)
    assert (derived.width, derived.height) == (300, 200)
    assert near(pixel(derived, 6, 6), RED, 14), "red must be top-left"
    assert near(pixel(derived, 293, 193), GREEN, 14), "green must be bottom-right"
