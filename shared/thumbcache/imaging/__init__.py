"""The rendering engine: header probing, quality estimation, and rendering one rendition.

Public API (the render and scan stages use only these names):

- :func:`sniff` — image format from leading bytes.
- :func:`probe` — format and displayed dimensions from the header, no pixel decode.
- :func:`render` — one rendition from source bytes, as encoded bytes plus its record.
- :class:`RenderSpec`, :class:`Rendered`, :class:`ImageInfo`, :data:`ENGINE_VERSION`.
"""

from thumbcache.imaging.engine import ENGINE_VERSION, Rendered, RenderSpec, render
from thumbcache.imaging.probe import IMAGE_EXTENSIONS, ImageInfo, probe, sniff

__all__ = [
    "ENGINE_VERSION",
    "IMAGE_EXTENSIONS",
    "ImageInfo",
    "RenderSpec",
    "Rendered",
    "probe",
    "render",
    "sniff",
]
