"""Measure each decode path's peak memory against the engine's estimate (not a test).

    .venv/bin/python tests/unit/imaging/measure_decode_memory.py [--megapixels 12]

Generates one source per path (4000x3000 by default), renders each stage in a fresh child
process, and prints the child's peak RSS over its pre-render baseline (VmHWM - VmRSS), per
source pixel, next to ``cost.estimate_decode_bytes``. The multipliers in imaging/cost.py come
from this table (docs/DECODE_LIMITS.md).
"""

from __future__ import annotations

import argparse
import io
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.imagegen import photo, png16_bytes

CHILD = """
import io, sys
from PIL import Image
from thumbcache.imaging import RenderSpec, render
from thumbcache.imaging.cost import estimate_decode_bytes
from thumbcache.imaging.decode import planned_reduction, planned_scale
from thumbcache.imaging.geometry import displayed_size, fit_within, stored_size
from thumbcache.imaging.raw import source_header
from thumbcache.settings import LimitSettings
def kb(key):
    with open("/proc/self/status") as status:
        return int(next(line.split()[1] for line in status if line.startswith(key + ":")))
data = open(sys.argv[1], "rb").read()
box = (int(sys.argv[2]), int(sys.argv[3]))
limits = LimitSettings(max_decode_mb=1 << 20)
small = io.BytesIO()
Image.new("RGBA", (8, 8)).save(small, "PNG")
render(small.getvalue(), RenderSpec(*box), limits)
_, h = source_header(data, limits)
shown = displayed_size(h.width, h.height, h.orientation)
target = stored_size(*fit_within(*shown, *box), h.orientation)
estimate = estimate_decode_bytes(h, planned_scale(h, *target), planned_reduction(h, *target))
base = kb("VmRSS")
out = render(data, RenderSpec(*box), limits)
print(h.width * h.height, (kb("VmHWM") - base) * 1024, estimate, out.decode_scale)
"""


def sources(width: int, height: int) -> dict[str, bytes]:
    """One file per decode path, generated."""
    im = photo(width, height)
    deep = np.asarray(im).astype(np.uint16) * 257
    rgba = im.convert("RGBA")
    rgba.putalpha(200)

    def save(image: Image.Image, fmt: str, **params: object) -> bytes:
        out = io.BytesIO()
        image.save(out, fmt, **params)
        return out.getvalue()

    return {
        "jpeg baseline": save(im, "JPEG", quality=90),
        "jpeg progressive": save(im, "JPEG", quality=90, progressive=True),
        "jpeg cmyk": save(im.convert("CMYK"), "JPEG", quality=90),
        "png rgb": save(im, "PNG", compress_level=1),
        "png rgba": save(rgba, "PNG", compress_level=1),
        "png grey": save(im.convert("L"), "PNG", compress_level=1),
        "png 16-bit grey": save(Image.fromarray(deep[:, :, 0]), "PNG", compress_level=1),
        "png 48-bit rgb": png16_bytes(deep),
        "tiff rgb": save(im, "TIFF"),
        "tiff 16-bit grey": save(Image.fromarray(deep[:, :, 0]), "TIFF"),
        "tiff lab": save(im.convert("LAB"), "TIFF"),
        "tiff float": save(Image.fromarray(np.asarray(im.convert("L"), np.float32) / 255), "TIFF"),
        "webp": save(im, "WEBP", quality=80, method=0),
        "gif": save(im.convert("P", palette=Image.Palette.ADAPTIVE), "GIF"),
        "bmp": save(im, "BMP"),
        "tga": save(im, "TGA"),
        "jpeg 2000": save(im, "JPEG2000", irreversible=True),
    }


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--megapixels", type=float, default=12.0)
    args = parser.parse_args()
    width = round(math.sqrt(args.megapixels * 1e6 * 4 / 3))
    height = width * 3 // 4
    print(f"| source ({width}x{height}) | stage | scale | peak MB | B/px | estimate MB |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in sources(width, height).items():
            path = Path(tmp) / "source"
            path.write_bytes(data)
            for stage, box in (("thumbnail", (300, 300)), ("cache", (1920, 1080))):
                proc = subprocess.run(
                    [sys.executable, "-c", CHILD, str(path), *map(str, box)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                pixels, peak, estimate, scale = map(int, proc.stdout.split())
                print(
                    f"| {name} | {stage} | 1/{scale} | {peak / 2**20:.0f} | "
                    f"{peak / pixels:.1f} | {estimate / 2**20:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
