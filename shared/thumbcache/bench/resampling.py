"""Candidates for the last step of a reduction (engine 5), on one core.

``python -m thumbcache.bench.resampling [--images 3] [--work DIR]``: for the end-to-end
bench's five collections (a few images of each), both renditions prepared by the engine with
each candidate in place of its last 1.2x-2.4x step; SSIM against the full-decode Lanczos
reference before encoding and at q85, kB at q85, and the milliseconds of the whole resize
(best of 5). Each candidate is patched in (``mock.patch.object``) for
:func:`thumbcache.imaging.resize.lanczos_reduce` only: the halvings before it and bicubic under
1.2x are the engine's.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import cv2
import numpy as np
from PIL import Image

from thumbcache.bench import e2ecorpus
from thumbcache.bench.endtoend import reference
from thumbcache.bench.metrics import ssim
from thumbcache.bench.peers import source_bytes
from thumbcache.imaging import engine
from thumbcache.imaging import resize as resizing

Step = Callable[[Any, int, int], Any]


def _pillow_lanczos(px: Any, w: int, h: int) -> Any:
    return np.asarray(Image.fromarray(px).resize((w, h), Image.Resampling.LANCZOS))


def _gaussian_bicubic(px: Any, w: int, h: int) -> Any:
    factor = min(px.shape[1] / w, px.shape[0] / h)
    low = cv2.GaussianBlur(px, (0, 0), 0.5 * (factor * factor - 1) ** 0.5)
    return cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)


def _engine4(px: Any, w: int, h: int) -> Any:
    """Engines 1-4: the area filter from 2x, else a 2x bilinear upsample and a halving."""
    if min(px.shape[1] / w, px.shape[0] / h) >= 2:
        return cv2.resize(px, (w, h), interpolation=cv2.INTER_AREA)
    doubled = cv2.resize(px, (2 * w, 2 * h), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(doubled, (w, h), interpolation=cv2.INTER_AREA)


def _unsharp_engine4(px: Any, w: int, h: int) -> Any:
    out = _engine4(px, w, h)
    return cv2.addWeighted(out, 1.3, cv2.GaussianBlur(out, (0, 0), 0.7), -0.3, 0)


def _opencv_lanczos4(px: Any, w: int, h: int) -> Any:
    return cv2.resize(px, (w, h), interpolation=cv2.INTER_LANCZOS4)


CANDIDATES: dict[str, Step] = {
    "engine 5": resizing.lanczos_reduce,
    "engine 4 (area; upsample and halve)": _engine4,
    "Pillow Lanczos": _pillow_lanczos,
    "Gaussian low pass, bicubic": _gaussian_bicubic,
    "unsharp mask after engine 4": _unsharp_engine4,
    "OpenCV Lanczos-4 (not antialiased)": _opencv_lanczos4,
    "Lanczos-3 low pass, bicubic": functools.partial(resizing.lanczos_reduce, lobes=3),
    "Lanczos-2 low pass, bicubic": functools.partial(resizing.lanczos_reduce, lobes=2),
}


def _timed_resize(times: list[float]) -> Callable[[Any, int, int], Any]:
    """The engine's resize, each call timed (best of 5) into ``times``."""

    def timed(px: Any, w: int, h: int) -> Any:
        best, out = float("inf"), px
        for _ in range(5):
            started = time.perf_counter()
            out = resizing.resize(px, w, h)
            best = min(best, time.perf_counter() - started)
        times.append(best * 1000)
        return out

    return timed


def measure(work: Path, images: int) -> list[tuple[str, int, str, list[float]]]:
    """Rows of (collection, rendition width, candidate, [pre SSIM, q85 SSIM, kB, ms])."""
    from thumbcache.settings import Settings

    settings = Settings()
    specs = [engine.RenderSpec.from_settings(r) for r in settings.renditions.values()]
    rows: dict[tuple[str, int, str], list[list[float]]] = {}
    for c in e2ecorpus.COLLECTIONS:
        small = e2ecorpus.scaled(c, images / c.images)
        for task in e2ecorpus.build(small, work / c.key)[:images]:
            data = source_bytes(task)
            for name, step in CANDIDATES.items():
                times: list[float] = []
                with (
                    mock.patch.object(resizing, "lanczos_reduce", step),
                    mock.patch.object(engine, "resize", _timed_resize(times)),
                ):
                    prepared = engine.prepare_many(data, specs, settings.limits)
                for spec, p, ms in zip(specs, prepared, times, strict=True):
                    rows.setdefault((c.key, spec.width, name), []).append(
                        [*_scores(data, p.pixels), ms]
                    )
    return [(k[0], k[1], k[2], [statistics.mean(v) for v in zip(*r, strict=True)])
            for k, r in rows.items()]  # fmt: skip


def _scores(data: bytes, px: Any) -> tuple[float, float, float]:
    ref = reference(data, (px.shape[1], px.shape[0]))
    ok, encoded = cv2.imencode(".jpg", px, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    assert decoded is not None
    return ssim(px[:, :, ::-1], ref), ssim(decoded[:, :, ::-1], ref), len(encoded) / 1000


def main() -> None:
    """Parse the options, measure (pinned to one CPU), print a table."""
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3, help="images per collection")
    parser.add_argument("--work", default="/tmp/thumbcache-resampling", help="collections")
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cv2.setNumThreads(1)
    print("| collection | width | last step | SSIM before | SSIM q85 | kB | resize ms |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for key, width, name, (pre, q85, kb, ms) in measure(Path(args.work), args.images):
        print(f"| {key} | {width} | {name} | {pre:.4f} | {q85:.4f} | {kb:.1f} | {ms:.2f} |")


if __name__ == "__main__":
    main()
