"""Generated photo-like images: smooth light, mid-frequency texture, hard-edged shapes, grain."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

RGB = npt.NDArray[Any]


def photo_like(width: int, height: int, seed: int = 0, grain: float = 6.0) -> RGB:
    """An RGB picture with the statistics that matter to resampling and JPEG coding."""
    rng = np.random.default_rng(seed)
    light = rng.random((height // 64 + 2, width // 64 + 2, 3), dtype=np.float32)
    img = cv2.resize(light, (width, height), interpolation=cv2.INTER_CUBIC) * 0.7
    texture = rng.random((max(1, height // 8), max(1, width // 8), 3), dtype=np.float32)
    img += cv2.resize(texture, (width, height), interpolation=cv2.INTER_LINEAR) * 0.2
    out = np.clip(img * 255.0, 0, 255).astype(np.uint8)
    for i in range(40):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        radius = int(rng.integers(max(2, width // 200), max(3, width // 8)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.circle(out, centre, radius, colour, -1 if i % 2 else max(1, width // 800), cv2.LINE_AA)
    for _ in range(10):
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.line(out, p1, p2, tuple(int(c) for c in rng.integers(0, 256, 3)), 2, cv2.LINE_AA)
    if grain > 0:
        noise = rng.normal(0.0, grain, (height, width, 1)).astype(np.float32)
        out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return np.asarray(out, dtype=np.uint8)


def encode(rgb: RGB, fmt: str, **params: object) -> bytes:
    """``rgb`` encoded by Pillow as ``fmt`` (JPEG, PNG, WEBP...) with save ``params``."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, **params)
    return buf.getvalue()


@dataclass(frozen=True)
class Sample:
    """One corpus file."""

    name: str
    kind: str  # jpeg-12mp, jpeg-24mp, png, webp
    data: bytes


def build_corpus(scale: float = 1.0) -> list[Sample]:
    """The benchmark corpus: 12 MP and 24 MP camera-like JPEGs, a PNG and a lossy WebP."""

    def size(w: int, h: int) -> tuple[int, int]:
        return max(16, round(w * scale)), max(16, round(h * scale))

    samples = []
    for i in range(3):
        rgb = photo_like(*size(4000, 3000), seed=10 + i, grain=8.0)
        samples.append(Sample(f"photo12-{i}.jpg", "jpeg-12mp", encode(rgb, "JPEG", quality=92)))
    for i in range(2):
        rgb = photo_like(*size(6000, 4000), seed=20 + i, grain=8.0)
        samples.append(Sample(f"photo24-{i}.jpg", "jpeg-24mp", encode(rgb, "JPEG", quality=92)))
    rgb = photo_like(*size(3000, 2000), seed=30, grain=3.0)
    samples.append(Sample("screen6.png", "png", encode(rgb, "PNG", compress_level=6)))
    rgb = photo_like(*size(4000, 3000), seed=40, grain=4.0)
    samples.append(Sample("photo12.webp", "webp", encode(rgb, "WEBP", quality=85, method=4)))
    return samples
