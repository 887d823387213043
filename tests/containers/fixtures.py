"""The smoke test's collection: a little of every reader the images must carry, and failures
whose reasons must come back through the API."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from tests.imagegen import dng_bytes, jpeg_bytes, photo, png_bytes

# source -> "ok", or the error class its failure is reported under.
EXPECTED = {
    "photo.jpg": "ok",
    "rotated.jpg": "ok",  # EXIF orientation 6
    "alpha.png": "ok",
    "pic.webp": "ok",
    "pic.avif": "ok",  # Pillow's AVIF reader (scanner and render images)
    "camera.dng": "ok",  # rawpy: the scanner sizes it, the render stages decode its preview
    "book.cbz#pages/001.jpg": "ok",
    "book.cbz#pages/002.jpg": "ok",
    # OpenCV before 4.11 rendered it half-grey; the locked one refuses it.
    "truncated.jpg": "CorruptImage",
    "empty.jpg": "EmptyFile",
    "notes.jpg": "NotAnImage",
}


def expected_outcomes() -> dict[str, str]:
    """What each source of :func:`make_smoke_collection` must end as."""
    return dict(EXPECTED)


def make_smoke_collection(root: Path) -> None:
    """Write the collection under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "photo.jpg").write_bytes(jpeg_bytes(2400, 1600, seed=1))
    (root / "rotated.jpg").write_bytes(jpeg_bytes(1600, 1200, seed=2, orientation=6))
    (root / "alpha.png").write_bytes(png_bytes(640, 480))
    for name, fmt in (("pic.webp", "WEBP"), ("pic.avif", "AVIF")):
        out = io.BytesIO()
        photo(800, 600, seed=3).save(out, fmt, quality=70)
        (root / name).write_bytes(out.getvalue())
    preview = jpeg_bytes(1024, 768, seed=4)
    (root / "camera.dng").write_bytes(dng_bytes(preview, (1024, 768)))
    with zipfile.ZipFile(root / "book.cbz", "w") as zf:
        for page in (1, 2):
            zf.writestr(f"pages/{page:03d}.jpg", jpeg_bytes(1000, 1500, quality=75, seed=page))
    full = jpeg_bytes(800, 600, seed=5)
    (root / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.jpg").write_text("not an image, whatever its name says\n")
