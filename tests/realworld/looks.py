"""Does a thumbnail look like the reference decoder's view of its source?

Only for 8-bit modes, where the reference view is unambiguous: Pillow's pixels, turned by
EXIF/XMP orientation (``ImageOps.exif_transpose``), transparency composited over white (the
default background). Both pictures are boxed down to a small grid and compared by mean absolute
difference, which is blind to resampling and JPEG detail but not to a wrong turn, a missing
flip, inverted or swapped channels, or a picture gone black.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

GRID = (24, 24)
# Mean absolute difference (0-255) past which the rendition does not show the same picture;
# measured on the corpus: sound renditions stay under 10, a 180-degree turn is far above 30.
LOOKS_DIFFERENT = 30.0
UNAMBIGUOUS_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"})
WHITE = (255, 255, 255)
# Below this side JPEG's 16x16 chroma blocks decide the colours (a 4x4 source re-encoded at
# 4:2:0 differs by ~47 with nothing wrong), so such pictures are not compared.
MIN_SIDE = 16


def reference_view(source: Path) -> Image.Image | None:
    """The reference's displayed picture as RGB over white, or None when it is ambiguous."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(source) as im:
                im.load()
                if im.mode not in UNAMBIGUOUS_MODES:
                    return None
                shown = ImageOps.exif_transpose(im)
                rgba = shown.convert("RGBA")
        except (OSError, ValueError, SyntaxError, MemoryError):
            return None
    canvas = Image.new("RGBA", rgba.size, (*WHITE, 255))
    return Image.alpha_composite(canvas, rgba).convert("RGB")


def difference(rendition: Path, view: Image.Image) -> float:
    """Mean absolute difference of the two pictures on a small grid (0 same, 255 opposite)."""
    with Image.open(rendition) as im:
        rendered = im.convert("RGB").resize(GRID, Image.Resampling.BOX)
    expected = view.resize(GRID, Image.Resampling.BOX)
    a = np.asarray(rendered, dtype=np.float32)
    b = np.asarray(expected, dtype=np.float32)
    return float(np.abs(a - b).mean())


def looks_wrong(source: Path, rendition: Path) -> float | None:
    """The difference when the rendition does not show the reference's picture, else None."""
    view = reference_view(source)
    if view is None or min(view.size) < MIN_SIDE:
        return None
    score = difference(rendition, view)
    return score if score > LOOKS_DIFFERENT else None
