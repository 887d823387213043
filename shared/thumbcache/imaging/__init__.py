"""The rendering engine: header probing, quality estimation, and rendering one rendition.

Public API (the render and scan stages use only these names):

- :func:`sniff` — image format from leading bytes.
- :func:`probe` — format and displayed dimensions from the header, no pixel decode.
- :func:`render` — one rendition from source bytes, as encoded bytes plus its record.
- :func:`set_threads` — OpenCV's thread pool size (1 by default: parallelism is the workers').
- :func:`image_source` — names the source that decoder warnings logged in a block belong to.
- :class:`RenderSpec`, :class:`Rendered`, :class:`ImageInfo`, :data:`ENGINE_VERSION`.

Both halves load on first use: the render half (OpenCV, numpy) so the scanner, which only
probes headers, runs with Pillow alone (the ``scanner`` extra); the probe half (Pillow) so a
process that only names the engine (the status service submitting a scan, ``thumbcache
--help``) runs with neither.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from thumbcache.imaging.decoder_warnings import image_source
from thumbcache.imaging.formats import IMAGE_EXTENSIONS, sniff
from thumbcache.imaging.version import ENGINE_VERSION

if TYPE_CHECKING:  # the function, not the module of the same name (bound lazily below)
    from thumbcache.imaging.probe import ImageInfo, probe

# Name -> the module that holds it, imported when the name is first used. Import these names
# from this package, never from their modules (``probe`` is both a module and a function).
_LAZY_NAMES = {
    **dict.fromkeys(("RenderSpec", "Rendered", "render", "set_threads"), "engine"),
    **dict.fromkeys(("ImageInfo", "probe"), "probe"),
}

__all__ = [
    "ENGINE_VERSION",
    "IMAGE_EXTENSIONS",
    "ImageInfo",
    "RenderSpec",
    "Rendered",
    "image_source",
    "probe",
    "render",
    "set_threads",
    "sniff",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(f"thumbcache.imaging.{_LAZY_NAMES[name]}"), name)
        # Bound here, after the import: importing the submodule ``probe`` set this package's
        # attribute ``probe`` to that module, and the function must win.
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
