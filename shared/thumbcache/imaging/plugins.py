"""Optional format readers: registered with Pillow once, on first use, and only when installed.

HEIF/HEIC comes from ``pi-heif`` (decode-only, LGPL libheif), JPEG XL from
``pillow-jxl-plugin``, camera RAW from ``rawpy`` (embedded preview only, see raw.py), AVIF from
Pillow itself (its wheels carry libavif from 11.3). A reader that is missing is not an error
until an image needs it; then :func:`missing_reader` names the extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from typing import Any

from PIL import features

# Format id -> (the extra that provides its reader, the module that must import).
EXTRAS = {
    "heif": ("heif", "pi_heif"),
    "jxl": ("jxl", "pillow_jxl"),
    "raw": ("raw", "rawpy"),
}
_NAMES = {"heif": "HEIF/HEIC", "jxl": "JPEG XL", "raw": "camera RAW", "avif": "AVIF"}
_lock = threading.Lock()
_registered = False


def register_plugins() -> None:
    """Register every installed optional reader with Pillow (once; safe from many threads)."""
    global _registered  # noqa: PLW0603 - a once-only flag guarded by a lock
    if _registered:
        return
    with _lock:
        if _registered:
            return
        if _installed("pi_heif"):
            importlib.import_module("pi_heif").register_heif_opener()
        if _installed("pillow_jxl"):
            plugin: Any = importlib.import_module("pillow_jxl.JpegXLImagePlugin")
            plugin.DECODE_THREADS = 0  # one thread per decode: parallelism is the workers'
        _registered = True


def missing_reader(fmt: str) -> str | None:
    """Why images of format id ``fmt`` cannot be read by this install, or None if they can."""
    if fmt == "avif":
        if features.check("avif"):
            return None
        return "AVIF needs Pillow >= 11.3 built with libavif: install thumbcache[avif]"
    extra = EXTRAS.get(fmt)
    if extra is None or _installed(extra[1]):
        return None
    return f"{_NAMES[fmt]} needs an optional reader: install thumbcache[{extra[0]}]"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
