"""Every raster format Pillow reads is a candidate, probes and renders; vector and script
formats, and formats whose optional reader is missing, fail as UnsupportedFormat."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from imaging_helpers import (
    GREEN,
    GREY,
    RED,
    THUMB,
    exif_with_orientation,
    marked,
    near,
    pixel,
    save,
    stored_as,
)
from PIL import Image, features
from thumbcache.errors import ImageTooLarge, NotAnImage, UnsupportedFormat
from thumbcache.imaging import IMAGE_EXTENSIONS, render, sniff
from thumbcache.imaging.probe import probe
from thumbcache.settings import LimitSettings

from tests.imagegen import dng_bytes, psd_bytes

LIMITS = LimitSettings()
BLACK, WHITE = (0, 0, 0), (255, 255, 255)


def _pillow(fmt: str, mode: str = "RGB", **params: object) -> bytes:
    im = marked(96, 64)
    if mode == "P":
        return save(im.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), fmt, **params)
    return save(im.convert(mode), fmt, **params)


# (extension, bytes, the format id recorded, whether the file has a signature sniff() knows)
COLOUR_CASES = [
    (".tga", lambda: _pillow("TGA"), "tga", False),
    (".tga", lambda: _pillow("TGA", compression="tga_rle"), "tga", False),
    (".ppm", lambda: _pillow("PPM"), "ppm", True),
    (".jp2", lambda: _pillow("JPEG2000"), "jpeg2000", True),
    (".j2k", lambda: save(marked(96, 64), "JPEG2000", no_jp2=True), "jpeg2000", True),
    (".ico", lambda: _pillow("ICO", sizes=[(96, 64)]), "ico", False),
    (".sgi", lambda: _pillow("SGI"), "sgi", True),
    (".blp", lambda: _pillow("BLP", mode="P"), "blp", True),
    (".dds", lambda: _pillow("DDS"), "dds", True),
    (".psd", lambda: psd_bytes(marked(96, 64)), "psd", True),
    (".qoi", lambda: _pillow("QOI"), "qoi", True),
    (".pcx", lambda: _pillow("PCX"), "pcx", False),
    pytest.param(
        ".im",
        lambda: _pillow("IM"),
        "im",
        False,
        # Pillow 13 deprecates its IM plugin (removal in Pillow 15) and says so on every open.
        marks=pytest.mark.filterwarnings("ignore:IM image format:DeprecationWarning"),
    ),
    (".dib", lambda: _pillow("DIB"), "bmp", False),
    (".icns", lambda: save(marked(128, 128), "ICNS"), "icns", True),
]


@pytest.mark.parametrize(("ext", "make", "fmt", "signed"), COLOUR_CASES)
def test_colour_formats_render(ext: str, make: object, fmt: str, signed: bool) -> None:
    data = make()  # type: ignore[operator]
    assert ext in IMAGE_EXTENSIONS, "the walk must take it as a candidate"
    assert (sniff(data[:16]) is not None) == signed
    info = probe(io.BytesIO(data), LIMITS)
    assert info.format == fmt
    r = render(data, THUMB, LIMITS)
    assert r.source_format == fmt
    w, h = r.width, r.height
    assert near(pixel(r, w // 12, h // 12), RED, 16)
    assert near(pixel(r, w - 1 - w // 12, h - 1 - h // 12), GREEN, 16)
    assert near(pixel(r, w // 2, h // 2), GREY, 16)


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow has no AVIF codec")
def test_avif_renders() -> None:
    data = save(marked(96, 64), "AVIF", quality=95)
    assert sniff(data[:16]) == "avif" and ".avif" in IMAGE_EXTENSIONS
    r = render(data, THUMB, LIMITS)
    assert (r.source_format, r.width, r.height) == ("avif", 96, 64)
    assert near(pixel(r, 8, 8), RED, 24) and near(pixel(r, 87, 55), GREEN, 24)


def _two_tone() -> Image.Image:
    """Black left half, white right half: what 1-bit formats can hold."""
    im = Image.new("1", (96, 64), 0)
    im.paste(1, (48, 0, 96, 64))
    return im


@pytest.mark.parametrize(
    ("ext", "fmt", "writer"),
    [
        (".pbm", "ppm", "PPM"),
        (".pgm", "ppm", "PPM"),
        (".msp", "msp", "MSP"),
        (".xbm", "xbm", "XBM"),
    ],
)
def test_one_bit_and_grey_formats_render(ext: str, fmt: str, writer: str) -> None:
    im = _two_tone() if ext != ".pgm" else _two_tone().convert("L")
    data = save(im, writer)
    assert ext in IMAGE_EXTENSIONS
    assert probe(io.BytesIO(data), LIMITS).format == fmt
    r = render(data, THUMB, LIMITS)
    assert near(pixel(r, 10, 32), BLACK, 8) and near(pixel(r, 85, 32), WHITE, 8)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "SVG is a vector"),
        (b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>", "SVG is a vector"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "EPS needs Ghostscript"),
        (b"\xc5\xd0\xd3\xc6" + bytes(28), "EPS needs Ghostscript"),
        (b"8BPS\x00\x02" + bytes(20), "PSB"),
    ],
)
def test_images_never_rendered_here_fail_as_unsupported_format(data: bytes, why: str) -> None:
    with pytest.raises(UnsupportedFormat, match=why) as caught:
        render(data, THUMB, LIMITS)
    assert not caught.value.counts_toward_quarantine
    with pytest.raises(UnsupportedFormat, match=why):
        probe(io.BytesIO(data), LIMITS)


def test_a_file_named_as_a_never_rendered_format_fails_as_such_without_its_header() -> None:
    # Given an .eps whose first line is not the EPS header (Pillow's reqd_showpage.eps)
    data = b"%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto showpage\n"
    # Then it is an unsupported format by its name, and simply not an image without a name
    with pytest.raises(UnsupportedFormat, match="EPS needs Ghostscript"):
        probe(io.BytesIO(data), LIMITS, name="drawings/page.eps")
    with pytest.raises(NotAnImage):
        probe(io.BytesIO(data), LIMITS, name="notes.txt")


def test_damaged_later_frames_do_not_lose_the_first_one() -> None:
    # Given an animated GIF cut inside its third frame (counting its frames fails)
    frames = [Image.new("RGB", (64, 64), (i * 60, 0, 0)) for i in range(4)]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:])
    data = out.getvalue()[:445]
    # Then the first frame, which is sound, is probed and rendered
    assert probe(io.BytesIO(data), LIMITS).frames == 1
    assert render(data, THUMB, LIMITS).width == 64


def test_vector_and_raw_extensions_are_candidates() -> None:
    for ext in (".svg", ".eps", ".heic", ".heif", ".jxl", ".dng", ".cr2", ".cr3", ".nef", ".arw"):
        assert ext in IMAGE_EXTENSIONS, ext


def test_sniff_knows_the_iso_bmff_images_and_not_videos() -> None:
    assert sniff(b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00") == "heif"
    assert sniff(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00") == "avif"
    # An AVIF whose major brand is the generic mif1: its compatible brands tell.
    assert sniff(b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf") == "avif"
    assert sniff(b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01") == "raw"
    assert sniff(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00") is None  # an MP4 video
    assert sniff(b"P6\n640 480\n255\n") == "ppm"
    assert sniff(b"Plain text file") is None


# Blocks an optional reader's import in a child process, then renders a file that needs it.
_WITHOUT_READER = """
import sys
sys.modules[sys.argv[1]] = None  # as if the extra were not installed
from thumbcache.errors import ImageTooLarge, UnsupportedFormat
from thumbcache.imaging import RenderSpec, render
from thumbcache.settings import LimitSettings
try:
    render(sys.stdin.buffer.read(), RenderSpec(300, 300), LimitSettings())
