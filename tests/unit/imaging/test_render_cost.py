"""Decode bombs are refused before decoding: a JPEG with too many scans (CPU), an image whose
estimated peak memory is over the budget; and real peaks stay near the decoded image's size."""

from __future__ import annotations

import io
import subprocess
import sys
import time

import numpy as np
import pytest
from imaging_helpers import CACHE, THUMB, save
from PIL import Image
from thumbcache.errors import DecodeBomb, ImageTooLarge
from thumbcache.imaging import render
from thumbcache.imaging.colour import premultiply
from thumbcache.imaging.cost import count_scans, estimate_decode_bytes
from thumbcache.imaging.decode import _reduce
from thumbcache.imaging.header import open_image, read_header
from thumbcache.imaging.probe import probe
from thumbcache.settings import LimitSettings, load_settings

from tests.imagegen import photo, progressive_jpeg_with_scans

LIMITS = LimitSettings()


def test_scans_of_real_jpegs() -> None:
    im = photo(640, 480)
    assert count_scans(save(im, "JPEG")) == 1
    assert count_scans(save(im, "JPEG", progressive=True)) == 10  # libjpeg's colour script
    assert count_scans(save(im.convert("L"), "JPEG", progressive=True)) == 6


def test_an_exif_thumbnail_before_the_first_scan_does_not_count() -> None:
    inner = save(photo(160, 120), "JPEG", progressive=True)  # 10 scans of its own
    outer = save(photo(640, 480), "JPEG", exif=b"Exif\x00\x00" + inner)
    assert outer.count(b"\xff\xda") == 11
    assert count_scans(outer) == 1


def test_a_jpeg_with_too_many_scans_is_refused_before_decoding() -> None:
    bomb = progressive_jpeg_with_scans(photo(2000, 1500), 2000)
    started = time.perf_counter()
    with pytest.raises(DecodeBomb, match="JPEG has 2000 scans, over the limit of 100"):
        render(bomb, THUMB, LIMITS)
    refused_in = time.perf_counter() - started
    print(f"refused a {len(bomb) / 1e6:.1f} MB, 2000-scan JPEG in {refused_in * 1000:.1f} ms")
    assert refused_in < 30, "hang detection only: refusing reads the header and counts bytes"


def test_a_jpeg_at_the_scan_limit_still_renders() -> None:
    data = progressive_jpeg_with_scans(photo(400, 300), 100)
    assert count_scans(data) == 100
    r = render(data, THUMB, LIMITS)
    assert (r.width, r.height) == (300, 225)
    with pytest.raises(DecodeBomb, match="100 scans, over the limit of 99"):
        render(data, THUMB, LimitSettings(max_jpeg_scans=99))


def _big_rgba_png() -> bytes:
    """10000x10000 RGBA (100 MP, at the pixel limit), about 400 KB: the memory bomb."""
    im = Image.new("RGBA", (10000, 10000), (200, 30, 30, 120))
    im.paste((20, 200, 30, 255), (0, 0, 5000, 5000))
    return save(im, "PNG")


@pytest.fixture(scope="module")
def big_rgba_png() -> bytes:
    """The 100 MP PNG, made once for this module."""
    return _big_rgba_png()


def test_the_memory_budget_refuses_a_100_mp_png_with_its_estimate(big_rgba_png: bytes) -> None:
    assert len(big_rgba_png) < 1_000_000
    info = probe(io.BytesIO(big_rgba_png), LIMITS)  # within the pixel limit: it is recorded
    assert (info.width, info.height) == (10000, 10000)
    for spec in (THUMB, CACHE):
        with pytest.raises(ImageTooLarge, match=r"would take about \d+ MB, over the decode "):
            render(big_rgba_png, spec, LIMITS)
    with pytest.raises(ImageTooLarge, match=r"about 480 MB, over .* budget of 384 MB"):
        render(big_rgba_png, THUMB, LIMITS)


