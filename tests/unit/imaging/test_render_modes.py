"""Colour modes come out as a reference decoder shows them: LAB, CMYK, 16-bit, 12-bit, signed,
32-bit integer and float samples, palettes with alpha, LA, 1-bit; orientation from XMP too."""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
import pytest
from imaging_helpers import GREEN, GREY, RED, THUMB, decoded, marked, near, pixel, save, stored_as
from PIL import Image, PngImagePlugin
from thumbcache.imaging import Rendered, render
from thumbcache.imaging.probe import probe
from thumbcache.settings import LimitSettings

from tests.imagegen import png16_bytes, tiff_bytes

LIMITS = LimitSettings()
WHITE = (255, 255, 255)  # the background alpha is laid over in a JPEG rendition


def grey_levels(r: Rendered) -> list[int]:
    """Grey levels at five points along the middle row of a rendition."""
    im = decoded(r).convert("L")
    w, h = im.size
    return [int(im.getpixel((x, h // 2))) for x in (0, w // 4, w // 2, 3 * w // 4, w - 1)]  # type: ignore[arg-type]


def ramp(low: int, high: int, dtype: npt.DTypeLike) -> npt.NDArray[np.generic]:
    """A 256x8 horizontal ramp from ``low`` to ``high``."""
    row = np.linspace(low, high, 256)
    if np.issubdtype(np.dtype(dtype), np.integer):
        row = row.round()
    return np.tile(row, (8, 1)).astype(dtype)


def levels_near(levels: list[int], expected: list[int], tol: int = 3) -> bool:
    """Every level within ``tol`` of what is expected."""
    return all(abs(a - e) <= tol for a, e in zip(levels, expected, strict=True))


LINEAR = [0, 64, 128, 191, 255]  # a full-range ramp, sampled where grey_levels samples


def test_lab_tiff_is_converted_to_srgb() -> None:
    lab = save(marked(96, 64).convert("LAB"), "TIFF")
    assert Image.open(io.BytesIO(lab)).mode == "LAB"
    r = render(lab, THUMB, LIMITS)
    # 8-bit L*a*b* cannot hold sRGB's green exactly: Pillow's RGB->LAB round trip is 13 off.
    assert near(pixel(r, 8, 8), RED, 16) and near(pixel(r, 87, 55), GREEN, 16)
    assert near(pixel(r, 48, 32), GREY, 8)


def _i16b_tiff() -> bytes:
    values = ramp(0, 65535, ">u2")
    return save(Image.frombytes("I;16B", (256, 8), values.tobytes()), "TIFF")


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: png16_bytes(ramp(0, 65535, np.uint16)), id="png-16-bit-grey"),
        pytest.param(lambda: save(Image.fromarray(ramp(0, 65535, np.uint16)), "TIFF"), id="I;16"),
        pytest.param(_i16b_tiff, id="I;16B-big-endian"),
        pytest.param(lambda: save(Image.fromarray(ramp(0, 65535, np.int32)), "TIFF"), id="I-32"),
        pytest.param(lambda: save(Image.fromarray(ramp(0, 1, np.float32)), "TIFF"), id="F-0..1"),
    ],
)
def test_full_range_deep_grey_maps_linearly(make: object) -> None:
    levels = grey_levels(render(make(), THUMB, LIMITS))  # type: ignore[operator]
    assert levels_near(levels, LINEAR), levels


def _pack12(values: npt.NDArray[np.generic]) -> bytes:
    """12-bit samples packed two to three bytes, most significant bits first (TIFF's order)."""
    flat = values.astype(np.uint32).ravel()
    first, second = flat[0::2], flat[1::2]
    packed = np.stack([first >> 4, ((first & 15) << 4) | (second >> 8), second & 255], axis=1)
    return packed.astype(np.uint8).tobytes()


def test_12_bit_tiff_spans_its_own_range_not_16_bits() -> None:
    """ImageMagick shows a 12-bit TIFF's 4095 as white; /65535 made it nearly black."""
    data = tiff_bytes(256, 8, {258: (3, (12,)), 277: (3, (1,))}, _pack12(ramp(0, 4095, np.int64)))
    assert levels_near(grey_levels(render(data, THUMB, LIMITS)), LINEAR)


def test_signed_16_bit_tiff_maps_its_whole_range() -> None:
    """-32768 is black, 0 mid-grey, 32767 white (as ImageMagick shows signed samples)."""
    values = ramp(-32768, 32767, "<i2")
    data = tiff_bytes(256, 8, {258: (3, (16,)), 277: (3, (1,)), 339: (3, (2,))}, values.tobytes())
    assert levels_near(grey_levels(render(data, THUMB, LIMITS)), LINEAR)


def test_48_bit_rgb_png_keeps_its_colours() -> None:
    rgb = np.zeros((64, 96, 3), np.uint16)
    rgb[:, :48] = (65535, 0, 0)
    rgb[:, 48:] = (0, 65535, 0)
    r = render(png16_bytes(rgb), THUMB, LIMITS)
    assert near(pixel(r, 10, 32), RED, 6) and near(pixel(r, 85, 32), GREEN, 6)


def test_palette_with_transparency_la_and_one_bit() -> None:
    im = Image.new("P", (96, 64), 0)
    im.putpalette([255, 0, 0, 0, 255, 0])
    im.paste(1, (48, 0, 96, 64))
    r = render(save(im, "PNG", transparency=1), THUMB, LIMITS)
    assert near(pixel(r, 10, 32), RED, 6) and near(pixel(r, 85, 32), WHITE, 6)

    la = Image.merge("LA", (Image.new("L", (96, 64), 40), Image.new("L", (96, 64), 255)))
    la.paste((200, 0), (48, 0, 96, 64))
    r = render(save(la, "PNG"), THUMB, LIMITS)
    assert near(pixel(r, 10, 32), (40, 40, 40), 6) and near(pixel(r, 85, 32), WHITE, 6)

    one = Image.new("1", (96, 64), 0)
    one.paste(1, (48, 0, 96, 64))
    r = render(save(one, "PNG"), THUMB, LIMITS)
    assert near(pixel(r, 10, 32), (0, 0, 0), 6) and near(pixel(r, 85, 32), WHITE, 6)


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_a_trns_colour_key_makes_that_colour_transparent(mode: str) -> None:
    # Given a PNG whose tRNS chunk makes one colour transparent (PngSuite tbrn2c08 and
    # Pillow's rgb_trns.png render so in every viewer)
    key = (0, 255, 0) if mode == "RGB" else 77
    im = Image.new(mode, (96, 64), (255, 0, 0) if mode == "RGB" else 0)
    im.paste(key, (48, 0, 96, 64))
    # When it renders to a JPEG thumbnail
    r = render(save(im, "PNG", transparency=key), THUMB, LIMITS)
    # Then the keyed half shows the background, the other half its colour
    assert near(pixel(r, 10, 32), RED if mode == "RGB" else (0, 0, 0), 6)
    assert near(pixel(r, 85, 32), WHITE, 6)


def test_cmyk_tiff_renders_in_srgb() -> None:
    r = render(save(marked(96, 64).convert("CMYK"), "TIFF"), THUMB, LIMITS)
    assert near(pixel(r, 8, 8), RED, 16) and near(pixel(r, 87, 55), GREEN, 16)


def _xmp(orientation: int, element: bool) -> str:
    value = (
        f"<tiff:Orientation>{orientation}</tiff:Orientation>"
        if element
        else f'tiff:Orientation="{orientation}"'
    )
    inner = f"<rdf:Description {value if not element else ''}>{value if element else ''}"
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
        'xmlns:tiff="http://ns.adobe.com/tiff/1.0/">'
        f"{inner}</rdf:Description></rdf:RDF></x:xmpmeta>"
    )


@pytest.mark.parametrize("element", [False, True], ids=["attribute", "element"])
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_png_orientation_from_xmp(orientation: int, element: bool) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", _xmp(orientation, element))
    data = save(stored_as(marked(400, 200), orientation), "PNG", pnginfo=info)
    assert probe(io.BytesIO(data), LIMITS).orientation == orientation
    r = render(data, THUMB, LIMITS)
    assert (r.width, r.height) == (300, 150)
    assert near(pixel(r, 8, 8), RED, 12) and near(pixel(r, 291, 141), GREEN, 12)
