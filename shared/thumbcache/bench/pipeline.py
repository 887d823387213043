"""End-to-end benchmark: ``thumbcache run`` against the engine alone, and images per second.

``python -m thumbcache.bench.pipeline [--images N] [--megapixels 12]``

- Pipeline overhead (one core): the marginal cost per image of ``thumbcache run`` (timed on
  N and on 2N images, so start-up cancels out) against the engine rendering and writing both
  renditions of the same files in a plain loop. Both pinned to core 0 (the embedded database
  server inherits the pin, so its work is counted too).
- Throughput (this machine, default settings): images per second of ``thumbcache run``.

Prints a Markdown table; ratios come from measurements made in this run only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from thumbcache.bench.corpus import photo_like
from thumbcache.imaging import RenderSpec, render
from thumbcache.settings import load_settings
from thumbcache.storage.atomic import write_atomically


def make_corpus(folder: Path, count: int, megapixels: float, seed: int = 7) -> list[Path]:
    """``count`` distinct photo-like JPEGs of about ``megapixels`` (4:3), quality 90."""
    import numpy as np
    from PIL import Image

    width = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    height = width * 3 // 4
    base = photo_like(width, height, seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        # Distinct pixels per file (a shifted copy) so no cache can help.
        path = folder / f"img{i:04d}.jpg"
        Image.fromarray(np.roll(base, 7 * i, axis=1)).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def engine_seconds(paths: list[Path], out_dir: Path) -> float:
    """Seconds to render and write both renditions of every file, in one thread."""
    settings = load_settings(files=[], env={})
    specs = {
        name: RenderSpec.from_settings(rendition) for name, rendition in settings.renditions.items()
    }
    started = time.perf_counter()
    for path in paths:
        for stage, spec in specs.items():
            data = path.read_bytes()
            rendered = render(data, spec, settings.limits)
            write_atomically(str(out_dir / f"{path.stem}_{stage}.jpg"), rendered.data)
    return time.perf_counter() - started


def run_seconds(source: Path, data_dir: Path, *, one_core: bool, threads: int | None) -> float:
    """Wall seconds of ``thumbcache run SOURCE`` in a fresh data dir."""
    shutil.rmtree(data_dir, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("THUMBCACHE_")}
    if threads is not None:
        env["THUMBCACHE_WORKER__THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "thumbcache_control.cli", "run", str(source),
           "--data-dir", str(data_dir), "--json"]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(
        cmd, env=env, check=True, capture_output=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, {0})) if one_core else None,
    )  # fmt: skip
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(prog="python -m thumbcache.bench.pipeline")
    parser.add_argument("--images", type=int, default=24, help="N (the long run uses 2N)")
    parser.add_argument("--megapixels", type=float, default=12.0)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="thumbcache-bench-"))
    try:
        small, large = work / "n", work / "2n"
        paths = make_corpus(large, 2 * args.images, args.megapixels)
        small.mkdir()
        for path in paths[: args.images]:
            os.link(path, small / path.name)
        os.sched_setaffinity(0, {0})
        out = work / "engine-out"
        out.mkdir()
        engine_s = engine_seconds(paths, out) / len(paths)
        run_n = run_seconds(small, work / "d1", one_core=True, threads=1)
        run_2n = run_seconds(large, work / "d2", one_core=True, threads=1)
        marginal = (run_2n - run_n) / args.images
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        wall = run_seconds(large, work / "d3", one_core=False, threads=None)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"| {args.megapixels:g} MP JPEG, both renditions | ms/image | ratio |")
    print("|---|---:|---:|")
    print(f"| engine alone, one core | {engine_s * 1000:.1f} | 1.00 |")
    print(f"| `thumbcache run`, marginal, one core | {marginal * 1000:.1f} | "
          f"{marginal / engine_s:.2f} |")  # fmt: skip
    print()
    print(f"`thumbcache run` on {2 * args.images} images, {os.cpu_count()} cores, default "
          f"settings: {wall:.1f} s wall, **{2 * args.images / wall:.1f} images/s** "
          f"(start-up included)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
