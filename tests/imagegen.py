"""Generated test images and collections (never committed binaries)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photo-like RGB image: smooth gradients plus texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            128 + 100 * np.sin(x / (37 + seed) + y / 53),
            128 + 100 * np.cos(y / (29 + seed)),
            128 + 80 * np.sin((x + y) / 71),
        ],
        axis=-1,
    )
    noise = rng.normal(0, 12, size=(height, width, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def jpeg_bytes(
    width: int, height: int, quality: int = 90, orientation: int = 1, seed: int = 0
) -> bytes:
    """A JPEG of a photo-like image, optionally with an EXIF orientation."""
    out = io.BytesIO()
    kwargs = {}
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif
    photo(width, height, seed).save(out, "JPEG", quality=quality, **kwargs)
    return out.getvalue()


def png_bytes(width: int, height: int, mode: str = "RGBA") -> bytes:
    """A PNG with transparency."""
    out = io.BytesIO()
    Image.new(mode, (width, height), (200, 30, 30, 120) if mode == "RGBA" else (200, 30, 30)).save(
        out, "PNG"
    )
    return out.getvalue()


def make_collection(root: Path, *, good: int = 4, seed: int = 0) -> dict[str, str]:
    """A mixed collection; returns {source: expected kind} with kind 'ok' or 'failed'."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "sub").mkdir(exist_ok=True)
    expected: dict[str, str] = {}
    for i in range(good):
        name = f"photo{i:02d}.jpg"
        (root / name).write_bytes(
            jpeg_bytes(1600 + 40 * i, 1200, seed=seed + i, orientation=6 if i == 1 else 1)
        )
        expected[name] = "ok"
    (root / "sub" / "alpha.png").write_bytes(png_bytes(640, 480))
    expected["sub/alpha.png"] = "ok"
    webp = io.BytesIO()
    photo(800, 600, seed).save(webp, "WEBP", quality=70)
    (root / "sub" / "pic.webp").write_bytes(webp.getvalue())
    expected["sub/pic.webp"] = "ok"
    (root / "noext").write_bytes(jpeg_bytes(400, 300, seed=seed + 9))  # sniffed by magic bytes
    expected["noext"] = "ok"
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)
    expected["broken.jpg"] = "failed"
    (root / "empty.png").write_bytes(b"")
    expected["empty.png"] = "failed"
    full = jpeg_bytes(800, 600, seed=seed + 5)
    (root / "truncated.jpg").write_bytes(full[: len(full) // 3])
    expected["truncated.jpg"] = "failed"
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.jpg").write_bytes(jpeg_bytes(50, 50))
    with zipfile.ZipFile(root / "book.cbz", "w") as zf:
        for page in range(3):
            zf.writestr(
                f"pages/{page:03d}.jpg", jpeg_bytes(1000, 1500, quality=75, seed=seed + 20 + page)
            )
            expected[f"book.cbz#pages/{page:03d}.jpg"] = "ok"
        zf.writestr("pages/readme.txt", "x")
        zf.writestr("../escape.jpg", jpeg_bytes(10, 10))
        expected["book.cbz#../escape.jpg"] = "failed"
    return expected
