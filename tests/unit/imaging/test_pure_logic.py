"""Pure logic: fitting, decode scale choice, quality estimation and choice."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from thumbcache.imaging.encode import insert_jpeg_icc
from thumbcache.imaging.geometry import (
    decode_denominator,
    displayed_size,
    fit_within,
    integer_reduction,
)
from thumbcache.imaging.quality import (
    choose_quality,
    choose_subsampling,
    estimate_quality,
    ijg_table,
    quality_from_bits_per_pixel,
    quality_from_luma_table,
    webp_is_lossy,
)


@pytest.mark.parametrize(
    ("size", "box", "expected"),
    [
        ((4000, 3000), (300, 300), (300, 225)),
        ((3000, 4000), (300, 300), (225, 300)),
        ((4000, 3000), (1920, 1080), (1440, 1080)),
        ((6000, 4000), (1920, 1080), (1620, 1080)),
        ((200, 100), (300, 300), (200, 100)),  # never upscaled
        ((100000, 10), (300, 300), (300, 1)),
        ((1, 5000), (300, 300), (1, 300)),
        ((1001, 999), (300, 300), (300, 299)),
    ],
)
def test_fit_within(size: tuple[int, int], box: tuple[int, int], expected: tuple[int, int]) -> None:
    w, h = fit_within(*size, *box)
    assert (w, h) == expected
    assert w <= box[0] and h <= box[1]
    # aspect kept to within one pixel on the side that is not the limiting one
    assert abs(w - h * size[0] / size[1]) <= 1 or abs(h - w * size[1] / size[0]) <= 1


def test_fit_within_rejects_empty_sizes() -> None:
    with pytest.raises(ValueError, match="invalid size"):
        fit_within(0, 10, 300, 300)


@pytest.mark.parametrize(
    ("size", "target", "expected"),
    [
        ((4000, 3000), (300, 225), 8),
        ((4000, 3000), (1440, 1080), 2),
        ((6000, 4000), (1620, 1080), 2),
        ((2400, 1800), (300, 225), 8),
        ((2300, 1725), (300, 225), 4),  # 1/8 would give 288x216: too small
        ((2000, 1500), (300, 225), 4),
        ((2640, 1980), (300, 225), 4),  # 1/8 would leave only 1.1x to resample: too soft
        ((3200, 2400), (1440, 1080), 1),  # 1/2 would leave 1.11x
        ((1000, 750), (1000, 750), 1),
    ],
)
def test_decode_denominator_covers_the_target(
    size: tuple[int, int], target: tuple[int, int], expected: int
) -> None:
    n = decode_denominator(*size, *target)
    assert n == expected
    w, h = -(-size[0] // n), -(-size[1] // n)
    assert (w, h) == target or (w >= 1.2 * target[0] and h >= 1.2 * target[1])


def test_decode_denominator_edge_of_rounding() -> None:
    # ceil(2393/8) = 300: exactly the target, no resampling left, so 1/8 is still right
    assert decode_denominator(2393, 1795, 300, 225) == 8
    assert decode_denominator(2392, 1794, 300, 225) == 4


def test_displayed_size_swaps_for_transposing_orientations() -> None:
    assert [displayed_size(40, 30, o) for o in range(1, 9)] == [(40, 30)] * 4 + [(30, 40)] * 4


def test_integer_reduction() -> None:
    assert integer_reduction(4000, 3000, 300, 225) == 6
    assert integer_reduction(4000, 3000, 1440, 1080) == 1
    assert integer_reduction(300, 225, 300, 225) == 1


@pytest.mark.parametrize("quality", [5, 20, 49, 50, 51, 75, 85, 92, 95, 100])
def test_quality_from_pillow_jpeg_tables_is_exact(quality: int) -> None:
    rgb = (np.random.default_rng(1).random((32, 32, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    with Image.open(buf) as im:
        table = im.quantization[0]  # type: ignore[attr-defined]
    assert quality_from_luma_table(table) == quality


def test_quality_from_non_ijg_table_is_nearest() -> None:
    table = [max(1, round(v * 1.04)) for v in ijg_table(80)]  # a camera's own tweak of q80
    assert 77 <= quality_from_luma_table(table) <= 80


def test_quality_table_needs_64_entries() -> None:
    with pytest.raises(ValueError, match="64 entries"):
        quality_from_luma_table([1] * 63)


def test_bits_per_pixel_proxy_is_monotonic_and_bounded() -> None:
    values = [quality_from_bits_per_pixel(b) for b in (0.05, 0.2, 0.5, 1.0, 1.5, 3.0, 8.0)]
    assert values == [30, 30, 50, 75, 85, 95, 95]
    assert quality_from_bits_per_pixel(0.75) == 62


def test_choose_quality_never_above_source() -> None:
    assert choose_quality(85, None) == 85
    assert choose_quality(85, 60) == 60
    assert choose_quality(85, 95) == 85


def test_choose_subsampling() -> None:
    assert choose_subsampling(80, 80) == "4:4:4"
    assert choose_subsampling(79, 80) == "4:2:0"
    assert choose_subsampling(95, None) == "4:2:0"


def test_webp_lossy_detection_and_estimate() -> None:
    im = Image.fromarray((np.random.default_rng(2).random((64, 64, 3)) * 255).astype(np.uint8))
    lossy, lossless = io.BytesIO(), io.BytesIO()
    im.save(lossy, "WEBP", quality=50)
    im.save(lossless, "WEBP", lossless=True)
    assert webp_is_lossy(lossy.getvalue())
    assert not webp_is_lossy(lossless.getvalue())
    with_alpha = io.BytesIO()
    im.convert("RGBA").save(with_alpha, "WEBP", quality=50, exif=b"Exif\x00\x00")  # VP8X
    assert webp_is_lossy(with_alpha.getvalue())
    assert estimate_quality("webp", None, lossless.getvalue(), 64 * 64) is None
    assert estimate_quality("png", None, b"", 64 * 64) is None
    assert estimate_quality("webp", None, lossy.getvalue(), 64 * 64) is not None


def test_insert_jpeg_icc_keeps_jfif_first_and_splits_large_profiles() -> None:
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
    out = insert_jpeg_icc(jpeg, b"x" * 70000)
    assert out.startswith(jpeg[:20] + b"\xff\xe2")
    assert out.count(b"ICC_PROFILE\x00") == 2
    assert out.endswith(b"\xff\xd9")
    with pytest.raises(ValueError, match="not a JPEG"):
        insert_jpeg_icc(b"GIF89a", b"x")
