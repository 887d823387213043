"""probe(): header-only format, displayed size, frames; errors and limits before decoding."""

from __future__ import annotations

import io
import zlib

import pytest
from imaging_helpers import exif_with_orientation, marked, save
from PIL import Image
from thumbcache.errors import (
    CorruptImage,
    EmptyFile,
    ImageTooLarge,
    NotAnImage,
    UnsupportedFormat,
)
from thumbcache.imaging import IMAGE_EXTENSIONS, sniff
from thumbcache.imaging.probe import probe
from thumbcache.settings import LimitSettings

LIMITS = LimitSettings()


@pytest.mark.parametrize(
    ("fmt", "params", "expected"),
    [
        ("JPEG", {}, "jpeg"),
        ("PNG", {}, "png"),
        ("WEBP", {}, "webp"),
        ("GIF", {}, "gif"),
        ("BMP", {}, "bmp"),
        ("TIFF", {}, "tiff"),
    ],
)
def test_probe_formats(fmt: str, params: dict[str, object], expected: str) -> None:
    data = save(marked(64, 48), fmt, **params)
    info = probe(io.BytesIO(data), LIMITS)
    assert (info.format, info.width, info.height, info.frames) == (expected, 64, 48, 1)
    assert sniff(data[:16]) == expected


@pytest.mark.parametrize("orientation", range(1, 9))
def test_probe_reports_displayed_size(orientation: int) -> None:
    data = save(marked(64, 48), "JPEG", exif=exif_with_orientation(orientation))
    info = probe(io.BytesIO(data), LIMITS)
    assert info.orientation == orientation
    assert (info.width, info.height) == ((48, 64) if orientation >= 5 else (64, 48))


def test_probe_counts_frames_and_enforces_the_frame_limit() -> None:
    frames = [Image.new("RGB", (16, 16), (40 * i, 0, 0)) for i in range(5)]
    data = save(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert probe(io.BytesIO(data), LIMITS).frames == 5
    with pytest.raises(ImageTooLarge, match="5 frames, over the limit of 4"):
        probe(io.BytesIO(data), LimitSettings(max_frames=4))


def test_probe_enforces_the_pixel_limit_from_the_header() -> None:
    data = save(Image.new("L", (200, 100)), "PNG")
    with pytest.raises(ImageTooLarge, match="200x100 is 20000 pixels, over the limit of 19999"):
        probe(io.BytesIO(data), LimitSettings(max_pixels=19_999))


def test_probe_refuses_a_huge_header_without_decoding() -> None:
    # A PNG header claiming 100000 x 100000 with no pixel data at all.
    png = save(Image.new("L", (1, 1)), "PNG")
    ihdr = png.index(b"IHDR")
    forged = bytearray(png)
    forged[ihdr + 4 : ihdr + 12] = (100_000).to_bytes(4, "big") * 2
    forged[ihdr + 17 : ihdr + 21] = zlib.crc32(forged[ihdr : ihdr + 17]).to_bytes(4, "big")
    with pytest.raises(ImageTooLarge, match="over the limit of 100000000"):
        probe(io.BytesIO(bytes(forged)), LIMITS)


def test_probe_errors() -> None:
    with pytest.raises(EmptyFile, match="empty"):
        probe(io.BytesIO(b""), LIMITS)
    with pytest.raises(NotAnImage, match="not a recognised image format"):
        probe(io.BytesIO(b"hello, world: a text file"), LIMITS)
    with pytest.raises(CorruptImage, match="png header is damaged"):
        probe(io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10), LIMITS)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n"
    with pytest.raises(UnsupportedFormat, match="EPS needs Ghostscript"):
        probe(io.BytesIO(eps), LIMITS)


def test_extensions_cover_the_formats() -> None:
    assert {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"} <= IMAGE_EXTENSIONS


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF"])
def test_probe_reads_only_the_header(fmt: str) -> None:
    """Half a file still probes: no pixel is decoded at scan time.

    (Not WebP: Pillow's WebP plugin reads the whole file at open, though it decodes nothing.)
    """
    data = save(marked(640, 480), fmt, exif=exif_with_orientation(6))
    info = probe(io.BytesIO(data[: len(data) // 2]), LIMITS)
    assert (info.width, info.height, info.orientation) == (480, 640, 6)