except UnsupportedFormat as exc:
    print("UnsupportedFormat:", exc)
"""


@pytest.mark.parametrize(
    ("module", "data", "extra"),
    [
        ("pi_heif", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64), "heif"),
        ("pillow_jxl", b"\xff\x0a" + bytes(64), "jxl"),
        ("rawpy", b"II*\x00\x10\x00\x00\x00CR\x02\x00" + bytes(64), "raw"),
    ],
)
def test_a_missing_optional_reader_fails_as_unsupported_format_naming_the_extra(
    module: str, data: bytes, extra: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _WITHOUT_READER, module],
        input=data,
        capture_output=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert f"install thumbcache[{extra}]" in proc.stdout.decode()


def test_camera_raw_renders_its_embedded_preview_with_the_camera_orientation() -> None:
    pytest.importorskip("rawpy")
    displayed = marked(1600, 1200)
    preview = save(displayed.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95)
    data = dng_bytes(preview, (1200, 1600), orientation=6)
    assert sniff(data[:16]) == "tiff" and ".dng" in IMAGE_EXTENSIONS
    info = probe(io.BytesIO(data), LIMITS)
    assert (info.format, info.width, info.height, info.orientation) == ("raw", 1600, 1200, 6)
    r = render(data, THUMB, LIMITS)
    assert (r.source_format, r.width, r.height) == ("raw", 300, 225)
    assert r.decode_scale == 4, "the preview is a JPEG: DCT-scaled like any other"
    assert near(pixel(r, 8, 8), RED, 16) and near(pixel(r, 291, 216), GREEN, 16)


def test_jpeg_xl_renders() -> None:
    pytest.importorskip("pillow_jxl")
    data = save(marked(96, 64), "JXL", lossless=True)
    assert sniff(data[:16]) == "jxl" and ".jxl" in IMAGE_EXTENSIONS
    r = render(data, THUMB, LIMITS)
    assert (r.source_format, r.width, r.height) == ("jxl", 96, 64)
    assert near(pixel(r, 8, 8), RED, 8) and near(pixel(r, 87, 55), GREEN, 8)


def _jxl_size_header(side: int) -> bytes:
    """A bare JPEG XL codestream whose SizeHeader says ``side`` x ``side``, and nothing more."""
    bits = [0]  # not a multiple-of-8 "small" size
    bits += [1, 1]  # height: the 30-bit form
    bits += [((side - 1) >> i) & 1 for i in range(30)]
    bits += [1, 0, 0]  # ratio 1: width = height
    packed = bytes(
        sum(bit << i for i, bit in enumerate(bits[at : at + 8])) for at in range(0, len(bits), 8)
    )
    return b"\xff\x0a" + packed + bytes(16)


def test_a_jpeg_xl_is_sized_from_its_header_before_its_reader_decodes_it() -> None:
    """pillow-jxl-plugin decodes every pixel when it opens a file: the limits come first."""
    pytest.importorskip("pillow_jxl")
    with pytest.raises(ImageTooLarge, match="over the limit of 100000000"):
        probe(io.BytesIO(_jxl_size_header(20000)), LIMITS)
    with pytest.raises(ImageTooLarge, match="over the decode memory budget"):
        render(_jxl_size_header(8000), THUMB, LIMITS)


def test_a_jpeg_xl_container_with_exif_orientation_displays_upright() -> None:
    pytest.importorskip("pillow_jxl")
    exif = exif_with_orientation(6).tobytes()
    data = save(stored_as(marked(400, 200), 6), "JXL", lossless=True, exif=exif)
    assert data.startswith(b"\x00\x00\x00\x0cJXL ")  # the container (boxes), not a bare stream
    assert probe(io.BytesIO(data), LIMITS).orientation == 6
    r = render(data, THUMB, LIMITS)
    assert (r.width, r.height) == (300, 150)
    assert near(pixel(r, 8, 8), RED, 8) and near(pixel(r, 291, 141), GREEN, 8)


def test_a_variant_the_reader_does_not_implement_is_an_unsupported_format() -> None:
    """Pillow raises NotImplementedError for DDS pixel formats it has no decoder for."""
    dds = bytearray(_pillow("DDS"))
    assert dds[84:88] == b"\x00\x00\x00\x00" and dds[80] & 0x40  # uncompressed RGB
    dds[80:84] = (0x8).to_bytes(4, "little")  # pixel-format flags no reader knows
    with pytest.raises(UnsupportedFormat, match="dds variant not supported"):
        probe(io.BytesIO(bytes(dds)), LIMITS)
