"""Bad input: limits checked from the header, permanent errors with reasons, never a crash."""

from __future__ import annotations

import random
import zlib

import pytest
from imaging_helpers import THUMB, marked, save
from PIL import Image
from thumbcache.errors import (
    CorruptImage,
    EmptyFile,
    ImageTooLarge,
    NotAnImage,
    PermanentError,
    UnsupportedFormat,
)
from thumbcache.imaging import RenderSpec, render
from thumbcache.settings import LimitSettings

LIMITS = LimitSettings()


def forged_png(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims ``width`` x ``height`` (valid CRC, no such pixel data)."""
    png = bytearray(save(Image.new("RGB", (1, 1)), "PNG"))
    at = png.index(b"IHDR")
    png[at + 4 : at + 12] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    png[at + 17 : at + 21] = zlib.crc32(png[at : at + 17]).to_bytes(4, "big")
    return bytes(png)


def forged_jpeg(width: int, height: int) -> bytes:
    """A small JPEG whose SOF claims ``width`` x ``height``."""
    jpeg = bytearray(save(Image.new("RGB", (8, 8)), "JPEG"))
    at = jpeg.index(b"\xff\xc0")
    jpeg[at + 5 : at + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(jpeg)


def test_pixel_limit_is_checked_before_decoding() -> None:
    # 60000 x 60000 x 3 bytes would be 10 GB if anything tried to allocate it.
    for data in (forged_png(60_000, 60_000), forged_jpeg(60_000, 60_000)):
        with pytest.raises(ImageTooLarge, match="60000x60000 is 3600000000 pixels, over the limit"):
            render(data, THUMB, LIMITS)


def test_pixel_limit_is_configurable() -> None:
    data = save(marked(200, 100), "PNG")
    with pytest.raises(ImageTooLarge, match="over the limit of 19999"):
        render(data, THUMB, LimitSettings(max_pixels=19_999))
    assert render(data, THUMB, LimitSettings(max_pixels=20_000)).width == 200


def test_frame_and_byte_limits() -> None:
    frames = [Image.new("RGB", (16, 16), (50 * i, 0, 0)) for i in range(4)]
    gif = save(frames[0], "GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageTooLarge, match="4 frames, over the limit of 3"):
        render(gif, THUMB, LimitSettings(max_frames=3))
    with pytest.raises(ImageTooLarge, match="bytes, over the limit of 100"):
        render(gif, THUMB, LimitSettings(max_file_bytes=100))


def test_errors_name_the_reason() -> None:
    with pytest.raises(EmptyFile, match="empty"):
        render(b"", THUMB, LIMITS)
    with pytest.raises(NotAnImage, match="not a recognised image format"):
        render(b"%PDF-1.7 not an image", THUMB, LIMITS)
    jpeg = save(marked(640, 480), "JPEG")
    with pytest.raises(CorruptImage, match="jpeg data is damaged or truncated"):
        render(jpeg[: len(jpeg) // 2], THUMB, LIMITS)
    png = save(marked(640, 480), "PNG")
    with pytest.raises(CorruptImage, match="cannot decode png image"):
        render(png[: len(png) // 2], THUMB, LIMITS)
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>'
    with pytest.raises(UnsupportedFormat, match="SVG is a vector format"):
        render(svg, THUMB, LIMITS)


def _sources() -> list[bytes]:
    im = marked(96, 64)
    frames = [im, im.rotate(90), im.rotate(180)]
    return [
        save(im, "JPEG", quality=90),
        save(im, "JPEG", quality=90, progressive=True),
        save(im.convert("CMYK"), "JPEG"),
        save(im, "PNG"),
        save(im.convert("RGBA"), "PNG"),
        save(im, "WEBP", quality=80),
        save(im, "WEBP", lossless=True),
        save(frames[0], "WEBP", save_all=True, append_images=frames[1:]),
        save(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        save(im, "BMP"),
        save(im, "TIFF", compression="tiff_lzw"),
    ]


@pytest.mark.parametrize("index", range(11))
def test_damaged_files_fail_permanently_or_render(index: int) -> None:
    """Flipped bytes and truncations of every format: a rendition or a PermanentError."""
    source = _sources()[index]
    rng = random.Random(index)
    variants = [source[:cut] for cut in (8, 16, 40, len(source) // 3, len(source) - 2)]
    for _ in range(40):
        damaged = bytearray(source)
        for _ in range(rng.randint(1, 8)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        variants.append(bytes(damaged))
    for spec in (THUMB, RenderSpec(64, 64, format="webp")):
        for data in variants:
            try:
                r = render(data, spec, LIMITS)
            except PermanentError:
                continue
            assert 1 <= r.width <= spec.width and 1 <= r.height <= spec.height and r.data
