"""The generated collections of the end-to-end benchmark (issue 14).

Photo-like JPEGs from :func:`thumbcache.bench.corpus.photo_like` (smooth light, texture, hard
edges, sensor grain): a few distinct base pictures per collection, each file a shifted copy
(``numpy.roll``) so that no two files hold the same pixels, encoded by Pillow. Comics are CBZ
files: ZIP archives of JPEG pages, stored (as most comic archives are). Built once per
``(scale, pixel_scale)`` into a folder and reused (``.complete`` marks a finished build).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from thumbcache.bench.corpus import photo_like
from thumbcache.bench.peers import Task

BASES = 4  # distinct base pictures per collection


@dataclass(frozen=True)
class Collection:
    """One row of the table: ``count`` files (or archives of ``pages``) of ``width x height``."""

    key: str
    label: str
    count: int
    width: int
    height: int
    quality: int = 92
    pages: int = 0  # > 0: CBZ archives of this many pages

    @property
    def images(self) -> int:
        """Images in the collection (pages of archives counted one each)."""
        return self.count * (self.pages or 1)


COLLECTIONS = (
    Collection("photo12", "48 x 12 MP photos", 48, 4000, 3000),
    Collection("photo24", "16 x 24 MP photos", 16, 6000, 4000),
    Collection("cbz", "20 CBZ x 20 pages of 1600x2400 (comics)", 20, 1600, 2400, 90, pages=20),
    Collection("fhd", "200 x 2 MP (1920x1080)", 200, 1920, 1080, 90),
    Collection("uxga", "200 x 1.9 MP (1600x1200)", 200, 1600, 1200, 90),
)
BY_KEY = {c.key: c for c in COLLECTIONS}


def scaled(c: Collection, scale: float, pixel_scale: float = 1.0) -> Collection:
    """``c`` with about ``scale`` times its images (at least one) and ``pixel_scale`` times
    its width and height (quick tries and tests)."""
    w = max(16, round(c.width * pixel_scale))
    h = max(16, round(c.height * pixel_scale))
    if c.pages:
        side = math.sqrt(scale)
        count, pages = max(1, round(c.count * side)), max(1, round(c.pages * side))
        return Collection(c.key, c.label, count, w, h, c.quality, pages)
    return Collection(c.key, c.label, max(1, round(c.count * scale)), w, h, c.quality)


def describe(c: Collection) -> str:
    """The row label of a (possibly scaled) collection."""
    mp = c.width * c.height / 1e6
    if c.pages:
        return f"{c.count} CBZ x {c.pages} pages of {c.width}x{c.height} (comics)"
    return f"{c.count} x {mp:.1f} MP ({c.width}x{c.height})"


def _variants(c: Collection, seed: int) -> list[np.ndarray]:
    grain = 8.0 if c.width * c.height >= 10e6 else 6.0
    return [photo_like(c.width, c.height, seed=seed + i, grain=grain) for i in range(BASES)]


def _jpeg(bases: list[np.ndarray], i: int, quality: int) -> bytes:
    import io

    base = bases[i % len(bases)]
    shifted = np.roll(base, (3 * (i // len(bases)), 7 * (i // len(bases))), axis=(0, 1))
    out = io.BytesIO()
    Image.fromarray(shifted).save(out, "JPEG", quality=quality)
    return out.getvalue()


def build(c: Collection, folder: Path, seed: int = 100) -> list[Task]:
    """Write the collection into ``folder`` (reused when complete); its render tasks."""
    marker = folder / ".complete"
    spec = json.dumps([c.count, c.pages, c.width, c.height, c.quality, seed])
    if not (marker.exists() and marker.read_text() == spec):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        bases = _variants(c, seed)
        for n in range(c.count):
            if c.pages:
                with zipfile.ZipFile(folder / f"book{n:03d}.cbz", "w") as zf:
                    for p in range(c.pages):
                        zf.writestr(f"p{p:03d}.jpg", _jpeg(bases, n * c.pages + p, c.quality))
            else:
                (folder / f"img{n:04d}.jpg").write_bytes(_jpeg(bases, n, c.quality))
        marker.write_text(spec)
    return tasks_of(c, folder)


def tasks_of(c: Collection, folder: Path) -> list[Task]:
    """The render tasks of a built collection."""
    if c.pages:
        return [
            Task(f"book{n:03d}-p{p:03d}", str(folder / f"book{n:03d}.cbz"), f"p{p:03d}.jpg")
            for n in range(c.count)
            for p in range(c.pages)
        ]
    return [Task(f"img{n:04d}", str(folder / f"img{n:04d}.jpg")) for n in range(c.count)]


def small_jpegs(folder: Path, count: int, width: int, height: int, seed: int = 300) -> list[Path]:
    """``count`` distinct photo-like JPEGs (q90) for the job-size curve (reused if present)."""
    marker = folder / ".complete"
    spec = json.dumps([count, width, height, seed])
    paths = [folder / f"s{i:05d}.jpg" for i in range(count)]
    if not (marker.exists() and marker.read_text() == spec):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        bases = [photo_like(width, height, seed=seed + i, grain=6.0) for i in range(BASES)]
        for i, path in enumerate(paths):
            path.write_bytes(_jpeg(bases, i, 90))
        marker.write_text(spec)
    return paths


def linked_subset(paths: list[Path], folder: Path) -> Path:
    """A fresh folder of hard links to ``paths`` (a sub-collection without copying)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for path in paths:
        os.link(path, folder / path.name)
    return folder