# Renders stdin in a child and prints its peak RSS (VmHWM of its own address space: see
# test_render_memory.py for why not ru_maxrss) and the peak over its pre-render baseline.
PEAK = """
import io, sys
from PIL import Image
from thumbcache.imaging import RenderSpec, render
from thumbcache.settings import LimitSettings
def kb(key):
    with open("/proc/self/status") as status:
        return int(next(line.split()[1] for line in status if line.startswith(key + ":")))
data = sys.stdin.buffer.read()
limits = LimitSettings(max_decode_mb=int(sys.argv[1]))
small = io.BytesIO()
Image.new("RGBA", (8, 8)).save(small, "PNG")
render(small.getvalue(), RenderSpec(300, 300), limits)  # imports and tables, off the peak
base = kb("VmRSS")
try:
    render(data, RenderSpec(int(sys.argv[2]), int(sys.argv[3])), limits)
    outcome = "rendered"
except Exception as exc:
    outcome = type(exc).__name__
print(outcome, (kb("VmHWM") - base) // 1024)
"""


def _peak(data: bytes, budget_mb: int, box: tuple[int, int]) -> tuple[str, int]:
    proc = subprocess.run(
        [sys.executable, "-c", PEAK, str(budget_mb), *map(str, box)],
        input=data,
        capture_output=True,
        check=True,
        timeout=300,
    )
    outcome, peak = proc.stdout.decode().split()
    return outcome, int(peak)


@pytest.mark.parametrize("box", [(300, 300), (1920, 1080)], ids=["thumbnail", "cache"])
def test_peak_rss_of_the_100_mp_png(big_rgba_png: bytes, box: tuple[int, int]) -> None:
    """Was 783 MB (thumbnail) and 806 MB (cache) over the baseline: about the 400 MB decoded
    image itself now; refused under the default budget, it costs nearly nothing."""
    outcome, peak = _peak(big_rgba_png, 2048, box)
    print(f"100 MP RGBA PNG, {box}: peak {peak} MB over baseline")
    assert outcome == "rendered"
    assert peak < 480, f"peak {peak} MB over baseline"
    outcome, peak = _peak(big_rgba_png, LIMITS.max_decode_mb, box)
    assert outcome == "ImageTooLarge"
    assert peak < 20, f"refusing cost {peak} MB"


def test_progressive_jpegs_are_charged_their_coefficients_whatever_the_scale() -> None:
    im = photo(1600, 1200)
    headers = [
        read_header(open_image(io.BytesIO(save(im, "JPEG", progressive=p, subsampling=s))))
        for p, s in ((False, 2), (True, 2), (True, 0))
    ]
    baseline, p420, p444 = (estimate_decode_bytes(h, 8, 1) for h in headers)
    assert p420 - baseline == 1600 * 1200 * 2 * 1.5  # Y, and Cb and Cr at a quarter each
    assert p444 - baseline == 1600 * 1200 * 2 * 3


def test_premultiply_rounds_exactly_as_the_integer_formula() -> None:
    colour, alpha = np.meshgrid(np.arange(256), np.arange(256))
    px = np.stack([colour, colour, colour, alpha], axis=-1).astype(np.uint8)
    out = premultiply(px)
    expected = (colour * alpha + 127) // 255
    assert np.array_equal(out[:, :, 0], expected) and np.array_equal(out[:, :, 3], alpha)


@pytest.mark.parametrize("factor", [2, 3, 5])
def test_reducing_alpha_in_bands_gives_the_same_pixels(factor: int) -> None:
    rng = np.random.default_rng(factor)
    im = Image.fromarray(rng.integers(0, 256, (1703, 997, 4), dtype=np.uint8), "RGBA")
    assert np.array_equal(np.asarray(_reduce(im, factor)), np.asarray(im.reduce(factor)))


def test_limits_are_settings() -> None:
    env = {"THUMBCACHE_LIMITS__MAX_DECODE_MB": "512", "THUMBCACHE_LIMITS__MAX_JPEG_SCANS": "64"}
    limits = load_settings(files=[], env=env).limits
    assert (limits.max_decode_mb, limits.max_jpeg_scans) == (512, 64)
    assert (LIMITS.max_decode_mb, LIMITS.max_jpeg_scans) == (384, 100)


def test_a_baseline_jpeg_is_not_counted_its_decoder_stops_after_the_frame() -> None:
    data = save(photo(400, 300), "JPEG")
    first, eoi = data.find(b"\xff\xda"), data.rfind(b"\xff\xd9")
    repeated = data[:eoi] + data[first:eoi] * 200 + data[eoi:]
    assert count_scans(repeated) == 201
    r = render(repeated, THUMB, LIMITS)  # libjpeg ignores what follows the complete frame
    assert (r.width, r.height) == (300, 225)
