"""A thumbnail from the source against one from the just-written cache image (ADR 0007).

``python -m thumbcache.bench.derived [--repeat 7]``: per class of the end-to-end collections,
on one core, the median time of the engine's cache image, its thumbnail from the source and
from that cache image, and pyvips' two calls (``thumbnail_buffer`` per rendition); the ratio of
what a distributed deployment pays per image (two services, so two renders; the thumbnail
from the cache image where :func:`~thumbcache.pipeline.derivation.derives` says so) against
pyvips;
and the SSIM of both thumbnails against a Lanczos reduction of the full decode.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from thumbcache.bench.corpus import photo_like
from thumbcache.bench.metrics import ssim
from thumbcache.bench.run import pyvips_thumbnail
from thumbcache.imaging import RenderSpec, render
from thumbcache.pipeline.derivation import derives
from thumbcache.settings import load_settings

CLASSES = (  # width, height, source quality (as in thumbcache.bench.e2ecorpus)
    ("12 MP photo", 4000, 3000, 92),
    ("24 MP photo", 6000, 4000, 92),
    ("comic page 1600x2400", 1600, 2400, 90),
    ("2 MP (1920x1080)", 1920, 1080, 90),
    ("1.9 MP (1600x1200)", 1600, 1200, 90),
)


def _median_ms(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, result


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def measure(width: int, height: int, quality: int, repeat: int) -> dict[str, Any]:
    """One class's times (ms, one core) and SSIMs."""
    settings = load_settings(files=[], env={})
    limits = settings.limits
    thumb = RenderSpec.from_settings(settings.rendition("thumbnail"))
    cache = RenderSpec.from_settings(settings.rendition("cache"))
    grain = 8.0 if width * height >= 10e6 else 6.0
    out = io.BytesIO()
    Image.fromarray(photo_like(width, height, seed=5, grain=grain)).save(
        out, "JPEG", quality=quality
    )
    source = out.getvalue()
    cache_ms, cached = _median_ms(lambda: render(source, cache, limits), repeat)
    source_ms, from_source = _median_ms(lambda: render(source, thumb, limits), repeat)
    derived_ms, derived = _median_ms(lambda: render(cached.data, thumb, limits), repeat)
    vips_cache_ms, _ = _median_ms(lambda: pyvips_thumbnail(source, cache), repeat)
    vips_thumb_ms, _ = _median_ms(lambda: pyvips_thumbnail(source, thumb), repeat)
    a, b = _pixels(from_source.data), _pixels(derived.data)
    reference = np.asarray(
        Image.fromarray(_pixels(source)).resize((a.shape[1], a.shape[0]), Image.Resampling.LANCZOS)
    )
    return {
        "cache_ms": cache_ms,
        "thumb_source_ms": source_ms,
        "thumb_derived_ms": derived_ms,
        "pyvips_ms": vips_cache_ms + vips_thumb_ms,
        "ssim_source": ssim(a, reference),
        "ssim_derived": ssim(b, reference),
        "derives": derives(
            settings.rendition("thumbnail"), settings.rendition("cache"), width, height
        ),
    }


def main(argv: list[str] | None = None) -> int:
    """Measure every class and print the table."""
    parser = argparse.ArgumentParser(prog="python -m thumbcache.bench.derived")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as a render process
    print("| class | cache image | thumbnail from source | from cache image | two services "
          "/ pyvips, before -> after | SSIM from source / from cache image |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for label, width, height, quality in CLASSES:
        m = measure(width, height, quality, args.repeat)
        before = (m["cache_ms"] + m["thumb_source_ms"]) / m["pyvips_ms"]
        thumb_ms = m["thumb_derived_ms"] if m["derives"] else m["thumb_source_ms"]
        after = (m["cache_ms"] + thumb_ms) / m["pyvips_ms"]
        print(f"| {label} | {m['cache_ms']:.1f} ms | {m['thumb_source_ms']:.1f} ms | "
              f"{m['thumb_derived_ms']:.1f} ms | {before:.2f}x -> {after:.2f}x | "
              f"{m['ssim_source']:.4f} / {m['ssim_derived']:.4f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
