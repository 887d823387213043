"""The rendering engine: header probing, quality estimation, and rendering one rendition.

Public API (the render and scan stages use only these names):

- :func:`sniff` — image format from leading bytes.
- :func:`thumbcache.imaging.probe.probe` (and its :class:`~thumbcache.imaging.probe.ImageInfo`)
  — format and displayed dimensions from the header, no pixel decode; imported from its module,
  whose name it shares.
- :func:`render` — one rendition from source bytes, as encoded bytes plus its record;
  :func:`render_many` — several renditions from one decode.
- :func:`set_threads` — OpenCV's thread pool size (1 by default: parallelism is the workers').
- :func:`image_source` — names the source that decoder warnings logged in a block belong to.
- :class:`RenderSpec`, :class:`Rendered`, :data:`ENGINE_VERSION`.

Importing this package loads neither Pillow nor OpenCV, so a process that only names the engine
(the status service submitting a scan, ``thumbcache --help``) runs with neither: the render half
(OpenCV, numpy) loads on first use of its names, so the scanner, which only probes headers, runs
with Pillow alone (the ``scanner`` extra); the probe module loads Pillow when it is imported.
"""

from __future__ import annotations

import importlib
from typing import Any

from thumbcache.imaging.decoder_warnings import image_source
from thumbcache.imaging.formats import IMAGE_EXTENSIONS, sniff
from thumbcache.imaging.version import ENGINE_VERSION

_RENDER_NAMES = frozenset({"RenderSpec", "Rendered", "render", "render_many", "set_threads"})

__all__ = [
    "ENGINE_VERSION",
    "IMAGE_EXTENSIONS",
    "RenderSpec",
    "Rendered",
    "image_source",
    "render",
    "render_many",
    "set_threads",
    "sniff",
]


def __getattr__(name: str) -> Any:
    if name in _RENDER_NAMES:
        return getattr(importlib.import_module("thumbcache.imaging.engine"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
