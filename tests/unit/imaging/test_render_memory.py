"""Bounded memory: one worker rendering a 24 MP JPEG (both stages) peaks under 150 MB RSS."""

from __future__ import annotations

import subprocess
import sys

from imaging_helpers import save
from PIL import Image
from thumbcache.bench.corpus import photo_like

# Imports exactly what a render worker imports for rendering, then renders from stdin. The peak
# is VmHWM of the child's own address space: ru_maxrss would report the (bigger) pytest parent's
# peak, because Linux carries the pre-exec high-water mark of the forked copy across exec.
WORKER = """
import sys
from thumbcache.imaging import RenderSpec, render
from thumbcache.renditions import CACHE, THUMBNAIL
from thumbcache.settings import LimitSettings
data = sys.stdin.buffer.read()
limits = LimitSettings()
for rendition, scale in ((CACHE, 2), (THUMBNAIL, 8)):
    out = render(data, RenderSpec.from_settings(rendition), limits)
    assert out.decode_scale == scale, out
del data
with open("/proc/self/status") as status:
    print(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
"""


def test_peak_rss_rendering_a_24mp_jpeg() -> None:
    data = save(Image.fromarray(photo_like(6000, 4000, seed=9, grain=8.0)), "JPEG", quality=95)
    assert len(data) > 5_000_000  # camera-like size, so the input buffer counts too
    proc = subprocess.run(
        [sys.executable, "-c", WORKER], input=data, capture_output=True, check=True, timeout=120
    )
    peak_mb = int(proc.stdout.decode().strip()) / 1024
    assert peak_mb < 150, f"peak RSS {peak_mb:.0f} MB"
